/**
 * WGSL kernels against the CPU reference on random SAEs: every architecture, weight dtype,
 * GEMV and GEMM (32- and 64-token tiles), subgroups on and off, shader-f16 on and off, forced weight sharding.
 */
import { describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import type { SaeConfigInput } from '../../src/sae/config.js';
import type { WeightDtype } from '../../src/sae/dtype.js';
import { randomSae } from '../helpers/random-sae.js';
import { referenceEncode, decodeCodes, reconstructionMetrics } from '../../src/sae/reference/index.js';
import { compareCodes, TOLERANCE, worstRatio } from '../helpers/compare.js';
import { withGpu } from '../helpers/gpu.js';
import { gaussian } from '../helpers/random.js';

interface Case {
  name: string;
  config: SaeConfigInput & { weightDtype: WeightDtype };
  tokens: number;
  features: Array<'shader-f16' | 'subgroups'>;
  maxShardBytes?: number;
  /** 'default': GEMV up to 8 tokens, tiled GEMM above; 'gemm': the GEMM for every T (tiles mostly empty). */
  kernels?: 'default' | 'gemm';
  /** 'adapter' grants lavapipe's 32 KiB of workgroup memory, which enables 128-feature GEMM tiles. */
  limits?: 'default' | 'adapter';
}

const cases: Case[] = [];
for (const weightDtype of ['f32', 'f16', 'bf16'] as const) {
  for (const features of [[], ['subgroups'], ['shader-f16', 'subgroups']] as Array<Array<'shader-f16' | 'subgroups'>>) {
    if (weightDtype !== 'f16' && features.includes('shader-f16')) continue;
    for (const tokens of [1, 2, 7, 64]) {
      for (const kernels of ['default', 'gemm'] as const) {
        cases.push({
          name: `topk ${weightDtype} T=${tokens} ${kernels} [${features.join(',') || 'no features'}]`,
          config: { architecture: 'topk', dIn: 200, dSae: 1531, k: 24, weightDtype, applyBDecToInput: true },
          tokens,
          features,
          kernels,
          maxShardBytes: 200 * 4 * 500, // forces 4 shards (f32) / 2 shards (16-bit)
        });
      }
    }
  }
}
cases.push(
  { name: 'batchtopk tied bf16 T=7', config: { architecture: 'batchtopk', dIn: 96, dSae: 1000, k: 16, tied: true, weightDtype: 'bf16' }, tokens: 7, features: ['subgroups'] },
  { name: 'batchtopk tied bf16 T=1', config: { architecture: 'batchtopk', dIn: 96, dSae: 1000, k: 16, tied: true, weightDtype: 'bf16' }, tokens: 1, features: [] },
  { name: 'relu f32 T=7 gemv', kernels: 'default', config: { architecture: 'relu', dIn: 100, dSae: 700, weightDtype: 'f32', applyBDecToInput: true }, tokens: 7, features: ['subgroups'] },
  { name: 'batchtopk f16 T=64 gemm', kernels: 'default', config: { architecture: 'batchtopk', dIn: 96, dSae: 1000, k: 16, weightDtype: 'f16' }, tokens: 64, features: ['shader-f16'] },
  { name: 'topk f32 T=64, 128-feature GEMM tiles', limits: 'adapter', config: { architecture: 'topk', dIn: 200, dSae: 1531, k: 24, weightDtype: 'f32', applyBDecToInput: true }, tokens: 64, features: [] },
  { name: 'jumprelu bf16 T=40, 128-feature GEMM tiles', limits: 'adapter', config: { architecture: 'jumprelu', dIn: 96, dSae: 1000, weightDtype: 'bf16' }, tokens: 40, features: ['subgroups'] },
  { name: 'topk k=300 (above the fused select) T=5', config: { architecture: 'topk', dIn: 64, dSae: 2000, k: 300, weightDtype: 'f32' }, tokens: 5, features: [] },
  { name: 'relu f32 T=7', config: { architecture: 'relu', dIn: 100, dSae: 700, weightDtype: 'f32', applyBDecToInput: true }, tokens: 7, features: [] },
  { name: 'jumprelu f16 T=9', config: { architecture: 'jumprelu', dIn: 96, dSae: 1000, weightDtype: 'f16' }, tokens: 9, features: ['shader-f16'] },
  { name: 'topk k=256 dSae=131072 T=1', config: { architecture: 'topk', dIn: 64, dSae: 131072, k: 256, weightDtype: 'f16' }, tokens: 1, features: ['subgroups'] },
  { name: 'topk k=1 layer-norm T=3', config: { architecture: 'topk', dIn: 40, dSae: 300, k: 1, weightDtype: 'f32', inputNorm: 'layer-norm' }, tokens: 3, features: [] },
  { name: 'topk constant-norm-rescale + inputScale T=5', config: { architecture: 'topk', dIn: 48, dSae: 333, k: 7, weightDtype: 'f32', inputNorm: 'constant-norm-rescale', inputScale: 2.5 }, tokens: 5, features: ['subgroups'] },
);

describe('GPU encode/decode matches the CPU reference', () => {
  test.for(cases)('$name', async (c, ctx) => {
    const weights = randomSae(c.config, 1234);
    const x = gaussian(c.tokens * c.config.dIn, 99, 1);
    // one row exactly b_dec when b_dec is subtracted: sae_in = 0, only b_enc decides
    if (c.tokens > 2 && c.config.applyBDecToInput === true) x.set(weights.b_dec, 2 * c.config.dIn);
    // one non-finite row: no features, reported
    if (c.tokens > 4) x[4 * c.config.dIn + 3] = NaN;
    await withGpu(ctx, { features: c.features, limits: c.limits ?? 'default' }, async ({ device }) => {
      const sae = await Sae.create({ config: c.config, weights }, {
        backend: 'webgpu',
        device,
        ...(c.maxShardBytes !== undefined ? { maxShardBytes: c.maxShardBytes } : {}),
        ...(c.kernels === 'gemm' ? { gemvMaxTokens: 0 } : {}),
        f16Loads: c.features.includes('shader-f16') ? 'native' : 'packed',
        disableFeatures: (['shader-f16', 'subgroups'] as const).filter((f) => !c.features.includes(f)),
      });
      try {
        const ref = referenceEncode(sae.config, weights, x, c.tokens);
        const { codes, xHat, metrics } = await sae.reconstruct(x, { tokens: c.tokens });
        const dense = new Float32Array(c.tokens * c.config.dSae);
        const refCodes = ref.codes;
        for (let t = 0; t < c.tokens; t++) {
          for (let j = refCodes.offsets[t] ?? 0; j < (refCodes.offsets[t + 1] ?? 0); j++) {
            dense[t * c.config.dSae + (refCodes.indices[j] ?? 0)] = refCodes.values[j] ?? 0;
          }
        }
        expect(compareCodes(codes, dense, ref.preActs, c.config.dSae, TOLERANCE.f32)).toEqual([]);
        expect(Array.from(codes.nonFiniteTokens)).toEqual(Array.from(ref.codes.nonFiniteTokens));
        // decode the GPU's own codes on the CPU: isolates decode from selection near-ties
        const refHat = decodeCodes(sae.config, weights, codes, codes.inputTransform);
        const d = worstRatio(xHat, refHat, TOLERANCE.f32);
        expect(d.ratio, `x_hat worst at ${d.at}`).toBeLessThanOrEqual(1);
        const m = reconstructionMetrics(x, refHat, c.tokens, c.config.dIn);
        for (const key of ['mse', 'fvu', 'cosine'] as const) {
          const r = worstRatio(metrics[key], m[key], { atol: 1e-5, rtol: 1e-3 });
          expect(r.ratio, `${key} worst at ${r.at}`).toBeLessThanOrEqual(1);
        }
        // the plain decode path agrees with reconstruct's
        const again = await sae.decode(codes);
        expect(worstRatio(again, refHat, TOLERANCE.f32).ratio).toBeLessThanOrEqual(1);
      } finally {
        sae.destroy();
      }
    });
  });
});

