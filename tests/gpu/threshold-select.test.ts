/**
 * ThresholdSelect (multi-workgroup radix select + sparse compaction) against the CPU reference
 * `activate()`. Pre-activations and transform records are written straight into GPU buffers,
 * so only the selection is under test. The selection works on the exact f32 values the
 * reference sees, so results must match bit for bit: offsets, indices and values.
 */
import { describe, expect, test } from 'vitest';
import { GpuContext } from '../../src/gpu/device.js';
import { sortedCsr, ThresholdSelect, type ThresholdSelectMode, type ThresholdSelectResult } from '../../src/gpu/kernels/threshold-select.js';
import { resolveSaeConfig, type SaeArchitecture } from '../../src/sae/config.js';
import { codesFromLists, type SparseCodes } from '../../src/sae/codes.js';
import { activate } from '../../src/sae/reference/activation.js';
import { ShapeMismatchError } from '../../src/errors.js';
import { withGpu } from '../helpers/gpu.js';
import { gaussian, rng } from '../helpers/random.js';

type Feature = 'shader-f16' | 'subgroups';

interface Case {
  name: string;
  mode: ThresholdSelectMode;
  tokens: number;
  dSae: number;
  k?: number;
  /** Builds the pre-activations (for 'nonzero' the raw pre before the JumpReLU mask). */
  data: (n: number, seed: number) => Float32Array;
  nonFinite?: readonly number[];
  features?: Feature[];
  /** 'nonzero' only: check the raw keep rule on `data` (negatives included) instead of JumpReLU. */
  rawNonzero?: boolean;
}

const plain = (n: number, seed: number): Float32Array => gaussian(n, seed, 1);
/** Quarter steps: thousands of exact duplicates, so the threshold lands inside a tie group. */
const ties = (n: number, seed: number): Float32Array => gaussian(n, seed, 1).map((v) => Math.round(v * 4) / 4);
/** Mostly negative: fewer positives than k·T. */
const sparsePositives = (n: number, seed: number): Float32Array => gaussian(n, seed, 1).map((v) => v - 3);
/** Odd values a select must not trip on: NaN never selected, +Inf ranks first, -0 and denormals. */
const odd = (n: number, seed: number): Float32Array => {
  const v = gaussian(n, seed, 1);
  v[3] = NaN;
  v[5] = Infinity;
  v[7] = -Infinity;
  v[11] = -0;
  v[13] = 1e-40; // a positive denormal: a tiny but valid key
  v[17] = -1e-40;
  return v;
};

