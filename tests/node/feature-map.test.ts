/**
 * The feature-map API (src/features/feature-map.ts): computing on this thread and in a worker (the
 * real feature-map.worker.ts, run in a Node worker thread behind a Web-Worker-shaped adapter), and
 * reading precomputed map files, including hostile ones.
 */
import { readFileSync } from 'node:fs';
import { Worker as NodeWorker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { FeatureCatalogError, ShapeMismatchError, UnsupportedError } from '../../src/errors.js';
import {
  computeFeatureMap,
  computeFeatureMapInWorker,
  featureMapBytes,
  featureMapFile,
  readFeatureMap,
  type FeatureMapWorker,
  type UmapProgress,
} from '../../src/features/feature-map.js';

const SAE_DIR = new URL('../../demo/public/models/tiny-r1/sae/', import.meta.url);
const WORKER_URL = new URL('../../src/features/feature-map.worker.ts', import.meta.url);

/** Uniform pseudo-random decoder rows (fixture only). */
function decoder(n: number, d: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n * d }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  });
}

/**
 * A Node worker thread running the real feature-map.worker.ts (through tsx), with `self`,
 * `postMessage` and `addEventListener` as a dedicated worker has them, behind the Web Worker API.
 */
function nodeWorker(log: { terminated: boolean }): FeatureMapWorker {
  const bootstrap = `
    const { parentPort } = require('node:worker_threads');
    globalThis.self = globalThis;
    globalThis.postMessage = (message, options) => parentPort.postMessage(message, options && options.transfer);
    globalThis.addEventListener = (type, listener) => {
      if (type === 'message') parentPort.on('message', (data) => listener({ data }));
    };
    import('tsx/esm/api').then((api) => api.tsImport(${JSON.stringify(WORKER_URL.href)}, ${JSON.stringify(import.meta.url)}));
  `;
  const w = new NodeWorker(bootstrap, { eval: true });
  const adapter = {
    postMessage: (message: unknown, transfer: Transferable[]) => w.postMessage(message, transfer as ArrayBuffer[]),
    addEventListener: (type: 'message' | 'error', listener: (event: never) => void) => {
      if (type === 'message') w.on('message', (data: unknown) => listener({ data } as never));
      else w.on('error', (err: Error) => listener({ message: err.message } as never));
    },
    terminate: () => {
      log.terminated = true;
      void w.terminate();
    },
  };
  return adapter as FeatureMapWorker;
}

describe('computeFeatureMap', () => {
  it('returns 2·dSae coordinates in [0, 1] and checks the decoder shape', async () => {
    const rows = decoder(200, 24, 1);
    const map = await computeFeatureMap(rows, 200, 24, { seed: 2, nEpochs: 80 });
    expect(map).toBeInstanceOf(Float32Array);
    expect(map.length).toBe(400);
    for (const v of map) expect(v >= 0 && v <= 1).toBe(true);
    // The layout fills the unit square along its longer side (one scale for both axes).
    const xs = Array.from(map).filter((_, i) => i % 2 === 0);
    const ys = Array.from(map).filter((_, i) => i % 2 === 1);
    expect(Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys))).toBeCloseTo(1, 5);
    await expect(computeFeatureMap(rows, 24, 200 + 1)).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(computeFeatureMap(rows, 0, 24)).rejects.toBeInstanceOf(ShapeMismatchError);
  });
});

describe('computeFeatureMapInWorker', () => {
  it('gives the same map as the current thread, reports progress and ends the worker', async () => {
    const rows = decoder(300, 16, 5);
    const log = { terminated: false };
    const progress: UmapProgress[] = [];
    const viaWorker = await computeFeatureMapInWorker(rows, 300, 16, { seed: 3, nEpochs: 120, createWorker: () => nodeWorker(log), onProgress: (p) => progress.push(p) });
    const here = await computeFeatureMap(rows, 300, 16, { seed: 3, nEpochs: 120 });
    expect(Array.from(viaWorker)).toEqual(Array.from(here));
    expect(log.terminated).toBe(true);
    expect(progress.length).toBeGreaterThan(0);
    expect(new Set(progress.map((p) => p.stage))).toContain('optimise');
    // By default the caller's rows are copied, not moved.
    expect(rows.length).toBe(300 * 16);
  });

  it('transfer: true hands the buffer over (the caller’s array detaches)', async () => {
    const rows = decoder(120, 8, 6);
    const expected = await computeFeatureMap(rows, 120, 8, { seed: 1, nEpochs: 40 });
    const map = await computeFeatureMapInWorker(rows, 120, 8, { seed: 1, nEpochs: 40, transfer: true, createWorker: () => nodeWorker({ terminated: false }) });
    expect(rows.length).toBe(0);
    expect(Array.from(map)).toEqual(Array.from(expected));
  });

  it('aborting terminates the worker and rejects with the reason', async () => {
    const rows = decoder(3000, 64, 7);
    const log = { terminated: false };
    const c = new AbortController();
    const reason = new Error('closed');
    const run = computeFeatureMapInWorker(rows, 3000, 64, {
      signal: c.signal,
      createWorker: () => nodeWorker(log),
      onProgress: () => c.abort(reason),
    });
    await expect(run).rejects.toBe(reason);
    expect(log.terminated).toBe(true);
  });

  it('errors inside the worker come back as the same named errors', async () => {
    const rows = decoder(50, 4, 8);
    rows[4 * 9 + 1] = Number.POSITIVE_INFINITY;
    const run = computeFeatureMapInWorker(rows, 50, 4, { createWorker: () => nodeWorker({ terminated: false }) });
    await expect(run).rejects.toBeInstanceOf(FeatureCatalogError);
    await expect(computeFeatureMapInWorker(rows, 50, 4, { createWorker: () => nodeWorker({ terminated: false }) })).rejects.toThrow(/Row 9/);
  });

  it('without Web Workers (plain Node) says to use computeFeatureMap', async () => {
    await expect(computeFeatureMapInWorker(decoder(10, 4, 1), 10, 4)).rejects.toBeInstanceOf(UnsupportedError);
  });
});

