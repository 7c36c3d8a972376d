/**
 * `RemoteSource`: activations from a Loupe stream server (docs/protocol.md) — the full R1 on a
 * GPU server, one layer's residual vector per token. Pull-based: the network is read only as
 * fast as the consumer takes events, so a slow consumer holds at most one network chunk of
 * frames (TCP back-pressure slows the server, memory does not grow). A dropped stream is
 * resumed from the last position received — no token lost or duplicated — and every token
 * received is kept in `tokens` whatever happens.
 *
 *   const source = new RemoteSource({ url: 'https://r1.example/', token, request: { messages, hook: { layer: 37 } } });
 *   for await (const ev of source.events()) if (ev.kind === 'token') show(ev.frame);
 */
import { MalformedFrameError, ProtocolVersionError, RemoteSourceError, StreamDroppedError } from '../errors.js';
import { ActivationRing } from './activation-ring.js';
import { FrameParser, type Phase, type StreamHeader, type TokenFrame, type WireDtype } from './frames.js';
import { streamChunks } from '../io/stream-chunks.js';

export type SteeringStart = number | 'after-prefix' | 'answer';

/** One steering entry as it travels to the server (raw vector, never feature ids). */
export interface WireSteering {
  /** base64 of dIn little-endian f32 values. */
  readonly vector: string;
  readonly strength: number;
  readonly start: SteeringStart;
  readonly mode: 'add' | 'clamp-projection';
  readonly target?: number;
}

export interface GenerateRequest {
  readonly messages?: ReadonlyArray<{ readonly role: 'system' | 'user' | 'assistant'; readonly content: string }>;
  readonly prompt?: string;
  readonly max_tokens: number;
  readonly temperature?: number;
  readonly top_p?: number;
  readonly seed?: number;
  readonly hook: { readonly layer: number; readonly site?: 'resid_post' };
  readonly dtype?: WireDtype;
  readonly steering?: readonly WireSteering[];
}

export interface ReceivedToken {
  readonly position: number;
  readonly tokenId: number;
  readonly phase: Phase;
  readonly steered: boolean;
  /** UTF-8 bytes of the token's text piece. */
  readonly text: Uint8Array;
}

export interface ActivationFrame extends ReceivedToken {
  readonly dIn: number;
  readonly dtype: WireDtype;
  /** Little-endian activation bytes in the wire dtype (a view of the network chunk). */
  readonly activation: Uint8Array;
  /** With `device`: where the activation was written on the GPU (wire dtype), until the ring wraps. */
  readonly gpu?: { readonly buffer: GPUBuffer; readonly offset: number; readonly slot: number };
}

export type SourceEvent =
  | { readonly kind: 'header'; readonly header: StreamHeader }
  | { readonly kind: 'token'; readonly frame: ActivationFrame }
  | { readonly kind: 'reconnecting'; readonly attempt: number; readonly fromPosition: number; readonly error: Error }
  | { readonly kind: 'end'; readonly reason: string; readonly promptTokens: number; readonly generatedTokens: number };

