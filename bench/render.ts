/**
 * `npm run bench:render`: per-token render time of the components in headless Chromium while a
 * stream grows to 5,000 tokens — the shipped, virtualised `<loupe-token-stream>` against a naive
 * stream that keeps (and re-renders) every token in the DOM, each next to the same
 * `<loupe-feature-list>`, in the same browser and run; plus the whole `<loupe-session>`.
 *
 * One sample = append one Tiny-R1 token to the session → every element's `updateComplete` → a
 * forced style + layout (`document.documentElement.offsetHeight`). Painting is not included
 * (the page paints every 32 tokens, between samples). Lit runs its production build (Vite serves
 * the `production` export condition). Reported: median and p95 over the 100 tokens before 1,000,
 * 2,500 and 5,000; budget 4 ms per token. Rounds alternate the implementations so that a slower
 * stretch of the (shared) machine hits all of them.
 *
 * Writes bench/results/<date>-render-chromium.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { launchChromium, shutdown, startVite, withTimeout } from '../tests/browser/harness.js';
import type { RenderKind, RenderRun } from './pages/render.js';

const TOKENS = 5000;
const CHECKPOINTS = [1000, 2500, 5000];
const WINDOW = 100;
const ROUNDS = Number(process.env['LOUPE_BENCH_ROUNDS'] ?? 2);
const BUDGET_MS = 4;
/** Shading on (Tiny-R1 feature 696, active on ~1 token in 6), as a reader would have it. */
const SELECTED = [696];
const KINDS: readonly RenderKind[] = ['virtual', 'naive', 'session'];
const NAMES: Record<RenderKind, string> = {
  virtual: '`<loupe-token-stream>` (virtualised) + `<loupe-feature-list>`',
  naive: 'naive stream (every token in the DOM) + `<loupe-feature-list>`',
  session: '`<loupe-session>` (stream, list, card, map, steer panel)',
};

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (sorted[lo] ?? NaN) + ((sorted[hi] ?? NaN) - (sorted[lo] ?? NaN)) * (pos - lo);
}

interface Cell {
  readonly median: number;
  readonly p95: number;
}

/** Median and p95 of the samples of tokens (at − WINDOW, at], pooled over the rounds. */
function cell(runs: readonly RenderRun[], at: number): Cell {
  const xs = runs.flatMap((r) => r.perTokenMs.slice(at - WINDOW, at)).sort((a, b) => a - b);
  return { median: quantile(xs, 0.5), p95: quantile(xs, 0.95) };
}

const fmt = (v: number): string => (v < 10 ? v.toFixed(2) : v.toFixed(1));

const vite = await startVite({ production: true });
const chrome = await launchChromium();
const load0 = loadavg();
const started = Date.now();
try {
  const page = chrome.page;
  await page.goto(`${vite.url}bench/pages/render.html`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__renderBench !== undefined, undefined, { timeout: 120_000 });
  const info = await page.evaluate(() => window.__renderInfo);
  if (info === undefined) throw new Error('the bench page published no info');
  if (info.litDev) throw new Error('Lit runs its development build: the benchmark must measure the production build.');
  const runs: Record<RenderKind, RenderRun[]> = { virtual: [], naive: [], session: [] };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order between rounds.
    const order = round % 2 === 0 ? KINDS : [...KINDS].reverse();
    for (const kind of order) {
      const t0 = Date.now();
      const run = await withTimeout(
        page.evaluate(([k, n, sel]) => {
          if (window.__renderBench === undefined) throw new Error('bench page not ready');
          return window.__renderBench(k, n, sel);
        }, [kind, TOKENS, SELECTED] as const),
        600_000,
        `render bench (${kind})`,
      );
      if (run.perTokenMs.length !== TOKENS) throw new Error(`${kind}: ${run.perTokenMs.length} samples, expected ${TOKENS}.`);
      if (run.lastText !== run.expectedLastText) throw new Error(`${kind}: the last token on screen is ${JSON.stringify(run.lastText)}, expected ${JSON.stringify(run.expectedLastText)}.`);
      runs[kind].push(run);
      console.log(`round ${round + 1} ${kind}: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${run.domTokens} token spans in the DOM; at 5k median ${fmt(cell([run], TOKENS).median)} ms`);
    }
  }
  const table = KINDS.map((kind) => {
    const cells = CHECKPOINTS.map((at) => cell(runs[kind], at));
    return `| ${NAMES[kind]} | ${cells.map((c) => `${fmt(c.median)} / ${fmt(c.p95)}`).join(' | ')} | ${runs[kind][0]?.domTokens ?? '?'} |`;
  });
  const at5k = (kind: RenderKind): Cell => cell(runs[kind], TOKENS);
  /** Where the budget holds: the median and the p95 at each checkpoint. */
  const verdict = (kind: RenderKind): string => {
    const cells = CHECKPOINTS.map((at) => [at, cell(runs[kind], at)] as const);
    const over = (key: keyof Cell): string => {
      const misses = cells.filter(([, c]) => c[key] > BUDGET_MS).map(([at, c]) => `${at / 1000}k: ${fmt(c[key])} ms`);
      return misses.length === 0 ? `${key} within at every checkpoint` : `${key} over at ${misses.join(', ')}`;
    };
    return `${over('median')}; ${over('p95')}`;
  };
  const browserVersion = chrome.browser.version();
  const cpu = cpus();
  const load1 = loadavg();
  const date = new Date().toISOString().slice(0, 10);
  const md = [
    `# Render time per token, 5,000-token stream (${date})`,
    '',
    `Browser: headless Chromium ${browserVersion} (${info.userAgent}); device pixel ratio ${info.dpr}; Lit production build.`,
    `CPU: ${cpu[0]?.model ?? 'unknown'} × ${cpu.length} (${info.cores} reported to the page); load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end (the machine is shared with other jobs: p95 values move with their load).`,
    `Data: Tiny-R1's shipped example tables (${TOKENS} tokens of consecutive sequences, their SAE codes from activations.csv), feature ${SELECTED.join(', ')} selected (shading on), into a ReadoutStore; ${ROUNDS} rounds, implementations alternated; ${((Date.now() - started) / 1000).toFixed(0)} s in all.`,
    'One sample = append a token → `updateComplete` of every element → forced style + layout. Paint excluded. Viewport 1200 × 900, stream 24rem high.',
    '',
    `| implementation | ms/token at 1k (median / p95) | at 2.5k | at 5k | token spans in the DOM at 5k |`,
    '|---|---|---|---|---|',
    ...table,
    '',
    `Budget ${BUDGET_MS} ms per token — virtualised stream + list: ${verdict('virtual')}. Whole \`<loupe-session>\`: ${verdict('session')}. Naive stream + list: ${verdict('naive')}.`,
    `Virtualised vs naive at 5k: ${fmt(at5k('naive').median / at5k('virtual').median)}× faster by the median.`,
    '',
    'Each cell pools the 100 tokens before the checkpoint over all rounds. Per-round medians at 5k:',
    ...KINDS.map((kind) => `- ${kind}: ${runs[kind].map((r) => fmt(cell([r], TOKENS).median)).join(', ')} ms`),
    '',
  ].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${date}-render-chromium.md`, md);
  console.log(md);
} finally {
  await shutdown(chrome.browser, vite);
}
