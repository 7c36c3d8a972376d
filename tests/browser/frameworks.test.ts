/**
 * <loupe-session> inside a React 19 and a Vue 3 app (their own renderers, in Chromium): the
 * framework hands over the session as a property and an attribute flag, the token stream fills
 * from it, and a `loupe-select` from inside the shadow DOM reaches the framework's own handler.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { launchChromium, PAGE_TIMEOUT_MS, shutdown, startVite, type BrowserHandle, type ViteHandle } from './harness.js';

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;

beforeAll(async () => {
  vite = await startVite({ optimizeDeps: ['react', 'react-dom', 'react-dom/client'] });
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/frameworks.html`, { waitUntil: 'load' });
  await chrome.page.waitForFunction(() => window.__fw !== undefined, undefined, { timeout: PAGE_TIMEOUT_MS });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

test('React and Vue mount <loupe-session> with a session property and hear its events', async () => {
  const page = chrome?.page;
  if (page === undefined) throw new Error('beforeAll failed');
  await page.evaluate(() => window.__fw?.mount());
  const n = await page.evaluate(() => window.__fw?.tokens ?? 0);
  expect(n).toBeGreaterThan(20);
  for (const id of ['in-react', 'in-vue']) {
    // the property reached the element (not a stringified attribute), and the flag attribute too
    const got = await page.evaluate((i) => {
      const el = document.getElementById(i) as (HTMLElement & { session?: unknown; noMap?: boolean; prompt?: string }) | null;
      return { isObject: typeof el?.session === 'object' && el.session !== null, noMap: el?.noMap, prompt: el?.prompt, attr: el?.getAttribute('session') ?? null };
    }, id);
    expect(got, id).toEqual({ isObject: true, noMap: true, prompt: 'What is 12 × 4 - 7?', attr: null });
    expect(await page.locator(`#${id} loupe-feature-map`).count(), id).toBe(0);
  }
  await page.evaluate(() => window.__fw?.feed());
  for (const id of ['in-react', 'in-vue']) {
    await expect.poll(() => page.locator(`#${id} loupe-token-stream [role="option"]`).count(), { timeout: 10_000 }).toBeGreaterThan(0);
    const option = page.locator(`#${id} loupe-feature-list [role="option"]`).first();
    const feature = Number(await option.getAttribute('data-f'));
    await option.click();
    const which = id === 'in-react' ? 'react' : 'vue';
    await expect.poll(() => page.evaluate((w) => window.__fw?.selected[w as 'react' | 'vue'] ?? [], which)).toContain(feature);
  }
});
