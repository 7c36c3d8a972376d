/**
 * The Loupe trace file, version 1 (docs/session.md): a recorded run — what was asked, of which
 * model and SAE, and every token's readout — in a compact little-endian binary:
 *
 *   preamble  "LOUPETRC" · u8 major 1 · u8 minor 0 · u16 0 · u32 H (header bytes, ≤ 1 MiB)
 *   header    H bytes of UTF-8 JSON (TraceHeader) · u32 CRC-32 of preamble + JSON
 *   records   u8 type · u32 L · L body bytes · u32 CRC-32 of type + L + body
 *             type 1 TOKEN: u32 position · u32 token_id · u8 phase · u8 flags (bit 0 steered,
 *               bit 1 non-finite) · u16 text_len · u32 count · text · u32 indices[count] ·
 *               f32 values[count]
 *             type 2 END: UTF-8 JSON { tokens, status, message? } — the last record
 *
 * The reader is incremental (any chunking), checks every length before buffering it, every
 * record's checksum and every field against the header (positions consecutive from 0, feature
 * ids < dSae and unique, values finite and ordered as SparseCodes orders them), and yields each
 * token as soon as its record is complete — so a damaged file gives every token before the
 * damage, then a `TraceFormatError`. It only ever parses JSON and numbers.
 */
import { TraceFormatError } from '../errors.js';
import type { FeatureClamp, FeaturePush, SteeringPlan } from '../steer/plan.js';
import type { SteeringStart } from '../sources/remote.js';
import type { Phase, RunRequest, TokenReadout } from './types.js';

export const TRACE_MAGIC = 'LOUPETRC';
export const TRACE_MAJOR = 1;
export const TRACE_MINOR = 0;
/** Header JSON larger than this is refused (a prompt of ~250k characters fits). */
export const MAX_TRACE_HEADER_BYTES = 1 << 20;
/** Widest SAE a trace may declare: the store keeps ~84 bytes per feature, ~170 MB at this width. */
export const MAX_TRACE_DSAE = 1 << 21;
/** Widest activation a trace may declare (the stream protocol's limit). */
export const MAX_TRACE_DIN = 1 << 20;
/** Features one token may list. */
export const MAX_TRACE_CODES = 1 << 16;
const MAX_END_BYTES = 1 << 16;
const MAX_MESSAGES = 10_000;
const MAX_STEERING_ENTRIES = 4096;
const PREAMBLE_BYTES = 16;
const RECORD_PREFIX = 5;
const TOKEN_FIXED = 16;
const RECORD_TOKEN = 1;
const RECORD_END = 2;
const PHASES: readonly Phase[] = ['prompt', 'thinking', 'answer'];
const FLAG_STEERED = 1;
const FLAG_NON_FINITE = 2;

export interface TraceSaeIdentity {
  /** Where the SAE came from: a repo id, URL or file name. */
  readonly name?: string;
  /** SHA-256 (hex) of a fingerprint of the weights (see saeFingerprint), to tell SAEs apart. */
  readonly hash?: string;
  readonly format?: string;
  readonly architecture?: string;
  readonly k?: number;
}

export interface TraceHeader {
  readonly format: 'loupe-trace';
  readonly version: number;
  readonly model: string;
  /** The model site the activations came from. */
  readonly hookpoint: string;
  readonly dIn: number;
  readonly dSae: number;
  readonly sae: TraceSaeIdentity;
  readonly messages: RunRequest['messages'];
  /** The steering plan of the run (null: unsteered). */
  readonly steering: SteeringPlan | null;
  readonly maxNewTokens?: number;
  /** The kind of source that produced the run ('remote', 'local', …). */
  readonly source?: string;
  /** ISO 8601 time of recording. */
  readonly createdAt?: string;
}

export interface TraceEnd {
  readonly tokens: number;
  readonly status: 'done' | 'cancelled' | 'error';
  readonly message?: string;
}

export type TraceItem = { readonly kind: 'header'; readonly header: TraceHeader } | { readonly kind: 'token'; readonly token: TokenReadout } | { readonly kind: 'end'; readonly end: TraceEnd };

// ---- CRC-32 (IEEE 802.3, as zlib.crc32) ----

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < bytes.length; i++) c = (CRC_TABLE[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- header validation ----

function fail(message: string): never {
  throw new TraceFormatError(message);
}

function intIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) fail(`The trace header's ${what} must be an integer in ${lo} … ${hi}, got ${JSON.stringify(v)}.`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') fail(`The trace header's ${what} must be a string, got ${JSON.stringify(v)}.`);
  return v;
}

function finite(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`The trace header's ${what} must be a finite number, got ${JSON.stringify(v)}.`);
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`The trace header's ${what} must be a JSON object.`);
  return v as Record<string, unknown>;
}

