/**
 * `Session`: one source, one SAE, a catalog and a steering plan → the readouts components draw.
 *
 *   const session = await Session.open({
 *     source: remoteTokenSource({ url, hook: { layer: 37 } }),
 *     sae: { source: 'Goodfire/DeepSeek-R1-SAE-l37', options: { subfolder: 'math' } },
 *   });
 *   session.on('token', (e) => draw(e.detail));
 *   const summary = await session.run({ messages: [{ role: 'user', content: 'What is 7 * 8?' }], maxNewTokens: 256 });
 *
 * One run at a time: `run` resets the readouts, streams tokens (a `token` event each) and
 * resolves with a summary whatever happened — done, cancelled (`cancel()`, or the request's
 * signal) or error (every token received before the failure is kept). Status goes
 * idle/loading → ready → generating → done | cancelled | error, or 'unsupported' when the SAE
 * cannot run here (see backend.ts).
 */
import { SessionError, UnsupportedError } from '../errors.js';
import type { FeatureCatalog } from '../features/types.js';
import { loadSae, type LoadSaeOptions, type SaeFiles, type SaeSource } from '../runtime/load.js';
import { Sae } from '../runtime/sae.js';
import type { SteeringPlan } from '../steer/plan.js';
import { chooseBackend, probeSaeShape, type SaeShape } from './backend.js';
import { readoutsOf } from './encode.js';
import type { TokenSource } from './source.js';
import { ReadoutStore } from './store.js';
import { TraceSource, saeFingerprint, type TraceMeta } from './trace.js';
import type { ComparingSession, RunRequest, RunSummary, SessionEventMap, SessionStatus, SideBySide, TokenReadout } from './types.js';

export interface SessionOptions {
  readonly source: TokenSource;
  /** An SAE already loaded (the caller keeps ownership); or use `loadSae` / `Session.open`. */
  readonly sae?: Sae;
  readonly catalog?: FeatureCatalog;
  readonly steering?: SteeringPlan;
  /** Tokens per encode at most (default 256). */
  readonly maxBatch?: number;
}

/** An SAE to load: what `loadSae` takes. */
export interface SaeSpec {
  readonly source: SaeSource | { files: SaeFiles };
  readonly options?: LoadSaeOptions;
  /** Its name in trace headers (default: the source, when it is a URL or repo id). */
  readonly name?: string;
  /** dIn and dSae when known: skips reading the weights' header to size the CPU fallback. */
  readonly shape?: SaeShape;
}

export interface LoadOptions {
  /** WebGPU entry point (default navigator.gpu). */
  readonly gpu?: GPU;
  /** The CPU fallback's limit on dIn × dSae (default CPU_FALLBACK_MAX_WEIGHTS). */
  readonly cpuMaxWeights?: number;
}

type Listeners = { readonly [K in keyof SessionEventMap]?: (event: SessionEventMap[K]) => void };

export interface OpenSessionOptions extends Omit<SessionOptions, 'sae'>, LoadOptions {
  readonly sae?: SaeSpec | Sae;
  /** Listeners attached before loading starts, to see its `progress` and `status` events. */
  readonly on?: Listeners;
}

interface LastRun {
  readonly request: RunRequest;
  readonly plan: SteeringPlan | undefined;
  readonly summary: RunSummary;
}

const CANCELLED = (): DOMException => new DOMException('The run was cancelled.', 'AbortError');

function summarize(tokens: readonly TokenReadout[], status: RunSummary['status'], error: Error | undefined): RunSummary {
  let prompt = 0;
  let text = '';
  for (const t of tokens) {
    if (t.phase === 'prompt') prompt++;
    else text += t.text;
  }
  return { status, promptTokens: prompt, generatedTokens: tokens.length - prompt, text, ...(error !== undefined ? { error } : {}) };
}

