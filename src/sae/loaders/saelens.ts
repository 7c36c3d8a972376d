/**
 * SAELens: `cfg.json` + `sae_weights.safetensors` (W_enc [dIn, dSae], W_dec [dSae, dIn], b_enc,
 * b_dec, threshold). Both the 6.x keys (architecture, normalize_activations, metadata.hook_name)
 * and the pre-6.0 flat keys (activation_fn_str, activation_fn_kwargs.k, hook_point).
 */
import { SaeConfigError } from '../../errors.js';
import type { InputNorm, SaeArchitecture } from '../config.js';
import { matrix, num, vectorHeader, vectorOf, type ConfigJson, type SaeFormatAdapter } from './plan.js';

function architectureOf(cfg: ConfigJson): { architecture: SaeArchitecture; k?: number } {
  const arch = cfg?.['architecture'];
  if (typeof arch === 'string') {
    if (arch === 'standard') return { architecture: 'relu' };
    if (arch === 'jumprelu') return { architecture: 'jumprelu' };
    if (arch === 'topk' || arch === 'batchtopk') {
      const k = cfg?.['k'];
      if (typeof k !== 'number') throw new SaeConfigError(`SAELens ${arch} cfg.json needs k.`);
      return { architecture: arch, k };
    }
    throw new SaeConfigError(`SAELens architecture "${arch}" is not supported. Should be one of: standard, topk, batchtopk, jumprelu.`);
  }
  const fn = cfg?.['activation_fn_str'];
  if (fn === undefined || fn === 'relu') return { architecture: 'relu' };
  if (fn === 'topk') {
    const k = (cfg?.['activation_fn_kwargs'] as { k?: unknown } | undefined)?.k;
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

export const saeLens: SaeFormatAdapter = {
  format: 'saelens',
  matches: (headers, cfg) => headers['W_enc'] !== undefined && cfg?.['d_sae'] !== undefined,
  plan(headers, cfg) {
    const dIn = num(cfg, 'd_in', 'SAELens cfg.json');
    const dSae = num(cfg, 'd_sae', 'SAELens cfg.json');
    const { architecture, k } = architectureOf(cfg);
    const meta = cfg?.['metadata'] as { hook_name?: unknown; model_name?: unknown } | undefined;
    const hook = meta?.hook_name ?? cfg?.['hook_point'] ?? cfg?.['hook_name'];
    const model = meta?.model_name ?? cfg?.['model_name'];
    const inputNorm = normOf(cfg?.['normalize_activations']);
    const jump = architecture === 'jumprelu';
    return {
      format: 'saelens',
      dIn,
      dSae,
      W_enc: matrix(headers, 'W_enc', 'input-major', dSae, dIn, 'SAELens'),
      W_dec: matrix(headers, 'W_dec', 'feature-major', dSae, dIn, 'SAELens'),
      vectors: [
        vectorHeader(headers, 'b_enc', dSae, 'd_sae', 'SAELens'),
        vectorHeader(headers, 'b_dec', dIn, 'd_in', 'SAELens'),
        ...(jump ? [vectorHeader(headers, 'threshold', dSae, 'd_sae', 'SAELens JumpReLU')] : []),
      ],
      finish: (v) => ({
        config: {
          format: 'saelens',
          architecture,
          ...(k !== undefined ? { k } : {}),
          activationOrder: 'topk-then-relu',
          dIn,
          dSae,
          applyBDecToInput: cfg?.['apply_b_dec_to_input'] !== false,
          ...inputNorm,
          ...(typeof hook === 'string' ? { hookpoint: hook } : {}),
          ...(typeof model === 'string' ? { model } : {}),
        },
        b_enc: vectorOf(v, 'b_enc', dSae, 'd_sae'),
        b_dec: vectorOf(v, 'b_dec', dIn, 'd_in'),
        ...(jump ? { threshold: vectorOf(v, 'threshold', dSae, 'd_sae') } : {}),
      }),
    };
  },
};