export interface RemoteSourceOptions {
  /** Server base URL; the stream is POST {url}/v1/generate. */
  readonly url: string | URL;
  readonly request: GenerateRequest;
  /** Bearer token, sent as `Authorization: Bearer …`. */
  readonly token?: string;
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
  /** Write each activation into a GPU ring buffer on this device (see `ActivationRing`). */
  readonly device?: GPUDevice;
  /** Ring slots on the GPU (default 1024 tokens). */
  readonly ringSlots?: number;
  /** Reconnect attempts after a drop without progress (default 5), first delay (default 500 ms, doubling, capped at 8 s). */
  readonly reconnect?: { readonly retries?: number; readonly delayMs?: number };
  /** A stream silent this long (no frame, not even a heartbeat) counts as dropped (default 20 s). */
  readonly idleTimeoutMs?: number;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((ok, fail) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      ok();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      fail(abortReason(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new DOMException('The stream was aborted.', 'AbortError');
}

export class RemoteSource {
  /** Every token received, in position order, across reconnects. */
  readonly tokens: ReceivedToken[] = [];
  #header: StreamHeader | undefined;
  #generated: number[] = [];
  #ring: ActivationRing | undefined;
  readonly #opts: RemoteSourceOptions;

  constructor(options: RemoteSourceOptions) {
    this.#opts = options;
  }

  get header(): StreamHeader | undefined {
    return this.#header;
  }

  /** Position of the last token received (-1 before the first). */
  get lastPosition(): number {
    return this.tokens.at(-1)?.position ?? -1;
  }

  /** The GPU ring the activations are written to (with `device`), once the header has arrived. */
  get ring(): ActivationRing | undefined {
    return this.#ring;
  }

  #body(): string {
    const req = this.#opts.request;
    if (this.lastPosition < 0) return JSON.stringify(req);
    return JSON.stringify({ ...req, resume: { position: this.lastPosition + 1, generated: this.#generated } });
  }

  async #post(signal: AbortSignal): Promise<Response> {
    const doFetch = this.#opts.fetch ?? globalThis.fetch.bind(globalThis);
    const url = new URL('v1/generate', String(this.#opts.url).replace(/\/?$/, '/'));
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (this.#opts.token !== undefined) headers['Authorization'] = `Bearer ${this.#opts.token}`;
    const res = await doFetch(url, { method: 'POST', headers, body: this.#body(), signal });
    if (res.ok) return res;
    let code = `http_${res.status}`;
    let message = res.statusText;
    try {
      const e = (await res.json()) as { code?: unknown; message?: unknown };
      if (typeof e.code === 'string') code = e.code;
      if (typeof e.message === 'string') message = e.message;
    } catch {
      // not JSON: keep the status line
    }
    const retryable = res.status === 503 || res.status === 502 || res.status === 504 || res.status === 429;
    const hint = res.status === 401 ? ' Pass the server token as { token }.' : '';
    throw new RemoteSourceError(`The activation server answered ${res.status}: ${message}.${hint}`, code, retryable);
  }

  #accept(f: TokenFrame): ActivationFrame | undefined {
    const last = this.lastPosition;
    if (f.position <= last) return undefined; // already received before the reconnect
    if (last >= 0 && f.position !== last + 1) {
      throw new MalformedFrameError(`Expected the token at position ${last + 1}, got ${f.position}: the stream skipped tokens.`);
    }
    const token: ReceivedToken = { position: f.position, tokenId: f.tokenId, phase: f.phase, steered: f.steered, text: f.text.slice() };
    this.tokens.push(token);
    if (f.phase !== 'prompt') this.#generated.push(f.tokenId);
    const gpu = this.#ring?.write(f.activation);
    return { ...token, dIn: f.dIn, dtype: f.dtype, activation: f.activation, ...(gpu !== undefined ? { gpu } : {}) };
  }

  #checkHeader(h: StreamHeader): boolean {
    const prev = this.#header;
    if (prev === undefined) {
      this.#header = h;
      if (this.#opts.device !== undefined) this.#ring = new ActivationRing(this.#opts.device, h.d_in, h.dtype, this.#opts.ringSlots ?? 1024);
      return true;
    }
    if (prev.d_in !== h.d_in || prev.dtype !== h.dtype || prev.layer !== h.layer) {
      throw new MalformedFrameError(`The resumed stream changed shape (d_in ${prev.d_in} → ${h.d_in}, dtype ${prev.dtype} → ${h.dtype}, layer ${prev.layer} → ${h.layer}).`);
    }
    if (h.resume_from !== this.lastPosition + 1) {
      throw new MalformedFrameError(`Asked to resume at position ${this.lastPosition + 1}, but the server resumed at ${h.resume_from}.`);
    }
    return false;
  }

  /** The stream's events; reconnects on drops; throws a named error when it cannot go on. */
  async *events(): AsyncGenerator<SourceEvent> {
    const retries = this.#opts.reconnect?.retries ?? 5;
    const delay = this.#opts.reconnect?.delayMs ?? 500;
    const idleMs = this.#opts.idleTimeoutMs ?? 20_000;
    const outer = this.#opts.signal;
    let failures = 0;
    for (;;) {
      outer?.throwIfAborted();
      const attempt = new AbortController();
      const onAbort = (): void => attempt.abort(outer?.reason);
      outer?.addEventListener('abort', onAbort, { once: true });
      let idle: ReturnType<typeof setTimeout> | undefined;
      const arm = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => attempt.abort(new StreamDroppedError(`No data from the activation server for ${idleMs / 1000} s.`)), idleMs);
      };
      const before = this.lastPosition;
      let dropped: Error;
      try {
        arm();
        const res = await this.#post(attempt.signal);
        if (res.body === null) throw new StreamDroppedError('The activation server sent no body.');
        const parser = new FrameParser();
        for await (const chunk of streamChunks(res.body)) {
          arm();
          for (const f of parser.push(chunk)) {
            if (f.kind === 'header') {
              if (this.#checkHeader(f.header)) yield { kind: 'header', header: f.header };
            } else if (f.kind === 'token') {
              const frame = this.#accept(f);
              if (frame !== undefined) yield { kind: 'token', frame };
            } else if (f.kind === 'error') {
              throw new RemoteSourceError(`The activation server reported: ${f.message}`, f.code, f.retryable);
            } else if (f.kind === 'end') {
              yield { kind: 'end', reason: f.reason, promptTokens: f.promptTokens, generatedTokens: f.generatedTokens };
              return;
            }
          }
        }
        throw new StreamDroppedError(`The stream ended without an END frame${parser.midFrame ? ' (cut inside a frame)' : ''} after position ${this.lastPosition}.`);
      } catch (err) {
        if (outer?.aborted === true) throw abortReason(outer);
        const e = err instanceof Error ? err : new Error(String(err));
        const fatal = e instanceof MalformedFrameError || e instanceof ProtocolVersionError || (e instanceof RemoteSourceError && !e.retryable);
        if (fatal) throw e;
        dropped = e;
      } finally {
        clearTimeout(idle);
        outer?.removeEventListener('abort', onAbort);
      }
      // Progress since the last drop resets the budget: a long generation may survive many blips.
      failures = this.lastPosition > before ? 1 : failures + 1;
      if (failures > retries) {
        throw new StreamDroppedError(
          `The activation stream dropped and ${retries} reconnects failed (${dropped.message}). The ${this.tokens.length} tokens received are kept in source.tokens.`,
          { cause: dropped },
        );
      }
      yield { kind: 'reconnecting', attempt: failures, fromPosition: this.lastPosition + 1, error: dropped };
      await sleep(Math.min(8000, delay * 2 ** (failures - 1)), outer);
    }
  }

  /** Frees the GPU ring. */
  destroy(): void {
    this.#ring?.destroy();
    this.#ring = undefined;
  }
}
