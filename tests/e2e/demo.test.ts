/**
 * The demo end to end, as a reader gets it: the static build (`vite build`, served as plain files
 * by `vite preview`) in Debian's headless Chromium, WebGPU on SwiftShader, default source Tiny-R1
 * embedded in the page. Every request outside the page's origin is refused and recorded.
 *
 * What the page shows is checked against independent references: generated tokens and their SAE
 * codes against PyTorch (Tiny-R1's golden run, tools/tiny-r1/golden.py, and greedy runs of the
 * checkpoint through the reference server's Qwen2, steered with the same vector), examples against
 * a plain scan of the CSV tables the DuckDB file was built from. Screenshots of each state land in
 * test-results/e2e/ (LOUPE_E2E_ARTIFACTS).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AppState, AppToken } from '../../demo/app-state.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { launchChromium, probeWebGpu, repoRoot, requireGpu, shutdown, type BrowserHandle } from '../browser/harness.js';
import { referenceSteeredGreedy } from '../helpers/python-server.js';
import { artifactPath, buildAndPreview, expectCodesLikeGolden, guardOrigin, type RequestLog, type StaticDemo, type TinyR1Golden } from './harness.js';

const TINY = join(repoRoot, 'demo/public/models/tiny-r1');
/** The model folder as the reference server's Python sees it (cwd server/python). */
const TINY_MODEL_FROM_SERVER = '../../demo/public/models/tiny-r1/model';
const EOS = 534;
const LAYER = 2;

const golden = JSON.parse(readFileSync(join(TINY, 'golden.json'), 'utf8')) as TinyR1Golden;

let demo: StaticDemo | undefined;
let chrome: BrowserHandle | undefined;
let requests: RequestLog | undefined;
let outDir: string | undefined;
let skip: string | undefined;

function page(): Page {
  if (chrome === undefined) throw new Error('beforeAll did not start the browser.');
  return chrome.page;
}

async function app(): Promise<AppState> {
  const s = await page().evaluate(() => window.__loupeApp);
  if (s === undefined) throw new Error('window.__loupeApp is missing: the demo did not start.');
  return s;
}

async function waitStatus(statuses: readonly string[], timeout = 240_000): Promise<AppState> {
  await page().waitForFunction((ok) => ok.includes(window.__loupeApp?.status ?? ''), statuses, { timeout, polling: 100 });
  return app();
}

/** `--loupe-a0` of every rendered token span: token index → activation of the first selected feature. */
async function shades(): Promise<Map<number, number>> {
  const pairs = await page()
    .locator('loupe-token-stream [role="option"]')
    .evaluateAll((spans) => spans.map((s) => [Number((s as HTMLElement).dataset['i']), Number((s as HTMLElement).style.getPropertyValue('--loupe-a0') || '0')] as [number, number]));
  return new Map(pairs);
}

function activationOf(t: AppToken | undefined, feature: number): number {
  if (t === undefined) return 0;
  const j = t.indices.indexOf(feature);
  return j >= 0 ? (t.values[j] ?? 0) : 0;
}

/** The strongest rows of activations.csv for `feature`: strength desc, then sequence, then token (docs/feature-catalog.md). */
function topHits(feature: number, n: number): Array<{ seq: number; idx: number; strength: number }> {
  const rows = readFileSync(join(TINY, 'examples/activations.csv'), 'utf8').trim().split('\n').slice(1);
  return rows
    .map((r) => r.split(',').map(Number))
    .filter((r) => r[0] === feature)
    .map((r) => ({ seq: r[1] ?? -1, idx: r[2] ?? -1, strength: r[3] ?? NaN }))
    .sort((a, b) => b.strength - a.strength || a.seq - b.seq || a.idx - b.idx)
    .slice(0, n);
}

