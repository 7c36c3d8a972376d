/**
 * Goodfire's DeepSeek-R1 SAEs (`Goodfire/DeepSeek-R1-SAE-l37`, folders math/ and logic/):
 * `DeepSeek-R1-SAE-l37.pt` = torch.save of {W [dIn, dSae], b_enc, b_dec} and `config.json`
 * {d_in, expansion_factor, k}. BatchTopKTiedSAE: relu(x @ W + b_enc), batch top-k, tied decode
 * (column W[:, i] is both encoder and decoder of feature i), no b_dec subtraction.
 */
import { SaeConfigError } from '../../errors.js';
import { dims2, header, matrix, num, vectorHeader, vectorOf, type SaeFormatAdapter } from './plan.js';

export const goodfireR1: SaeFormatAdapter = {
  format: 'goodfire-r1',
  matches: (headers, cfg) => headers['W'] !== undefined && cfg?.['expansion_factor'] !== undefined,
  plan(headers, cfg) {
    const [dIn, dSae] = dims2(header(headers, 'W', 'Goodfire R1'), 'W', '[d_in, d_sae]');
    if (cfg === undefined) throw new SaeConfigError('A Goodfire R1 SAE needs its config.json ({d_in, expansion_factor, k}) next to the .pt file.');
    const dInCfg = num(cfg, 'd_in', 'config.json');
    const expansion = num(cfg, 'expansion_factor', 'config.json');
    if (dInCfg !== dIn) throw new SaeConfigError(`config.json says d_in ${dInCfg}, but W has ${dIn} rows ([${dIn}, ${dSae}]).`);
    if (Math.round(expansion * dInCfg) !== dSae) {
      throw new SaeConfigError(`config.json says expansion_factor ${expansion} (d_sae ${expansion * dInCfg}), but W has ${dSae} columns ([${dIn}, ${dSae}]).`);
    }
    const k = num(cfg, 'k', 'config.json');
    return {
      format: 'goodfire-r1',
      dIn,
      dSae,
      W_enc: matrix(headers, 'W', 'input-major', dSae, dIn, 'Goodfire R1'),
      vectors: [vectorHeader(headers, 'b_enc', dSae, 'd_sae', 'Goodfire R1'), vectorHeader(headers, 'b_dec', dIn, 'd_in', 'Goodfire R1')],
      finish: (v) => ({
        config: { format: 'goodfire-r1', architecture: 'batchtopk', activationOrder: 'relu-then-topk', dIn, dSae, k, tied: true },
        b_enc: vectorOf(v, 'b_enc', dSae, 'd_sae'),
        b_dec: vectorOf(v, 'b_dec', dIn, 'd_in'),
      }),
    };
  },
};
