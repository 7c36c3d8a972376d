/**
 * `LocalModelSource`: a transformers.js text-generation model (Qwen2 / Llama families, e.g.
 * DeepSeek-R1-Distill-Qwen-1.5B) running in the page, tapped and steered through an ONNX graph
 * edit (formats/onnx/tap.ts): the hook tensor becomes the graph output `loupe_hook`, and the
 * graph input `loupe_steer` is added to it before anything downstream reads it.
 *
 * How it plugs into transformers.js without forking it:
 * - the model file is fetched through `env.fetch`, edited, and handed back (weights untouched);
 * - onnxruntime-web's `InferenceSession.create` is wrapped so `loupe_hook` stays on the GPU
 *   (`preferredOutputLocation`; transformers.js overwrites the option for the KV cache, so the
 *   wrapper merges it back in);
 * - the session hides `loupe_steer` from transformers.js' input check and its `run` feeds the
 *   current steering vector on every step — a plan change takes effect on the next token, no
 *   session rebuild — and takes `loupe_hook` out of the outputs: on WebGPU it is onnxruntime's
 *   own GPU buffer, bound straight into the SAE kernels on onnxruntime's device (`gpuDevice`), so
 *   the hook tensor is never read back to the CPU on the hot path.
 * A token's activation is computed when it is fed to the model, so every generated token but a
 * final end-of-sequence one carries codes: `generate` asks for one token more than `maxNewTokens`
 * and drops it.
 */
import { OnnxGraphError, UnsupportedError } from '../errors.js';
import { tapAndSteer, type OnnxSite, type TapResult } from '../formats/onnx/tap.js';
import { cachedFetch } from '../io/cache.js';
import type { SparseCodes } from '../sae/codes.js';
import { tokenCodes } from '../sae/codes.js';
import { f16ToF32, f32ToF16 } from '../sae/dtype.js';
import type { Sae } from '../runtime/sae.js';
import { ResponsePrefixDetector } from '../steer/prefix.js';
import { ActivationWidener } from './activation-ring.js';
import type { Phase } from './frames.js';
import type { SteeringStart } from './remote.js';

/** The parts of onnxruntime-web's API this module touches. */
interface OrtTensor {
  readonly location: string;
  readonly dims: readonly number[];
  readonly type: string;
  readonly gpuBuffer?: GPUBuffer;
  readonly data?: unknown;
  getData?(release?: boolean): Promise<unknown>;
  dispose(): void;
}
interface OrtSession {
  readonly inputNames: readonly string[];
  run(feeds: Record<string, unknown>, ...rest: unknown[]): Promise<Record<string, OrtTensor>>;
}
interface OrtModule {
  readonly Tensor: new (type: string, data: Float32Array | Uint16Array, dims: readonly number[]) => OrtTensor;
  readonly InferenceSession: { create: (model: unknown, options?: Record<string, unknown>) => Promise<OrtSession> };
  readonly env: { webgpu: { device?: GPUDevice | Promise<GPUDevice> }; wasm: { wasmPaths?: unknown } };
}
/** The parts of transformers.js this module touches. */
interface TjsTokenizer {
  apply_chat_template(messages: ReadonlyArray<{ role: string; content: string }>, options: Record<string, unknown>): unknown;
  decode(ids: readonly number[], options?: Record<string, unknown>): string;
  encode(text: string, options?: Record<string, unknown>): number[];
  convert_tokens_to_ids(tokens: string[]): Array<number | undefined | null>;
  readonly eos_token_id?: number;
}
interface TjsModel {
  readonly sessions: Record<string, OrtSession>;
  generate(options: Record<string, unknown>): Promise<unknown>;
  dispose?(): Promise<unknown>;
}
interface TjsModule {
  env: { fetch: (input: string | URL, init?: unknown) => Promise<Response>; remoteHost: string; useBrowserCache: boolean; allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string; backends: { onnx: { wasm: { wasmPaths?: unknown } } } };
  AutoTokenizer: { from_pretrained(id: string, options?: Record<string, unknown>): Promise<TjsTokenizer> };
  AutoModelForCausalLM: { from_pretrained(id: string, options?: Record<string, unknown>): Promise<TjsModel> };
  InterruptableStoppingCriteria: new () => { interrupt(): void };
}