describe('readFeatureMap', () => {
  it("reads the shipped Tiny-R1 map: 1024 points in [0, 1] that use the square's full width", () => {
    const cfg = JSON.parse(readFileSync(new URL('cfg.json', SAE_DIR), 'utf8')) as { d_sae: number };
    const text = readFileSync(new URL('feature_map.json', SAE_DIR), 'utf8');
    const map = readFeatureMap(text, cfg.d_sae);
    expect(map.length).toBe(2 * cfg.d_sae);
    const xs = Array.from(map).filter((_, i) => i % 2 === 0);
    const ys = Array.from(map).filter((_, i) => i % 2 === 1);
    expect(Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys))).toBeGreaterThan(0.999);
    // A parsed object reads the same.
    expect(Array.from(readFeatureMap(JSON.parse(text) as object, cfg.d_sae))).toEqual(Array.from(map));
  });

  it('reads the binary form: little-endian float32 pairs', () => {
    const bytes = new Uint8Array(8 * 3);
    const view = new DataView(bytes.buffer);
    [0, 1, 0.25, 0.5, 1, 0].forEach((v, i) => view.setFloat32(4 * i, v, true));
    expect(Array.from(readFeatureMap(bytes, 3))).toEqual([0, 1, 0.25, 0.5, 1, 0]);
    expect(Array.from(readFeatureMap(bytes.buffer, 3))).toEqual([0, 1, 0.25, 0.5, 1, 0]);
    expect(Array.from(featureMapBytes(Float32Array.of(0, 1, 0.25, 0.5, 1, 0), 3))).toEqual(Array.from(bytes));
  });

  it('writes files it reads back (6 decimals)', () => {
    const map = Float32Array.of(0.1234567, 0, 1, 0.5);
    const file = featureMapFile(map, 2, 8, { seed: 0 });
    expect(file.xy).toEqual([0.123457, 0, 1, 0.5]);
    expect(Array.from(readFeatureMap(JSON.stringify(file), 2))).toEqual(Array.from(Float32Array.of(0.123457, 0, 1, 0.5)));
  });

  const good = { format: 'loupe-feature-map', version: 1, d_sae: 2, xy: [0, 0.5, 1, 0.25] };
  it.each([
    ['a count that does not match dSae', { ...good, xy: [0, 0.5, 1] }, /holds 3 coordinates; an SAE with 2 features needs 4/],
    ['a d_sae for another SAE', { ...good, d_sae: 3 }, /d_sae = 3, but this SAE has 2/],
    ['NaN (null in JSON)', { ...good, xy: [0, null, 1, 0.25] }, /the y of feature 0 is null, not a finite number/],
    ['a string coordinate', { ...good, xy: [0, 0.5, '1', 0.25] }, /the x of feature 1 is 1, not a finite number/],
    ['x > 1', { ...good, xy: [0, 0.5, 1.5, 0.25] }, /the x of feature 1 is 1.5, outside \[0, 1\]/],
    ['y < 0', { ...good, xy: [0, 0.5, 1, -0.01] }, /the y of feature 1 is -0.01, outside \[0, 1\]/],
    ['another format', { ...good, format: 'umap' }, /Expected "format": "loupe-feature-map"/],
    ['a newer version', { ...good, version: 2 }, /reads feature-map version 1; the file is version 2/],
    ['no coordinates', { format: 'loupe-feature-map', version: 1, d_sae: 2 }, /no "xy" array/],
    ['an array root', [0, 0.5, 1, 0.25], /got an array/],
  ])('refuses %s', (_, file, message) => {
    expect(() => readFeatureMap(file, 2)).toThrow(FeatureCatalogError);
    expect(() => readFeatureMap(file, 2)).toThrow(message);
    expect(() => readFeatureMap(JSON.stringify(file), 2)).toThrow(message);
  });

  it('refuses text that is not JSON, and binary maps of the wrong size or with NaN / out-of-range values', () => {
    expect(() => readFeatureMap('{"format": "loupe-feature-map", ', 2)).toThrow(/not valid JSON/);
    expect(() => readFeatureMap(new Uint8Array(15), 2)).toThrow(/16 bytes for 2 features; this one has 15/);
    const bad = new Float32Array([0, 0.5, Number.NaN, 0.25]);
    expect(() => readFeatureMap(bad, 2)).toThrow(/the x of feature 1 is NaN/);
    expect(() => readFeatureMap(new Float32Array([0, 0.5, 2, 0.25]), 2)).toThrow(/outside \[0, 1\]/);
    expect(() => readFeatureMap(new Float32Array(4), 0)).toThrow(FeatureCatalogError);
  });
});
