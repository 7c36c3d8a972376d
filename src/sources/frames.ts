/**
 * The Loupe stream protocol v1 (docs/protocol.md), client side: an incremental parser that
 * takes the response body in whatever chunks the network delivers — frames split across
 * chunks, many frames in one chunk — and returns whole frames. Activation bytes are handed out
 * as views into the chunk when a frame lies inside one, copied only when it straddles two.
 */
import { MalformedFrameError, ProtocolVersionError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from '../sae/dtype.js';

export const PROTOCOL_MAJOR = 1;
/** Frames above this are refused: an R1 token frame is ~14 KB; a header a few KB. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export type WireDtype = 'f32' | 'f16' | 'bf16';
export type Phase = 'prompt' | 'thinking' | 'answer';
const PHASES: readonly Phase[] = ['prompt', 'thinking', 'answer'];

export interface StreamHeader {
  readonly protocol: 'loupe-stream';
  readonly version: number;
  readonly model: string;
  readonly layer: number;
  readonly site: string;
  readonly d_in: number;
  readonly dtype: WireDtype;
  readonly prompt_tokens: number;
  readonly resume_from: number;
  readonly request_id?: string;
  readonly tokenizer?: { readonly name?: string; readonly eos_token_ids?: number[]; readonly think_start_token_id?: number; readonly think_end_token_id?: number };
  readonly chat_template?: string;
}

export interface TokenFrame {
  readonly kind: 'token';
  readonly position: number;
  readonly tokenId: number;
  readonly phase: Phase;
  /** Steering was applied at this position. */
  readonly steered: boolean;
  /** The token's UTF-8 bytes (a piece may end inside a character). */
  readonly text: Uint8Array;
  readonly dIn: number;
  readonly dtype: WireDtype;
  /** The activation, little-endian, `dIn × size(dtype)` bytes; valid until the next parse call. */
  readonly activation: Uint8Array;
}

export type Frame =
  | { readonly kind: 'header'; readonly header: StreamHeader }
  | TokenFrame
  | { readonly kind: 'error'; readonly code: string; readonly message: string; readonly retryable: boolean }
  | { readonly kind: 'heartbeat' }
  | { readonly kind: 'end'; readonly reason: string; readonly promptTokens: number; readonly generatedTokens: number; readonly elapsedMs: number };

export function dtypeBytes(d: WireDtype): number {
  return d === 'f32' ? 4 : 2;
}

const FRAME_TYPES = { header: 1, token: 2, error: 3, heartbeat: 4, end: 5 } as const;

function json(payload: Uint8Array, what: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (cause) {
    throw new MalformedFrameError(`The ${what} frame is not a UTF-8 JSON object (${String(cause)}).`, { cause });
  }
}

function checkHeader(h: Record<string, unknown>): StreamHeader {
  const dIn = h['d_in'];
  const dtype = h['dtype'];
  if (h['protocol'] !== 'loupe-stream') throw new MalformedFrameError(`HEADER says protocol ${JSON.stringify(h['protocol'])}; expected "loupe-stream".`);
  if (typeof h['version'] !== 'number' || Math.floor(h['version']) !== PROTOCOL_MAJOR) {
    throw new ProtocolVersionError(`HEADER says version ${String(h['version'])}; this client speaks version ${PROTOCOL_MAJOR}. Update Loupe or the server.`);
  }
  if (typeof dIn !== 'number' || !Number.isInteger(dIn) || dIn <= 0 || dIn > 1 << 20) throw new MalformedFrameError(`HEADER d_in must be a positive integer, got ${JSON.stringify(dIn)}.`);
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new MalformedFrameError(`HEADER dtype must be f32, f16 or bf16, got ${JSON.stringify(dtype)}.`);
  for (const k of ['layer', 'prompt_tokens', 'resume_from']) {
    if (typeof h[k] !== 'number' || !Number.isInteger(h[k]) || (h[k] as number) < 0) throw new MalformedFrameError(`HEADER ${k} must be a non-negative integer, got ${JSON.stringify(h[k])}.`);
  }
  return h as unknown as StreamHeader;
}

export class FrameParser {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #preamble = false;
  #header: StreamHeader | undefined;
  /** Bytes consumed so far (for messages). */
  #offset = 0;

  get header(): StreamHeader | undefined {
    return this.#header;
  }