export interface LocalModelSourceOptions {
  /** transformers.js model id or folder under `localModelPath` (default the R1 distill). */
  readonly model?: string;
  readonly layer: number;
  readonly site?: OnnxSite;
  /** 'webgpu' (default where available) or 'wasm'. */
  readonly device?: 'webgpu' | 'wasm';
  /** transformers.js dtype (file suffix): 'fp32', 'fp16', 'q4f16' (default for the R1 distill). */
  readonly dtype?: string;
  /** Hub to download from (transformers.js `env.remoteHost`; default https://huggingface.co/): a mirror. */
  readonly remoteHost?: string;
  /** Serve models from here only (no network): sets env.allowRemoteModels = false. */
  readonly localModelPath?: string;
  /** Where onnxruntime-web's .wasm files are served (offline pages must serve them locally). */
  readonly wasmPaths?: string;
  readonly onProgress?: (p: { file: string; loaded: number; total: number | undefined }) => void;
  /**
   * Keep files fetched from another origin (the Hugging Face Hub) in the browser's Cache Storage,
   * unedited, so a reload does not download the model again (default true). transformers.js'
   * own browser cache is off while loading: it would store the edited graph.
   */
  readonly cache?: boolean;
  /**
   * false (default): the SAE binds onnxruntime's output buffer itself (zero copy) and the model
   * waits for the codes. true: the hook is copied GPU→GPU into a Loupe buffer and encoded while
   * the model computes the next token — for GPUs that overlap queues; on SwiftShader it measured
   * no faster (bench/results/*-local-overhead-*).
   */
  readonly overlap?: boolean;
}

export interface LocalFrame {
  readonly position: number;
  readonly tokenId: number;
  readonly text: string;
  readonly phase: Phase;
  readonly steered: boolean;
  /** This token's SAE codes (an attached SAE), computed on the model's own GPU buffer. */
  readonly codes?: SparseCodes;
}

export interface LocalSteering {
  /** Model-space vector added at the site (e.g. steer/plan.ts pushVector). */
  readonly vector: Float32Array;
  readonly start?: SteeringStart;
}

export const DEFAULT_LOCAL_MODEL = 'onnx-community/DeepSeek-R1-Distill-Qwen-1.5B-ONNX';

/** Spy points for tests: how often the hook tensor was read back to the CPU. */
export interface HookStats {
  /** Hook tensors read back to the CPU (fp16 or wasm hooks only). */
  readbacks: number;
  /** Hooks encoded from onnxruntime's own GPU buffer (overlap: false). */
  gpuHooks: number;
  /** Hooks copied GPU→GPU into a Loupe buffer and encoded from there (overlap: true). */
  gpuSnapshots: number;
  cpuHooks: number;
}

export class LocalModelSource {
  readonly tap: TapResult['hook'];
  readonly stats: HookStats = { readbacks: 0, gpuHooks: 0, gpuSnapshots: 0, cpuHooks: 0 };
  /** See LocalModelSourceOptions.overlap; may change between generations. */
  overlap: boolean;
  /** Free GPU snapshot buffers (overlap mode), reused across steps. */
  readonly #spare: GPUBuffer[] = [];
  #widener: ActivationWidener | undefined;
  #sae: Sae | undefined;
  #steering: LocalSteering | undefined;
  #steerStart: number | undefined;
  #zeros: OrtTensor;
  #steerTensor: OrtTensor;
  /** Called by the wrapped session for every step's hook tensor (set while generating). */
  #onStep: ((inputIds: readonly number[], hook: OrtTensor) => Promise<void> | void) | undefined;

