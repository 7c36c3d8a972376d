/**
 * In-memory SAE weights in Loupe's canonical, feature-major layout: row i of W_enc and W_dec
 * belongs to feature i ([dSae][dIn] row-major). SAELens stores W_enc as [dIn, dSae] and Goodfire
 * stores W as [dIn, dSae]; their loaders transpose once so every kernel reads whole rows.
 */
import { ShapeMismatchError } from '../errors.js';
import type { SaeConfig } from './config.js';
import type { WeightDtype } from './dtype.js';

/** A [dSae][dIn] matrix: f32 values, or raw f16/bf16 bits. */
export interface WeightMatrix {
  readonly dtype: WeightDtype;
  readonly data: Float32Array | Uint16Array;
}

export interface SaeWeights {
  /** Encoder rows [dSae][dIn]: pre_i = sae_in · W_enc[i] + b_enc[i]. */
  readonly W_enc: WeightMatrix;
  /** Decoder rows [dSae][dIn]: x̂ = Σ f_i W_dec[i] + b_dec. Omitted when the SAE is tied. */
  readonly W_dec?: WeightMatrix;
  /** Encoder bias [dSae], widened to f32. */
  readonly b_enc: Float32Array;
  /** Decoder bias [dIn], widened to f32. */
  readonly b_dec: Float32Array;
  /** JumpReLU thresholds [dSae]. */
  readonly threshold?: Float32Array;
}

function checkMatrix(name: string, m: WeightMatrix, config: SaeConfig): void {
  const expected = config.dSae * config.dIn;
  if (m.dtype !== config.weightDtype) {
    throw new ShapeMismatchError(`${name} is ${m.dtype} but the config says weightDtype ${config.weightDtype}; convert one to match.`);
  }
  const wantType = m.dtype === 'f32' ? Float32Array : Uint16Array;
  if (!(m.data instanceof wantType)) {
    throw new ShapeMismatchError(`${name} (${m.dtype}) must be a ${wantType.name}${m.dtype === 'f32' ? '' : ' of raw bits'}, got ${m.data.constructor.name}.`);
  }
  if (m.data.length !== expected) {
    throw new ShapeMismatchError(
      `${name} must hold dSae × dIn = ${config.dSae} × ${config.dIn} = ${expected} values (feature-major), got ${m.data.length}.`,
    );
  }
}

function checkVector(name: string, v: Float32Array | undefined, length: number, dimName: string): void {
  if (!(v instanceof Float32Array)) throw new ShapeMismatchError(`${name} must be a Float32Array of length ${dimName} = ${length}.`);
  if (v.length !== length) throw new ShapeMismatchError(`${name} must have length ${dimName} = ${length}, got ${v.length}.`);
}

/** Throws `ShapeMismatchError` unless the weights fit the config exactly. */
export function checkSaeWeights(config: SaeConfig, weights: SaeWeights): void {
  checkMatrix('W_enc', weights.W_enc, config);
  if (config.tied) {
    if (weights.W_dec !== undefined) throw new ShapeMismatchError('The config says tied weights, but W_dec was given; omit W_dec or set tied: false.');
  } else {
    if (weights.W_dec === undefined) throw new ShapeMismatchError('An untied SAE needs W_dec [dSae][dIn]; pass it, or set tied: true.');
    checkMatrix('W_dec', weights.W_dec, config);
  }
  checkVector('b_enc', weights.b_enc, config.dSae, 'dSae');
  checkVector('b_dec', weights.b_dec, config.dIn, 'dIn');
  if (config.architecture === 'jumprelu') checkVector('threshold', weights.threshold, config.dSae, 'dSae');
}

/** The decoder of an SAE: W_dec, or W_enc itself when tied. */
export function decoderOf(config: SaeConfig, weights: SaeWeights): WeightMatrix {
  if (config.tied || weights.W_dec === undefined) return weights.W_enc;
  return weights.W_dec;
}
