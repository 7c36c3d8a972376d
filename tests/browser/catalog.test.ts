/**
 * The feature catalog in headless Chromium: DuckDB-WASM's worker build served from the page's
 * own origin (Vite dev server), Tiny-R1's examples.duckdb read by HTTP range requests, results
 * equal to the reference ranked here from tokens.csv and activations.csv (top N by f32 strength,
 * ties by sequence_id then token_idx, context |token_idx − hit| ≤ window). No WebGPU needed.
 */
import { readFileSync } from 'node:fs';
import type { Plugin } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../../src/features/csv.js';
import type { FeatureExample } from '../../src/features/types.js';
import { launchChromium, PAGE_TIMEOUT_MS, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import type { CatalogPageResult } from './page/catalog.js';

const TINY = 'demo/public/models/tiny-r1/examples';

function reference(feature: number, limit: number, window: number): FeatureExample[] {
  const tokens = new Map<string, { id: number; text: string }>();
  for (const [s, t, id, text] of parseCsv(readFileSync(`${TINY}/tokens.csv`, 'utf8')).slice(1)) tokens.set(`${s}:${t}`, { id: Number(id), text: text ?? '' });
  const rows = parseCsv(readFileSync(`${TINY}/activations.csv`, 'utf8'))
    .slice(1)
    .filter((r) => Number(r[0]) === feature)
    .map(([, s, t, v]) => ({ seq: Number(s), tok: Number(t), v: Math.fround(Number(v)) }));
  const at = new Map(rows.map((r) => [`${r.seq}:${r.tok}`, r.v]));
  rows.sort((a, b) => b.v - a.v || a.seq - b.seq || a.tok - b.tok);
  return rows.slice(0, limit).map((h) => {
    const ctx: FeatureExample['tokens'][number][] = [];
    for (let i = Math.max(0, h.tok - window); i <= h.tok + window; i++) {
      const t = tokens.get(`${h.seq}:${i}`);
      if (t !== undefined) ctx.push({ tokenIdx: i, tokenId: t.id, text: t.text, activation: at.get(`${h.seq}:${i}`) ?? 0 });
    }
    return { featureId: feature, sequenceId: h.seq, tokenIdx: h.tok, strength: h.v, tokens: ctx };
  });
}

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
/** Every request the server saw (the page's and its workers': DuckDB reads from its worker by synchronous XHR). */
const requests: { path: string; method: string; range: string | undefined }[] = [];

/** The harness's Vite server (repository root, cross-origin isolated) plus a request log. */
async function startLoggedVite(): Promise<ViteHandle> {
  const log: Plugin = {
    name: 'request-log',
    configureServer(server) {
      server.middlewares.use((req, _res, next) => {
        requests.push({ path: new URL(req.url ?? '/', 'http://x').pathname, method: req.method ?? 'GET', range: req.headers.range });
        next();
      });
    },
  };
  // 'error': DuckDB's worker script ships source maps that point outside its package (warnings).
  return startVite({ plugins: [log], logLevel: 'error' });
}

beforeAll(async () => {
  vite = await startLoggedVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/catalog.html`, { waitUntil: 'load' });
  await chrome.page.waitForFunction(() => window.__catalog !== undefined, undefined, { timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

describe('feature catalog in Chromium', () => {
  it('answers examples through the DuckDB worker with HTTP range reads, equal to the reference', async () => {
    const page = chrome?.page;
    if (page === undefined) throw new Error('beforeAll did not open the page.');
    const features = [540, 0, 2, 33];
    const result: CatalogPageResult = await withTimeout(
      page.evaluate(([f, l, w]) => {
        if (window.__catalog === undefined) throw new Error('catalog page not ready');
        return window.__catalog.run(f, l, w);
      }, [features, 6, 4] as const),
      PAGE_TIMEOUT_MS,
      'the catalog page',
    );
    for (const f of features) expect(result.examples[String(f)], `feature ${f}`).toEqual(reference(f, 6, 4));
    expect(result.label540).toMatch(/Wait/);
    expect(result.searchIds[0]).toBe(540);

    expect(result.errors.missingBundle).toMatch(/^FeatureCatalogError: Examples were given without DuckDB-WASM/);
    expect(result.errors.notDuckDb).toMatch(/^FeatureCatalogError: .*examples\.sqlite lacks the "DUCK" magic/);
    expect(result.errors.badBundle).toMatch(/^FeatureCatalogError: DuckDB-WASM's engine .*missing\.wasm is not served \(HTTP 404\)/);

    // The database was never downloaded whole: every GET of it asked for a byte range (the
    // first is the catalog's own 12 KiB header check, the rest are DuckDB's reads).
    const db = requests.filter((r) => r.path.endsWith('/examples.duckdb') && r.method === 'GET');
    expect(db.length).toBeGreaterThan(1);
    expect(db[0]?.range).toBe('bytes=0-12287');
    for (const r of db) expect(r.range, JSON.stringify(r)).toMatch(/^bytes=\d+-\d+$/);
    // The engine and worker came from this origin.
    expect(requests.some((r) => r.path === '/node_modules/@duckdb/duckdb-wasm/dist/duckdb-eh.wasm' && r.method === 'GET')).toBe(true);
    expect(requests.some((r) => r.path === '/node_modules/@duckdb/duckdb-wasm/dist/duckdb-browser-eh.worker.js')).toBe(true);
    expect(chrome?.log.filter((l) => l.startsWith('[pageerror]'))).toEqual([]);
  }, 240_000);
});
