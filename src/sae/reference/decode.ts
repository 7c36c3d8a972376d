/**
 * CPU reference: sparse decode x̂ = Σ_j values_j · W_dec[indices_j] + b_dec (f64 accumulation),
 * then the input transform undone; and per-token reconstruction metrics.
 */
import type { SaeConfig } from '../config.js';
import type { SparseCodes } from '../codes.js';
import { bf16ToF32, f16ToF32 } from '../dtype.js';
import { decoderOf, type SaeWeights } from '../weights.js';

export interface OutputTransform {
  readonly outScale: ArrayLike<number>;
  readonly outShift: ArrayLike<number>;
}

export function decodeCodes(
  config: SaeConfig,
  weights: SaeWeights,
  codes: SparseCodes,
  transform?: OutputTransform,
): Float32Array {
  const { dIn } = config;
  const dec = decoderOf(config, weights);
  const read =
    dec.dtype === 'f32'
      ? (i: number) => dec.data[i] ?? 0
      : dec.dtype === 'bf16'
        ? (i: number) => bf16ToF32(dec.data[i] ?? 0)
        : (i: number) => f16ToF32(dec.data[i] ?? 0);
  const out = new Float32Array(codes.tokens * dIn);
  const acc = new Float64Array(dIn);
  for (let t = 0; t < codes.tokens; t++) {
    for (let i = 0; i < dIn; i++) acc[i] = weights.b_dec[i] ?? 0;
    const begin = codes.offsets[t] ?? 0;
    const end = codes.offsets[t + 1] ?? begin;
    for (let j = begin; j < end; j++) {
      const f = codes.indices[j] ?? 0;
      const v = codes.values[j] ?? 0;
      const base = f * dIn;
      for (let i = 0; i < dIn; i++) acc[i] = (acc[i] ?? 0) + v * read(base + i);
    }
    const scale = transform?.outScale[t] ?? 1 / config.inputScale;
    const shift = transform?.outShift[t] ?? 0;
    for (let i = 0; i < dIn; i++) out[t * dIn + i] = (acc[i] ?? 0) * scale + shift;
  }
  return out;
}

/** Per-token reconstruction quality. */
export interface ReconstructionMetrics {
  /** mean over dims of (x − x̂)². */
  readonly mse: Float32Array;
  /** Σ(x − x̂)² / Σ(x − mean(x))², mean taken over the token's own dims. */
  readonly fvu: Float32Array;
  /** x·x̂ / (‖x‖ ‖x̂‖). */
  readonly cosine: Float32Array;
}

export function reconstructionMetrics(x: Float32Array, xHat: Float32Array, tokens: number, dIn: number): ReconstructionMetrics {
  const mse = new Float32Array(tokens);
  const fvu = new Float32Array(tokens);
  const cosine = new Float32Array(tokens);
  for (let t = 0; t < tokens; t++) {
    let sum = 0;
    for (let i = 0; i < dIn; i++) sum += x[t * dIn + i] ?? 0;
    const mean = sum / dIn;
    let se = 0;
    let sv = 0;
    let dot = 0;
    let nx = 0;
    let nh = 0;
    for (let i = 0; i < dIn; i++) {
      const a = x[t * dIn + i] ?? 0;
      const b = xHat[t * dIn + i] ?? 0;
      se += (a - b) ** 2;
      sv += (a - mean) ** 2;
      dot += a * b;
      nx += a * a;
      nh += b * b;
    }
    mse[t] = se / dIn;
    fvu[t] = se / sv;
    cosine[t] = dot / Math.sqrt(nx * nh);
  }
  return { mse, fvu, cosine };
}
