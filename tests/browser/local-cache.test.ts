/**
 * LocalModelSource keeps a model fetched from another origin (the Hub, here a local server with
 * the Hub's URL layout and CORS) in Cache Storage, unedited: a second load sends the server no
 * request and generates the same tokens; `cache: false` downloads again.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { serveFixtures, type TestServer } from '../helpers/http-server.js';
import { launchChromium, PAGE_TIMEOUT_MS, probeWebGpu, requireGpu, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import type { LocalCacheRun } from './page/local-cache.js';

const MODEL = 'loupe-test/tiny-qwen2-onnx';
const golden = (await import('../fixtures/tiny-qwen2-onnx/golden.json', { with: { type: 'json' } })).default as { greedy: { tokens: number[] }; input_ids: number[] };

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let hub: TestServer | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  hub = await serveFixtures([{ at: `hub:${MODEL}`, dir: fileURLToPath(new URL('../fixtures/tiny-qwen2-onnx/', import.meta.url)) }], { cors: true });
  vite = await startVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/local-cache.html`, { waitUntil: 'load' });
  skipReason = requireGpu(await probeWebGpu(chrome.page));
  if (skipReason === undefined) await chrome.page.waitForFunction(() => window.__localCache !== undefined, undefined, { timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
  await hub?.close();
}, 60_000);

async function load(cache: boolean): Promise<LocalCacheRun> {
  const page = chrome?.page;
  if (page === undefined || hub === undefined) throw new Error('beforeAll did not start the browser and the hub.');
  return withTimeout(
    page.evaluate((o) => {
      if (window.__localCache === undefined) throw new Error('page not ready');
      return window.__localCache.run(o);
    }, { remoteHost: `${hub.origin}/`, model: MODEL, cache, maxNewTokens: 4 }),
    PAGE_TIMEOUT_MS,
    'local model load',
  );
}

test('a model from another origin is cached unedited; the reload sends no request', async (ctx) => {
  if (skipReason !== undefined) return ctx.skip(skipReason);
  const server = hub;
  if (server === undefined) throw new Error('no hub');
  const want = [...golden.input_ids, ...golden.greedy.tokens.slice(0, 4)];
  const first = await load(true);
  expect(first.tokens).toEqual(want);
  const fetched = server.requests.filter((r) => r.status === 200).map((r) => r.path);
  expect(fetched.some((p) => p.endsWith('/onnx/model.onnx'))).toBe(true);
  // every file that was downloaded is in Cache Storage under its Hub URL
  for (const p of fetched) expect(first.cached).toContain(`${server.origin}${p}`);

  const before = server.requests.length;
  const second = await load(true);
  expect(second.tokens).toEqual(want);
  expect(server.requests.slice(before).map((r) => r.path)).toEqual([]);

  const again = server.requests.length;
  const third = await load(false);
  expect(third.tokens).toEqual(want);
  expect(server.requests.slice(again).some((r) => r.path.endsWith('/onnx/model.onnx'))).toBe(true);
});