  private constructor(
    readonly tokenizer: TjsTokenizer,
    readonly model: TjsModel,
    readonly gpuDevice: GPUDevice | undefined,
    private readonly ort: OrtModule,
    private readonly tjs: TjsModule,
    tap: TapResult['hook'],
    private readonly session: OrtSession,
    overlap: boolean,
  ) {
    this.tap = tap;
    this.overlap = overlap;
    this.#zeros = this.#tensor(new Float32Array(tap.dIn));
    this.#steerTensor = this.#zeros;
  }

  static async load(options: LocalModelSourceOptions): Promise<LocalModelSource> {
    // Loaded on demand: pages that only read remote streams never download the model runtime.
    const tjs = (await import('@huggingface/transformers')) as unknown as TjsModule;
    const ort = (await import('onnxruntime-web/webgpu')) as unknown as OrtModule;
    const id = options.model ?? DEFAULT_LOCAL_MODEL;
    if (options.localModelPath !== undefined) {
      tjs.env.allowRemoteModels = false;
      tjs.env.allowLocalModels = true;
      tjs.env.localModelPath = options.localModelPath;
    }
    if (options.wasmPaths !== undefined) tjs.env.backends.onnx.wasm.wasmPaths = options.wasmPaths;
    if (options.remoteHost !== undefined) tjs.env.remoteHost = options.remoteHost;
    const gpu = (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
    const device = options.device ?? (gpu !== undefined ? 'webgpu' : 'wasm');

    // 1. the graph edit, applied to the model file as transformers.js fetches it. transformers.js'
    // own browser cache would store (and later serve, past this hook) the edited file, so it is
    // off while loading; caching the original weights is the caller's (Loupe's Cache Storage) job.
    let tap: TapResult | undefined;
    const browserCache = tjs.env.useBrowserCache;
    tjs.env.useBrowserCache = false;
    const baseFetch = tjs.env.fetch;
    const cacheRemote = options.cache ?? true;
    const pageOrigin = (globalThis as { location?: { origin?: string } }).location?.origin;
    tjs.env.fetch = async (input, init) => {
      const url = String(input instanceof URL ? input.href : input);
      // Same-origin files (an embedded model) are the host's to cache; remote ones are kept here.
      const remote = pageOrigin !== undefined && /^https?:/.test(url) && new URL(url, pageOrigin).origin !== pageOrigin;
      const res = await cachedFetch(url, (u) => baseFetch(u, init), cacheRemote && remote);
      if (!/\/onnx\/[^/]*\.onnx(\?|$)/.test(url) || !res.ok) return res;
      const bytes = new Uint8Array(await res.arrayBuffer());
      tap = tapAndSteer(bytes, { layer: options.layer, site: options.site ?? 'resid_post' });
      return new Response(tap.model as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-type': 'application/octet-stream' } });
    };

    // 2. keep loupe_hook on the GPU: merged into whatever transformers.js asks for
    const create = ort.InferenceSession.create;
    ort.InferenceSession.create = (model, sessionOptions = {}) => {
      if (device !== 'webgpu') return create.call(ort.InferenceSession, model, sessionOptions);
      const preferred = sessionOptions['preferredOutputLocation'];
      const merged = typeof preferred === 'object' && preferred !== null ? { ...preferred, loupe_hook: 'gpu-buffer' } : { loupe_hook: 'gpu-buffer' };
      return create.call(ort.InferenceSession, model, { ...sessionOptions, preferredOutputLocation: merged });
    };
    let tokenizer: TjsTokenizer;
    let model: TjsModel;
    try {
      const progress = options.onProgress;
      const progress_callback = progress
        ? (p: { status?: string; file?: string; loaded?: number; total?: number }) => {
            if (p.status === 'progress' && p.file !== undefined) progress({ file: p.file, loaded: p.loaded ?? 0, total: p.total });
          }
        : undefined;
      tokenizer = await tjs.AutoTokenizer.from_pretrained(id);
      model = await tjs.AutoModelForCausalLM.from_pretrained(id, { device, ...(options.dtype !== undefined ? { dtype: options.dtype } : {}), ...(progress_callback ? { progress_callback } : {}) });
    } finally {
      tjs.env.useBrowserCache = browserCache;
      tjs.env.fetch = baseFetch;
      ort.InferenceSession.create = create;
    }
    if (tap === undefined) throw new OnnxGraphError(`transformers.js loaded ${id} without fetching an .onnx file through env.fetch; the graph could not be edited.`);
    const session = model.sessions['model'] ?? Object.values(model.sessions)[0];
    if (session === undefined) throw new UnsupportedError(`${id} has no ONNX session Loupe can tap.`);
    let gpuDevice: GPUDevice | undefined;
    if (device === 'webgpu') gpuDevice = await ort.env.webgpu.device;
    const source = new LocalModelSource(tokenizer, model, gpuDevice, ort, tjs, tap.hook, session, options.overlap ?? false);
    source.#wrap();
    return source;
  }

  #tensor(v: Float32Array): OrtTensor {
    const dims = [1, 1, this.tap.dIn];
    if (this.tap.elemType === 10) return new this.ort.Tensor('float16', Uint16Array.from(v, f32ToF16), dims);
    return new this.ort.Tensor('float32', v, dims);
  }

  /** Hides loupe_steer from transformers.js' input check, feeds it on every run, takes loupe_hook out. */
  #wrap(): void {
    const session = this.session;
    const steerName = 'loupe_steer';
    const visible = session.inputNames.filter((n) => n !== steerName);
    Object.defineProperty(session, 'inputNames', { value: visible, configurable: true });
    const run = session.run.bind(session);
    session.run = async (feeds, ...rest) => {
      const out = await run({ ...feeds, [steerName]: this.#steerTensor }, ...rest);
      const hook = out[this.tap.name];
      delete out[this.tap.name];
      if (hook === undefined) return out;
      const ids = feeds['input_ids'] as { data?: ArrayLike<bigint | number> } | undefined;
      const tokens = Array.from(ids?.data ?? [], (x) => Number(x));
      try {
        await this.#onStep?.(tokens, hook);
      } finally {
        hook.dispose();
      }
      return out;
    };
  }

  /** The SAE whose codes each frame carries; on WebGPU it must live on `gpuDevice`. */
  attach(sae: Sae | undefined): void {
    if (sae !== undefined && sae.config.dIn !== this.tap.dIn) {
      throw new UnsupportedError(`The SAE reads dIn ${sae.config.dIn}, but the tapped tensor has ${this.tap.dIn}.`);
    }
    if (sae !== undefined && this.gpuDevice !== undefined && sae.device !== undefined && sae.device !== this.gpuDevice) {
      throw new UnsupportedError("The SAE must run on the model's own GPU device (source.gpuDevice) so it can bind the model's buffers.");
    }
    this.#sae = sae;
  }

  /** Steering from the next step on (undefined: none). Takes effect without rebuilding anything. */
  setSteering(steering: LocalSteering | undefined): void {
    if (steering !== undefined && steering.vector.length !== this.tap.dIn) {
      throw new UnsupportedError(`A steering vector needs ${this.tap.dIn} values, got ${steering.vector.length}.`);
    }
    this.#steering = steering;
    this.#steerStart = typeof steering?.start === 'number' ? steering.start : undefined;
  }

  /**
   * Starts the SAE on a step's hook and returns its codes' promise. Everything that touches the
   * hook tensor happens before this returns (the caller disposes it right after): in overlap mode
   * a GPU→GPU copy is submitted at once, so onnxruntime may reuse its buffer for the next step.
   */
  #startCodes(hook: OrtTensor, tokens: number): Promise<SparseCodes | undefined> {
    const sae = this.#sae;
    if (sae === undefined) return Promise.resolve(undefined);
    const device = this.gpuDevice;
    if (hook.location === 'gpu-buffer' && hook.gpuBuffer !== undefined && this.tap.elemType === 10 && device !== undefined) {
      // fp16 exports (q4f16): widened to f32 on the GPU, submitted before the hook is released
      this.stats.gpuHooks++;
      this.#widener ??= new ActivationWidener(device);
      return sae.encode(this.#widener.widen(hook.gpuBuffer, 'f16', this.tap.dIn, tokens), { tokens });
    }
    if (hook.location === 'gpu-buffer' && hook.gpuBuffer !== undefined && this.tap.elemType === 1 && device !== undefined) {
      if (!this.overlap) {
        this.stats.gpuHooks++;
        return sae.encode(hook.gpuBuffer, { tokens });
      }
      this.stats.gpuSnapshots++;
      const bytes = tokens * this.tap.dIn * 4;
      const i = this.#spare.findIndex((b) => b.size >= bytes);
      const snap = i >= 0 ? (this.#spare.splice(i, 1)[0] as GPUBuffer) : device.createBuffer({ label: 'loupe hook snapshot', size: Math.max(256, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      const enc = device.createCommandEncoder({ label: 'loupe hook snapshot' });
      enc.copyBufferToBuffer(hook.gpuBuffer, 0, snap, 0, bytes);
      device.queue.submit([enc.finish()]);
      return sae.encode(snap, { tokens }).finally(() => this.#spare.push(snap));
    }
    // CPU hook (wasm EP): the values are already on the CPU.
    this.stats.cpuHooks++;
    if (hook.location !== 'cpu') this.stats.readbacks++;
    const read = hook.location === 'cpu' ? Promise.resolve(hook.data) : (hook.getData?.() ?? Promise.resolve(undefined));
    return read.then((data) => {
      const x = data instanceof Float32Array ? data.slice() : data instanceof Uint16Array ? Float32Array.from(data, (b) => f16ToF32(b)) : undefined;
      if (x === undefined) throw new UnsupportedError(`Cannot read a ${hook.type} hook tensor.`);
      return sae.encode(x, { tokens });
    });
  }

  /**
   * Generates from chat messages (rendered with the model's chat template) and yields one frame
   * per prompt token and per generated token, with the SAE's codes when one is attached. A final
   * end-of-sequence token is never fed back to the model, so its frame has no codes.
   */
  async *generate(
    messages: ReadonlyArray<{ role: 'system' | 'user' | 'assistant'; content: string }>,
    options: { maxNewTokens: number; doSample?: boolean; signal?: AbortSignal } = { maxNewTokens: 64 },
  ): AsyncGenerator<LocalFrame> {
    const queue: LocalFrame[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    let failure: unknown;
    let output: unknown;
    const thinkEnd = this.tokenizer.convert_tokens_to_ids(['</think>'])[0] ?? undefined;
    let position = 0;
    let phase: Phase = 'prompt';
    const prefix = new ResponsePrefixDetector();
    const frameOf = (tokenId: number, p: number, codes: SparseCodes | undefined, steered: boolean): LocalFrame => ({
      position: p,
      tokenId,
      text: this.tokenizer.decode([tokenId], { skip_special_tokens: false }),
      phase,
      steered,
      ...(codes !== undefined ? { codes } : {}),
    });
    // Frames leave in order: each step's frames wait for that step's codes (and the previous step's).
    let ordered: Promise<void> = Promise.resolve();
    let codesFailure: unknown;
    this.#onStep = (ids, hook) => {
      const steered = this.#steerTensor !== this.#zeros;
      const codesPromise = this.#startCodes(hook, ids.length);
      const frames = ids.map((tokenId, k) => {
        const p = position + k;
        const frame = frameOf(tokenId, p, undefined, phase !== 'prompt' && steered);
        if (phase !== 'prompt') {
          if (tokenId === thinkEnd) phase = 'answer';
          // steering for the next step is decided now, from the tokens alone
          this.#updateSteering(p + 1, prefix.push(p, frame.text), phase);
        }
        return frame;
      });
      position += ids.length;
      if (phase === 'prompt') {
        phase = 'thinking'; // the chat template's generation prompt opens <think>
        this.#updateSteering(position, undefined, phase);
      }
      ordered = ordered
        .then(() => codesPromise)
        .then(
          (codes) => {
            frames.forEach((f, k) => queue.push(codes !== undefined ? { ...f, codes: sliceCodes(codes, k) } : f));
          },
          (e: unknown) => {
            codesFailure ??= e;
          },
        )
        .finally(() => wake?.());
      // Without overlap the model waits for the SAE: its buffer is bound directly.
      return this.overlap ? undefined : ordered;
    };
    const prompt = this.tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_dict: true }) as Record<string, unknown>;
    const interrupt = new this.tjs.InterruptableStoppingCriteria();
    const onAbort = (): void => interrupt.interrupt();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // One token more than asked: the last one is only sampled, never fed, so it has no activation.
    const run = this.model
      .generate({ ...prompt, max_new_tokens: options.maxNewTokens + 1, do_sample: options.doSample ?? false, stopping_criteria: interrupt })
      .then(
        (out) => {
          output = out;
        },
        (e: unknown) => {
          failure = e;
        },
      )
      .finally(() => {
        done = true;
        wake?.();
      });
    try {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (done) {
          await ordered;
          if (queue.length > 0) continue;
          break;
        }
        await new Promise<void>((ok) => (wake = ok));
        wake = undefined;
      }
      await run;
      options.signal?.throwIfAborted();
      if (failure !== undefined) throw failure;
      if (codesFailure !== undefined) throw codesFailure;
      // An end-of-sequence token ends generation before it is fed: emit it without codes.
      const ids = idsOf(output);
      const last = ids.at(-1);
      const eos = this.tokenizer.eos_token_id;
      if (last !== undefined && ids.length === position + 1 && last === eos) yield frameOf(last, position, undefined, false);
    } finally {
      interrupt.interrupt();
      options.signal?.removeEventListener('abort', onAbort);
      await run;
      this.#onStep = undefined;
      this.#steerTensor = this.#zeros;
      this.#steerStart = typeof this.#steering?.start === 'number' ? this.#steering.start : undefined;
    }
  }

  #updateSteering(nextPosition: number, prefixStart: number | undefined, phase: Phase): void {
    const s = this.#steering;
    if (s === undefined) {
      this.#steerTensor = this.#zeros;
      return;
    }
    const start = s.start ?? 'after-prefix';
    if (this.#steerStart === undefined) {
      if (start === 'after-prefix' && prefixStart !== undefined) this.#steerStart = prefixStart;
      if (start === 'answer' && phase === 'answer') this.#steerStart = nextPosition;
    }
    const on = this.#steerStart !== undefined && nextPosition >= this.#steerStart;
    if (on && this.#steerTensor === this.#zeros) this.#steerTensor = this.#tensor(s.vector);
    if (!on) this.#steerTensor = this.#zeros;
  }

  async dispose(): Promise<void> {
    for (const b of this.#spare.splice(0)) b.destroy();
    this.#widener?.destroy();
    await this.model.dispose?.();
  }
}

/** Token ids of a generate() result (a [1, n] int64 tensor). */
function idsOf(out: unknown): number[] {
  const data = (out as { data?: ArrayLike<bigint | number> } | undefined)?.data;
  return data === undefined ? [] : Array.from(data, (x) => Number(x));
}

/** Token t's codes as a one-token SparseCodes; a non-finite token stays flagged (as token 0). */
function sliceCodes(codes: SparseCodes, t: number): SparseCodes {
  const { indices, values } = tokenCodes(codes, t);
  const nonFiniteTokens = codes.nonFiniteTokens.includes(t) ? Uint32Array.of(0) : new Uint32Array(0);
  return { tokens: 1, offsets: Uint32Array.from([0, indices.length]), indices: Uint32Array.from(indices), values: Float32Array.from(values), nonFiniteTokens };
}
