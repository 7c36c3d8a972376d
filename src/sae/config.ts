/**
 * One description for every supported SAE architecture. Loaders map their file formats onto a
 * `SaeConfig`; kernels and the CPU reference read only this. Formulas: docs/golden-fixtures.md
 * and ../shared/reference/sae-formats.md.
 */
import { SaeConfigError } from '../errors.js';
import type { WeightDtype } from './dtype.js';

/**
 * How feature activations are computed from pre-activations `pre = sae_in · W_encᵀ + b_enc`.
 * - `topk`: per token, the k largest (sparsify, SAELens TopK);
 * - `batchtopk`: ReLU, then the k·T largest over the flattened [T, dSae] batch (Goodfire's
 *   BatchTopKTiedSAE) — a token may get more or fewer than k features; for T = 1 it is `topk`;
 * - `relu`: every positive pre-activation (SAELens standard, Goodfire Llama);
 * - `jumprelu`: `relu(pre) · (pre > threshold)` with one threshold per feature (SAELens).
 */
export type SaeArchitecture = 'topk' | 'batchtopk' | 'relu' | 'jumprelu';

/**
 * Where ReLU sits relative to top-k. sparsify and Goodfire take ReLU first; SAELens' TopK SAE
 * takes the top k of the raw pre-activations and ReLUs the kept values. Both keep exactly the
 * same non-zero codes (the positives among the top k are the top positives), so both run on
 * the same GPU kernel; the CPU reference computes each literally and the golden tests check
 * each against its source project.
 */
export type ActivationOrder = 'relu-then-topk' | 'topk-then-relu';

/**
 * Run-time normalisation of the input, undone on the decoder output (SAELens
 * `normalize_activations`):
 * - `constant-norm-rescale`: x · sqrt(dIn)/‖x‖;
 * - `layer-norm`: (x − mean) / (std + 1e-5), std unbiased; decode returns y · std + mean
 *   (without the eps, so it is not an exact inverse — SAELens' layer_norm mode).
 */
export type InputNorm = 'none' | 'constant-norm-rescale' | 'layer-norm';

export const ARCHITECTURES: readonly SaeArchitecture[] = ['topk', 'batchtopk', 'relu', 'jumprelu'];
export const INPUT_NORMS: readonly InputNorm[] = ['none', 'constant-norm-rescale', 'layer-norm'];
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['f32', 'f16', 'bf16'];

/** Everything the encode and decode formulas need, independent of the file it came from. */
export interface SaeConfig {
  /** Where the SAE came from: 'goodfire-r1', 'saelens', 'sparsify', 'memory', ... */
  readonly format: string;
  readonly architecture: SaeArchitecture;
  /** Width of the residual-stream vector the SAE reads (d_in). */
  readonly dIn: number;
  /** Number of latents (d_sae, num_latents). */
  readonly dSae: number;
  /** Features kept per token (`topk`) or per token on average (`batchtopk`). */
  readonly k?: number;
  /** Order of ReLU and top-k (only meaningful for `topk` / `batchtopk`). */
  readonly activationOrder: ActivationOrder;
  /** Subtract b_dec from the input before encoding (SAELens apply_b_dec_to_input, sparsify). */
  readonly applyBDecToInput: boolean;
  /** Run-time input normalisation, undone on decode. */
  readonly inputNorm: InputNorm;
  /** Fixed multiplier on the input before encoding (e.g. Llama-Scope norm_scaling_factor); decode divides by it. */
  readonly inputScale: number;
  /** Tied weights: decoder row i is encoder row i (Goodfire's W[:, i]); stored once. */
  readonly tied: boolean;
  /** Storage dtype of W_enc / W_dec. */
  readonly weightDtype: WeightDtype;
  /** Model site the SAE reads, e.g. 'model.layers.37' or 'blocks.12.hook_resid_post'. */
  readonly hookpoint?: string;
  /** Model the SAE was trained on, e.g. 'deepseek-ai/DeepSeek-R1'. */
  readonly model?: string;
}

/** What a caller must say; the rest takes the defaults of `resolveSaeConfig`. */
export type SaeConfigInput = Pick<SaeConfig, 'architecture' | 'dIn' | 'dSae'> &
  Partial<Omit<SaeConfig, 'architecture' | 'dIn' | 'dSae'>>;

function isPositiveInteger(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0;
}

/** Fills defaults and checks consistency; returns a frozen config or throws `SaeConfigError`. */
export function resolveSaeConfig(input: SaeConfigInput): SaeConfig {
  const { architecture, dIn, dSae } = input;
  if (!ARCHITECTURES.includes(architecture)) {
    throw new SaeConfigError(
      `Unknown SAE architecture ${JSON.stringify(architecture)}. Should be one of: ${ARCHITECTURES.join(', ')}.`,
    );
  }
  if (!isPositiveInteger(dIn)) throw new SaeConfigError(`dIn must be a positive integer, got ${String(dIn)}.`);
  if (!isPositiveInteger(dSae)) throw new SaeConfigError(`dSae must be a positive integer, got ${String(dSae)}.`);
  const needsK = architecture === 'topk' || architecture === 'batchtopk';
  if (needsK) {
    if (!isPositiveInteger(input.k)) {
      throw new SaeConfigError(`A ${architecture} SAE needs k, a positive integer; got ${String(input.k)}.`);
    }
    if (input.k > dSae) {
      throw new SaeConfigError(`k (${input.k}) cannot exceed dSae (${dSae}): there are only ${dSae} features to keep.`);
    }
  } else if (input.k !== undefined) {
    throw new SaeConfigError(`k is only meaningful for topk/batchtopk SAEs, not ${architecture}; drop it.`);
  }
  const inputNorm = input.inputNorm ?? 'none';
  if (!INPUT_NORMS.includes(inputNorm)) {
    throw new SaeConfigError(`Unknown inputNorm ${JSON.stringify(inputNorm)}. Should be one of: ${INPUT_NORMS.join(', ')}.`);
  }
  const weightDtype = input.weightDtype ?? 'f32';
  if (!WEIGHT_DTYPES.includes(weightDtype)) {
    throw new SaeConfigError(`Unknown weightDtype ${JSON.stringify(weightDtype)}. Should be one of: ${WEIGHT_DTYPES.join(', ')}.`);
  }
  const inputScale = input.inputScale ?? 1;
  if (!Number.isFinite(inputScale) || inputScale === 0) {
    throw new SaeConfigError(`inputScale must be a finite non-zero number, got ${String(inputScale)}.`);
  }
  const order = input.activationOrder ?? (architecture === 'topk' ? 'relu-then-topk' : 'relu-then-topk');
  const config: SaeConfig = {
    format: input.format ?? 'memory',
    architecture,
    dIn,
    dSae,
    ...(needsK && input.k !== undefined ? { k: input.k } : {}),
    activationOrder: order,
    applyBDecToInput: input.applyBDecToInput ?? false,
    inputNorm,
    inputScale,
    tied: input.tied ?? false,
    weightDtype,
    ...(input.hookpoint !== undefined ? { hookpoint: input.hookpoint } : {}),
    ...(input.model !== undefined ? { model: input.model } : {}),
  };
  return Object.freeze(config);
}