const cases: Case[] = [];
for (const tokens of [2, 7, 64]) {
  for (const dSae of [1000, 3001]) {
    for (const k of [1, 16, 24]) {
      cases.push({ name: `batchtopk T=${tokens} dSae=${dSae} k=${k}`, mode: 'batchtopk', tokens, dSae, k, data: plain });
    }
  }
}
cases.push(
  // several histogram workgroups per token (4096 values each)
  { name: 'batchtopk T=7 dSae=9000 k=16 (3 histogram chunks per token)', mode: 'batchtopk', tokens: 7, dSae: 9000, k: 16, data: plain },
  { name: 'batchtopk ties at the threshold T=7 dSae=3001 k=24', mode: 'batchtopk', tokens: 7, dSae: 3001, k: 24, data: ties },
  { name: 'batchtopk ties T=64 dSae=1000 k=16', mode: 'batchtopk', tokens: 64, dSae: 1000, k: 16, data: ties },
  { name: 'batchtopk all values equal T=5 dSae=1000 k=16', mode: 'batchtopk', tokens: 5, dSae: 1000, k: 16, data: (n) => new Float32Array(n).fill(0.5) },
  { name: 'batchtopk non-finite token among finite ones T=7', mode: 'batchtopk', tokens: 7, dSae: 3001, k: 16, data: plain, nonFinite: [2, 6] },
  { name: 'batchtopk every token non-finite T=3', mode: 'batchtopk', tokens: 3, dSae: 1000, k: 16, data: plain, nonFinite: [0, 1, 2] },
  { name: 'batchtopk fewer positives than k·T T=7 dSae=1000 k=24', mode: 'batchtopk', tokens: 7, dSae: 1000, k: 24, data: sparsePositives, nonFinite: [1] },
  { name: 'batchtopk no positives at all T=4', mode: 'batchtopk', tokens: 4, dSae: 1000, k: 8, data: (n, seed) => gaussian(n, seed, 1).map((v) => -Math.abs(v) - 0.1) },
  { name: 'batchtopk NaN/Inf/denormals T=7 dSae=1000 k=16', mode: 'batchtopk', tokens: 7, dSae: 1000, k: 16, data: odd },
  // every value a denormal: the threshold key itself is one (no flush-to-zero in the keys)
  { name: 'batchtopk denormal values T=7 dSae=1000 k=16', mode: 'batchtopk', tokens: 7, dSae: 1000, k: 16, data: (n, seed) => ties(n, seed).map((v) => v * 1e-39) },
  { name: 'batchtopk T=300 (multi-block token scan) dSae=40 k=3', mode: 'batchtopk', tokens: 300, dSae: 40, k: 3, data: ties, nonFinite: [0, 150, 299] },
  { name: 'batchtopk T=1 dSae=1000 k=16', mode: 'batchtopk', tokens: 1, dSae: 1000, k: 16, data: plain },
  { name: 'batchtopk T=7 with subgroups enabled', mode: 'batchtopk', tokens: 7, dSae: 3001, k: 16, data: ties, features: ['subgroups'] },
  { name: 'relu T=7 dSae=3001', mode: 'relu', tokens: 7, dSae: 3001, data: plain, nonFinite: [3] },
  { name: 'relu NaN/Inf T=3 dSae=1000', mode: 'relu', tokens: 3, dSae: 1000, data: odd },
  { name: 'relu no positives T=2', mode: 'relu', tokens: 2, dSae: 1000, data: (n) => new Float32Array(n).fill(-1) },
  { name: 'relu T=300 dSae=40', mode: 'relu', tokens: 300, dSae: 40, data: plain, features: ['subgroups'] },
  // JumpReLU: the GPU gets relu(pre)·(pre > θ) as the encode kernel writes it, with some θ < 0
  { name: 'nonzero (JumpReLU, negative thresholds) T=7 dSae=3001', mode: 'nonzero', tokens: 7, dSae: 3001, data: plain, nonFinite: [0] },
  { name: 'nonzero (JumpReLU) T=64 dSae=1000', mode: 'nonzero', tokens: 64, dSae: 1000, data: ties },
  // the mode's own rule on raw values: negatives kept, zeros, -0, NaN and ±Inf dropped
  { name: 'nonzero with negative values, NaN/Inf/-0 T=7 dSae=3001', mode: 'nonzero', tokens: 7, dSae: 3001, data: odd, nonFinite: [2], rawNonzero: true },
  { name: 'nonzero with negative values and many zeros T=64 dSae=1000', mode: 'nonzero', tokens: 64, dSae: 1000, data: (n, seed) => ties(n, seed).map((v) => (Math.abs(v) < 0.6 ? 0 : v)), rawNonzero: true },
  { name: 'topk k=300 T=7 dSae=3001', mode: 'topk', tokens: 7, dSae: 3001, k: 300, data: plain, nonFinite: [4] },
  { name: 'topk k=300 ties T=7 dSae=9000', mode: 'topk', tokens: 7, dSae: 9000, k: 300, data: ties },
  { name: 'topk k=dSae T=5 dSae=1000', mode: 'topk', tokens: 5, dSae: 1000, k: 1000, data: plain, nonFinite: [2] },
  { name: 'topk k=dSae all positive T=3 dSae=700', mode: 'topk', tokens: 3, dSae: 700, k: 700, data: (n, seed) => gaussian(n, seed, 1).map((v) => Math.abs(v) + 0.01) },
  { name: 'topk k=16 T=300 dSae=40 (clamped k) ', mode: 'topk', tokens: 300, dSae: 40, k: 16, data: ties },
);

const ARCH: Record<ThresholdSelectMode, SaeArchitecture> = { batchtopk: 'batchtopk', topk: 'topk', relu: 'relu', nonzero: 'jumprelu' };

/** Thresholds for the JumpReLU case: some negative, so negative pre-activations survive. */
function jumpThresholds(dSae: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: dSae }, () => (r() - 0.6) * 1.5);
}

/** What the encode kernel writes for JumpReLU (SAELens): relu(pre) · (pre > threshold). */
function jumpMask(pre: Float32Array, threshold: Float32Array, dSae: number): Float32Array {
  return pre.map((v, i) => (v > (threshold[i % dSae] ?? 0) && v > 0 ? v : 0));
}

