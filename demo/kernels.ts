/**
 * The kernel page (demo/kernels.html): request WebGPU, load the SAE shipped in public/models/, encode its input tokens
 * on the GPU (or on the CPU reference when WebGPU is missing, with a visible notice), and show
 * the adapter, the strongest features per token, reconstruction metrics and encode time.
 *
 * `?backend=cpu` forces the CPU reference. Results are published on `window.__loupeDemo`.
 */
import { Sae, tokenCodes, type SparseCodes } from '../src/index.js';
import { readSaeFile } from './sae-file.js';
import type { DemoAdapter, DemoState, DemoToken } from './state.js';

/** One of the golden fixtures (tests/fixtures/golden/), copied: sparsify top-k, k = 24, f32. */
const MODEL_FILE = 'sparsify-f32-topk-t64-edge.safetensors';
const TOP_SHOWN = 6;
const TIMED_RUNS = 7;
/** Optional features Loupe's kernels use when the device has them (every kernel has a path without). */
const LOUPE_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

const state: DemoState = {
  status: 'loading',
  step: 'starting',
  adapter: null,
  backend: null,
  fallbackReason: null,
  model: null,
  tokens: [],
  codes: null,
  metrics: null,
  timings: { loadMs: null, createMs: null, encodeRunsMs: [], encodeMedianMs: null, reconstructMs: null },
  error: null,
};
window.__loupeDemo = state;

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`The page lacks #${id}.`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className !== undefined) node.className = className;
  return node;
}

function setStep(step: string): void {
  state.step = step;
  $('status').textContent = step;
}

function fillList(id: string, rows: Array<[string, string]>): void {
  const dl = $(id);
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', k), el('dd', v)]));
}

function fmt(v: number, digits = 4): string {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4)) return v.toExponential(2);
  return v.toFixed(digits);
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The adapter, or the reason there is none. */
async function requestAdapter(): Promise<GPUAdapter | string> {
  if (!('gpu' in navigator) || navigator.gpu === undefined) {
    return window.isSecureContext ? 'this browser has no WebGPU (navigator.gpu is missing)' : 'the page is not a secure context (serve it from https:, localhost or 127.0.0.1)';
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ?? 'the browser offers no WebGPU adapter (blocklisted GPU or WebGPU disabled)';
  } catch (err) {
    return `requestAdapter failed: ${String(err)}`;
  }
}

function describeAdapter(adapter: GPUAdapter): DemoAdapter {
  const info = adapter.info;
  const l = adapter.limits;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter: (info as Partial<GPUAdapterInfo>).isFallbackAdapter,
    features: [...adapter.features].sort(),
    deviceFeatures: [],
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    },
  };
}

/** ✓ in use on the Sae's device, ✗ not offered by the adapter. */
function featureMark(a: DemoAdapter, feature: string): string {
  if (a.deviceFeatures.includes(feature)) return '✓';
  if (!a.features.includes(feature)) return '✗';
  return state.backend === null ? '(offered)' : '(offered, not used)';
}