/** No <img> anywhere in the document or any open shadow root. */
async function imagesInPage(): Promise<number> {
  return page().evaluate(() => {
    let n = 0;
    const walk = (root: Document | ShadowRoot): void => {
      n += root.querySelectorAll('img').length;
      for (const el of root.querySelectorAll('*')) if (el.shadowRoot !== null) walk(el.shadowRoot);
    };
    walk(document);
    return n;
  });
}

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'loupe-demo-build-'));
  demo = await buildAndPreview(outDir);
  chrome = await launchChromium();
  requests = await guardOrigin(chrome.page, new URL(demo.url).origin);
  // WebGPU exists only in a secure context: probe on a small file of the demo's origin.
  await chrome.page.goto(new URL('models/tiny-r1/sae/cfg.json', demo.url).href);
  skip = requireGpu(await probeWebGpu(chrome.page));
}, 300_000);

afterAll(async () => {
  await shutdown(chrome?.browser, undefined);
  await demo?.close();
  if (outDir !== undefined) rmSync(outDir, { recursive: true, force: true });
}, 60_000);

describe('the built demo on its default source, Tiny-R1 embedded, with no network', () => {
  test('loads model, SAE, labels, examples and map, with a progress bar per download', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    await page().goto(demo?.url ?? '', { waitUntil: 'load' });
    const s = await waitStatus(['ready', 'error']);
    expect(s.error, `the demo failed: ${s.step}\n${chrome?.log.join('\n')}`).toBeNull();
    expect(s.backend).toBe('webgpu');
    expect(s.source).toBe('tiny-r1');
    // transformers.js reports the graph it was handed: the tapped copy, a few hundred bytes larger
    const onnx = s.downloads['model onnx/model.onnx'];
    expect(onnx?.loaded).toBe(onnx?.total);
    expect(onnx?.loaded).toBeGreaterThanOrEqual(readFileSync(join(TINY, 'model/onnx/model.onnx')).length);
    expect(s.downloads['SAE sae_weights.safetensors']?.loaded).toBe(readFileSync(join(TINY, 'sae/sae_weights.safetensors')).length);
    expect(await page().locator('#downloads progress').count()).toBe(Object.keys(s.downloads).length);
    await page().screenshot({ path: artifactPath('1-ready.png'), fullPage: true });
  });

  test('generates: the stream fills token by token; tokens and codes equal PyTorch', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    await page().locator('textarea[part="prompt"]').fill(golden.prompt);
    await page().locator('button[part="generate-button"]').click();
    // Sample the rendered stream while the model runs: it must grow in steps, not appear at the end.
    const seen: number[] = [];
    let shot = false;
    for (let i = 0; i < 3000; i++) {
      const { status, tokens } = await page().evaluate(() => ({ status: window.__loupeApp?.status, tokens: window.__loupeApp?.tokens ?? 0 }));
      seen.push(await page().locator('loupe-token-stream [role="option"]').count());
      if (!shot && tokens > golden.prompt_ids.length + 12) {
        await page().screenshot({ path: artifactPath('2-generating.png'), fullPage: true });
        shot = true;
      }
      if (status === 'done' || status === 'error') break;
      await page().waitForTimeout(100);
    }
    const s = await waitStatus(['done', 'error']);
    expect(s.error).toBeNull();
    const steps = new Set(seen.filter((n) => n > golden.prompt_ids.length && n < s.readouts.length));
    expect(steps.size, `rendered token counts while generating: ${seen.join(',')}`).toBeGreaterThanOrEqual(5);

    // Tokens: PyTorch's greedy run of the same checkpoint, to the end of sequence.
    const ref = referenceSteeredGreedy(golden.prompt_ids, LAYER, undefined, 0, 200, TINY_MODEL_FROM_SERVER, EOS);
    expect(s.readouts.map((t) => t.tokenId)).toEqual(ref.ids);
    expect(s.readouts.slice(0, golden.prompt_ids.length).every((t) => t.phase === 'prompt')).toBe(true);
    expect(s.readouts.at(-1)?.phase).toBe('answer');
    // Codes: the WebGPU SAE reading onnxruntime's buffer vs PyTorch's SAE on PyTorch's activations.
    expectCodesLikeGolden(s.readouts, golden, 2e-3);
    await page().screenshot({ path: artifactPath('3-done.png'), fullPage: true });
  });

  test('selecting a feature re-shades the tokens by its activation', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    const s = await app();
    const options = page().locator('loupe-feature-list [role="option"]');
    const check = async (feature: number): Promise<void> => {
      await expect.poll(async () => [...(await shades()).values()].filter((v) => v > 0).length, { timeout: 10_000 }).toBeGreaterThan(0);
      const got = await shades();
      expect(got.size).toBeGreaterThan(0);
      for (const [i, v] of got) {
        const ref = activationOf(s.readouts[i], feature);
        expect(Math.abs(v - ref), `token ${i}, feature ${feature}`).toBeLessThan(1e-3 * Math.max(1, ref));
      }
    };
    const first = Number(await options.nth(0).getAttribute('data-f'));
    await options.nth(0).click();
    await check(first);
    await page().screenshot({ path: artifactPath('4-selected.png'), fullPage: true });
    // Keyboard: the next feature in the list, selected with the arrow key and Enter.
    const second = Number(await options.nth(1).getAttribute('data-f'));
    await options.nth(0).focus();
    await page().keyboard.press('ArrowDown');
    await page().keyboard.press('Enter');
    await expect.poll(() => page().locator('loupe-feature-list [role="option"][aria-selected="true"]').evaluateAll((o) => o.map((x) => Number(x.getAttribute('data-f'))))).toContain(second);
    // The stream is shaded by the first selected feature; make `second` the only one.
    await options.nth(0).click();
    await expect.poll(() => page().locator('loupe-feature-list [role="option"][aria-selected="true"]').count()).toBe(1);
    const only = Number(await page().locator('loupe-feature-list [role="option"][aria-selected="true"]').getAttribute('data-f'));
    await check(only);
  });

  test('the feature card shows max-activating examples from the DuckDB database', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    const feature = Number(await page().locator('loupe-feature-list [role="option"][aria-selected="true"]').first().getAttribute('data-f'));
    const examples = page().locator('loupe-feature-card [part="example"]');
    await expect.poll(() => examples.count(), { timeout: 60_000 }).toBeGreaterThan(0);
    const want = topHits(feature, await examples.count());
    const metas = await page().locator('loupe-feature-card .ex-meta').allTextContents();
    expect(metas.map((m) => m.replace(/\s+/g, ' ').trim())).toEqual(want.map((h) => `sequence ${h.seq}, token ${h.idx} · activation ${h.strength.toFixed(2)}`));
    await page().screenshot({ path: artifactPath('5-card.png'), fullPage: true });
  });

  test('the steer panel changes the output, exactly as PyTorch steered with the same vector', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    const before = await app();
    // The run's strongest feature over the whole run: push it at the top of its slider.
    await page().locator('loupe-feature-list button', { hasText: 'Whole run' }).click();
    const top = page().locator('loupe-feature-list [role="option"]').first();
    const feature = Number(await top.getAttribute('data-f'));
    await top.click();
    await expect.poll(() => page().locator('loupe-feature-list [role="option"][aria-selected="true"]').count()).toBe(1);
    await page().locator('loupe-steer-panel button', { hasText: 'Add selected' }).click();
    const slider = page().locator('loupe-steer-panel input[part="slider"]');
    await slider.focus();
    await page().keyboard.press('End');
    const strength = Number(await slider.inputValue());
    expect(strength).toBeGreaterThanOrEqual(20);
    await page().locator('loupe-steer-panel button[part="compare-button"]').click();
    await page().waitForFunction(() => window.__loupeApp?.status === 'generating', undefined, { timeout: 30_000 });
    await page().waitForFunction(() => window.__loupeApp?.status === 'done' && (window.__loupeApp?.baseline.length ?? 0) > 0, undefined, { timeout: 300_000, polling: 200 });
    const s = await app();
    const steeredText = (await page().locator('loupe-steer-panel [part="steered-text"]').textContent()) ?? '';
    const baselineText = (await page().locator('loupe-steer-panel [part="baseline-text"]').textContent()) ?? '';
    expect(steeredText).not.toEqual(baselineText);
    // the baseline is the unsteered run from before
    expect(s.baseline.map((t) => t.tokenId)).toEqual(before.readouts.map((t) => t.tokenId));
    // the steered run: PyTorch with strength × W_dec[feature] added from the first steered position
    const start = s.readouts.findIndex((t) => t.steered);
    expect(start).toBeGreaterThan(golden.prompt_ids.length);
    const file = readFileSync(join(TINY, 'sae/sae_weights.safetensors'));
    const wDec = readSafetensors(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength)).tensors['W_dec'];
    const rows = wDec?.data;
    if (!(rows instanceof Float32Array)) throw new Error('W_dec is missing or not f32');
    const dIn = wDec?.shape[1] ?? 0;
    const vector = Array.from(rows.subarray(feature * dIn, (feature + 1) * dIn), (x) => x * strength);
    const ref = referenceSteeredGreedy(golden.prompt_ids, LAYER, vector, start, 200, TINY_MODEL_FROM_SERVER, EOS);
    expect(s.readouts.map((t) => t.tokenId)).toEqual(ref.ids.slice(0, s.readouts.length));
    await page().screenshot({ path: artifactPath('6-steered.png'), fullPage: true });
  });

  test('no request left the page\'s origin, and the page did fetch its model and DuckDB locally', (ctx) => {
    if (skip !== undefined) return ctx.skip();
    expect(requests?.foreign).toEqual([]);
    const all = requests?.all ?? [];
    for (const part of ['models/tiny-r1/model/onnx/model.onnx', 'models/tiny-r1/sae/sae_weights.safetensors', 'models/tiny-r1/examples/examples.duckdb', 'duckdb/duckdb-eh.wasm', 'ort/']) {
      expect(all.some((u) => u.includes(part)), `no request for ${part}`).toBe(true);
    }
  });
});

