/**
 * The CPU reference of every SAE operation, composed: the semantics of record, and the
 * `backend: 'cpu'` implementation.
 */
import type { SaeConfig } from '../config.js';
import type { SparseCodes } from '../codes.js';
import type { SaeWeights } from '../weights.js';
import { activate } from './activation.js';
import { preActivations } from './encode.js';
import { prepareInput, type InputTransform } from './input.js';

export { activate, selectTop } from './activation.js';
export { decodeCodes, reconstructionMetrics, type ReconstructionMetrics } from './decode.js';
export { preActivations } from './encode.js';
export { prepareInput, type InputTransform } from './input.js';

export interface ReferenceEncoding {
  readonly codes: SparseCodes;
  /** [T][dSae], NaN rows for non-finite tokens. */
  readonly preActs: Float32Array;
  readonly transform: InputTransform;
}

/** Full CPU encode: input processing → pre-activations → activation/top-k. */
export function referenceEncode(config: SaeConfig, weights: SaeWeights, x: Float32Array, tokens: number): ReferenceEncoding {
  const { saeIn, transform } = prepareInput(config, weights.b_dec, x, tokens);
  const preActs = preActivations(config, weights, saeIn, tokens, transform.nonFinite);
  const codes = activate(config, weights, preActs, tokens, transform.nonFinite);
  return { codes, preActs, transform };
}
