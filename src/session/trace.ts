/**
 * Recorded runs: `recordTrace` writes a Session's (or any readouts') run as a trace file
 * (trace-format.ts, docs/session.md) and `TraceSource` replays one as a `TokenSource` — the
 * exact recorded readouts, optionally paced for demos — for offline demos, tests and sharing.
 *
 *   const bytes = await recordTrace(session);
 *   const replay = new Session({ source: await TraceSource.open(bytes, { tokensPerSecond: 20 }) });
 */
import { SessionError, TraceFormatError } from '../errors.js';
import type { Sae } from '../runtime/sae.js';
import type { SteeringPlan } from '../steer/plan.js';
import type { SourceInfo, SourceRun, SourceToken, TokenSource } from './source.js';
import { TRACE_MAJOR, TraceReader, encodeTrace, type TraceEnd, type TraceHeader, type TraceItem, type TraceSaeIdentity } from './trace-format.js';
import type { Readouts, RunRequest } from './types.js';
import { streamChunks } from '../io/stream-chunks.js';

export type TraceInput = Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | Response;

export interface TraceSourceOptions {
  /** Replay generated tokens at this rate (prompt tokens arrive at once, as from a server); default: as fast as read. */
  readonly tokensPerSecond?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((ok, fail) => {
    if (signal.aborted) {
      fail(signal.reason instanceof Error ? signal.reason : new DOMException('The replay was cancelled.', 'AbortError'));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      fail(signal.reason instanceof Error ? signal.reason : new DOMException('The replay was cancelled.', 'AbortError'));
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      ok();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Items of a trace read from `chunks`; throws TraceFormatError at the first damage (after the items before it). */
async function* itemsOf(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<TraceItem> {
  const reader = new TraceReader();
  for await (const chunk of chunks) yield* reader.push(chunk);
  reader.finish();
}

export class TraceSource implements TokenSource {
  readonly kind = 'trace';
  /** The trace carries its codes: no SAE needed to replay it. */
  readonly needsSae = false;
  /** Replay ignores steering (the recorded plan is in `header.steering`), so no plan is refused. */
  readonly canClamp = true;
  readonly header: TraceHeader;
  readonly #open: () => AsyncGenerator<TraceItem>;
  readonly #replayable: boolean;
  #first: AsyncGenerator<TraceItem> | undefined;
  #end: TraceEnd | undefined;
  readonly #tokensPerSecond: number | undefined;

  private constructor(header: TraceHeader, open: () => AsyncGenerator<TraceItem>, first: AsyncGenerator<TraceItem> | undefined, replayable: boolean, options: TraceSourceOptions) {
    this.header = header;
    this.#open = open;
    this.#first = first;
    this.#replayable = replayable;
    const tps = options.tokensPerSecond;
    if (tps !== undefined && !(tps > 0)) throw new SessionError(`tokensPerSecond must be a positive number, got ${String(tps)}.`);
    this.#tokensPerSecond = tps;
  }

  /**
   * A replayable trace from bytes in memory; the header is read now (TraceFormatError if it is
   * damaged), the tokens as they replay.
   */
  static fromBytes(input: Uint8Array | ArrayBuffer, options: TraceSourceOptions = {}): TraceSource {
    const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
    const reader = new TraceReader();
    const first = reader.push(bytes).next();
    if (first.done === true || first.value.kind !== 'header') {
      reader.finish();
      throw new TraceFormatError('The trace has no header.');
    }
    return new TraceSource(first.value.header, () => itemsOf([bytes]), undefined, true, options);
  }

  /**
   * Reads the trace's header (bytes and Blobs can be replayed any number of times; a stream or
   * Response is read as it replays, once). Throws TraceFormatError for a file that is not a
   * trace, of a newer major version, or with a damaged header.
   */
  static async open(input: TraceInput, options: TraceSourceOptions = {}): Promise<TraceSource> {
    let open: () => AsyncGenerator<TraceItem>;
    let replayable = true;
    if (input instanceof Uint8Array || input instanceof ArrayBuffer) return TraceSource.fromBytes(input, options);
    if (typeof Blob !== 'undefined' && input instanceof Blob) {
      open = () => itemsOf(streamChunks(input.stream()));
    } else if (typeof Response !== 'undefined' && input instanceof Response) {
      const body = input.body;
      if (body === null) throw new TraceFormatError('The trace response has no body.');
      open = () => itemsOf(streamChunks(body));
      replayable = false;
    } else {
      const stream = input as ReadableStream<Uint8Array>;
      open = () => itemsOf(streamChunks(stream));
      replayable = false;
    }
    const items = open();
    let first: IteratorResult<TraceItem>;
    try {
      first = await items.next();
    } catch (err) {
      await items.return(undefined).catch(() => undefined);
      throw err;
    }
    if (first.done === true || first.value.kind !== 'header') throw new TraceFormatError('The trace has no header.');
    return new TraceSource(first.value.header, open, items, replayable, options);
  }

  get info(): SourceInfo {
    return { model: this.header.model, hookpoint: this.header.hookpoint, dIn: this.header.dIn, dSae: this.header.dSae };
  }

  /** The END record of the last replay that reached it (the recorded run's status). */
  get end(): TraceEnd | undefined {
    return this.#end;
  }

  /** Replays the recorded tokens; the run's messages, length and steering are ignored. */
  async *generate(run: SourceRun): AsyncGenerator<SourceToken> {
    let items: AsyncGenerator<TraceItem>;
    if (this.#first !== undefined) {
      items = this.#first;
      this.#first = undefined;
    } else {
      if (!this.#replayable) throw new SessionError('This trace was opened from a stream, which replays once; open it from bytes or a Blob to replay it again.');
      items = this.#open();
      const h = await items.next();
      if (h.done === true || h.value.kind !== 'header') throw new TraceFormatError('The trace has no header.');
    }
    this.#end = undefined;
    const gap = this.#tokensPerSecond !== undefined ? 1000 / this.#tokensPerSecond : 0;
    try {
      for (;;) {
        run.signal.throwIfAborted();
        const r = await items.next();
        if (r.done === true) return;
        const item = r.value;
        if (item.kind === 'end') this.#end = item.end;
        else if (item.kind === 'token') {
          const t = item.token;
          if (gap > 0 && t.phase !== 'prompt') await sleep(gap, run.signal);
          yield { position: t.position, tokenId: t.tokenId, text: t.text, phase: t.phase, steered: t.steered, codes: { indices: t.indices, values: t.values, nonFinite: t.nonFinite } };
        }
      }
    } finally {
      await items.return(undefined).catch(() => undefined);
    }
  }
}

/** What a trace records beyond the readouts; a Session fills it from its last run. */
export interface TraceMeta {
  readonly model?: string;
  readonly hookpoint?: string;
  readonly dIn?: number;
  /** The SAE's identity, or just its name. */
  readonly sae?: TraceSaeIdentity | string;
  readonly messages?: RunRequest['messages'];
  readonly steering?: SteeringPlan | null;
  readonly maxNewTokens?: number;
  readonly source?: string;
  /** ISO 8601 (default: now). */
  readonly createdAt?: string;
  readonly status?: TraceEnd['status'];
  readonly message?: string;
}

/** Anything that can describe its last run for a trace (the Session). */
export interface TraceRecordable {
  readonly readouts: Readouts;
  traceMeta(): Promise<TraceMeta>;
}

function isRecordable(x: TraceRecordable | Readouts): x is TraceRecordable {
  return typeof (x as Partial<TraceRecordable>).traceMeta === 'function';
}

function traceOf(readouts: Readouts, m: TraceMeta): Uint8Array {
  if (m.dIn === undefined) throw new SessionError('recordTrace needs the activation width: pass meta.dIn, or record the Session itself (it knows it once a run has started).');
  const header: TraceHeader = {
    format: 'loupe-trace',
    version: TRACE_MAJOR,
    model: m.model ?? 'unknown',
    hookpoint: m.hookpoint ?? 'unknown',
    dIn: m.dIn,
    dSae: readouts.dSae,
    sae: typeof m.sae === 'string' ? { name: m.sae } : (m.sae ?? {}),
    messages: m.messages ?? [],
    steering: m.steering ?? null,
    ...(m.maxNewTokens !== undefined ? { maxNewTokens: m.maxNewTokens } : {}),
    ...(m.source !== undefined ? { source: m.source } : {}),
    createdAt: m.createdAt ?? new Date().toISOString(),
  };
  return encodeTrace(header, readouts.tokens, { status: m.status ?? 'done', ...(m.message !== undefined ? { message: m.message } : {}) });
}

/**
 * The trace file of a Session's last run — what it knows (model, hookpoint, SAE identity and
 * fingerprint, prompt, plan, status), overridden by `meta` — or, synchronously, of bare
 * readouts described by `meta` (which must give dIn). A Session's `baseline` can be recorded as
 * bare readouts with the Session's meta and `steering: null`.
 */
export function recordTrace(from: Readouts, meta: TraceMeta): Uint8Array;
export function recordTrace(from: TraceRecordable, meta?: TraceMeta): Promise<Uint8Array>;
export function recordTrace(from: TraceRecordable | Readouts, meta: TraceMeta = {}): Uint8Array | Promise<Uint8Array> {
  if (isRecordable(from)) return from.traceMeta().then((known) => traceOf(from.readouts, { ...known, ...meta }));
  return traceOf(from, meta);
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A SHA-256 fingerprint of an SAE, to tell at replay whether a trace came from the SAE at hand:
 * its shape and a few decoder rows spread over the features (reading every weight of a 2 GB
 * SAE to record a trace would cost more than the run). Undefined without Web Crypto.
 */
export async function saeFingerprint(sae: Sae): Promise<string | undefined> {
  const subtle = (globalThis as { crypto?: Crypto }).crypto?.subtle;
  if (subtle === undefined) return undefined;
  const { format, architecture, dIn, dSae, k } = sae.config;
  const features = [...new Set([0, 1, Math.floor(dSae / 3), Math.floor((2 * dSae) / 3), dSae - 1].filter((f) => f >= 0 && f < dSae))];
  const rows = await sae.decoderRows(features);
  const shape = new TextEncoder().encode(JSON.stringify({ format, architecture, dIn, dSae, k: k ?? null, features }));
  const data = new Uint8Array(shape.length + rows.reduce((a, r) => a + r.byteLength, 0));
  data.set(shape, 0);
  let at = shape.length;
  for (const r of rows) {
    data.set(new Uint8Array(r.buffer, r.byteOffset, r.byteLength), at);
    at += r.byteLength;
  }
  return hex(await subtle.digest('SHA-256', data));
}
