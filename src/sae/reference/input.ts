/**
 * CPU reference: input processing before the encoder, and its inverse after the decoder.
 * Order as in SAELens: normalise x (run_time_activation_norm_fn_in), then subtract b_dec.
 * A fixed `inputScale` multiplies x first and is divided out of x̂.
 */
import type { SaeConfig } from '../config.js';

/** Per-token state needed to undo the input processing on decode. */
export interface InputTransform {
  /** x̂_out = x̂ · outScale[t] + outShift[t] (shift is the layer-norm mean, else 0). */
  readonly outScale: Float32Array;
  readonly outShift: Float32Array;
  /** 1 where the token's input held a NaN or ±Inf. */
  readonly nonFinite: Uint8Array;
}

const LAYER_NORM_EPS = 1e-5;

/** Returns sae_in [T][dIn] (f32) and the transform that decode must undo. */
export function prepareInput(
  config: SaeConfig,
  b_dec: Float32Array,
  x: Float32Array,
  tokens: number,
): { saeIn: Float32Array; transform: InputTransform } {
  const { dIn } = config;
  const saeIn = new Float32Array(tokens * dIn);
  const outScale = new Float32Array(tokens);
  const outShift = new Float32Array(tokens);
  const nonFinite = new Uint8Array(tokens);
  for (let t = 0; t < tokens; t++) {
    const row = x.subarray(t * dIn, (t + 1) * dIn);
    let finite = true;
    for (let i = 0; i < dIn; i++) if (!Number.isFinite(row[i] ?? NaN)) finite = false;
    if (!finite) {
      nonFinite[t] = 1;
      outScale[t] = 1 / config.inputScale;
      continue;
    }
    let scale = config.inputScale;
    let shift = 0;
    let undoScale = 1 / config.inputScale;
    let undoShift = 0;
    if (config.inputNorm === 'constant-norm-rescale') {
      let ss = 0;
      for (let i = 0; i < dIn; i++) ss += (row[i] ?? 0) ** 2;
      const norm = Math.sqrt(ss) * Math.abs(config.inputScale);
      scale = norm > 0 ? (config.inputScale * Math.sqrt(dIn)) / norm : config.inputScale;
      undoScale = 1 / scale;
    } else if (config.inputNorm === 'layer-norm') {
      let sum = 0;
      for (let i = 0; i < dIn; i++) sum += (row[i] ?? 0) * config.inputScale;
      const mean = sum / dIn;
      let ss = 0;
      for (let i = 0; i < dIn; i++) ss += ((row[i] ?? 0) * config.inputScale - mean) ** 2;
      const std = Math.sqrt(ss / Math.max(1, dIn - 1));
      const div = std + LAYER_NORM_EPS;
      scale = config.inputScale / div;
      shift = -mean / div;
      // SAELens undoes layer_norm with std, not std + eps
      undoScale = std / config.inputScale;
      undoShift = mean / config.inputScale;
    }
    const sub = config.applyBDecToInput;
    for (let i = 0; i < dIn; i++) {
      saeIn[t * dIn + i] = (row[i] ?? 0) * scale + shift - (sub ? (b_dec[i] ?? 0) : 0);
    }
    outScale[t] = undoScale;
    outShift[t] = undoShift;
  }
  return { saeIn, transform: { outScale, outShift, nonFinite } };
}