function list(v: unknown, max: number, what: string): unknown[] {
  if (!Array.isArray(v) || v.length > max) fail(`The trace header's ${what} must be a list of at most ${max} entries.`);
  return v;
}

function steeringStart(v: unknown): SteeringStart {
  if (v === 'after-prefix' || v === 'answer') return v;
  return intIn(v, 0, 2 ** 32 - 1, 'steering.start');
}

function steeringPlan(v: unknown, dSae: number): SteeringPlan | null {
  if (v === null || v === undefined) return null;
  const p = obj(v, 'steering');
  const push: FeaturePush[] | undefined =
    p['push'] === undefined
      ? undefined
      : list(p['push'], MAX_STEERING_ENTRIES, 'steering.push').map((e) => {
          const o = obj(e, 'steering.push entry');
          return { feature: intIn(o['feature'], 0, dSae - 1, 'steering.push feature'), strength: finite(o['strength'], 'steering.push strength') };
        });
  const clamp: FeatureClamp[] | undefined =
    p['clamp'] === undefined
      ? undefined
      : list(p['clamp'], MAX_STEERING_ENTRIES, 'steering.clamp').map((e) => {
          const o = obj(e, 'steering.clamp entry');
          return { feature: intIn(o['feature'], 0, dSae - 1, 'steering.clamp feature'), value: finite(o['value'], 'steering.clamp value') };
        });
  return { ...(push !== undefined ? { push } : {}), ...(clamp !== undefined ? { clamp } : {}), ...(p['start'] !== undefined ? { start: steeringStart(p['start']) } : {}) };
}

const ROLES = new Set(['system', 'user', 'assistant']);

/** Checks a parsed header and rebuilds it from its known fields (unknown fields are dropped). */
export function checkTraceHeader(v: unknown, major: number = TRACE_MAJOR): TraceHeader {
  const h = obj(v, 'header');
  if (h['format'] !== 'loupe-trace') fail(`This is not a Loupe trace: the header's format is ${JSON.stringify(h['format'])}, expected "loupe-trace".`);
  if (h['version'] !== major) fail(`The trace header says version ${JSON.stringify(h['version'])}, but its preamble says ${major}; the file is corrupt.`);
  const dIn = intIn(h['dIn'], 1, MAX_TRACE_DIN, 'dIn');
  const dSae = intIn(h['dSae'], 1, MAX_TRACE_DSAE, 'dSae');
  const s = obj(h['sae'] ?? {}, 'sae');
  const sae: TraceSaeIdentity = {
    ...(s['name'] !== undefined ? { name: str(s['name'], 'sae.name') } : {}),
    ...(s['hash'] !== undefined ? { hash: str(s['hash'], 'sae.hash') } : {}),
    ...(s['format'] !== undefined ? { format: str(s['format'], 'sae.format') } : {}),
    ...(s['architecture'] !== undefined ? { architecture: str(s['architecture'], 'sae.architecture') } : {}),
    ...(s['k'] !== undefined ? { k: intIn(s['k'], 1, dSae, 'sae.k') } : {}),
  };
  const messages = list(h['messages'] ?? [], MAX_MESSAGES, 'messages').map((m) => {
    const o = obj(m, 'message');
    const role = o['role'];
    if (typeof role !== 'string' || !ROLES.has(role)) fail(`A trace message has role ${JSON.stringify(role)}; expected system, user or assistant.`);
    return { role: role as 'system' | 'user' | 'assistant', content: str(o['content'], 'message content') };
  });
  return {
    format: 'loupe-trace',
    version: major,
    model: str(h['model'], 'model'),
    hookpoint: str(h['hookpoint'], 'hookpoint'),
    dIn,
    dSae,
    sae,
    messages,
    steering: steeringPlan(h['steering'], dSae),
    ...(h['maxNewTokens'] !== undefined ? { maxNewTokens: intIn(h['maxNewTokens'], 0, 2 ** 32 - 1, 'maxNewTokens') } : {}),
    ...(h['source'] !== undefined ? { source: str(h['source'], 'source') } : {}),
    ...(h['createdAt'] !== undefined ? { createdAt: str(h['createdAt'], 'createdAt') } : {}),
  };
}

// ---- writing ----

