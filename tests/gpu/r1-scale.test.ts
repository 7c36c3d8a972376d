/**
 * An R1-size SAE (Goodfire layout: dIn 7168, dSae 28672, k 128, tied, bf16 = 411 MB) with random
 * weights made inside the test, on a device with WebGPU's DEFAULT limits (128 MiB per binding):
 * the weights must be sharded by feature range, and encode + decode on the GPU must match the
 * CPU reference on a few tokens.
 */
import { expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { decodeCodes, referenceEncode } from '../../src/sae/reference/index.js';
import type { SaeWeights } from '../../src/sae/weights.js';
import { compareCodes, denseOf, TOLERANCE, worstRatio } from '../helpers/compare.js';
import { withGpu } from '../helpers/gpu.js';
import { gaussian } from '../helpers/random.js';

const dIn = 7168;
const dSae = 28672;
const k = 128;

/** Random bf16 bits directly (sign, a narrow exponent range, random mantissa): fast at 205 M values. */
function randomBf16(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const u = s >>> 0;
    // exponent 118..121 → |w| in [2^-9, 2^-5): pre-activations of order 1 for dIn = 7168
    out[i] = (u & 0x8000) | ((118 + ((u >>> 8) & 3)) << 7) | (u & 0x7f);
  }
  return out;
}

test('R1-size bf16 SAE (7168 × 28672) encodes and decodes under default limits', async (ctx) => {
  const weights: SaeWeights = {
    W_enc: { dtype: 'bf16', data: randomBf16(dIn * dSae, 7) },
    b_enc: gaussian(dSae, 8, 0.02),
    b_dec: gaussian(dIn, 9, 0.05),
  };
  const config = { format: 'goodfire-r1', architecture: 'batchtopk', dIn, dSae, k, tied: true, weightDtype: 'bf16' } as const;
  const tokens = 3;
  const x = gaussian(tokens * dIn, 10, 1);
  await withGpu(ctx, { features: ['subgroups'], limits: 'default' }, async ({ device }) => {
    expect(device.limits.maxStorageBufferBindingSize).toBe(128 * 1024 * 1024);
    const sae = await Sae.create({ config, weights }, { backend: 'webgpu', device, limits: 'default' });
    try {
      // batch top-k at T = 1 is per-token top-k: the streaming case, one token at a time
      const ref1 = referenceEncode(sae.config, weights, x.subarray(0, dIn), 1);
      const codes1 = await sae.encode(x.subarray(0, dIn), { tokens: 1 });
      expect(codes1.indices.length).toBe(k);
      expect(compareCodes(codes1, denseOf(ref1.codes, dSae), ref1.preActs, dSae, TOLERANCE.bf16)).toEqual([]);
      // a 3-token batch
      const ref = referenceEncode(sae.config, weights, x, tokens);
      const codes = await sae.encode(x, { tokens });
      expect(codes.indices.length).toBe(k * tokens);
      expect(compareCodes(codes, denseOf(ref.codes, dSae), ref.preActs, dSae, TOLERANCE.bf16)).toEqual([]);
      const xHat = await sae.decode(codes);
      const refHat = decodeCodes(sae.config, weights, codes);
      expect(worstRatio(xHat, refHat, TOLERANCE.bf16).ratio).toBeLessThanOrEqual(1);
    } finally {
      sae.destroy();
    }
  });
});
