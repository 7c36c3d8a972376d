/**
 * EleutherAI sparsify: `<hookpoint>/cfg.json` + `<hookpoint>/sae.safetensors` (encoder.weight
 * [numLatents, dIn], encoder.bias, W_dec [numLatents, dIn], b_dec). Encode relu(x − b_dec) then
 * top-k, following sparsify's own code (not the SAELens converter). Transcoders and skip
 * connections are refused with a named error until the kernels support them.
 */
import { SaeConfigError } from '../../errors.js';
import { dims2, header, matrix, num, vectorHeader, vectorOf, type SaeFormatAdapter } from './plan.js';

export const sparsify: SaeFormatAdapter = {
  format: 'sparsify',
  matches: (headers) => headers['encoder.weight'] !== undefined && headers['W_dec'] !== undefined,
  plan(headers, cfg, context) {
    const [dSae, dIn] = dims2(header(headers, 'encoder.weight', 'sparsify'), 'encoder.weight', '[num_latents, d_in]');
    if (cfg?.['activation'] !== undefined && cfg['activation'] !== 'topk') {
      throw new SaeConfigError(`sparsify activation "${String(cfg['activation'])}" is not supported. Should be: topk.`);
    }
    if (cfg?.['transcode'] === true || headers['W_skip'] !== undefined || cfg?.['skip_connection'] === true) {
      throw new SaeConfigError('This sparsify checkpoint is a transcoder or has a skip connection (W_skip); Loupe supports plain SAEs only for now.');
    }
    const k = num(cfg, 'k', 'sparsify cfg.json');
    const latents = cfg?.['num_latents'];
    if (typeof latents === 'number' && latents > 0 && latents !== dSae) {
      throw new SaeConfigError(`sparsify cfg.json says num_latents ${latents}, but encoder.weight is [${dSae}, ${dIn}].`);
    }
    const hookpoint = context.folder;
    return {
      format: 'sparsify',
      dIn,
      dSae,
      W_enc: matrix(headers, 'encoder.weight', 'feature-major', dSae, dIn, 'sparsify'),
      W_dec: matrix(headers, 'W_dec', 'feature-major', dSae, dIn, 'sparsify'),
      vectors: [vectorHeader(headers, 'encoder.bias', dSae, 'num_latents', 'sparsify'), vectorHeader(headers, 'b_dec', dIn, 'd_in', 'sparsify')],
      finish: (v) => ({
        config: {
          format: 'sparsify',
          architecture: 'topk',
          k,
          activationOrder: 'relu-then-topk',
          dIn,
          dSae,
          applyBDecToInput: true,
          ...(hookpoint !== undefined && hookpoint !== '' ? { hookpoint } : {}),
        },
        b_enc: vectorOf(v, 'encoder.bias', dSae, 'num_latents'),
        b_dec: vectorOf(v, 'b_dec', dIn, 'd_in'),
      }),
    };
  },
};
