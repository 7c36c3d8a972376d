/**
 * The kernel page (demo/kernels.html) end to end: served by Vite with the repository's vite.config.ts (as `npm run demo`
 * does), opened in headless Chromium, which must encode the shipped SAE on WebGPU and publish the
 * results on `window.__loupeDemo`. A screenshot goes to /tmp/loupe-demo.png.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DemoState } from '../../demo/state.js';
import {
  launchChromium,
  PAGE_TIMEOUT_MS,
  repoRoot,
  requireGpu,
  shutdown,
  startVite,
  type BrowserHandle,
  type ViteHandle,
} from './harness.js';

const SCREENSHOT = '/tmp/loupe-demo.png';

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;

beforeAll(async () => {
  vite = await startVite({ configFile: `${repoRoot}vite.config.ts` });
  chrome = await launchChromium();
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

/** Opens the demo and waits until it finished (or failed); returns its published state. */
async function openDemo(query = '', page: Page | undefined = chrome?.page): Promise<DemoState> {
  if (page === undefined || vite === undefined) throw new Error('beforeAll did not start the browser and server.');
  const log = page === chrome?.page ? chrome.log : [];
  log.length = 0;
  await page.goto(`${vite.url}kernels.html${query}`, { waitUntil: 'load' });
  try {
    await page.waitForFunction(() => window.__loupeDemo !== undefined && window.__loupeDemo.status !== 'loading', undefined, {
      timeout: PAGE_TIMEOUT_MS,
      polling: 250,
    });
  } catch (err) {
    const step = await page.evaluate(() => window.__loupeDemo?.step).catch(() => undefined);
    throw new Error(`The demo did not finish (last step: ${String(step)}): ${String(err)}\n${log.join('\n')}`);
  }
  const state = await page.evaluate(() => window.__loupeDemo);
  if (state === undefined) throw new Error('window.__loupeDemo disappeared.');
  if (state.status === 'error') throw new Error(`The demo failed: ${String(state.error)}\n${log.join('\n')}`);
  return state;
}

function checkResults(state: DemoState): void {
  expect(state.error).toBeNull();
  expect(state.model?.dIn).toBeGreaterThan(0);
  const tokens = state.tokens;
  expect(tokens.length).toBeGreaterThan(0);
  expect(tokens.length).toBe(state.codes?.tokens);
  expect(tokens.filter((t) => t.top.length > 0).length, 'tokens with features').toBeGreaterThan(0);
  for (const t of tokens) {
    for (const f of t.top) {
      expect(Number.isInteger(f.index) && f.index >= 0 && f.index < (state.model?.dSae ?? 0), `token ${t.index} feature ${f.index}`).toBe(true);
      expect(f.value, `token ${t.index} feature ${f.index}`).toBeGreaterThan(0);
    }
    // Non-finite input rows have NaN metrics by definition; every other row must be finite.
    if (!t.nonFinite) {
      for (const key of ['mse', 'fvu', 'cosine'] as const) expect(Number.isFinite(t[key]), `token ${t.index} ${key} = ${t[key]}`).toBe(true);
    }
  }
  const m = state.metrics;
  expect(m).not.toBeNull();
  if (m === null) return;
  for (const key of ['mse', 'fvu', 'cosine'] as const) expect(Number.isFinite(m[key]), `mean ${key} = ${m[key]}`).toBe(true);
  expect(m.cosine).toBeGreaterThan(0.5);
  expect(m.cosine).toBeLessThanOrEqual(1 + 1e-6);
  expect(m.mse).toBeGreaterThanOrEqual(0);
  const t = state.timings;
  expect(t.encodeRunsMs.length).toBeGreaterThan(0);
  expect(Number.isFinite(t.encodeMedianMs ?? NaN) && (t.encodeMedianMs ?? 0) > 0).toBe(true);
}

describe('demo app in Chromium', () => {
  test('encodes the shipped SAE on WebGPU and shows the results', async (ctx) => {
    const page = chrome?.page;
    if (page === undefined) throw new Error('beforeAll did not start the browser.');
    const state = await openDemo();
    // No adapter: the demo fell back to the CPU. That fails in CI and skips elsewhere.
    if (state.adapter === null) {
      const skip = requireGpu({ ok: false, reason: state.fallbackReason ?? 'the demo found no adapter' });
      if (skip !== undefined) return ctx.skip(skip);
    }
    console.log(`Chromium WebGPU adapter: ${state.adapter?.description} (${state.adapter?.vendor} / ${state.adapter?.architecture})`);
    expect(state.backend).toBe('webgpu');
    expect(state.fallbackReason).toBeNull();
    expect(state.adapter).not.toBeNull();
    expect(state.adapter?.features.length).toBeGreaterThan(0);
    checkResults(state);
    expect(await page.locator('#notice').isHidden()).toBe(true);
    expect(await page.locator('#tokens tbody tr').count()).toBe(state.tokens.length);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(
      `demo: ${state.model?.file} on ${state.backend} (${state.adapter?.description}); ${state.tokens.length} tokens, ` +
        `${state.codes?.meanActivePerToken.toFixed(1)} features/token, mean FVU ${state.metrics?.fvu.toFixed(4)}, ` +
        `cosine ${state.metrics?.cosine.toFixed(4)}; encode median ${state.timings.encodeMedianMs?.toFixed(1)} ms ` +
        `(runs ${state.timings.encodeRunsMs.map((v) => v.toFixed(1)).join(', ')}); create ${state.timings.createMs?.toFixed(0)} ms; screenshot ${SCREENSHOT}`,
    );
  });

  test('runs on the CPU reference when asked (?backend=cpu)', async () => {
    const state = await openDemo('?backend=cpu');
    expect(state.backend).toBe('cpu');
    expect(state.adapter).toBeNull();
    expect(state.fallbackReason).toMatch(/backend=cpu/);
    checkResults(state);
    const notice = chrome?.page.locator('#notice');
    expect(await notice?.isVisible()).toBe(true);
    expect(await notice?.textContent()).toMatch(/CPU reference/);
  });

  test('falls back to the CPU with a visible notice in a browser without WebGPU', async () => {
    const browser = chrome?.browser;
    if (browser === undefined) throw new Error('beforeAll did not start the browser.');
    const context = await browser.newContext();
    try {
      // A browser without WebGPU: navigator.gpu is undefined.
      await context.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      const page = await context.newPage();
      const state = await openDemo('', page);
      expect(state.backend).toBe('cpu');
      expect(state.adapter).toBeNull();
      expect(state.fallbackReason).toMatch(/navigator\.gpu is missing/);
      checkResults(state);
      expect(await page.locator('#notice').textContent()).toMatch(/^WebGPU unavailable: .*CPU reference/);
    } finally {
      await context.close();
    }
  });
});
