/**
 * The README's demo command, as a user types it: `npm run demo` serves the app, the embedded
 * Tiny-R1 and the runtimes (onnxruntime-web, DuckDB-WASM) from the machine itself, and the page
 * reaches "ready" with no request leaving its origin.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { launchChromium, probeWebGpu, repoRoot, requireGpu, shutdown, type BrowserHandle } from '../browser/harness.js';
import { guardOrigin, startDemoCommand, type DemoProcess } from './harness.js';

let demo: DemoProcess | undefined;
let chrome: BrowserHandle | undefined;

beforeAll(async () => {
  demo = await startDemoCommand();
}, 120_000);

afterAll(async () => {
  await shutdown(chrome?.browser, undefined);
  await demo?.stop();
}, 60_000);

test('`npm run demo` serves the app, its model and its runtimes', async () => {
  const url = demo?.url ?? '';
  const get = async (path: string): Promise<Response> => fetch(new URL(path, url));
  const index = await (await get('./')).text();
  expect(index).toContain('<loupe-session');
  const onnx = await get('models/tiny-r1/model/onnx/model.onnx');
  expect(onnx.status).toBe(200);
  expect(new Uint8Array(await onnx.arrayBuffer()).length).toBe(readFileSync(join(repoRoot, 'demo/public/models/tiny-r1/model/onnx/model.onnx')).length);
  for (const path of ['models/tiny-r1/sae/cfg.json', 'models/tiny-r1/examples/examples.duckdb', 'duckdb/duckdb-eh.wasm', 'duckdb/duckdb-browser-eh.worker.js', 'ort/ort-wasm-simd-threaded.asyncify.wasm']) {
    const r = await get(path);
    expect(r.status, path).toBe(200);
    await r.body?.cancel();
  }
  // cross-origin isolated, so onnxruntime-web may use threads
  expect(onnx.headers.get('cross-origin-opener-policy')).toBe('same-origin');
});

test('the page served by `npm run demo` loads Tiny-R1 and reaches "ready" offline', async (ctx) => {
  chrome = await launchChromium();
  const url = demo?.url ?? '';
  const requests = await guardOrigin(chrome.page, new URL(url).origin);
  await chrome.page.goto(new URL('models/tiny-r1/sae/cfg.json', url).href);
  const skip = requireGpu(await probeWebGpu(chrome.page));
  if (skip !== undefined) return ctx.skip();
  await chrome.page.goto(url, { waitUntil: 'load' });
  await chrome.page.waitForFunction(() => ['ready', 'error'].includes(window.__loupeApp?.status ?? ''), undefined, { timeout: 240_000, polling: 200 });
  const s = await chrome.page.evaluate(() => window.__loupeApp);
  expect(s?.error ?? null, chrome.log.join('\n')).toBeNull();
  expect(s?.status).toBe('ready');
  expect(requests.foreign).toEqual([]);
});
