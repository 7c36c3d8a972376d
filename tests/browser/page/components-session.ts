/**
 * A scripted session and a catalog over Tiny-R1's tables, for the component tests' page and the
 * render benchmark's: the session replays Tiny-R1 sequences into a real ReadoutStore (the
 * Session's own store) and records what the elements asked of it; the catalog answers labels,
 * search, examples and the feature map from the shipped files.
 */
import type { ExampleQuery, FeatureCatalog, FeatureExample, FeatureLabel } from '../../../src/features/types.js';
import { ReadoutStore } from '../../../src/session/store.js';
import type { ComparingSession, Readouts, RunRequest, RunSummary, SessionStatus, SideBySide, TokenReadout } from '../../../src/session/types.js';
import type { SteeringPlan } from '../../../src/steer/plan.js';
import { examplesOf, TINY_R1_D_SAE, type TinyR1Tables } from './components-data.js';

/** A catalog over Tiny-R1's tables; `gate` lets a test hold an `examples()` call open. */
export class TablesCatalog implements FeatureCatalog {
  readonly size = TINY_R1_D_SAE;
  readonly map: Float32Array;
  readonly calls: Array<{ featureId: number; signal: AbortSignal | undefined }> = [];
  gate: ((featureId: number, signal: AbortSignal | undefined) => Promise<void>) | undefined;
  fail: ((featureId: number) => Error | undefined) | undefined;
  readonly #labels = new Map<number, FeatureLabel>();

  constructor(
    readonly tables: TinyR1Tables,
    labels: readonly FeatureLabel[] = tables.labels,
  ) {
    for (const l of labels) this.#labels.set(l.featureId, l);
    this.map = Float32Array.from(tables.map);
  }

  label(featureId: number): FeatureLabel | undefined {
    return this.#labels.get(featureId);
  }

  setLabel(label: FeatureLabel): void {
    this.#labels.set(label.featureId, label);
  }

  search(query: string, limit = 10): FeatureLabel[] {
    const q = query.toLowerCase();
    return [...this.#labels.values()]
      .filter((l) => l.label.toLowerCase().includes(q))
      .sort((a, b) => Number(b.label.toLowerCase().startsWith(q)) - Number(a.label.toLowerCase().startsWith(q)) || (b.quality ?? 0) - (a.quality ?? 0) || a.featureId - b.featureId)
      .slice(0, limit);
  }

  async examples(featureId: number, query: ExampleQuery = {}): Promise<FeatureExample[]> {
    this.calls.push({ featureId, signal: query.signal });
    await this.gate?.(featureId, query.signal);
    const err = this.fail?.(featureId);
    if (err !== undefined) throw err;
    return examplesOf(this.tables, featureId, query.limit ?? 10, query.window ?? 5);
  }
}

/** A session that replays Tiny-R1 sequences into a real ReadoutStore and records what it was asked. */
export class ScriptedSession extends EventTarget implements ComparingSession {
  status: SessionStatus = 'ready';
  message: string | undefined;
  readonly readouts = new ReadoutStore(TINY_R1_D_SAE);
  baseline: Readouts | undefined;
  steering: SteeringPlan | undefined;
  readonly calls = { setSteering: [] as Array<SteeringPlan | undefined>, run: [] as RunRequest[], sideBySide: [] as Array<Omit<RunRequest, 'steering'>>, cancel: 0 };
  /** What `run` replays; `sideBySide` replays `script` steered and `baselineScript` unsteered. */
  script: TokenReadout[] = [];
  baselineScript: TokenReadout[] = [];
  /** Milliseconds between replayed tokens (0: a macrotask each). */
  delayMs = 0;
  #cancelled = false;

  constructor(readonly catalog: FeatureCatalog | undefined) {
    super();
  }

  setStatus(status: SessionStatus, message?: string): void {
    this.status = status;
    this.message = message;
    this.dispatchEvent(new CustomEvent('status', { detail: message === undefined ? { status } : { status, message } }));
  }

  append(t: TokenReadout): void {
    this.readouts.append(t);
    this.dispatchEvent(new CustomEvent('token', { detail: t }));
  }

  appendAll(tokens: readonly TokenReadout[]): void {
    for (const t of tokens) this.append(t);
  }

  clear(): void {
    this.readouts.reset();
    this.dispatchEvent(new CustomEvent('reset', { detail: undefined }));
  }

  setSteering(plan: SteeringPlan | undefined): void {
    this.calls.setSteering.push(plan);
    this.steering = plan;
    this.dispatchEvent(new CustomEvent('steering', { detail: plan }));
  }

  async #replay(tokens: readonly TokenReadout[], steered: boolean): Promise<RunSummary> {
    this.#cancelled = false;
    this.clear();
    this.setStatus('generating');
    let generated = 0;
    let text = '';
    for (const t of tokens) {
      if (this.#cancelled) break;
      await new Promise((r) => setTimeout(r, this.delayMs));
      this.append({ ...t, steered: steered && t.phase !== 'prompt' });
      if (t.phase !== 'prompt') {
        generated++;
        text += t.text;
      }
    }
    const status = this.#cancelled ? 'cancelled' : 'done';
    this.setStatus(status);
    return { status, promptTokens: tokens.filter((t) => t.phase === 'prompt').length, generatedTokens: generated, text };
  }

  async run(request: RunRequest): Promise<RunSummary> {
    this.calls.run.push(request);
    return this.#replay(this.script, request.steering !== null && (request.steering ?? this.steering) !== undefined);
  }

  async sideBySide(request: Omit<RunRequest, 'steering'>): Promise<SideBySide> {
    this.calls.sideBySide.push(request);
    const steered = await this.#replay(this.script, true);
    // The baseline goes to its own store, announced by `baseline-token` events (the Session's contract).
    const store = new ReadoutStore(TINY_R1_D_SAE);
    this.baseline = store;
    this.setStatus('generating');
    for (const t of this.baselineScript) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      store.append(t);
      this.dispatchEvent(new CustomEvent('baseline-token', { detail: t }));
    }
    this.setStatus('done');
    const text = this.baselineScript.filter((t) => t.phase !== 'prompt').map((t) => t.text).join('');
    return {
      steered,
      baseline: { status: 'done', promptTokens: this.baselineScript.filter((t) => t.phase === 'prompt').length, generatedTokens: this.baselineScript.filter((t) => t.phase !== 'prompt').length, text },
    };
  }

  cancel(): void {
    this.calls.cancel++;
    this.#cancelled = true;
  }
}
