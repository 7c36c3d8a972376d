/**
 * Goodfire's DeepSeek-R1 SAEs (`Goodfire/DeepSeek-R1-SAE-l37`, folders math/ and logic/):
 * `DeepSeek-R1-SAE-l37.pt` = torch.save of {W [dIn, dSae], b_enc, b_dec} and `config.json`
 * {d_in, expansion_factor, k}. BatchTopKTiedSAE: relu(x @ W + b_enc), batch top-k, tied decode.
 */
import { SaeConfigError } from '../../errors.js';
import { resolveSaeConfig, type SaeConfig } from '../config.js';
import type { SaeWeights } from '../weights.js';
import { tensor, transposedMatrix, vector, type Tensors } from './tensors.js';

export interface GoodfireConfigFile {
  d_in: number;
  expansion_factor: number;
  k: number;
}

export function goodfireSae(cfg: GoodfireConfigFile, tensors: Tensors): { config: SaeConfig; weights: SaeWeights } {
  const W = tensor(tensors, 'W', 'Goodfire');
  const [dIn, dSae] = W.shape;
  if (dIn === undefined || dSae === undefined || W.shape.length !== 2) throw new SaeConfigError('Goodfire W must be a [d_in, d_sae] matrix.');
  if (cfg.d_in !== dIn) throw new SaeConfigError(`config.json says d_in ${cfg.d_in}, but W has ${dIn} rows.`);
  if (Math.round(cfg.expansion_factor * cfg.d_in) !== dSae) {
    throw new SaeConfigError(`config.json says expansion_factor ${cfg.expansion_factor} (d_sae ${cfg.expansion_factor * cfg.d_in}), but W has ${dSae} columns.`);
  }
  const enc = transposedMatrix(W, 'W', dIn, dSae);
  const config = resolveSaeConfig({
    format: 'goodfire-r1',
    architecture: 'batchtopk',
    activationOrder: 'relu-then-topk',
    dIn,
    dSae,
    k: cfg.k,
    tied: true,
    weightDtype: enc.dtype,
  });
  return { config, weights: { W_enc: enc, b_enc: vector(tensor(tensors, 'b_enc', 'Goodfire'), 'b_enc', dSae), b_dec: vector(tensor(tensors, 'b_dec', 'Goodfire'), 'b_dec', dIn) } };
}