/** The header as written: fixed key order, so a recording is byte-for-byte reproducible. */
function headerJson(h: TraceHeader): string {
  const plan = h.steering;
  const steering =
    plan === null
      ? null
      : {
          ...(plan.push !== undefined ? { push: plan.push.map((p) => ({ feature: p.feature, strength: p.strength })) } : {}),
          ...(plan.clamp !== undefined ? { clamp: plan.clamp.map((c) => ({ feature: c.feature, value: c.value })) } : {}),
          ...(plan.start !== undefined ? { start: plan.start } : {}),
        };
  const s = h.sae;
  return JSON.stringify({
    format: 'loupe-trace',
    version: TRACE_MAJOR,
    model: h.model,
    hookpoint: h.hookpoint,
    dIn: h.dIn,
    dSae: h.dSae,
    sae: {
      ...(s.name !== undefined ? { name: s.name } : {}),
      ...(s.hash !== undefined ? { hash: s.hash } : {}),
      ...(s.format !== undefined ? { format: s.format } : {}),
      ...(s.architecture !== undefined ? { architecture: s.architecture } : {}),
      ...(s.k !== undefined ? { k: s.k } : {}),
    },
    messages: h.messages.map((m) => ({ role: m.role, content: m.content })),
    steering,
    ...(h.maxNewTokens !== undefined ? { maxNewTokens: h.maxNewTokens } : {}),
    ...(h.source !== undefined ? { source: h.source } : {}),
    ...(h.createdAt !== undefined ? { createdAt: h.createdAt } : {}),
  });
}

function record(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_PREFIX + body.length + 4);
  const v = new DataView(out.buffer);
  v.setUint8(0, type);
  v.setUint32(1, body.length, true);
  out.set(body, RECORD_PREFIX);
  v.setUint32(RECORD_PREFIX + body.length, crc32(out.subarray(0, RECORD_PREFIX + body.length)), true);
  return out;
}

const encoder = new TextEncoder();

function tokenRecord(t: TokenReadout, dSae: number): Uint8Array {
  const text = encoder.encode(t.text);
  const n = t.indices.length;
  if (text.length > 0xffff) throw new TraceFormatError(`The token at position ${t.position} has ${text.length} bytes of text; a trace stores at most 65,535.`);
  if (n > MAX_TRACE_CODES || t.values.length !== n) throw new TraceFormatError(`The token at position ${t.position} has ${n} features (${t.values.length} values); a trace stores at most ${MAX_TRACE_CODES}, with one value each.`);
  const body = new Uint8Array(TOKEN_FIXED + text.length + 8 * n);
  const v = new DataView(body.buffer);
  v.setUint32(0, t.position, true);
  v.setUint32(4, t.tokenId, true);
  v.setUint8(8, PHASES.indexOf(t.phase));
  v.setUint8(9, (t.steered ? FLAG_STEERED : 0) | (t.nonFinite ? FLAG_NON_FINITE : 0));
  v.setUint16(10, text.length, true);
  v.setUint32(12, n, true);
  body.set(text, TOKEN_FIXED);
  const at = TOKEN_FIXED + text.length;
  for (let j = 0; j < n; j++) {
    const f = t.indices[j] ?? 0;
    if (f >= dSae) throw new TraceFormatError(`The token at position ${t.position} names feature ${f} ≥ dSae ${dSae}.`);
    v.setUint32(at + 4 * j, f, true);
    v.setFloat32(at + 4 * n + 4 * j, t.values[j] ?? 0, true);
  }
  return record(RECORD_TOKEN, body);
}

