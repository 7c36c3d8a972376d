/**
 * The local path in headless Chromium: the tiny Qwen2 (tests/fixtures/tiny-qwen2-onnx, exported
 * from the PyTorch model) generates through transformers.js from local files on onnxruntime-web
 * (WebGPU on SwiftShader), tapped and steered by an ONNX graph edit. Checked against PyTorch:
 * the prompt's tapped activations equal golden.json's hidden states; greedy tokens equal
 * golden's; with a steering vector from position p, tokens and steered activations equal a
 * PyTorch run with the same hook (tests/helpers/python-server.ts). The SAE runs on
 * onnxruntime's own device from its output buffer, and the hook tensor is never read back.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { hasTorch, referenceSteeredGreedy } from '../helpers/python-server.js';
import { launchChromium, PAGE_TIMEOUT_MS, probeWebGpu, repoRoot, requireGpu, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import type { LocalRunResult } from './page/protocol.js';

interface Golden {
  input_ids: number[];
  hidden_states: { values: number[][][] };
  greedy: { tokens: number[] };
  steering: { vector: number[] };
}
const golden = JSON.parse(readFileSync(`${repoRoot}tests/fixtures/tiny-qwen2-onnx/golden.json`, 'utf8')) as Golden;
const LAYER = 1;
const NEW = 8;
const STRENGTH = 4;

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  vite = await startVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/local.html`, { waitUntil: 'load' });
  skipReason = requireGpu(await probeWebGpu(chrome.page));
  if (skipReason === undefined) await chrome.page.waitForFunction(() => window.__local !== undefined, undefined, { timeout: 60_000 });
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

function worst(got: ReadonlyArray<number[] | null>, want: readonly number[][], from: number, to: number): number {
  let w = 0;
  for (let t = from; t < to; t++) {
    const g = got[t];
    if (g === null || g === undefined) return Infinity;
    g.forEach((x, i) => (w = Math.max(w, Math.abs(x - (want[t]?.[i] ?? NaN)))));
  }
  return w;
}

describe('LocalModelSource in Chromium (transformers.js + onnxruntime-web WebGPU)', () => {
  test('tapped activations and greedy tokens equal PyTorch; steering matches a PyTorch run with the same hook; no readback', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    if (!hasTorch() && process.env['CI'] !== 'true') return ctx.skip('needs Debian python3-torch for the steered reference');
    const page = chrome?.page;
    if (page === undefined) throw new Error('setup failed');
    const T = golden.input_ids.length;
    const start = T + 3;
    const vector = golden.steering.vector.map((v) => v * STRENGTH);
    let r: LocalRunResult;
    try {
      r = await withTimeout(
        page.evaluate((opts) => {
          if (window.__local === undefined) throw new Error('page not ready');
          return window.__local.run(opts);
        }, { layer: LAYER, maxNewTokens: NEW, messages: [{ role: 'user' as const, content: 'What is 7 * 8?' }], steer: { vector, start } }),
        PAGE_TIMEOUT_MS,
        'local generation in Chromium',
      );
    } catch (err) {
      throw new Error(`${String(err)}\nbrowser log:\n${chrome?.log.slice(-30).join('\n') ?? ''}`);
    }
    expect(r.gpuErrors).toEqual([]);
    expect(r.tap).toMatchObject({ name: 'loupe_hook', elemType: 1, dIn: 64 });
    // unsteered: the prompt is the golden prompt, activations equal PyTorch's, tokens are golden's greedy ones
    const frames = r.frames;
    expect(frames.slice(0, T).map((f) => f.tokenId)).toEqual(golden.input_ids);
    expect(frames.slice(0, T).every((f) => f.phase === 'prompt')).toBe(true);
    expect(frames.slice(T).map((f) => f.tokenId)).toEqual(golden.greedy.tokens.slice(0, NEW));
    expect(frames.map((f) => f.position)).toEqual([...Array(T + NEW).keys()]);
    const goldHidden = golden.hidden_states.values[LAYER] ?? [];
    expect(worst(frames.map((f) => f.x), goldHidden, 0, T)).toBeLessThan(1e-4);
    // zero-copy: every hook was a GPU buffer of onnxruntime's, encoded on its device, none read back
    expect(r.sameDevice).toBe(true);
    expect(r.stats.readbacks).toBe(0);
    expect(r.stats.cpuHooks).toBe(0);
    // per run: the prompt step + NEW steps feeding generated tokens; the first run binds
    // onnxruntime's buffer directly, the second copies it GPU→GPU and overlaps the next step
    expect(r.stats.gpuHooks).toBe(NEW + 1);
    expect(r.stats.gpuSnapshots).toBe(NEW + 1);

    // steered from position `start`: same as PyTorch with a hook adding the vector there
    const ref = referenceSteeredGreedy(golden.input_ids, LAYER, vector, start, NEW);
    const steered = r.steeredFrames ?? [];
    expect(steered.map((f) => f.tokenId)).toEqual(ref.ids.slice(0, T + NEW));
    expect(steered.map((f) => f.steered)).toEqual(steered.map((f) => f.position >= start));
    expect(worst(steered.map((f) => f.x), ref.hidden, 0, T + NEW)).toBeLessThan(2e-4);
    const plain = referenceSteeredGreedy(golden.input_ids, LAYER, undefined, start, NEW);
    expect(ref.ids).not.toEqual(plain.ids); // the vector does change the generation
  });
});
