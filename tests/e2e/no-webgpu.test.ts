/**
 * The built demo in a browser without WebGPU (Chromium with WebGPU disabled): the page says so,
 * runs Tiny-R1 on onnxruntime's wasm EP and its small SAE on the CPU reference, and the readouts
 * still equal PyTorch's golden run.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { AppState } from '../../demo/app-state.js';
import { CHROMIUM, CHROMIUM_ARGS, repoRoot } from '../browser/harness.js';
import { artifactPath, buildAndPreview, expectCodesLikeGolden, guardOrigin, type StaticDemo, type TinyR1Golden } from './harness.js';

const golden = JSON.parse(readFileSync(join(repoRoot, 'demo/public/models/tiny-r1/golden.json'), 'utf8')) as TinyR1Golden;

let demo: StaticDemo | undefined;
let browser: Browser | undefined;
let outDir: string | undefined;

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'loupe-demo-nogpu-'));
  demo = await buildAndPreview(outDir);
  process.env['XDG_RUNTIME_DIR'] ??= '/tmp';
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS.filter((a) => !a.includes('webgpu')), '--disable-webgpu'], timeout: 60_000 });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await demo?.close();
  if (outDir !== undefined) rmSync(outDir, { recursive: true, force: true });
}, 60_000);

async function state(page: Page): Promise<AppState> {
  const s = await page.evaluate(() => window.__loupeApp);
  if (s === undefined) throw new Error('window.__loupeApp is missing');
  return s;
}

test('without WebGPU: a visible notice, the CPU SAE, wasm inference, and the same readouts', async () => {
  if (browser === undefined || demo === undefined) throw new Error('beforeAll failed');
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.setDefaultTimeout(120_000);
  const requests = await guardOrigin(page, new URL(demo.url).origin);
  await page.goto(demo.url, { waitUntil: 'load' });
  await page.waitForFunction(() => ['ready', 'error'].includes(window.__loupeApp?.status ?? ''), undefined, { timeout: 240_000, polling: 200 });
  const ready = await state(page);
  expect(ready.error).toBeNull();
  expect(ready.adapter).toBeNull();
  expect(ready.backend).toBe('cpu');
  await expect.poll(() => page.locator('#notice').isVisible()).toBe(true);
  expect(await page.locator('#notice').textContent()).toMatch(/no WebGPU adapter/);
  expect(await page.locator('#status').textContent()).toMatch(/on the CPU/);

  await page.locator('textarea[part="prompt"]').fill(golden.prompt);
  await page.locator('button[part="generate-button"]').click();
  await page.waitForFunction(() => ['done', 'error'].includes(window.__loupeApp?.status ?? ''), undefined, { timeout: 300_000, polling: 200 });
  const s = await state(page);
  expect(s.error).toBeNull();
  expect(s.readouts.map((t) => t.tokenId).slice(0, golden.ids.length)).toEqual(golden.ids);
  expectCodesLikeGolden(s.readouts, golden, 2e-3);
  expect(requests.foreign).toEqual([]);
  await page.screenshot({ path: artifactPath('8-no-webgpu.png'), fullPage: true });
});