function checkPlan(plan: SteeringPlan, dSae: number): void {
  const check = (feature: number, x: number, what: string): void => {
    if (!Number.isInteger(feature) || feature < 0 || (dSae > 0 && feature >= dSae)) {
      throw new SessionError(`Steering names feature ${String(feature)}; features run from 0 to ${dSae > 0 ? dSae - 1 : 'dSae − 1'}.`);
    }
    if (!Number.isFinite(x)) throw new SessionError(`Steering feature ${feature} has ${what} ${String(x)}; it must be a finite number.`);
  };
  for (const p of plan.push ?? []) check(p.feature, p.strength, 'strength');
  for (const c of plan.clamp ?? []) check(c.feature, c.value, 'clamp value');
  const s = plan.start;
  if (s !== undefined && s !== 'after-prefix' && s !== 'answer' && !(Number.isInteger(s) && s >= 0)) {
    throw new SessionError(`Steering start must be a position (integer ≥ 0), 'after-prefix' or 'answer'; got ${JSON.stringify(s)}.`);
  }
}

export class Session extends EventTarget implements ComparingSession {
  readonly #source: TokenSource;
  readonly #store: ReadoutStore;
  readonly #maxBatch: number | undefined;
  #baseline: ReadoutStore | undefined;
  #sae: Sae | undefined;
  #ownsSae = false;
  #saeName: string | undefined;
  #catalog: FeatureCatalog | undefined;
  #steering: SteeringPlan | undefined;
  #status: SessionStatus;
  #message: string | undefined;
  #busy = false;
  #controller: AbortController | undefined;
  #cancelRequested = false;
  #last: LastRun | undefined;

  constructor(options: SessionOptions) {
    super();
    this.#source = options.source;
    this.#catalog = options.catalog;
    this.#maxBatch = options.maxBatch;
    this.#store = new ReadoutStore();
    if (options.sae !== undefined) this.#adopt(options.sae, false, undefined);
    else this.#store.reset(options.source.info?.dSae ?? 0);
    // A replayed trace shows the plan it was recorded with.
    const recorded = options.source instanceof TraceSource ? (options.source.header.steering ?? undefined) : undefined;
    const plan = options.steering ?? recorded;
    if (plan !== undefined) {
      this.#checkSteering(plan);
      this.#steering = plan;
    }
    this.#status = this.#sae !== undefined || !options.source.needsSae ? 'ready' : 'idle';
  }

  /**
   * A Session with its SAE loaded: on WebGPU when the page has it (on the source's device when
   * the source has one), else on the CPU when small enough, else status 'unsupported' with the
   * reason in `message`. Resolves once loading has finished; rejects if it failed.
   */
  static async open(options: OpenSessionOptions): Promise<Session> {
    const { sae, on, gpu, cpuMaxWeights, ...rest } = options;
    const session = new Session(sae instanceof Sae ? { ...rest, sae } : rest);
    for (const [type, listener] of Object.entries(on ?? {}) as Array<[keyof SessionEventMap, (e: Event) => void]>) session.addEventListener(type, listener);
    if (sae !== undefined && !(sae instanceof Sae)) await session.loadSae(sae, { ...(gpu !== undefined ? { gpu } : {}), ...(cpuMaxWeights !== undefined ? { cpuMaxWeights } : {}) });
    return session;
  }

  get status(): SessionStatus {
    return this.#status;
  }

  get message(): string | undefined {
    return this.#message;
  }

  get readouts(): ReadoutStore {
    return this.#store;
  }

  get baseline(): ReadoutStore | undefined {
    return this.#baseline;
  }

  get catalog(): FeatureCatalog | undefined {
    return this.#catalog;
  }

  set catalog(catalog: FeatureCatalog | undefined) {
    this.#catalog = catalog;
  }

  get steering(): SteeringPlan | undefined {
    return this.#steering;
  }

  get sae(): Sae | undefined {
    return this.#sae;
  }

  get source(): TokenSource {
    return this.#source;
  }

  /** Adds a typed listener; returns the function that removes it. */
  on<K extends keyof SessionEventMap>(type: K, listener: (event: SessionEventMap[K]) => void): () => void {
    const fn = (e: Event): void => listener(e as SessionEventMap[K]);
    this.addEventListener(type, fn);
    return () => this.removeEventListener(type, fn);
  }

