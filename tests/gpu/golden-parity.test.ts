/**
 * Golden parity on the GPU (Dawn + lavapipe): every PyTorch fixture through the WGSL kernels,
 * with subgroups on and off, and for f16 weights with native shader-f16 and with the packed
 * (unpack2x16float) path. Codes, reconstruction and metrics against the fixture's expected values.
 */
import { describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { compareCodes, worstRatio } from '../helpers/compare.js';
import { goldenIndex, goldenTolerance, loadGolden, rms } from '../helpers/golden.js';
import { withGpu } from '../helpers/gpu.js';

type Feature = 'shader-f16' | 'subgroups';
// gemvMaxTokens 8 (default): GEMV (workgroup or subgroup) up to 8 tokens, tiled GEMM above;
// 0: the tiled GEMM for every T.
const variants: Array<{ label: string; features: Feature[]; gemvMaxTokens: number; limits?: 'adapter' }> = [
  { label: 'core', features: [], gemvMaxTokens: 8 },
  { label: 'subgroups', features: ['subgroups'], gemvMaxTokens: 8 },
  { label: 'shader-f16+subgroups', features: ['shader-f16', 'subgroups'], gemvMaxTokens: 8 },
  { label: 'core gemm-only', features: [], gemvMaxTokens: 0 },
  { label: 'shader-f16 gemm-only', features: ['shader-f16'], gemvMaxTokens: 0 },
  // adapter limits: 32 KiB of workgroup memory on lavapipe, so 64-token tiles are 128 features wide
  { label: 'subgroups gemm-only wide tiles', features: ['subgroups'], gemvMaxTokens: 0, limits: 'adapter' },
];

const cases = goldenIndex().flatMap((c) =>
  variants
    .filter((v) => c.weightDtype === 'f16' || !v.features.includes('shader-f16'))
    .map((v) => ({ ...c, variant: v.label, features: v.features, gemvMaxTokens: v.gemvMaxTokens, limits: v.limits ?? ('default' as const) })),
);

describe('WGSL kernels vs PyTorch golden fixtures (lavapipe)', () => {
  test.for(cases)('$name [$variant]', async ({ file, features, gemvMaxTokens, limits }, ctx) => {
    const c = loadGolden(file);
    const tol = goldenTolerance(c);
    await withGpu(ctx, { features, limits }, async ({ device }) => {
      const sae = await Sae.create(
        { config: c.config, weights: c.weights },
        { backend: 'webgpu', device, gemvMaxTokens, f16Loads: features.includes('shader-f16') ? 'native' : 'packed', disableFeatures: (['shader-f16', 'subgroups'] as const).filter((f) => !features.includes(f)) },
      );
      try {
        const { codes, xHat, metrics } = await sae.reconstruct(c.x, { tokens: c.tokens });
        expect(compareCodes(codes, c.featureActs, c.preActs, c.config.dSae, tol, rms(c.preActs))).toEqual([]);
        expect(Array.from(codes.nonFiniteTokens)).toEqual([...c.nonFiniteTokens]);
        for (const t of c.allNegativeTokens) expect(codes.offsets[t + 1], `all-negative token ${t}`).toBe(codes.offsets[t]);
        const xr = worstRatio(xHat, c.xHat, tol, rms(c.xHat));
        expect(xr.ratio, `x_hat worst at ${xr.at}`).toBeLessThanOrEqual(1);
        for (const key of ['mse', 'fvu', 'cosine'] as const) {
          const r =
            c.computeDtype === 'bf16'
              ? worstRatio(metrics[key], c[key], { atol: 5e-2, rtol: 5e-2 }, rms(c[key]))
              : worstRatio(metrics[key], c[key], { atol: 1e-5, rtol: 2e-3 });
          expect(r.ratio, `${key} worst at ${r.at}`).toBeLessThanOrEqual(1);
        }
        for (const t of c.nonFiniteTokens) expect(Number.isNaN(metrics.mse[t])).toBe(true);
      } finally {
        sae.destroy();
      }
    });
  });
});
