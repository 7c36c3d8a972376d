/**
 * Bad input on the GPU backend: each case gets a named error or a documented result — never a
 * GPU validation error (the harness asserts the error scopes stay empty), a device loss or a hang.
 */
import { describe, expect, test } from 'vitest';
import { DestroyedError, GpuDeviceLostError, SaeConfigError, ShapeMismatchError, UnsupportedError } from '../../src/errors.js';
import { Sae } from '../../src/runtime/sae.js';
import { referenceEncode } from '../../src/sae/reference/index.js';
import { nodeAdapter, withGpu } from '../helpers/gpu.js';
import { gaussian } from '../helpers/random.js';
import { randomSae } from '../helpers/random-sae.js';

const config = { architecture: 'topk', dIn: 64, dSae: 500, k: 8, weightDtype: 'f32' } as const;
const weights = randomSae(config, 5);

describe('bad input on the WebGPU backend', () => {
  test('dimension mismatch, T = 0, wrong-size and wrong-usage buffers, bad codes', async (ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const sae = await Sae.create({ config, weights }, { backend: 'webgpu', device });
      try {
        await expect(sae.encode(new Float32Array(65))).rejects.toThrow(ShapeMismatchError);
        await expect(sae.encode(new Float32Array(64 * 3), { tokens: 2 })).rejects.toThrow(/tokens × dIn = 2 × 64 = 128/);
        await expect(sae.encode(new Float32Array(64), { tokens: 1.5 })).rejects.toThrow(ShapeMismatchError);
        const empty = await sae.encode(new Float32Array(0));
        expect(empty.tokens).toBe(0);
        expect(Array.from(empty.offsets)).toEqual([0]);
        expect((await sae.decode(empty)).length).toBe(0);
        const small = device.createBuffer({ size: 64 * 4, usage: GPUBufferUsage.STORAGE });
        await expect(sae.encode(small, { tokens: 2 })).rejects.toThrow(/holds 256 bytes/);
        const notStorage = device.createBuffer({ size: 64 * 4, usage: GPUBufferUsage.COPY_DST });
        await expect(sae.encode(notStorage, { tokens: 1 })).rejects.toThrow(/STORAGE usage/);
        await expect(sae.encode(small)).rejects.toThrow(/needs \{ tokens \}/);
        small.destroy();
        notStorage.destroy();
        const bad = { tokens: 1, offsets: Uint32Array.from([0, 1]), indices: Uint32Array.from([500]), values: Float32Array.from([1]), nonFiniteTokens: new Uint32Array(0) };
        await expect(sae.decode(bad)).rejects.toThrow(/dSae = 500/);
        await expect(sae.decode({ ...bad, indices: Uint32Array.from([1]), offsets: Uint32Array.from([0, 2]) })).rejects.toThrow(ShapeMismatchError);
        // the Sae still works after all of that
        const x = gaussian(64, 1);
        const codes = await sae.encode(x);
        expect(codes.indices.length).toBe(8);
      } finally {
        sae.destroy();
      }
    });
  });

  test('NaN and Inf rows yield no features and are reported; other rows are unaffected', async (ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const sae = await Sae.create({ config, weights }, { backend: 'webgpu', device });
      try {
        const x = gaussian(64 * 4, 2);
        x[64 + 5] = NaN;
        x[3 * 64] = -Infinity;
        const { codes, metrics } = await sae.reconstruct(x);
        expect(Array.from(codes.nonFiniteTokens)).toEqual([1, 3]);
        expect(codes.offsets[2]! - codes.offsets[1]!).toBe(0);
        expect(codes.offsets[4]! - codes.offsets[3]!).toBe(0);
        expect(Number.isNaN(metrics.mse[1])).toBe(true);
        const ref = referenceEncode(sae.config, weights, x, 4);
        expect(Array.from(codes.indices)).toEqual(Array.from(ref.codes.indices));
      } finally {
        sae.destroy();
      }
    });
  });

  test('config and weight errors are named before any GPU work', async () => {
    await expect(Sae.create({ config: { ...config, k: 501 }, weights }, { backend: 'cpu' })).rejects.toThrow(SaeConfigError);
    await expect(Sae.create({ config: { ...config, dIn: 63 }, weights }, { backend: 'cpu' })).rejects.toThrow(ShapeMismatchError);
    await expect(
      Sae.create({ config: { ...config, weightDtype: 'bf16' }, weights }, { backend: 'cpu' }),
    ).rejects.toThrow(/W_enc is f32 but the config says weightDtype bf16/);
  });

  test('a destroyed Sae refuses work; a borrowed device survives destroy', async (ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const sae = await Sae.create({ config, weights }, { backend: 'webgpu', device });
      sae.destroy();
      await expect(sae.encode(gaussian(64, 3))).rejects.toThrow(DestroyedError);
      // the device still works for its owner
      const b = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
      b.destroy();
    });
  });

  test('a lost device gives GpuDeviceLostError, not a hang; results returned before stay valid', async (ctx) => {
    const adapter = await nodeAdapter(ctx);
    if (adapter === undefined) return;
    const device = await adapter.requestDevice();
    const sae = await Sae.create({ config, weights }, { backend: 'webgpu', device });
    const before = await sae.encode(gaussian(64, 4));
    const kept = Array.from(before.values);
    device.destroy();
    await expect(sae.encode(gaussian(64, 4))).rejects.toThrow(GpuDeviceLostError);
    // once the loss is known, calls fail fast too
    await new Promise((r) => setTimeout(r, 10));
    await expect(sae.decode(before)).rejects.toThrow(GpuDeviceLostError);
    expect(Array.from(before.values)).toEqual(kept);
    sae.destroy();
  });

  test('batch top-k beyond one pass is refused with the batch size to use', async (ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const big = { architecture: 'batchtopk', dIn: 64, dSae: 500, k: 8, weightDtype: 'f32' } as const;
      const sae = await Sae.create({ config: big, weights: randomSae(big, 6) }, { backend: 'webgpu', device, maxShardBytes: 64 * 4 * 500 });
      try {
        // 128 MiB / (500 × 4 bytes) tokens fit one pass; ask for more
        const tokens = Math.floor((128 * 1024 * 1024) / 2000) + 1;
        await expect(sae.encode(new Float32Array(tokens * 64), { tokens })).rejects.toThrow(UnsupportedError);
      } finally {
        sae.destroy();
      }
    });
  });
});