/** The 'nonzero' keep rule itself, on any input: every finite value != 0, in code order. */
function nonzeroCodes(pre: Float32Array, tokens: number, dSae: number, nonFinite: Uint8Array): SparseCodes {
  const lists = Array.from({ length: tokens }, (_, t) => {
    const indices: number[] = [];
    const values: number[] = [];
    if (nonFinite[t] !== 1) {
      for (let f = 0; f < dSae; f++) {
        const v = pre[t * dSae + f] ?? NaN;
        if (v !== 0 && Number.isFinite(v)) {
          indices.push(f);
          values.push(v);
        }
      }
    }
    return { indices, values };
  });
  return codesFromLists(lists, []);
}

function expectSameCodes(got: ThresholdSelectResult, want: SparseCodes): void {
  expect(Array.from(got.offsets), 'offsets').toEqual(Array.from(want.offsets));
  const firstDiff = got.indices.findIndex((v, j) => v !== want.indices[j] || !Object.is(got.values[j], want.values[j]));
  if (firstDiff >= 0) {
    expect(
      `position ${firstDiff}: (${got.indices[firstDiff]}, ${got.values[firstDiff]})`,
      'first differing code',
    ).toBe(`position ${firstDiff}: (${want.indices[firstDiff]}, ${want.values[firstDiff]})`);
  }
  expect(got.indices.length).toBe(want.indices.length);
  // bit-identical values (same f32 inputs, no arithmetic in between)
  expect(new Uint32Array(got.values.buffer, got.values.byteOffset, got.values.length)).toEqual(
    new Uint32Array(want.values.buffer, want.values.byteOffset, want.values.length),
  );
}

