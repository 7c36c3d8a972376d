/**
 * SAELens: `cfg.json` + `sae_weights.safetensors` (W_enc [dIn, dSae], W_dec [dSae, dIn], b_enc,
 * b_dec, threshold). Both the 6.x keys (architecture, normalize_activations, metadata.hook_name)
 * and the pre-6.0 flat keys (activation_fn_str, activation_fn_kwargs.k, hook_point).
 */
import { SaeConfigError } from '../../errors.js';
import { resolveSaeConfig, type InputNorm, type SaeArchitecture, type SaeConfig } from '../config.js';
import type { SaeWeights } from '../weights.js';
import { rowsMatrix, tensor, transposedMatrix, vector, type Tensors } from './tensors.js';

export type SaeLensConfigFile = Record<string, unknown>;

function architectureOf(cfg: SaeLensConfigFile): { architecture: SaeArchitecture; k?: number } {
  const arch = cfg['architecture'];
  if (typeof arch === 'string') {
    if (arch === 'standard') return { architecture: 'relu' };
    if (arch === 'jumprelu') return { architecture: 'jumprelu' };
    if (arch === 'topk' || arch === 'batchtopk') {
      const k = cfg['k'];
      if (typeof k !== 'number') throw new SaeConfigError(`SAELens ${arch} cfg.json needs k.`);
      // SAELens saves BatchTopK-trained SAEs for inference as TopK/JumpReLU; batchtopk here is per batch
      return { architecture: arch, k };
    }
    throw new SaeConfigError(`SAELens architecture "${arch}" is not supported. Should be one of: standard, topk, batchtopk, jumprelu.`);
  }
  const fn = cfg['activation_fn_str'];
  if (fn === undefined || fn === 'relu') return { architecture: 'relu' };
  if (fn === 'topk') {
    const k = (cfg['activation_fn_kwargs'] as { k?: unknown } | undefined)?.k;
    if (typeof k !== 'number') throw new SaeConfigError('SAELens topk cfg.json needs activation_fn_kwargs.k.');
    return { architecture: 'topk', k };
  }
  throw new SaeConfigError(`SAELens activation_fn_str "${String(fn)}" is not supported. Should be one of: relu, topk.`);
}

function normOf(v: unknown): { inputNorm: InputNorm } {
  if (v === undefined || v === null || v === 'none' || v === false) return { inputNorm: 'none' };
  if (v === 'constant_norm_rescale') return { inputNorm: 'constant-norm-rescale' };
  if (v === 'layer_norm') return { inputNorm: 'layer-norm' };
  throw new SaeConfigError(
    `SAELens normalize_activations ${JSON.stringify(v)} needs the dataset scaling factor, which cfg.json does not carry; fold it into the weights (SAELens fold_activation_norm_scaling_factor) or pass inputScale.`,
  );
}

export function saeLensSae(cfg: SaeLensConfigFile, tensors: Tensors): { config: SaeConfig; weights: SaeWeights } {
  const dIn = cfg['d_in'];
  const dSae = cfg['d_sae'];
  if (typeof dIn !== 'number' || typeof dSae !== 'number') throw new SaeConfigError('SAELens cfg.json needs d_in and d_sae.');
  const { architecture, k } = architectureOf(cfg);
  const enc = transposedMatrix(tensor(tensors, 'W_enc', 'SAELens'), 'W_enc', dIn, dSae);
  const dec = rowsMatrix(tensor(tensors, 'W_dec', 'SAELens'), 'W_dec', dSae, dIn);
  const hook = (cfg['metadata'] as { hook_name?: unknown } | undefined)?.hook_name ?? cfg['hook_point'] ?? cfg['hook_name'];
  const model = (cfg['metadata'] as { model_name?: unknown } | undefined)?.model_name ?? cfg['model_name'];
  const config = resolveSaeConfig({
    format: 'saelens',
    architecture,
    ...(k !== undefined ? { k } : {}),
    activationOrder: 'topk-then-relu',
    dIn,
    dSae,
    applyBDecToInput: cfg['apply_b_dec_to_input'] !== false,
    ...normOf(cfg['normalize_activations']),
    weightDtype: enc.dtype,
    ...(typeof hook === 'string' ? { hookpoint: hook } : {}),
    ...(typeof model === 'string' ? { model } : {}),
  });
  const weights: SaeWeights = {
    W_enc: enc,
    W_dec: dec,
    b_enc: vector(tensor(tensors, 'b_enc', 'SAELens'), 'b_enc', dSae),
    b_dec: vector(tensor(tensors, 'b_dec', 'SAELens'), 'b_dec', dIn),
    ...(architecture === 'jumprelu' ? { threshold: vector(tensor(tensors, 'threshold', 'SAELens JumpReLU'), 'threshold', dSae) } : {}),
  };
  return { config, weights };
}
