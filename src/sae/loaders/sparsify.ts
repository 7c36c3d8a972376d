/**
 * EleutherAI sparsify: `<hookpoint>/cfg.json` + `<hookpoint>/sae.safetensors` (encoder.weight
 * [numLatents, dIn], encoder.bias, W_dec [numLatents, dIn], b_dec). Encode relu(x − b_dec) then
 * top-k, following sparsify's own code (not the SAELens converter). Transcoders and skip
 * connections are refused with a named error until the kernels support them.
 */
import { SaeConfigError } from '../../errors.js';
import { resolveSaeConfig, type SaeConfig } from '../config.js';
import type { SaeWeights } from '../weights.js';
import { rowsMatrix, tensor, vector, type Tensors } from './tensors.js';

export type SparsifyConfigFile = Record<string, unknown>;

export function sparsifySae(cfg: SparsifyConfigFile, tensors: Tensors, hookpoint: string | undefined): { config: SaeConfig; weights: SaeWeights } {
  const W = tensor(tensors, 'encoder.weight', 'sparsify');
  const [dSae, dIn] = W.shape;
  if (dSae === undefined || dIn === undefined) throw new SaeConfigError('sparsify encoder.weight must be [num_latents, d_in].');
  if (cfg['activation'] !== undefined && cfg['activation'] !== 'topk') {
    throw new SaeConfigError(`sparsify activation "${String(cfg['activation'])}" is not supported. Should be: topk.`);
  }
  if (cfg['transcode'] === true || tensors['W_skip'] !== undefined || cfg['skip_connection'] === true) {
    throw new SaeConfigError('This sparsify checkpoint is a transcoder or has a skip connection (W_skip); Loupe supports plain SAEs only for now.');
  }
  const k = cfg['k'];
  if (typeof k !== 'number') throw new SaeConfigError('sparsify cfg.json needs k.');
  const enc = rowsMatrix(W, 'encoder.weight', dSae, dIn);
  const config = resolveSaeConfig({
    format: 'sparsify',
    architecture: 'topk',
    k,
    activationOrder: 'relu-then-topk',
    dIn,
    dSae,
    applyBDecToInput: true,
    weightDtype: enc.dtype,
    ...(hookpoint !== undefined ? { hookpoint } : {}),
  });
  return {
    config,
    weights: {
      W_enc: enc,
      W_dec: rowsMatrix(tensor(tensors, 'W_dec', 'sparsify'), 'W_dec', dSae, dIn),
      b_enc: vector(tensor(tensors, 'encoder.bias', 'sparsify'), 'encoder.bias', dSae),
      b_dec: vector(tensor(tensors, 'b_dec', 'sparsify'), 'b_dec', dIn),
    },
  };
}
