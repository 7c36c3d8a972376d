/**
 * The demo app: pick a source and an SAE, load them with a progress bar per download, and hand
 * a Session to <loupe-session>, which shows the live readouts, the feature list, card, map and
 * steering panel. The default — Tiny-R1 embedded in public/models/ — needs no network at all.
 *
 * Query parameters preset the form and load at once: `?source=tiny-r1` (default),
 * `?source=remote&url=…&layer=37`, `?sae=custom&saeSource=org/name`, `?autoload=0` to wait for
 * the Load button. State for end-to-end tests is published on `window.__loupeApp`.
 */
import { LocalModelSource, readFeatureMap, type Sae } from '../src/index.js';
import { loadFeatureCatalog } from '../src/features/catalog.js';
import type { FeatureCatalog } from '../src/features/types.js';
import { Session, localTokenSource, remoteTokenSource, TraceSource, recordTrace, chooseSaeBackend, type TokenSource } from '../src/session/index.js';
import '../src/components/index.js';
import type { LoupeSessionElement } from '../src/components/loupe-session.js';
import { DUCKDB_BUNDLE, GOODFIRE, ORT_WASM_PATH, R1_DISTILL, REMOTE_DEFAULT_LAYER, TINY_R1, type SaeChoice, type SaePreset, type SourceChoice } from './presets.js';
import type { AppState, AppToken } from './app-state.js';
import type { Readouts } from '../src/session/types.js';

const state: AppState = { status: 'idle', step: 'starting', source: null, sae: null, backend: null, adapter: null, downloads: {}, tokens: 0, text: '', readouts: [], baseline: [], error: null };
window.__loupeApp = state;

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`The page lacks #${id}.`);
  return el as T;
}

const form = $<HTMLFormElement>('setup');
const sessionEl = $('session') as LoupeSessionElement;
const SOURCE_NAMES: Record<SourceChoice, string> = {
  'tiny-r1': 'Tiny-R1 (embedded)',
  'r1-distill': 'DeepSeek-R1-Distill-Qwen-1.5B (in this page)',
  remote: 'a remote endpoint',
  trace: 'a recorded trace',
};
let current: { session: Session; sae: Sae | undefined; dispose: () => Promise<void> } | undefined;
let loadAbort: AbortController | undefined;

function setStep(step: string, status: AppState['status'] = state.status): void {
  state.step = step;
  state.status = status;
  $('status').textContent = step;
}

function notice(text: string | null): void {
  const n = $('notice');
  n.hidden = text === null;
  n.textContent = text ?? '';
}

/** One <progress> per file, created on its first byte. */
function progress(item: string, loaded: number, total: number | undefined): void {
  state.downloads[item] = { loaded, total: total ?? null };
  const list = $('downloads');
  const id = `dl-${[...item].map((c) => c.charCodeAt(0).toString(16)).join('')}`;
  let row = document.getElementById(id);
  if (row === null) {
    row = document.createElement('li');
    row.id = id;
    const name = document.createElement('span');
    name.className = 'dl-name';
    name.textContent = item;
    const bar = document.createElement('progress');
    bar.setAttribute('aria-label', `download of ${item}`);
    const figure = document.createElement('span');
    figure.className = 'dl-figure';
    row.append(name, bar, figure);
    list.append(row);
  }
  const bar = row.querySelector('progress');
  const figure = row.querySelector('.dl-figure');
  if (bar !== null) {
    if (total !== undefined && total > 0) {
      bar.max = total;
      bar.value = loaded;
    } else bar.removeAttribute('value');
  }
  if (figure !== null) figure.textContent = total !== undefined && total > 0 ? `${mib(loaded)} / ${mib(total)}` : mib(loaded);
}

function plain(r: Readouts): AppToken[] {
  return r.tokens.map((t) => ({ position: t.position, tokenId: t.tokenId, phase: t.phase, steered: t.steered, indices: [...t.indices], values: [...t.values] }));
}

