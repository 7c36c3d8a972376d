import { describe, expect, test } from 'vitest';
import { SaeConfigError } from '../../src/errors.js';
import { resolveSaeConfig } from '../../src/sae/config.js';

describe('resolveSaeConfig', () => {
  test('fills defaults and freezes', () => {
    const c = resolveSaeConfig({ architecture: 'topk', dIn: 96, dSae: 1000, k: 24 });
    expect(c).toMatchObject({ format: 'memory', applyBDecToInput: false, inputNorm: 'none', inputScale: 1, tied: false, weightDtype: 'f32', activationOrder: 'relu-then-topk' });
    expect(Object.isFrozen(c)).toBe(true);
  });
  test.each([
    [{ architecture: 'gated', dIn: 4, dSae: 8 }, /Should be one of: topk, batchtopk, relu, jumprelu/],
    [{ architecture: 'topk', dIn: 4, dSae: 8 }, /needs k/],
    [{ architecture: 'topk', dIn: 4, dSae: 8, k: 9 }, /k \(9\) cannot exceed dSae \(8\)/],
    [{ architecture: 'relu', dIn: 4, dSae: 8, k: 2 }, /only meaningful for topk/],
    [{ architecture: 'relu', dIn: 0, dSae: 8 }, /dIn must be a positive integer/],
    [{ architecture: 'relu', dIn: 4, dSae: 8.5 }, /dSae must be a positive integer/],
    [{ architecture: 'relu', dIn: 4, dSae: 8, inputNorm: 'rms' }, /Unknown inputNorm/],
    [{ architecture: 'relu', dIn: 4, dSae: 8, weightDtype: 'f64' }, /Unknown weightDtype/],
    [{ architecture: 'relu', dIn: 4, dSae: 8, inputScale: 0 }, /inputScale must be a finite non-zero/],
  ])('rejects %j', (input, message) => {
    expect(() => resolveSaeConfig(input as never)).toThrow(SaeConfigError);
    expect(() => resolveSaeConfig(input as never)).toThrow(message);
  });
});