  #emit<K extends keyof SessionEventMap>(type: K, detail: SessionEventMap[K]['detail']): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setStatus(status: SessionStatus, message?: string): void {
    this.#status = status;
    this.#message = message;
    this.#emit('status', message !== undefined ? { status, message } : { status });
  }

  #dSae(): number {
    return this.#sae?.config.dSae ?? this.#source.info?.dSae ?? 0;
  }

  #adopt(sae: Sae, owned: boolean, name: string | undefined): void {
    const info = this.#source.info;
    if (info?.dSae !== undefined && info.dSae !== sae.config.dSae) {
      throw new SessionError(`The source's codes come from an SAE with dSae ${info.dSae}, but this SAE has ${sae.config.dSae}: they disagree.`);
    }
    if (info !== undefined && info.dIn !== sae.config.dIn) {
      throw new SessionError(`The source streams ${info.hookpoint} of ${info.model} with dIn ${info.dIn}, but the SAE reads dIn ${sae.config.dIn}: pick the SAE for this model and hookpoint.`);
    }
    if (this.#ownsSae && this.#sae !== sae) this.#sae?.destroy();
    this.#sae = sae;
    this.#ownsSae = owned;
    this.#saeName = name;
    if (this.#store.dSae !== sae.config.dSae) {
      this.#store.reset(sae.config.dSae);
      this.#emit('reset', undefined);
    }
  }

  #checkSteering(plan: SteeringPlan): void {
    checkPlan(plan, this.#dSae());
    if ((plan.clamp?.length ?? 0) > 0 && !this.#source.canClamp) {
      throw new UnsupportedError(`The ${this.#source.kind} source cannot clamp features; use push (additive) steering, or a remote source, which clamps by projection.`);
    }
  }

  /**
   * Loads an SAE for this session (replacing one it loaded before): status 'loading' with
   * `progress` events, then 'ready' — or 'unsupported' (resolved, with the reason in `message`)
   * when there is no WebGPU and the SAE is too large for the CPU. Rejects (status 'error') when
   * loading fails.
   */
  async loadSae(spec: SaeSpec, options: LoadOptions = {}): Promise<SessionStatus> {
    if (this.#busy) throw new SessionError('A run is in progress; cancel() it or wait for it to finish before loading another SAE.');
    this.#busy = true;
    this.#setStatus('loading');
    try {
      const device = this.#source.device;
      const decision = await chooseBackend(spec.shape ?? (() => probeSaeShape(spec.source, spec.options)), {
        ...(options.gpu !== undefined ? { gpu: options.gpu } : {}),
        ...(device !== undefined ? { device } : {}),
        ...(options.cpuMaxWeights !== undefined ? { cpuMaxWeights: options.cpuMaxWeights } : {}),
      });
      if (decision.backend === 'unsupported') {
        this.#setStatus('unsupported', decision.reason);
        return 'unsupported';
      }
      const onProgress = spec.options?.onProgress;
      const sae = await loadSae(spec.source, {
        ...spec.options,
        backend: decision.backend,
        ...(device !== undefined ? { device } : {}),
        ...(options.gpu !== undefined ? { gpu: options.gpu } : {}),
        onProgress: (p) => {
          onProgress?.(p);
          this.#emit('progress', { item: p.file, loaded: p.loaded, total: p.total });
        },
      });
      const name = spec.name ?? (typeof spec.source === 'string' || spec.source instanceof URL ? String(spec.source) : undefined);
      try {
        this.#adopt(sae, true, name);
      } catch (err) {
        sae.destroy();
        throw err;
      }
      if (this.#steering !== undefined) checkPlan(this.#steering, sae.config.dSae);
      this.#setStatus('ready');
      return 'ready';
    } catch (err) {
      this.#setStatus('error', err instanceof Error ? err.message : String(err));
      throw err;
    } finally {
      this.#busy = false;
    }
  }

  /** Sets the plan for the next runs (undefined: none) and dispatches `steering`. */
  setSteering(plan: SteeringPlan | undefined): void {
    if (plan !== undefined) this.#checkSteering(plan);
    this.#steering = plan;
    this.#emit('steering', plan);
  }

  #assertCanRun(request: { readonly maxNewTokens: number; readonly messages: RunRequest['messages'] }): void {
    if (this.#busy) {
      throw new SessionError(this.#status === 'loading' ? 'The SAE is still loading; wait for status "ready".' : 'A run is in progress; cancel() it or wait for it to finish before starting another.');
    }
    if (this.#status === 'unsupported') throw new SessionError(`This session cannot run: ${this.#message ?? 'the SAE is not supported here'}.`);
    if (this.#source.needsSae && this.#sae === undefined) throw new SessionError(`The ${this.#source.kind} source needs an SAE; load one first (session.loadSae or Session.open).`);
    if (this.#sae?.destroyed === true) throw new SessionError('The SAE of this session was destroyed; load another.');
    if (!Number.isInteger(request.maxNewTokens) || request.maxNewTokens < 0) throw new SessionError(`maxNewTokens must be a non-negative integer, got ${String(request.maxNewTokens)}.`);
    if (!Array.isArray(request.messages)) throw new SessionError('A run needs messages: [{ role, content }, …].');
  }

  /** One generation into `store`; never rejects (failures end up in the summary). */
  async #generate(request: RunRequest, plan: SteeringPlan | undefined, store: ReadoutStore, event: 'token' | 'baseline-token'): Promise<RunSummary> {
    const controller = new AbortController();
    this.#controller = controller;
    const outer = request.signal;
    const onOuter = (): void => controller.abort(outer?.reason);
    if (outer?.aborted === true || this.#cancelRequested) controller.abort(outer?.reason ?? CANCELLED());
    else outer?.addEventListener('abort', onOuter, { once: true });
    const signal = controller.signal;
    store.reset(this.#dSae());
    if (event === 'token') this.#emit('reset', undefined);
    this.#setStatus('generating');
    let error: Error | undefined;
    const tokens = this.#source.generate({ messages: request.messages, maxNewTokens: request.maxNewTokens, steering: plan, sae: this.#sae, signal });
    const it = readoutsOf(tokens, { sae: this.#sae, signal, ...(this.#maxBatch !== undefined ? { maxBatch: this.#maxBatch } : {}) });
    const aborted = new Promise<'aborted'>((ok) => {
      if (signal.aborted) ok('aborted');
      else signal.addEventListener('abort', () => ok('aborted'), { once: true });
    });
    let finished = false;
    try {
      for (;;) {
        const next = it.next();
        next.catch(() => undefined); // settles after an abort, unobserved
        const r = await Promise.race([next, aborted]);
        if (r === 'aborted') break;
        if (r.done === true) {
          finished = true;
          break;
        }
        // A cancel() from a token listener stops before the next token is stored.
        if (signal.aborted) break;
        store.append(r.value);
        this.#emit(event, r.value);
      }
    } catch (err) {
      finished = true;
      if (!signal.aborted) error = err instanceof Error ? err : new Error(String(err));
    } finally {
      outer?.removeEventListener('abort', onOuter);
      if (!finished) void it.return(undefined).catch(() => undefined);
      if (this.#controller === controller) this.#controller = undefined;
    }
    const status: RunSummary['status'] = signal.aborted ? 'cancelled' : error !== undefined ? 'error' : 'done';
    this.#setStatus(status, error?.message);
    return summarize(store.tokens, status, error);
  }

  /** Resets the readouts and generates; rejects only when a run cannot start (SessionError). */
  run(request: RunRequest): Promise<RunSummary> {
    try {
      this.#assertCanRun(request);
      if (request.steering !== undefined && request.steering !== null) this.#checkSteering(request.steering);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#busy = true;
    this.#cancelRequested = false;
    const plan = request.steering === undefined ? this.#steering : (request.steering ?? undefined);
    return this.#generate(request, plan, this.#store, 'token')
      .then((summary) => {
        this.#last = { request, plan, summary };
        return summary;
      })
      .finally(() => {
        this.#busy = false;
      });
  }

  /**
   * The current plan's run into `readouts`, then the same request unsteered into `baseline`
   * (`baseline-token` events). When the steered run does not finish ('cancelled' or 'error'),
   * the baseline is not run and reported as cancelled with no tokens.
   */
  sideBySide(request: Omit<RunRequest, 'steering'>): Promise<SideBySide> {
    try {
      this.#assertCanRun(request);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#busy = true;
    this.#cancelRequested = false;
    const plan = this.#steering;
    const go = async (): Promise<SideBySide> => {
      const steered = await this.#generate(request, plan, this.#store, 'token');
      this.#last = { request, plan, summary: steered };
      if (steered.status !== 'done' || this.#cancelRequested) {
        return { steered, baseline: { status: 'cancelled', promptTokens: 0, generatedTokens: 0, text: '' } };
      }
      this.#baseline ??= new ReadoutStore(this.#dSae());
      const baseline = await this.#generate({ ...request, steering: null }, undefined, this.#baseline, 'baseline-token');
      return { steered, baseline };
    };
    return go().finally(() => {
      this.#busy = false;
    });
  }

  /** Stops the run in progress: no token is stored after this returns; the source is aborted. */
  cancel(): void {
    if (!this.#busy || this.#status === 'loading') return;
    this.#cancelRequested = true;
    this.#controller?.abort(CANCELLED());
  }

  /** What a trace of the last run records about it (see recordTrace). */
  async traceMeta(): Promise<TraceMeta> {
    const source = this.#source;
    const last = this.#last;
    const common: TraceMeta = {
      ...(last !== undefined ? { messages: last.request.messages, steering: last.plan ?? null, maxNewTokens: last.request.maxNewTokens, status: last.summary.status } : {}),
      ...(last?.summary.error !== undefined ? { message: last.summary.error.message } : {}),
    };
    if (source instanceof TraceSource) {
      // Re-recording a replay gives the file it came from.
      const h = source.header;
      const end = source.end;
      return {
        model: h.model,
        hookpoint: h.hookpoint,
        dIn: h.dIn,
        sae: h.sae,
        messages: h.messages,
        steering: h.steering,
        ...(h.maxNewTokens !== undefined ? { maxNewTokens: h.maxNewTokens } : {}),
        ...(h.source !== undefined ? { source: h.source } : {}),
        ...(h.createdAt !== undefined ? { createdAt: h.createdAt } : {}),
        ...(end !== undefined ? { status: end.status, ...(end.message !== undefined ? { message: end.message } : {}) } : {}),
      };
    }
    const sae = this.#sae;
    const info = source.info;
    const hash = sae !== undefined && !sae.destroyed ? await saeFingerprint(sae) : undefined;
    const hookpoint = info?.hookpoint ?? sae?.config.hookpoint;
    const dIn = info?.dIn ?? sae?.config.dIn;
    const model = info?.model ?? sae?.config.model;
    return {
      ...common,
      ...(model !== undefined ? { model } : {}),
      ...(hookpoint !== undefined ? { hookpoint } : {}),
      ...(dIn !== undefined ? { dIn } : {}),
      source: source.kind,
      ...(sae !== undefined
        ? {
            sae: {
              ...(this.#saeName !== undefined ? { name: this.#saeName } : {}),
              ...(hash !== undefined ? { hash } : {}),
              format: sae.config.format,
              architecture: sae.config.architecture,
              ...(sae.config.k !== undefined ? { k: sae.config.k } : {}),
            },
          }
        : {}),
    };
  }

  /** Cancels any run, frees an SAE this session loaded and what the source holds. */
  async destroy(): Promise<void> {
    this.cancel();
    if (this.#ownsSae) this.#sae?.destroy();
    this.#sae = undefined;
    await this.#source.destroy?.();
  }
}