function mib(n: number): string {
  return n < 1 << 20 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

function formValue(name: string): string {
  const v = new FormData(form).get(name);
  return typeof v === 'string' ? v.trim() : '';
}

/** Shows the fields that belong to the chosen source / SAE. */
function syncForm(): void {
  const source = formValue('source');
  const sae = formValue('sae');
  for (const el of form.querySelectorAll<HTMLElement>('[data-for]')) el.hidden = !(el.dataset['for'] ?? '').split(' ').includes(source);
  for (const el of form.querySelectorAll<HTMLElement>('[data-for-sae]')) el.hidden = !(el.dataset['forSae'] ?? '').split(' ').includes(sae);
  $('sae-preset-label').textContent = source === 'tiny-r1' ? TINY_R1.sae.description : source === 'remote' ? 'Goodfire R1 math (layer 37)' : 'None: pick one below';
}

function resolve(url: string): string {
  return new URL(url, document.baseURI).href;
}

function saePreset(source: SourceChoice, choice: SaeChoice): SaePreset | undefined {
  if (choice === 'goodfire-math' || choice === 'goodfire-logic') return withUserCatalog(GOODFIRE[choice]);
  if (choice === 'custom') {
    const src = formValue('saeSource');
    if (src === '') throw new Error('Enter an SAE: a folder or file URL, or a Hugging Face repo id.');
    const sub = formValue('saeSubfolder');
    return withUserCatalog({ source: src, ...(sub !== '' ? { subfolder: sub } : {}), description: src });
  }
  if (source === 'tiny-r1') return TINY_R1.sae;
  if (source === 'remote') return withUserCatalog(GOODFIRE['goodfire-math']);
  return undefined;
}

function withUserCatalog(p: SaePreset): SaePreset {
  const labels = formValue('labels');
  const examples = formValue('examples');
  return { ...p, ...(labels !== '' ? { labels } : {}), ...(examples !== '' ? { examples } : {}) };
}

async function adapterDescription(): Promise<string | null> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (gpu === undefined) return null;
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (adapter === null) return null;
  const i = adapter.info;
  return [i.description, i.vendor, i.architecture].filter((s) => s !== '').join(' · ') || 'WebGPU adapter';
}

/** The precomputed feature map shipped with an SAE (docs/feature-map.md). */
async function loadMap(url: string, dSae: number, signal: AbortSignal): Promise<Float32Array> {
  const res = await fetch(resolve(url), { signal });
  if (!res.ok) throw new Error(`The feature map ${url} answered HTTP ${res.status}.`);
  return readFeatureMap(url.endsWith('.bin') ? new Uint8Array(await res.arrayBuffer()) : await res.text(), dSae);
}

async function loadCatalog(p: SaePreset | undefined, dSae: number, signal: AbortSignal): Promise<FeatureCatalog | undefined> {
  if (p === undefined || (p.labels === undefined && p.examples === undefined && p.map === undefined)) return undefined;
  const map = p.map !== undefined ? await loadMap(p.map, dSae, signal) : undefined;
  return loadFeatureCatalog({
    size: dSae,
    ...(p.labels !== undefined ? { labels: resolve(p.labels) } : {}),
    ...(p.examples !== undefined ? { examples: resolve(p.examples) } : {}),
    ...(map !== undefined ? { map } : {}),
    duckdb: { mainModule: resolve(DUCKDB_BUNDLE.mainModule), mainWorker: resolve(DUCKDB_BUNDLE.mainWorker) },
    signal,
  });
}

