/**
 * loadSae in headless Chromium (WebGPU on SwiftShader): published-layout fixtures fetched from
 * the Vite dev server, streamed onto the GPU, encode the golden input and must match the
 * PyTorch outputs; a second load of the same SAE is answered from Cache Storage (its weights
 * never reach fetch), and `cache: false` bypasses it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SparseCodes } from '../../src/sae/codes.js';
import { compareCodes } from '../helpers/compare.js';
import { formatCases } from '../helpers/format-cases.js';
import { goldenTolerance, loadGolden, rms } from '../helpers/golden.js';
import { describeProbe, launchChromium, PAGE_TIMEOUT_MS, probeWebGpu, requireGpu, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import type { LoadResult } from './page/protocol.js';

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  vite = await startVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/load.html`, { waitUntil: 'load' });
  const probe = await probeWebGpu(chrome.page);
  skipReason = requireGpu(probe);
  console.log(`Chromium WebGPU adapter: ${describeProbe(probe)}`);
  if (skipReason === undefined) await chrome.page.waitForFunction(() => window.__load !== undefined, undefined, { timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

async function load(url: string, options: { subfolder?: string; cache?: boolean }, golden: string): Promise<LoadResult> {
  const page = chrome?.page;
  if (page === undefined) throw new Error('beforeAll did not open the page.');
  const g = loadGolden(`${golden}.safetensors`);
  const result = await withTimeout(
    page.evaluate(
      ([u, o, x, t]) => {
        if (window.__load === undefined) throw new Error('load page not ready');
        return window.__load.run(u, o, x, t);
      },
      [url, options, Array.from(g.x), g.tokens] as const,
    ),
    PAGE_TIMEOUT_MS,
    `loadSae(${url}) in Chromium`,
  );
  const codes: SparseCodes = {
    tokens: result.tokens,
    offsets: Uint32Array.from(result.codes.offsets),
    indices: Uint32Array.from(result.codes.indices),
    values: Float32Array.from(result.codes.values),
    nonFiniteTokens: new Uint32Array(0),
  };
  expect(result.backend).toBe('webgpu');
  expect(compareCodes(codes, g.featureActs, g.preActs, g.config.dSae, goldenTolerance(g), rms(g.preActs))).toEqual([]);
  return result;
}

const cases = formatCases();
const byDir = (dir: string): (typeof cases)[number] => {
  const c = cases.find((x) => x.dir === dir);
  if (c === undefined) throw new Error(`fixture ${dir} missing`);
  return c;
};

describe('loadSae in Chromium', () => {
  test('a Goodfire .pt (bf16, W transposed on the GPU) by file URL', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    const c = byDir('goodfire');
    const r = await load(`/tests/fixtures/formats/${c.dir}/${c.weights}`, { cache: false }, c.golden);
    expect(r.format).toBe('goodfire-r1');
    expect(r.weightDtype).toBe('bf16');
  });

  test('sparsify by folder URL and hookpoint subfolder', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    const c = byDir('sparsify');
    const r = await load(`/tests/fixtures/formats/${c.dir}/`, { subfolder: c.subfolder, cache: false }, c.golden);
    expect(r.format).toBe('sparsify');
  });

  test('a reload is served from Cache Storage; cache: false fetches again', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    const page = chrome?.page;
    if (page === undefined) throw new Error('no page');
    await page.evaluate(() => window.__load?.clearCache());
    const c = byDir('saelens-layernorm');
    const url = `/tests/fixtures/formats/${c.dir}/`;
    const weights = (r: LoadResult): string[] => r.fetched.filter((u) => u.startsWith('GET ') && u.endsWith(`/${c.weights}`));
    const first = await load(url, {}, c.golden);
    expect(weights(first)).toHaveLength(1);
    expect(first.cached.some((u) => u.endsWith(`/${c.weights}`))).toBe(true);
    const last = first.progress.at(-1);
    expect(last?.[0]).toBe(last?.[1]);
    const second = await load(url, {}, c.golden);
    expect(weights(second)).toEqual([]); // from the cache, not the network
    const third = await load(url, { cache: false }, c.golden);
    expect(weights(third)).toHaveLength(1);
  });
});
