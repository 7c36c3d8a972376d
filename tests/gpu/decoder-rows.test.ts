/**
 * Sae.decoderRows on the GPU (rows copied out of the sharded weight buffers, widened on the
 * CPU) equals the fixture's decoder rows, for f32/f16/bf16, tied and untied, across shards.
 */
import { describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { widenToF32 } from '../../src/sae/dtype.js';
import { decoderOf } from '../../src/sae/weights.js';
import { loadGolden } from '../helpers/golden.js';
import { withGpu } from '../helpers/gpu.js';

describe('decoderRows on WebGPU', () => {
  test.for(['saelens-standard-f32-t7', 'saelens-topk-f16-t64', 'goodfire-bf16-batchtopk-t7'])('%s', async (name, ctx) => {
    const g = loadGolden(`${name}.safetensors`);
    await withGpu(ctx, {}, async ({ device }) => {
      const sae = await Sae.create({ config: g.config, weights: g.weights }, { backend: 'webgpu', device, maxShardBytes: 32 * 1024, warmup: false });
      try {
        const { dIn, dSae } = g.config;
        const features = [0, 1, Math.floor(dSae / 2), dSae - 1];
        const rows = await sae.decoderRows(features);
        const dec = decoderOf(g.config, g.weights);
        const all = widenToF32(dec.data, dec.dtype);
        features.forEach((f, k) => expect(Array.from(rows[k] ?? [])).toEqual(Array.from(all.subarray(f * dIn, (f + 1) * dIn))));
        await expect(sae.decoderRows([dSae])).rejects.toThrow(/outside 0/);
      } finally {
        sae.destroy();
      }
    });
  });
});
