/**
 * loadSae streaming onto the GPU (Dawn + lavapipe) over real HTTP: every published-layout
 * fixture must reproduce its PyTorch golden outputs when its weights were streamed chunk by
 * chunk into GPU shards — input-major matrices (Goodfire W, SAELens W_enc) scattered by the
 * transpose kernel, small chunks and small shards so every boundary case is crossed. Widths
 * that need row padding, dtype conversion on load, and abort (no GPU buffer left behind) too.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadSae } from '../../src/runtime/load.js';
import { Sae } from '../../src/runtime/sae.js';
import { f32ToBf16, f32ToF16, type WeightDtype } from '../../src/sae/dtype.js';
import { denseOf } from '../helpers/compare.js';
import { expectGoldenOutputs, formatCases, FORMATS_DIR } from '../helpers/format-cases.js';
import { loadGolden } from '../helpers/golden.js';
import { withGpu } from '../helpers/gpu.js';
import { serveFixtures, type TestServer } from '../helpers/http-server.js';
import { gaussian } from '../helpers/random.js';

const cases = formatCases();
let server: TestServer;
let slow: TestServer;
let tmp: string;

/** SAELens-layout safetensors (W_enc [dIn][dSae] input-major, W_dec feature-major) of random weights. */
function writeSaeLens(dir: string, dIn: number, dSae: number, dtype: WeightDtype, seed: number): { wEnc: Float32Array; wDec: Float32Array; bEnc: Float32Array; bDec: Float32Array } {
  const wEnc = gaussian(dIn * dSae, seed, 0.2); // [dIn][dSae]
  const wDec = gaussian(dSae * dIn, seed + 1, 0.2);
  const bEnc = gaussian(dSae, seed + 2, 0.1);
  const bDec = gaussian(dIn, seed + 3, 0.1);
  const enc = (v: Float32Array): Uint8Array => {
    if (dtype === 'f32') return new Uint8Array(v.buffer.slice(0));
    const bits = Uint16Array.from(v, dtype === 'bf16' ? f32ToBf16 : f32ToF16);
    return new Uint8Array(bits.buffer);
  };
  const st = dtype === 'f32' ? 'F32' : dtype === 'f16' ? 'F16' : 'BF16';
  const tensors: Array<[string, string, number[], Uint8Array]> = [
    ['W_enc', st, [dIn, dSae], enc(wEnc)],
    ['W_dec', st, [dSae, dIn], enc(wDec)],
    ['b_enc', 'F32', [dSae], new Uint8Array(bEnc.buffer.slice(0))],
    ['b_dec', 'F32', [dIn], new Uint8Array(bDec.buffer.slice(0))],
  ];
  let off = 0;
  const header: Record<string, unknown> = {};
  for (const [name, dt, shape, bytes] of tensors) {
    header[name] = { dtype: dt, shape, data_offsets: [off, off + bytes.byteLength] };
    off += bytes.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(`${dir}/sae_weights.safetensors`, Buffer.concat([len, json, ...tensors.map((t) => t[3])]));
  writeFileSync(`${dir}/cfg.json`, JSON.stringify({ architecture: 'topk', k: 9, d_in: dIn, d_sae: dSae, apply_b_dec_to_input: true, normalize_activations: 'none' }));
  return { wEnc, wDec, bEnc, bDec };
}

beforeAll(async () => {
  tmp = mkdtempSync(`${tmpdir()}/loupe-gpu-load-`);
  const mounts = cases.flatMap((c) => [
    { at: `hub:loupe-tests/${c.repo}`, dir: `${FORMATS_DIR}${c.dir}` },
    { at: `/files/${c.repo}`, dir: `${FORMATS_DIR}${c.dir}` },
  ]);
  server = await serveFixtures([...mounts, { at: '/tmp', dir: tmp }]);
  slow = await serveFixtures(mounts, { trickle: { bytes: 16 * 1024, delayMs: 20 } });
});

afterAll(async () => {
  await Promise.all([server.close(), slow.close()]);
  rmSync(tmp, { recursive: true, force: true });
});

describe('loadSae streams onto the GPU and reproduces the golden outputs', () => {
  test.for(cases)('$dir from a Hugging Face repo id', async (c, ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const sub = c.subfolder !== '' ? { subfolder: c.subfolder } : {};
      // 4 KiB chunks and 64 KiB shards: dozens of chunks, several shards, chunks straddling shards.
      const sae = await loadSae(`loupe-tests/${c.repo}`, { backend: 'webgpu', device, endpoint: server.origin, chunkBytes: 4096, maxShardBytes: 64 * 1024, ...sub });
      try {
        expect(sae.backend).toBe('webgpu');
        await expectGoldenOutputs(sae, c.golden);
      } finally {
        sae.destroy();
      }
    });
  });

  test.for(cases)('$dir from a plain folder URL', async (c, ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const sub = c.subfolder !== '' ? { subfolder: c.subfolder } : {};
      const sae = await loadSae(`${server.origin}/files/${c.repo}/`, { backend: 'webgpu', device, warmup: false, ...sub });
      try {
        await expectGoldenOutputs(sae, c.golden);
      } finally {
        sae.destroy();
      }
    });
  });

  test.for([
    { dtype: 'f32' as const, dIn: 37 },
    { dtype: 'f16' as const, dIn: 37 },
    { dtype: 'bf16' as const, dIn: 45 },
    { dtype: 'bf16' as const, dIn: 64 },
  ])('$dtype W_enc [$dIn x 300] (row padding, odd transposed pairs) matches the CPU-loaded SAE', async ({ dtype, dIn }, ctx) => {
    const dir = mkdtempSync(`${tmp}/pad-`);
    writeSaeLens(dir, dIn, 300, dtype, dIn * 7);
    const url = `${server.origin}/tmp/${dir.slice(tmp.length + 1)}/`;
    const x = gaussian(5 * dIn, 99);
    const cpu = await loadSae(url, { backend: 'cpu' });
    const expected = await cpu.encode(x);
    await withGpu(ctx, {}, async ({ device }) => {
      const sae = await loadSae(url, { backend: 'webgpu', device, chunkBytes: 1000, maxShardBytes: 16 * 1024 });
      try {
        const codes = await sae.encode(x);
        // Same weight bits on both sides: features agree exactly, values to f32 summation order.
        expect(Array.from(codes.offsets)).toEqual(Array.from(expected.offsets));
        expect(Array.from(codes.indices)).toEqual(Array.from(expected.indices));
        const got = denseOf(codes, 300);
        const want = denseOf(expected, 300);
        for (let i = 0; i < got.length; i++) expect(Math.abs((got[i] ?? 0) - (want[i] ?? 0))).toBeLessThan(1e-4);
      } finally {
        sae.destroy();
      }
    });
  });

  test.for(['bf16', 'f16'] as const)('an f32 file loaded as %s equals weights rounded by PyTorch’s rule', async (to, ctx) => {
    const c = cases.find((x) => x.dir === 'saelens-jumprelu');
    if (c === undefined) throw new Error('fixture missing');
    const g = loadGolden(`${c.golden}.safetensors`);
    if (g.config.weightDtype !== 'f32') throw new Error('the saelens-jumprelu fixture is expected to be f32');
    const narrow = to === 'bf16' ? f32ToBf16 : f32ToF16;
    const round = (m: Float32Array | Uint16Array): Uint16Array => Uint16Array.from(m as Float32Array, narrow);
    await withGpu(ctx, {}, async ({ device }) => {
      const streamed = await loadSae(`loupe-tests/${c.repo}`, { backend: 'webgpu', device, endpoint: server.origin, weightDtype: to });
      const W_dec = g.weights.W_dec;
      if (W_dec === undefined) throw new Error('untied fixture expected');
      const reference = await Sae.create(
        {
          config: { ...g.config, weightDtype: to },
          weights: { ...g.weights, W_enc: { dtype: to, data: round(g.weights.W_enc.data) }, W_dec: { dtype: to, data: round(W_dec.data) } },
        },
        { backend: 'webgpu', device },
      );
      try {
        expect(streamed.config.weightDtype).toBe(to);
        const a = await streamed.encode(g.x, { tokens: g.tokens });
        const b = await reference.encode(g.x, { tokens: g.tokens });
        expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
        expect(Array.from(a.values)).toEqual(Array.from(b.values));
      } finally {
        streamed.destroy();
        reference.destroy();
      }
    });
  });

  test('aborting mid-download frees every GPU buffer created so far', async (ctx) => {
    const c = cases.find((x) => x.dir === 'goodfire');
    if (c === undefined) throw new Error('fixture missing');
    await withGpu(ctx, {}, async ({ device, liveBuffers }) => {
      const controller = new AbortController();
      let sawBuffers = 0;
      const load = loadSae(`loupe-tests/${c.repo}`, {
        backend: 'webgpu',
        device,
        endpoint: slow.origin,
        chunkBytes: 8192,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.loaded > 128 * 1024 && !controller.signal.aborted) {
            sawBuffers = liveBuffers().length;
            controller.abort();
          }
        },
      });
      await expect(load).rejects.toMatchObject({ name: 'AbortError' });
      expect(sawBuffers).toBeGreaterThan(0); // shards existed when the abort came
      expect(liveBuffers().map((b) => b.label)).toEqual([]);
      expect(device.lost).toBeInstanceOf(Promise); // the borrowed device is still the caller's
    });
  });
});
