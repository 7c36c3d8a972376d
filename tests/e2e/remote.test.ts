/**
 * The built demo on a remote endpoint: the reference activation server (server/python, PyTorch)
 * serves Tiny-R1's checkpoint on another origin with a bearer token; the page is set up through
 * its form (source "remote", URL, token, layer; SAE by URL), streams the generation and encodes
 * it. Tokens must equal Tiny-R1's PyTorch golden run and the codes its PyTorch SAE codes (the
 * wire carries bf16 by default: tolerances follow).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { AppState } from '../../demo/app-state.js';
import { launchChromium, probeWebGpu, repoRoot, requireGpu, shutdown, type BrowserHandle } from '../browser/harness.js';
import { startServer, type RunningServer } from '../helpers/python-server.js';
import { artifactPath, buildAndPreview, guardOrigin, type StaticDemo, type TinyR1Golden } from './harness.js';

const TOKEN = 'e2e-remote-token';
const golden = JSON.parse(readFileSync(join(repoRoot, 'demo/public/models/tiny-r1/golden.json'), 'utf8')) as TinyR1Golden;

let demo: StaticDemo | undefined;
let chrome: BrowserHandle | undefined;
let server: RunningServer | undefined;
let outDir: string | undefined;

beforeAll(async () => {
  server = await startServer({ model: '../../demo/public/models/tiny-r1/model', token: TOKEN, cors: '*' });
  outDir = mkdtempSync(join(tmpdir(), 'loupe-demo-remote-'));
  demo = await buildAndPreview(outDir);
  chrome = await launchChromium();
}, 300_000);

afterAll(async () => {
  await shutdown(chrome?.browser, undefined);
  await demo?.close();
  await server?.kill();
  if (outDir !== undefined) rmSync(outDir, { recursive: true, force: true });
}, 60_000);

test('the form loads a remote endpoint with a token; tokens and codes equal PyTorch', async (ctx) => {
  if (chrome === undefined || demo === undefined || server === undefined) throw new Error('beforeAll failed');
  const page = chrome.page;
  const requests = await guardOrigin(page, new URL(demo.url).origin, [new URL(server.url).origin]);
  const q = new URLSearchParams({ source: 'remote', url: server.url, layer: '2', sae: 'custom', saeSource: 'models/tiny-r1/sae/', labels: 'models/tiny-r1/examples/autointerp.csv', autoload: '0' });
  await page.goto(`${demo.url}?${q}`, { waitUntil: 'load' });
  const skip = requireGpu(await probeWebGpu(page));
  if (skip !== undefined) return ctx.skip(skip);
  // the token is typed, never put in a URL
  await page.locator('input[name="token"]').fill(TOKEN);
  await page.locator('#load').click();
  await page.waitForFunction(() => ['ready', 'error'].includes(window.__loupeApp?.status ?? ''), undefined, { timeout: 120_000, polling: 200 });
  let s = (await page.evaluate(() => window.__loupeApp)) as AppState;
  expect(s.error, s.step).toBeNull();
  expect(s.source).toBe('remote');

  await page.locator('textarea[part="prompt"]').fill(golden.prompt);
  await page.locator('button[part="generate-button"]').click();
  await page.waitForFunction(() => ['done', 'error'].includes(window.__loupeApp?.status ?? ''), undefined, { timeout: 240_000, polling: 200 });
  s = (await page.evaluate(() => window.__loupeApp)) as AppState;
  expect(s.error, server.log()).toBeNull();
  expect(s.readouts.map((t) => t.tokenId).slice(0, golden.ids.length)).toEqual(golden.ids);
  // bf16 on the wire: the SAE sees activations rounded to 8 mantissa bits
  let compared = 0;
  golden.codes.forEach((want, p) => {
    const got = s.readouts[p];
    if (got === undefined) throw new Error(`position ${p} is missing`);
    got.indices.forEach((f, j) => {
      const r = want.indices.indexOf(f);
      if (r < 0) return; // near-ties at the cut may differ after bf16 rounding
      compared++;
      const v = got.values[j] ?? NaN;
      expect(Math.abs(v - (want.values[r] ?? NaN)), `feature ${f} at position ${p}`).toBeLessThan(2e-2 * Math.max(1, Math.abs(v)));
    });
    const shared = got.indices.filter((f) => want.indices.includes(f)).length;
    expect(shared, `top-k overlap at position ${p}`).toBeGreaterThanOrEqual(Math.min(got.indices.length, want.indices.length) - 2);
  });
  expect(compared).toBeGreaterThan(golden.codes.length * 10);
  // nothing but the page's origin and the endpoint it was given
  expect(requests.foreign).toEqual([]);
  expect(requests.all.some((u) => u.startsWith(server?.url ?? '-'))).toBe(true);
  await page.screenshot({ path: artifactPath('9-remote.png'), fullPage: true });
});
