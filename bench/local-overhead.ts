/**
 * `npm run bench:local`: what the tap + SAE encode + top-k adds to a local model's per-token time,
 * side by side on the same adapter (headless Chromium; on this machine SwiftShader): the tiny
 * Qwen2 through transformers.js as exported vs through LocalModelSource (graph tap, steering input,
 * a TopK SAE on onnxruntime's device reading its output buffer). Target: ≤ 10 % overhead.
 * Writes bench/results/<date>-local-overhead-<adapter>.{md,json}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { launchChromium, probeWebGpu, shutdown, startVite, withTimeout } from '../tests/browser/harness.js';

const TOKENS = 32;
const REPS = 5;
const D_SAE = 4096;
const K = 32;
const LAYER = 1;

const vite = await startVite();
const chrome = await launchChromium();
try {
  await chrome.page.goto(`${vite.url}bench/pages/local-overhead.html`, { waitUntil: 'load' });
  const probe = await probeWebGpu(chrome.page);
  if (!probe.ok) throw new Error(`no WebGPU in Chromium: ${probe.reason}`);
  await chrome.page.waitForFunction(() => window.__bench !== undefined, undefined, { timeout: 60_000 });
  const r = await withTimeout(
    chrome.page.evaluate((o) => {
      if (window.__bench === undefined) throw new Error('bench page not ready');
      return window.__bench(o);
    }, { tokens: TOKENS, reps: REPS, dSae: D_SAE, k: K, layer: LAYER }),
    600_000,
    'local overhead bench',
  );
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const plain = median(r.plainMs);
  const tapped = median(r.tappedMs);
  const overlapped = median(r.overlapMs);
  const tapOnly = median(r.tapOnlyMs);
  const overhead = (tapped / plain - 1) * 100;
  const overheadOverlap = (overlapped / plain - 1) * 100;
  const date = new Date().toISOString().slice(0, 10);
  const slug = `${probe.vendor}-${probe.architecture}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
  const md = [
    `# Local model: tap + SAE encode overhead per token (${date})`,
    '',
    `Adapter (Chromium WebGPU): ${probe.description || probe.device} [${probe.vendor} / ${probe.architecture}]; SAE on onnxruntime-web's device: ${r.adapter}.`,
    `Tiny Qwen2 (hidden 64, 4 layers), greedy, ${TOKENS} new tokens, median of ${REPS} alternating runs after a warm-up; TopK SAE ${D_SAE} features, k = ${K}, at layer ${LAYER} resid_post.`,
    '',
    '| path | ms / token |',
    '|---|---|',
    `| transformers.js, model as exported | ${plain.toFixed(2)} |`,
    `| LocalModelSource, tap + steer input only (no SAE attached) | ${tapOnly.toFixed(2)} |`,
    `| LocalModelSource, SAE binds the model's buffer, model waits (overlap: false) | ${tapped.toFixed(2)} |`,
    `| LocalModelSource, GPU snapshot, SAE overlapped with the next step (default) | ${overlapped.toFixed(2)} |`,
    '',
    `Overhead: ${overheadOverlap.toFixed(1)} % with overlap (default), ${overhead.toFixed(1)} % without (target ≤ 10 %); the graph edit alone: ${((tapOnly / plain - 1) * 100).toFixed(1)} %.`,
    `Runs (ms/token): plain ${r.plainMs.map((x) => x.toFixed(2)).join(', ')}; no overlap ${r.tappedMs.map((x) => x.toFixed(2)).join(', ')}; overlap ${r.overlapMs.map((x) => x.toFixed(2)).join(', ')}.`,
    '',
  ].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${date}-local-overhead-${slug}.md`, md);
  writeFileSync(`bench/results/${date}-local-overhead-${slug}.json`, JSON.stringify({ date, probe, tokens: TOKENS, reps: REPS, dSae: D_SAE, k: K, ...r, plainMedianMs: plain, tappedMedianMs: tapped, tapOnlyMedianMs: tapOnly, overlapMedianMs: overlapped, overheadPct: overhead, overheadOverlapPct: overheadOverlap }, null, 2));
  console.log(md);
} finally {
  await shutdown(chrome.browser, vite);
}