function writeBuffer(device: GPUDevice, label: string, data: Float32Array): GPUBuffer {
  const buffer = device.createBuffer({ label, size: Math.max(16, data.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

function transformRecords(tokens: number, nonFinite: Uint8Array): Float32Array {
  const tr = new Float32Array(tokens * 4);
  for (let t = 0; t < tokens; t++) {
    tr[t * 4] = 1;
    tr[t * 4 + 2] = nonFinite[t] === 1 ? 1 : 0;
  }
  return tr;
}

/** Inputs and the CPU reference codes for one case. */
function prepare(c: Case, seed: number): { gpuPre: Float32Array; nonFinite: Uint8Array; want: SparseCodes } {
  const n = c.tokens * c.dSae;
  const raw = c.data(n, seed);
  const nonFinite = new Uint8Array(c.tokens);
  for (const t of c.nonFinite ?? []) {
    nonFinite[t] = 1;
    // Large values: if the kernels did not skip the token, they would win every selection.
    raw.fill(100, t * c.dSae, (t + 1) * c.dSae);
  }
  const config = resolveSaeConfig({ architecture: ARCH[c.mode], dIn: 8, dSae: c.dSae, ...(c.k !== undefined ? { k: c.k } : {}) });
  if (c.rawNonzero === true) return { gpuPre: raw, nonFinite, want: nonzeroCodes(raw, c.tokens, c.dSae, nonFinite) };
  if (c.mode === 'nonzero') {
    const threshold = jumpThresholds(c.dSae, seed + 1);
    // The reference applies the threshold to the raw pre; the GPU gets the masked values.
    return { gpuPre: jumpMask(raw, threshold, c.dSae), nonFinite, want: activate(config, { threshold }, raw, c.tokens, nonFinite) };
  }
  return { gpuPre: raw, nonFinite, want: activate(config, {}, raw, c.tokens, nonFinite) };
}

describe('ThresholdSelect matches the CPU reference activate()', () => {
  test.for(cases)('$name', async (c, ctx) => {
    const { gpuPre, nonFinite, want } = prepare(c, 1000 + c.tokens * 7 + c.dSae);
    const features = c.features ?? [];
    await withGpu(ctx, { features, limits: 'default' }, async ({ device }) => {
      const gpu = await GpuContext.create({ device, disableFeatures: (['shader-f16', 'subgroups'] as const).filter((f) => !features.includes(f)) });
      const pre = writeBuffer(device, 'test pre', gpuPre);
      const transform = writeBuffer(device, 'test transform', transformRecords(c.tokens, nonFinite));
      const sel = new ThresholdSelect(gpu);
      try {
        const args = { pre, transform, tokens: c.tokens, dSae: c.dSae, mode: c.mode, ...(c.k !== undefined ? { k: c.k } : {}) };
        expectSameCodes(await sel.select(args), want);
        // a second call on the same scratch buffers (histogram and state must start clean)
        expectSameCodes(await sel.select(args), want);
      } finally {
        sel.destroy();
        expect(sel.ownedBufferCount).toBe(0);
        pre.destroy();
        transform.destroy();
      }
    });
  });
});

describe('ThresholdSelect behaviour', () => {
  test('back-to-back calls with different shapes and modes on one instance, issued concurrently', async (ctx) => {
    const a: Case = { name: 'a', mode: 'batchtopk', tokens: 64, dSae: 1000, k: 24, data: ties, nonFinite: [5] };
    const b: Case = { name: 'b', mode: 'topk', tokens: 7, dSae: 3001, k: 300, data: plain };
    const r: Case = { name: 'r', mode: 'relu', tokens: 2, dSae: 9000, data: plain };
    const inputs = [a, b, r].map((c, i) => ({ c, ...prepare(c, 77 + i) }));
    await withGpu(ctx, { limits: 'default' }, async ({ device }) => {
      const gpu = await GpuContext.create({ device });
      const sel = new ThresholdSelect(gpu);
      const buffers: GPUBuffer[] = [];
      try {
        const calls = inputs.map(({ c, gpuPre, nonFinite }) => {
          const pre = writeBuffer(device, 'test pre', gpuPre);
          const transform = writeBuffer(device, 'test transform', transformRecords(c.tokens, nonFinite));
          buffers.push(pre, transform);
          return sel.select({ pre, transform, tokens: c.tokens, dSae: c.dSae, mode: c.mode, ...(c.k !== undefined ? { k: c.k } : {}) });
        });
        const results = await Promise.all(calls);
        results.forEach((got, i) => {
          const want = inputs[i]?.want;
          if (want !== undefined) expectSameCodes(got, want);
        });
      } finally {
        sel.destroy();
        for (const buf of buffers) buf.destroy();
      }
    });
  });

  test('rejects bad arguments with named errors and zero tokens yields empty codes', async (ctx) => {
    await withGpu(ctx, { limits: 'default' }, async ({ device }) => {
      const gpu = await GpuContext.create({ device });
      const pre = writeBuffer(device, 'test pre', new Float32Array(100));
      const transform = writeBuffer(device, 'test transform', new Float32Array(8));
      const sel = new ThresholdSelect(gpu);
      try {
        await expect(sel.select({ pre, transform, tokens: 1, dSae: 100, mode: 'batchtopk' })).rejects.toBeInstanceOf(ShapeMismatchError);
        await expect(sel.select({ pre, transform, tokens: 1, dSae: 100, mode: 'topk', k: 101 })).rejects.toBeInstanceOf(ShapeMismatchError);
        await expect(sel.select({ pre, transform, tokens: 2, dSae: 100, mode: 'relu' })).rejects.toBeInstanceOf(ShapeMismatchError);
        const empty = await sel.select({ pre, transform, tokens: 0, dSae: 100, mode: 'relu' });
        expect(Array.from(empty.offsets)).toEqual([0]);
        expect(empty.indices.length).toBe(0);
        // a failed call does not poison the queue of later ones
        const ok = await sel.select({ pre, transform, tokens: 1, dSae: 100, mode: 'nonzero' });
        expect(Array.from(ok.offsets)).toEqual([0, 0]);
      } finally {
        sel.destroy();
        pre.destroy();
        transform.destroy();
      }
    });
  });
});

test('host sort: packed f64 keys and the comparator fallback (dSae > 2^21) agree with codesFromLists', () => {
  const r = rng(9);
  const pool = [-2.5, -1, -1e-40, 1e-40, 0.5, 0.5, 1, 3.25, Infinity];
  const lists = [0, 1, 17, 300].map((n) => {
    const indices = Array.from({ length: n }, (_, j) => j * 3 + (j % 2));
    const values = indices.map(() => pool[Math.floor(r() * pool.length)] ?? 0);
    return { indices, values };
  });
  const want = codesFromLists(lists);
  for (const dSae of [2000, 2 ** 21 + 1]) {
    const offsets = Uint32Array.from(want.offsets);
    const indices = Uint32Array.from(lists.flatMap((l) => l.indices));
    const values = Float32Array.from(lists.flatMap((l) => l.values));
    expectSameCodes(sortedCsr(offsets, indices, values, dSae), want);
  }
});