  /** Parses as many whole frames as `chunk` (plus what was left over) holds. */
  push(chunk: Uint8Array): Frame[] {
    if (chunk.byteLength > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.byteLength;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (!this.#preamble) {
        if (this.#pendingBytes < 8) return frames;
        const p = this.#take(8);
        const magic = new TextDecoder().decode(p.subarray(0, 5));
        if (magic !== 'LOUPE') throw new MalformedFrameError(`The response does not start with the Loupe preamble ("LOUPE", found ${JSON.stringify(magic)}); is the URL a Loupe stream endpoint?`);
        if (p[5] !== PROTOCOL_MAJOR) throw new ProtocolVersionError(`The server speaks Loupe stream protocol ${p[5] ?? '?'}.${p[6] ?? '?'}; this client speaks ${PROTOCOL_MAJOR}.x. Update Loupe or the server.`);
        this.#preamble = true;
        continue;
      }
      if (this.#pendingBytes < 4) return frames;
      const len = this.#peekU32();
      if (len < 1 || len > MAX_FRAME_BYTES) throw new MalformedFrameError(`Frame at byte ${this.#offset} claims ${len} bytes (must be 1 … ${MAX_FRAME_BYTES}); the stream is corrupt.`);
      if (this.#pendingBytes < 4 + len) return frames;
      this.#take(4);
      const body = this.#take(len);
      const frame = this.#frame(body[0] ?? 0, body.subarray(1));
      if (frame !== undefined) frames.push(frame);
    }
  }

  /** Whether the parser holds a partial frame (a stream that ends now was cut mid-frame). */
  get midFrame(): boolean {
    return this.#pendingBytes > 0;
  }

  #peekU32(): number {
    const head = this.#pending[0];
    if (head !== undefined && head.byteLength >= 4) return new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
    const b = new Uint8Array(4);
    let at = 0;
    for (const c of this.#pending) {
      const n = Math.min(4 - at, c.byteLength);
      b.set(c.subarray(0, n), at);
      at += n;
      if (at === 4) break;
    }
    return new DataView(b.buffer).getUint32(0, true);
  }

  /** n bytes off the front: a view when they lie in one chunk, else a copy. */
  #take(n: number): Uint8Array {
    this.#offset += n;
    this.#pendingBytes -= n;
    const head = this.#pending[0];
    if (head !== undefined && head.byteLength >= n) {
      const out = head.subarray(0, n);
      if (head.byteLength === n) this.#pending.shift();
      else this.#pending[0] = head.subarray(n);
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.#pending[0];
      if (c === undefined) throw new MalformedFrameError('internal: ran out of buffered bytes');
      const k = Math.min(n - at, c.byteLength);
      out.set(c.subarray(0, k), at);
      at += k;
      if (k === c.byteLength) this.#pending.shift();
      else this.#pending[0] = c.subarray(k);
    }
    return out;
  }

  #frame(type: number, payload: Uint8Array): Frame | undefined {
    switch (type) {
      case FRAME_TYPES.header: {
        if (this.#header !== undefined) throw new MalformedFrameError('A second HEADER frame arrived; a stream has exactly one.');
        this.#header = checkHeader(json(payload, 'HEADER'));
        return { kind: 'header', header: this.#header };
      }
      case FRAME_TYPES.token:
        return this.#token(payload);
      case FRAME_TYPES.error: {
        const e = json(payload, 'ERROR');
        return { kind: 'error', code: String(e['code'] ?? 'error'), message: String(e['message'] ?? ''), retryable: e['retryable'] === true };
      }
      case FRAME_TYPES.heartbeat:
        return { kind: 'heartbeat' };
      case FRAME_TYPES.end: {
        const e = json(payload, 'END');
        const n = (k: string): number => (typeof e[k] === 'number' ? (e[k] as number) : 0);
        return { kind: 'end', reason: String(e['reason'] ?? ''), promptTokens: n('prompt_tokens'), generatedTokens: n('generated_tokens'), elapsedMs: n('elapsed_ms') };
      }
      default:
        return undefined; // a newer minor version's frame type: ignored, as the spec says
    }
  }

  #token(p: Uint8Array): TokenFrame {
    const h = this.#header;
    if (h === undefined) throw new MalformedFrameError('A TOKEN frame arrived before the HEADER frame.');
    if (p.byteLength < 16) throw new MalformedFrameError(`A TOKEN frame has ${p.byteLength} payload bytes; it needs at least 16.`);
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const position = v.getUint32(0, true);
    const tokenId = v.getUint32(4, true);
    const phaseCode = v.getUint8(8);
    const flags = v.getUint8(9);
    const textLen = v.getUint16(10, true);
    const dIn = v.getUint32(12, true);
    const phase = PHASES[phaseCode];
    if (phase === undefined) throw new MalformedFrameError(`TOKEN at position ${position} has phase ${phaseCode}; expected 0 (prompt), 1 (thinking) or 2 (answer).`);
    if (dIn !== h.d_in) throw new MalformedFrameError(`TOKEN at position ${position} carries d_in ${dIn}, but the HEADER said ${h.d_in}.`);
    const textEnd = 16 + textLen;
    const actStart = 16 + Math.ceil(textLen / 4) * 4;
    const actBytes = dIn * dtypeBytes(h.dtype);
    if (p.byteLength !== actStart + actBytes) {
      throw new MalformedFrameError(
        `TOKEN at position ${position} has ${p.byteLength} payload bytes; text ${textLen} B + padding + ${dIn} × ${h.dtype} needs ${actStart + actBytes}. The frame is truncated or corrupt.`,
      );
    }
    return { kind: 'token', position, tokenId, phase, steered: (flags & 1) !== 0, text: p.subarray(16, textEnd), dIn, dtype: h.dtype, activation: p.subarray(actStart) };
  }
}

/** The activation of a TOKEN frame widened to f32 on the CPU. */
export function activationToF32(activation: Uint8Array, dtype: WireDtype, dIn: number): Float32Array {
  const out = new Float32Array(dIn);
  const v = new DataView(activation.buffer, activation.byteOffset, activation.byteLength);
  if (dtype === 'f32') {
    for (let i = 0; i < dIn; i++) out[i] = v.getFloat32(i * 4, true);
  } else {
    const widen = dtype === 'bf16' ? bf16ToF32 : f16ToF32;
    for (let i = 0; i < dIn; i++) out[i] = widen(v.getUint16(i * 2, true));
  }
  return out;
}
