/**
 * The CPU reference (the semantics of record and the 'cpu' backend) against the PyTorch
 * golden fixtures: codes, pre-activations, reconstruction and metrics, case by case.
 */
import { describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { referenceEncode, decodeCodes, reconstructionMetrics } from '../../src/sae/reference/index.js';
import { compareCodes, worstRatio } from '../helpers/compare.js';
import { goldenIndex, goldenTolerance, loadGolden, rms } from '../helpers/golden.js';

const cases = goldenIndex();

describe('CPU reference vs PyTorch golden fixtures', () => {
  test('the fixture set covers the required shapes and edge rows', () => {
    const all = cases.map((c) => loadGolden(c.file));
    const dtypes = new Set(all.map((c) => c.config.weightDtype));
    expect([...dtypes].sort()).toEqual(['bf16', 'f16', 'f32']);
    expect(new Set(all.map((c) => c.tokens))).toEqual(new Set([1, 7, 64]));
    expect(all.some((c) => c.nonFiniteTokens.length > 0 && c.config.architecture === 'batchtopk')).toBe(true);
    expect(all.some((c) => c.nonFiniteTokens.length > 0 && c.config.architecture === 'topk')).toBe(true);
    expect(all.some((c) => c.allNegativeTokens.length > 0)).toBe(true);
    expect(all.some((c) => (c.config.dIn & (c.config.dIn - 1)) !== 0)).toBe(true);
    expect(all.every((c) => c.config.dSae % 64 !== 0)).toBe(true);
  });

  test.for(cases)('$name', async ({ file }) => {
    const c = loadGolden(file);
    const tol = goldenTolerance(c);
    const ref = referenceEncode(c.config, c.weights, c.x, c.tokens);
    const scale = rms(c.preActs);
    // pre-activations (finite rows)
    const pre = worstRatio(ref.preActs, c.preActs, tol, scale);
    expect(pre.ratio, `pre_acts worst at ${pre.at}`).toBeLessThanOrEqual(1);
    expect(compareCodes(ref.codes, c.featureActs, c.preActs, c.config.dSae, tol, scale)).toEqual([]);
    expect(Array.from(ref.codes.nonFiniteTokens)).toEqual([...c.nonFiniteTokens]);
    for (const t of c.allNegativeTokens) expect(ref.codes.offsets[t + 1]).toBe(ref.codes.offsets[t]);
    // decode the fixture's own codes so selection near-ties cannot leak into this check
    const xHat = decodeCodes(c.config, c.weights, ref.codes, ref.transform);
    const xr = worstRatio(xHat, c.xHat, tol, rms(c.xHat));
    expect(xr.ratio, `x_hat worst at ${xr.at}`).toBeLessThanOrEqual(1);
    const m = reconstructionMetrics(c.x, xHat, c.tokens, c.config.dIn);
    for (const key of ['mse', 'fvu', 'cosine'] as const) {
      // bf16-computed references: x̂ carries bf16 rounding, which MSE (a small difference) amplifies
      const r = c.computeDtype === 'bf16'
        ? worstRatio(m[key], c[key], { atol: 5e-2, rtol: 5e-2 }, rms(c[key]))
        : worstRatio(m[key], c[key], { atol: 1e-5, rtol: 2e-3 });
      expect(r.ratio, `${key} worst at ${r.at}`).toBeLessThanOrEqual(1);
    }
    // the public API on the CPU backend gives the same codes
    const sae = await Sae.create({ config: c.config, weights: c.weights }, { backend: 'cpu' });
    const codes = await sae.encode(c.x, { tokens: c.tokens });
    expect(Array.from(codes.indices)).toEqual(Array.from(ref.codes.indices));
    sae.destroy();
  });
});