describe('hostile labels', () => {
  test('a label carrying markup renders as text and runs nothing', async (ctx) => {
    if (skip !== undefined) return ctx.skip();
    const hostile = (id: string): string => `<img src=x onerror="window.__pwned=(window.__pwned||0)+1">label ${id}`;
    await page().route('**/autointerp.csv', async (route) => {
      const csv = readFileSync(join(TINY, 'examples/autointerp.csv'), 'utf8').trim().split('\n');
      const rows = csv.slice(1).map((line) => {
        const id = line.slice(0, line.indexOf(','));
        return `${id},"${hostile(id).replace(/"/g, '""')}",0.9,0.5,tiny-r1-heuristic,v1`;
      });
      await route.fulfill({ status: 200, contentType: 'text/csv', body: [csv[0], ...rows].join('\n') });
    });
    try {
      await page().goto(demo?.url ?? '', { waitUntil: 'load' });
      await waitStatus(['ready', 'error']);
      await page().locator('loupe-steer-panel input[part="search"]').fill('onerror');
      const results = page().locator('loupe-steer-panel [part="results"] button');
      await expect.poll(() => results.count()).toBeGreaterThan(0);
      expect(await results.first().textContent()).toContain('<img src=x onerror=');
      await results.first().click();
      await expect.poll(() => page().locator('loupe-steer-panel [part="entry"]').count()).toBe(1);
      expect(await page().locator('loupe-steer-panel [part="entry"]').textContent()).toContain('<img src=x onerror=');
      expect(await imagesInPage()).toBe(0);
      expect(await page().evaluate(() => (window as Window & { __pwned?: number }).__pwned)).toBeUndefined();
      await page().screenshot({ path: artifactPath('7-hostile-label.png'), fullPage: true });
    } finally {
      await page().unroute('**/autointerp.csv');
    }
  });
});