async function load(): Promise<void> {
  loadAbort?.abort();
  const abort = new AbortController();
  loadAbort = abort;
  const { signal } = abort;
  await current?.dispose();
  current = undefined;
  $('downloads').replaceChildren();
  $('loading').hidden = false;
  notice(null);
  state.downloads = {};
  state.error = null;
  const source = (formValue('source') || 'tiny-r1') as SourceChoice;
  const saeChoice = (formValue('sae') || 'preset') as SaeChoice;
  state.source = source;
  try {
    setStep('Looking for a WebGPU adapter…', 'loading');
    state.adapter = await adapterDescription();
    if (state.adapter === null) notice('This browser offers no WebGPU adapter: small SAEs run on the CPU (slower); large ones cannot run here. Chrome, Edge or Safari 26 have WebGPU.');

    let tokenSource: TokenSource;
    let sae: Sae | undefined;
    let dispose: () => Promise<void> = async () => undefined;
    const preset = source === 'trace' ? undefined : saePreset(source, saeChoice);
    const saeProgress = (p: { file: string; loaded: number; total: number | undefined }): void => progress(`SAE ${p.file}`, p.loaded, p.total);

    if (source === 'tiny-r1' || source === 'r1-distill') {
      setStep(source === 'tiny-r1' ? 'Loading Tiny-R1…' : 'Loading DeepSeek-R1-Distill-Qwen-1.5B…');
      const layerField = Number.parseInt(formValue('layer'), 10);
      // navigator.gpu may exist with no adapter behind it (blocklisted GPU): then onnxruntime's wasm EP.
      const device = state.adapter !== null ? 'webgpu' : 'wasm';
      const local = await LocalModelSource.load(
        source === 'tiny-r1'
          ? { model: TINY_R1.model, localModelPath: new URL(TINY_R1.localModelPath, document.baseURI).pathname, layer: TINY_R1.layer, dtype: 'fp32', device, wasmPaths: resolve(ORT_WASM_PATH), onProgress: (p) => progress(`model ${p.file}`, p.loaded, p.total) }
          : { model: R1_DISTILL.model, layer: Number.isFinite(layerField) ? layerField : R1_DISTILL.layer, dtype: R1_DISTILL.dtype, device, wasmPaths: resolve(ORT_WASM_PATH), onProgress: (p) => progress(`model ${p.file}`, p.loaded, p.total) },
      );
      dispose = () => local.dispose();
      if (preset !== undefined) {
        setStep('Loading the SAE…');
        sae = await chooseSaeBackend(preset.source, { ...(preset.subfolder !== undefined ? { subfolder: preset.subfolder } : {}), ...(local.gpuDevice !== undefined ? { device: local.gpuDevice } : {}), onProgress: saeProgress, signal });
      }
      tokenSource = localTokenSource(local);
    } else if (source === 'remote') {
      const url = formValue('url');
      if (url === '') throw new Error('Enter the endpoint URL of a Loupe stream server (docs/serving-r1.md).');
      const layerField = Number.parseInt(formValue('layer'), 10);
      const token = formValue('token');
      if (preset !== undefined) {
        setStep('Loading the SAE…');
        sae = await chooseSaeBackend(preset.source, { ...(preset.subfolder !== undefined ? { subfolder: preset.subfolder } : {}), onProgress: saeProgress, signal });
      }
      tokenSource = remoteTokenSource({ url, ...(token !== '' ? { token } : {}), hook: { layer: Number.isFinite(layerField) ? layerField : REMOTE_DEFAULT_LAYER } });
    } else {
      const file = (form.elements.namedItem('trace') as HTMLInputElement | null)?.files?.[0];
      if (file === undefined) throw new Error('Choose a trace file recorded with "Save trace".');
      tokenSource = TraceSource.fromBytes(new Uint8Array(await file.arrayBuffer()), { tokensPerSecond: 40 });
    }
    if (sae !== undefined) state.backend = sae.backend;
    state.sae = preset?.description ?? null;

    setStep('Loading labels and examples…');
    const catalog = sae !== undefined ? await loadCatalog(preset, sae.config.dSae, signal).catch((e: unknown) => {
      notice(`Labels and examples could not be loaded (${e instanceof Error ? e.message : String(e)}); features are shown by number.`);
      return undefined;
    }) : undefined;
    const session = new Session({ source: tokenSource, ...(sae !== undefined ? { sae } : {}), ...(catalog !== undefined ? { catalog } : {}) });
    session.addEventListener('token', () => {
      state.tokens = session.readouts.tokens.length;
    });
    session.addEventListener('status', () => {
      state.status = session.status;
      state.step = session.message ?? session.status;
      if (session.status === 'done' || session.status === 'cancelled' || session.status === 'error') {
        state.text = session.readouts.tokens.filter((t) => t.phase !== 'prompt').map((t) => t.text).join('');
        state.readouts = plain(session.readouts);
        state.baseline = session.baseline !== undefined ? plain(session.baseline) : [];
        ($('save-trace') as HTMLButtonElement).disabled = session.readouts.tokens.length === 0;
      }
      if (session.status === 'error') state.error = session.message ?? 'error';
    });
    current = {
      session,
      sae,
      dispose: async () => {
        session.cancel();
        await catalog?.close?.();
        sae?.destroy();
        await dispose();
      },
    };
    sessionEl.prompt = source === 'r1-distill' ? R1_DISTILL.prompt : TINY_R1.prompt;
    sessionEl.maxNewTokens = source === 'r1-distill' ? R1_DISTILL.maxNewTokens : TINY_R1.maxNewTokens;
    sessionEl.session = session;
    $('loading').hidden = true;
    // From here the session's own status line (inside <loupe-session>) speaks; this one says what is loaded.
    const where = state.backend !== null ? ` on ${state.backend === 'webgpu' ? 'WebGPU' : 'the CPU (no WebGPU adapter)'}` : '';
    setStep(`Loaded: ${SOURCE_NAMES[source]}${state.sae !== null ? ` with ${state.sae}${where}` : ''}.`, 'ready');
  } catch (e) {
    if (signal.aborted) return;
    const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    state.error = message;
    setStep(`Could not load: ${message}`, 'error');
  }
}

async function saveTrace(): Promise<void> {
  const s = current?.session;
  if (s === undefined) return;
  // The session fills in model, hookpoint, dIn and the SAE's fingerprint.
  const bytes = await recordTrace(s);
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `loupe-trace-${new Date().toISOString().replace(/[:.]/g, '-')}.loupe-trace`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Presets the form from the query string (names of the form fields). */
function applyQuery(): boolean {
  const q = new URLSearchParams(location.search);
  for (const [name, value] of q) {
    const field = form.elements.namedItem(name);
    if (field instanceof RadioNodeList) field.value = value;
    else if (field instanceof HTMLInputElement && field.type !== 'file') field.value = value;
  }
  return q.get('autoload') !== '0';
}

form.addEventListener('change', syncForm);
form.addEventListener('submit', (e) => {
  e.preventDefault();
  void load();
});
$('save-trace').addEventListener('click', () => void saveTrace());
const autoload = applyQuery();
syncForm();
if (autoload && formValue('source') === 'tiny-r1') void load();
else setStep('Choose a source and an SAE, then Load.', 'idle');