/** A whole trace file. */
export function encodeTrace(header: TraceHeader, tokens: readonly TokenReadout[], end: Omit<TraceEnd, 'tokens'>): Uint8Array {
  const json = encoder.encode(headerJson(header));
  if (json.length > MAX_TRACE_HEADER_BYTES) throw new TraceFormatError(`The trace header would take ${json.length} bytes; at most ${MAX_TRACE_HEADER_BYTES} are allowed (a shorter prompt?).`);
  const head = new Uint8Array(PREAMBLE_BYTES + json.length + 4);
  head.set(encoder.encode(TRACE_MAGIC), 0);
  const hv = new DataView(head.buffer);
  hv.setUint8(8, TRACE_MAJOR);
  hv.setUint8(9, TRACE_MINOR);
  hv.setUint32(12, json.length, true);
  head.set(json, PREAMBLE_BYTES);
  hv.setUint32(PREAMBLE_BYTES + json.length, crc32(head.subarray(0, PREAMBLE_BYTES + json.length)), true);
  const parts = [head, ...tokens.map((t) => tokenRecord(t, header.dSae))];
  const endJson: TraceEnd = { tokens: tokens.length, status: end.status, ...(end.message !== undefined ? { message: end.message } : {}) };
  parts.push(record(RECORD_END, encoder.encode(JSON.stringify(endJson))));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- reading ----

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Incremental reader: push chunks, take items; `finish()` once the input ended. */
export class TraceReader {
  #buf: Uint8Array = new Uint8Array(0);
  /** File offset of #buf[0] (for messages). */
  #offset = 0;
  #header: TraceHeader | undefined;
  #major = 0;
  #tokens = 0;
  #ended = false;
  /** Per-token duplicate check: stamp[feature] = token number + 1. */
  #stamp: Uint32Array | undefined;

  get header(): TraceHeader | undefined {
    return this.#header;
  }

  /** Tokens read so far. */
  get tokens(): number {
    return this.#tokens;
  }

  /** Items completed by `chunk` (and what was left over), in file order; throws at the first damage. */
  *push(chunk: Uint8Array): Generator<TraceItem> {
    if (chunk.length > 0) {
      if (this.#buf.length === 0) this.#buf = chunk;
      else {
        const b = new Uint8Array(this.#buf.length + chunk.length);
        b.set(this.#buf);
        b.set(chunk, this.#buf.length);
        this.#buf = b;
      }
    }
    for (;;) {
      const item = this.#next();
      if (item === undefined) return;
      if (item !== null) yield item;
    }
  }

  /** The input ended: throws if the trace stopped before its END record. */
  finish(): void {
    if (this.#header === undefined) fail(this.#buf.length === 0 && this.#offset === 0 ? 'The trace is empty.' : `The trace ends after ${this.#offset + this.#buf.length} bytes, inside its header: the file is truncated.`);
    if (!this.#ended) {
      fail(`The trace ends after ${this.#tokens} tokens without its END record${this.#buf.length > 0 ? ', inside a record' : ''}: the file is truncated (an interrupted download or recording). The tokens before the cut were read.`);
    }
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    this.#offset += n;
    return out;
  }

  /** The next item; null for a skipped record; undefined when more bytes are needed. */
  #next(): TraceItem | null | undefined {
    const b = this.#buf;
    if (this.#ended) {
      if (b.length > 0) fail(`The trace has ${b.length} bytes after its END record at byte ${this.#offset}; the file is corrupt.`);
      return undefined;
    }
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (this.#header === undefined) {
      if (b.length < PREAMBLE_BYTES) {
        if (b.length >= 8 && new TextDecoder().decode(b.subarray(0, 8)) !== TRACE_MAGIC) fail('This is not a Loupe trace (it does not start with "LOUPETRC").');
        return undefined;
      }
      if (new TextDecoder().decode(b.subarray(0, 8)) !== TRACE_MAGIC) fail('This is not a Loupe trace (it does not start with "LOUPETRC").');
      const major = v.getUint8(8);
      if (major !== TRACE_MAJOR) fail(`This trace is format version ${major}.${v.getUint8(9)}; this Loupe reads version ${TRACE_MAJOR}.x. Update Loupe to replay it.`);
      const h = v.getUint32(12, true);
      if (h < 2 || h > MAX_TRACE_HEADER_BYTES) fail(`The trace header claims ${h} bytes (must be 2 … ${MAX_TRACE_HEADER_BYTES}); the file is corrupt.`);
      if (b.length < PREAMBLE_BYTES + h + 4) return undefined;
      const crc = v.getUint32(PREAMBLE_BYTES + h, true);
      if (crc32(b.subarray(0, PREAMBLE_BYTES + h)) !== crc) fail('The trace header fails its checksum; the file is corrupt.');
      let parsed: unknown;
      try {
        parsed = JSON.parse(utf8.decode(b.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + h)));
      } catch (cause) {
        throw new TraceFormatError(`The trace header is not UTF-8 JSON (${String(cause)}).`, { cause });
      }
      this.#major = major;
      this.#header = checkTraceHeader(parsed, major);
      this.#take(PREAMBLE_BYTES + h + 4);
      return { kind: 'header', header: this.#header };
    }
    if (b.length < RECORD_PREFIX) return undefined;
    const type = v.getUint8(0);
    const len = v.getUint32(1, true);
    const max = type === RECORD_TOKEN ? TOKEN_FIXED + 0xffff + 8 * Math.min(this.#header.dSae, MAX_TRACE_CODES) : type === RECORD_END ? MAX_END_BYTES : MAX_TRACE_HEADER_BYTES;
    if (len > max) fail(`The record at byte ${this.#offset} (type ${type}) claims ${len} bytes; at most ${max} are possible. The file is corrupt.`);
    if (b.length < RECORD_PREFIX + len + 4) return undefined;
    const crc = v.getUint32(RECORD_PREFIX + len, true);
    if (crc32(b.subarray(0, RECORD_PREFIX + len)) !== crc) fail(`The record at byte ${this.#offset} (after ${this.#tokens} tokens) fails its checksum; the file is corrupt from there on.`);
    const at = this.#offset;
    const body = this.#take(RECORD_PREFIX + len + 4).subarray(RECORD_PREFIX, RECORD_PREFIX + len);
    if (type === RECORD_TOKEN) return { kind: 'token', token: this.#token(body, at) };
    if (type === RECORD_END) return { kind: 'end', end: this.#end(body) };
    // A record type of a newer minor version: skipped, as its length allows.
    return null;
  }

  #token(body: Uint8Array, at: number): TokenReadout {
    const header = this.#header as TraceHeader;
    const where = `The token record at byte ${at}`;
    if (body.length < TOKEN_FIXED) fail(`${where} has ${body.length} bytes; a token needs at least ${TOKEN_FIXED}.`);
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const position = v.getUint32(0, true);
    const tokenId = v.getUint32(4, true);
    const phase = PHASES[v.getUint8(8)];
    const flags = v.getUint8(9);
    const textLen = v.getUint16(10, true);
    const n = v.getUint32(12, true);
    if (position !== this.#tokens) fail(`${where} is at position ${position}; expected ${this.#tokens} (positions run from 0 without gaps).`);
    if (phase === undefined) fail(`${where} has phase ${v.getUint8(8)}; expected 0 (prompt), 1 (thinking) or 2 (answer).`);
    if ((flags & ~(FLAG_STEERED | FLAG_NON_FINITE)) !== 0) fail(`${where} has unknown flags ${flags}.`);
    const nonFinite = (flags & FLAG_NON_FINITE) !== 0;
    if (n > Math.min(header.dSae, MAX_TRACE_CODES) || (nonFinite && n > 0)) fail(`${where} lists ${n} features${nonFinite ? ' for a non-finite token (which has none)' : `; at most ${Math.min(header.dSae, MAX_TRACE_CODES)}`}.`);
    if (body.length !== TOKEN_FIXED + textLen + 8 * n) fail(`${where} has ${body.length} bytes; ${textLen} bytes of text and ${n} features need ${TOKEN_FIXED + textLen + 8 * n}.`);
    let text: string;
    try {
      text = utf8.decode(body.subarray(TOKEN_FIXED, TOKEN_FIXED + textLen));
    } catch (cause) {
      throw new TraceFormatError(`${where} has text that is not UTF-8.`, { cause });
    }
    const indices = new Uint32Array(n);
    const values = new Float32Array(n);
    this.#stamp ??= new Uint32Array(header.dSae);
    const stamp = this.#stamp;
    const mark = (this.#tokens % 0xfffffffe) + 1;
    const base = TOKEN_FIXED + textLen;
    for (let j = 0; j < n; j++) {
      const f = v.getUint32(base + 4 * j, true);
      const x = v.getFloat32(base + 4 * n + 4 * j, true);
      if (f >= header.dSae) fail(`${where} names feature ${f}, but the trace's SAE has dSae = ${header.dSae}.`);
      if (stamp[f] === mark) fail(`${where} lists feature ${f} twice.`);
      if (!Number.isFinite(x)) fail(`${where} has a non-finite value for feature ${f}.`);
      if (j > 0) {
        const pv = values[j - 1] ?? 0;
        const pf = indices[j - 1] ?? 0;
        if (x > pv || (x === pv && f < pf)) fail(`${where} lists its features out of order (strongest first, ties by id).`);
      }
      stamp[f] = mark;
      indices[j] = f;
      values[j] = x;
    }
    this.#tokens++;
    return { position, tokenId, text, phase, steered: (flags & FLAG_STEERED) !== 0, indices, values, nonFinite };
  }

  #end(body: Uint8Array): TraceEnd {
    let e: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(utf8.decode(body));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      e = parsed as Record<string, unknown>;
    } catch (cause) {
      throw new TraceFormatError(`The trace's END record is not a UTF-8 JSON object (${String(cause)}).`, { cause });
    }
    const status = e['status'];
    if (status !== 'done' && status !== 'cancelled' && status !== 'error') fail(`The trace's END record has status ${JSON.stringify(status)}; expected done, cancelled or error.`);
    if (e['tokens'] !== this.#tokens) fail(`The trace's END record says ${JSON.stringify(e['tokens'])} tokens, but ${this.#tokens} were read; the file is corrupt.`);
    this.#ended = true;
    const message = e['message'];
    return { tokens: this.#tokens, status, ...(typeof message === 'string' ? { message } : {}) };
  }

  /** The major version the file declared (after the header). */
  get major(): number {
    return this.#major;
  }
}
