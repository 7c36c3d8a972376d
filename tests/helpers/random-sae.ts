/** Random SAEs of any architecture and weight dtype, seeded, for kernel tests. */
import type { SaeConfigInput } from '../../src/sae/config.js';
import type { WeightDtype } from '../../src/sae/dtype.js';
import { f32ToBf16, f32ToF16 } from '../../src/sae/dtype.js';
import type { SaeWeights } from '../../src/sae/weights.js';
import { gaussian } from './random.js';

export function toDtype(v: Float32Array, dtype: WeightDtype): Float32Array | Uint16Array {
  if (dtype === 'f32') return v;
  const out = new Uint16Array(v.length);
  const conv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < v.length; i++) out[i] = conv(v[i] ?? 0);
  return out;
}

export function randomSae(config: SaeConfigInput & { weightDtype: WeightDtype }, seed: number): SaeWeights {
  const { dIn, dSae, weightDtype } = config;
  const enc = gaussian(dIn * dSae, seed, 1 / Math.sqrt(dIn));
  const weights: SaeWeights = {
    W_enc: { dtype: weightDtype, data: toDtype(enc, weightDtype) },
    ...(config.tied ? {} : { W_dec: { dtype: weightDtype, data: toDtype(gaussian(dIn * dSae, seed + 1, 1 / Math.sqrt(dIn)), weightDtype) } }),
    b_enc: gaussian(dSae, seed + 2, 0.05),
    b_dec: gaussian(dIn, seed + 3, 0.1),
    ...(config.architecture === 'jumprelu' ? { threshold: gaussian(dSae, seed + 4, 0.2).map(Math.abs) } : {}),
  };
  return weights;
}

