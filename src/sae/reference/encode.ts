/**
 * CPU reference: pre-activations pre[t][i] = sae_in[t] · W_enc[i] + b_enc[i], accumulated in
 * f64 (JS numbers) and rounded to f32 once — the most accurate answer, which the GPU's f32
 * accumulation is checked against.
 */
import type { SaeConfig } from '../config.js';
import { widenToF32 } from '../dtype.js';
import type { SaeWeights } from '../weights.js';

export function preActivations(
  config: SaeConfig,
  weights: SaeWeights,
  saeIn: Float32Array,
  tokens: number,
  nonFinite: Uint8Array,
): Float32Array {
  const { dIn, dSae } = config;
  const W = widenToF32(weights.W_enc.data, weights.W_enc.dtype);
  const pre = new Float32Array(tokens * dSae);
  for (let t = 0; t < tokens; t++) {
    if (nonFinite[t] === 1) {
      pre.fill(NaN, t * dSae, (t + 1) * dSae);
      continue;
    }
    const xin = saeIn.subarray(t * dIn, (t + 1) * dIn);
    for (let f = 0; f < dSae; f++) {
      const row = W.subarray(f * dIn, (f + 1) * dIn);
      let acc = 0;
      for (let i = 0; i < dIn; i++) acc += (xin[i] ?? 0) * (row[i] ?? 0);
      pre[t * dSae + f] = acc + (weights.b_enc[f] ?? 0);
    }
  }
  return pre;
}
