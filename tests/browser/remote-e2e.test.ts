/**
 * End to end: the Python reference server (started as server/python/README.md says) streams a
 * greedy generation of the tiny Qwen2 to headless Chromium over cross-origin HTTP with a bearer
 * token. The activations the page received must equal the layer's hidden states recomputed
 * independently in PyTorch (a full forward, no cache, no hooks) within bf16 rounding; the GPU
 * ring's widening must equal the CPU's; the SAE codes the page computed on WebGPU straight from
 * the ring must match the CPU reference encode of the same activations.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { compareCodes, TOLERANCE } from '../helpers/compare.js';
import { referenceHiddenStates, startServer, type RunningServer } from '../helpers/python-server.js';
import { gaussian } from '../helpers/random.js';
import { launchChromium, PAGE_TIMEOUT_MS, probeWebGpu, requireGpu, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import type { RemoteRunResult } from './page/protocol.js';

const LAYER = 2;
const D_IN = 64;
const D_SAE = 256;
const K = 8;
const TOKEN = 'e2e-secret';

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let server: RunningServer | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  server = await startServer({ token: TOKEN, cors: '*' });
  vite = await startVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/remote.html`, { waitUntil: 'load' });
  skipReason = requireGpu(await probeWebGpu(chrome.page));
  if (skipReason === undefined) await chrome.page.waitForFunction(() => window.__remote !== undefined, undefined, { timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
  await server?.kill();
}, 60_000);

const sae = {
  dIn: D_IN,
  dSae: D_SAE,
  k: K,
  wEnc: Array.from(gaussian(D_SAE * D_IN, 11, 0.3)),
  wDec: Array.from(gaussian(D_SAE * D_IN, 12, 0.3)),
  bEnc: Array.from(gaussian(D_SAE, 13, 0.1)),
  bDec: Array.from(gaussian(D_IN, 14, 0.1)),
};

describe('remote R1 path, end to end (Python server → Chromium → WebGPU SAE)', () => {
  test('activations equal PyTorch hidden states; the GPU SAE encodes them like the CPU reference', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    const page = chrome?.page;
    if (page === undefined || server === undefined) throw new Error('setup failed');
    const request = { messages: [{ role: 'user', content: 'What is 7 * 8?' }], max_tokens: 24, temperature: 0, hook: { layer: LAYER }, dtype: 'bf16' };
    const r: RemoteRunResult = await withTimeout(
      page.evaluate((opts) => {
        if (window.__remote === undefined) throw new Error('page not ready');
        return window.__remote.run(opts);
      }, { url: server.url, token: TOKEN, request, sae }),
      PAGE_TIMEOUT_MS,
      'remote stream in Chromium',
    );
    expect(r.gpuErrors).toEqual([]);
    expect(r.header).toMatchObject({ d_in: D_IN, dtype: 'bf16', layer: LAYER });
    expect(r.events[0]).toBe('header');
    expect(r.events.at(-1)).toBe('end');
    const T = r.tokens.length;
    expect(T).toBe(r.header.prompt_tokens + 24);
    expect(r.tokens.map((t) => t.position)).toEqual([...Array(T).keys()]);
    expect(r.tokens.slice(0, r.header.prompt_tokens).every((t) => t.phase === 'prompt')).toBe(true);

    // PyTorch, independently: a full forward over the same ids.
    const ref = referenceHiddenStates(r.tokens.map((t) => t.tokenId), LAYER);
    let worst = 0;
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < D_IN; i++) {
        const want = ref[t]?.[i] ?? NaN;
        const got = r.activations[t]?.[i] ?? NaN;
        // bf16 keeps 8 significant bits (half-ulp 2^-9 relative); plus cached-vs-full-forward float noise
        const err = Math.abs(got - want) / (Math.abs(want) * 2 ** -8 + 1e-4);
        worst = Math.max(worst, err);
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(r.gpuWidened).toEqual(r.activations.flat());

    const cpu = await Sae.create(
      { config: { architecture: 'topk', dIn: D_IN, dSae: D_SAE, k: K, weightDtype: 'f32' }, weights: { W_enc: { dtype: 'f32', data: Float32Array.from(sae.wEnc) }, W_dec: { dtype: 'f32', data: Float32Array.from(sae.wDec) }, b_enc: Float32Array.from(sae.bEnc), b_dec: Float32Array.from(sae.bDec) } },
      { backend: 'cpu' },
    );
    const x = Float32Array.from(r.activations.flat());
    const expected = await cpu.encode(x, { tokens: T });
    const dense = new Float32Array(T * D_SAE);
    const pre = new Float32Array(T * D_SAE);
    for (let t = 0; t < T; t++) {
      for (let j = expected.offsets[t] ?? 0; j < (expected.offsets[t + 1] ?? 0); j++) dense[t * D_SAE + (expected.indices[j] ?? 0)] = expected.values[j] ?? 0;
    }
    const got = { tokens: T, offsets: Uint32Array.from(r.codes.offsets), indices: Uint32Array.from(r.codes.indices), values: Float32Array.from(r.codes.values), nonFiniteTokens: new Uint32Array(0) };
    // pre-activations are only used for tie tolerance; the reference codes' values stand in
    pre.set(dense);
    expect(compareCodes(got, dense, pre, D_SAE, TOLERANCE.f32)).toEqual([]);
  });
});