function showAdapter(): void {
  const a = state.adapter;
  if (a === null) {
    fillList('adapter', [['backend', 'CPU reference (WebGPU not used)']]);
    return;
  }
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`;
  fillList('adapter', [
    ['description', a.description || '(not exposed)'],
    ['vendor / arch', [a.vendor, a.architecture].filter((s) => s !== '').join(' / ') || '(not exposed)'],
    ['fallback adapter', a.isFallbackAdapter === undefined ? 'unknown' : a.isFallbackAdapter ? 'yes (software)' : 'no'],
    ['Loupe features', LOUPE_FEATURES.map((f) => `${f} ${featureMark(a, f)}`).join(' · ')],
    ['max binding', mib(a.limits.maxStorageBufferBindingSize)],
    ['max buffer', mib(a.limits.maxBufferSize)],
    ['workgroup', `${a.limits.maxComputeInvocationsPerWorkgroup} invocations, ${a.limits.maxComputeWorkgroupStorageSize / 1024} KiB shared`],
  ]);
  document.getElementById('all-features')?.remove();
  const all = el('details');
  all.id = 'all-features';
  all.append(el('summary', `all ${a.features.length} adapter features`), el('p', a.features.join(', '), 'small'));
  $('adapter').after(all);
}

function showModel(): void {
  const m = state.model;
  if (m === null) return;
  fillList('model', [
    ['file', `${m.file} (${(m.bytes / 1024).toFixed(0)} KiB)`],
    ['format', m.format],
    ['architecture', m.k !== null ? `${m.architecture}, k = ${m.k}` : m.architecture],
    ['dIn × dSae', `${m.dIn} × ${m.dSae}`],
    ['weights', m.weightDtype],
    ['note', 'a random test SAE (golden fixture): its features mean nothing, and FVU ≈ 1 is expected'],
  ]);
}

function showSummary(): void {
  const t = state.timings;
  const rows: Array<[string, string]> = [['backend', state.backend ?? '—']];
  if (state.codes !== null) {
    rows.push(['tokens', String(state.codes.tokens)]);
    rows.push(['active / token', fmt(state.codes.meanActivePerToken, 1)]);
    rows.push(['distinct features', String(state.codes.distinctFeatures)]);
  }
  if (state.metrics !== null) {
    rows.push(['mean MSE', fmt(state.metrics.mse)]);
    rows.push(['mean FVU', fmt(state.metrics.fvu)]);
    rows.push(['mean cosine', fmt(state.metrics.cosine)]);
  }
  if (t.encodeMedianMs !== null) rows.push(['encode (median)', `${t.encodeMedianMs.toFixed(2)} ms over ${t.encodeRunsMs.length} runs`]);
  if (t.reconstructMs !== null) rows.push(['encode+decode+metrics', `${t.reconstructMs.toFixed(2)} ms`]);
  if (t.createMs !== null) rows.push(['create (upload, pipelines)', `${t.createMs.toFixed(1)} ms`]);
  if (t.loadMs !== null) rows.push(['fetch + parse', `${t.loadMs.toFixed(1)} ms`]);
  fillList('summary', rows);
}

function showTokens(): void {
  const body = $('tokens').querySelector('tbody');
  if (body === null) return;
  const maxValue = Math.max(1e-30, ...state.tokens.flatMap((t) => t.top.map((f) => f.value)));
  body.replaceChildren(
    ...state.tokens.map((t) => {
      const tr = el('tr');
      tr.append(el('td', String(t.index), 'num'), el('td', String(t.active), 'num'));
      const cell = el('td');
      if (t.nonFinite) cell.append(el('span', 'non-finite input: no features', 'none'));
      else if (t.top.length === 0) cell.append(el('span', 'no active feature', 'none'));
      for (const f of t.top) {
        const chip = el('span', `${f.index}: ${f.value.toFixed(3)}`, 'feature');
        chip.style.setProperty('--strength', (f.value / maxValue).toFixed(3));
        cell.append(chip);
      }
      if (t.active > t.top.length) cell.append(el('span', `+${t.active - t.top.length}`, 'none'));
      tr.append(cell, el('td', fmt(t.mse), 'num'), el('td', fmt(t.fvu), 'num'), el('td', fmt(t.cosine), 'num'));
      return tr;
    }),
  );
}

function summariseCodes(codes: SparseCodes, metrics: { mse: Float32Array; fvu: Float32Array; cosine: Float32Array }): void {
  const nonFinite = new Set(codes.nonFiniteTokens);
  const tokens: DemoToken[] = [];
  for (let t = 0; t < codes.tokens; t++) {
    const { indices, values } = tokenCodes(codes, t);
    tokens.push({
      index: t,
      nonFinite: nonFinite.has(t),
      active: indices.length,
      top: Array.from(indices.subarray(0, TOP_SHOWN), (index, j) => ({ index, value: values[j] ?? NaN })),
      mse: metrics.mse[t] ?? NaN,
      fvu: metrics.fvu[t] ?? NaN,
      cosine: metrics.cosine[t] ?? NaN,
    });
  }
  state.tokens = tokens;
  state.codes = {
    tokens: codes.tokens,
    totalActive: codes.indices.length,
    meanActivePerToken: codes.indices.length / Math.max(1, codes.tokens),
    distinctFeatures: new Set(codes.indices).size,
    nonFiniteTokens: [...codes.nonFiniteTokens],
  };
  const finite = tokens.filter((t) => !t.nonFinite);
  state.metrics = {
    mse: mean(finite.map((t) => t.mse)),
    fvu: mean(finite.map((t) => t.fvu)),
    cosine: mean(finite.map((t) => t.cosine)),
  };
}

async function run(): Promise<void> {
  const forceCpu = new URLSearchParams(location.search).get('backend') === 'cpu';

  setStep('Requesting a WebGPU adapter…');
  const adapter = forceCpu ? 'the CPU reference was requested (?backend=cpu)' : await requestAdapter();
  if (typeof adapter === 'string') {
    state.fallbackReason = adapter;
    const notice = $('notice');
    notice.textContent = forceCpu
      ? `CPU backend: ${adapter}. Loupe's CPU reference computes the same codes in JavaScript.`
      : `WebGPU unavailable: ${adapter}. Running Loupe's CPU reference instead (same codes, computed in JavaScript).`;
    notice.hidden = false;
  } else {
    state.adapter = describeAdapter(adapter);
  }
  showAdapter();

  setStep(`Loading ${MODEL_FILE}…`);
  const t0 = performance.now();
  const response = await fetch(`./models/${MODEL_FILE}`);
  if (!response.ok) throw new Error(`Fetching models/${MODEL_FILE} failed: HTTP ${response.status}.`);
  const bytes = await response.arrayBuffer();
  const file = readSaeFile(bytes);
  state.timings.loadMs = performance.now() - t0;
  const { config } = file;
  state.model = {
    file: MODEL_FILE,
    bytes: bytes.byteLength,
    format: config.format ?? 'unknown',
    architecture: config.architecture,
    dIn: config.dIn,
    dSae: config.dSae,
    k: config.k ?? null,
    weightDtype: config.weightDtype,
  };
  showModel();
  const x = file.x;
  if (x === undefined || file.tokens === 0) throw new Error(`${MODEL_FILE} carries no input tokens (tensor "x").`);

  setStep(typeof adapter === 'string' ? 'Creating the SAE on the CPU…' : 'Uploading weights and compiling WGSL…');
  const t1 = performance.now();
  const sae = await Sae.create({ config, weights: file.weights }, typeof adapter === 'string' ? { backend: 'cpu' } : { backend: 'webgpu', gpu: navigator.gpu });
  state.timings.createMs = performance.now() - t1;
  state.backend = sae.backend;
  if (state.adapter !== null && sae.device !== undefined) {
    state.adapter = { ...state.adapter, deviceFeatures: [...sae.device.features].sort() };
    showAdapter();
  }
  try {
    setStep(`Encoding ${file.tokens} tokens…`);
    await sae.encode(x, { tokens: file.tokens }); // warm-up: first dispatch compiles lazily on some drivers
    for (let i = 0; i < TIMED_RUNS; i++) {
      const s = performance.now();
      await sae.encode(x, { tokens: file.tokens });
      state.timings.encodeRunsMs.push(performance.now() - s);
    }
    state.timings.encodeMedianMs = median(state.timings.encodeRunsMs);
    const s = performance.now();
    const { codes, metrics } = await sae.reconstruct(x, { tokens: file.tokens });
    state.timings.reconstructMs = performance.now() - s;
    summariseCodes(codes, metrics);
  } finally {
    sae.destroy();
  }
  showSummary();
  showTokens();
  setStep(`Done: ${file.tokens} tokens encoded on ${state.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
  state.status = 'done';
}

run().catch((err: unknown) => {
  state.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  state.status = 'error';
  const status = $('status');
  status.textContent = `Error: ${state.error}`;
  status.classList.add('error');
  showSummary();
  console.error(err);
});
