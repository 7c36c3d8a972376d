/**
 * Protobuf wire format, just enough to index and surgically edit an ONNX model.
 *
 * Reading is zero-copy: a length-delimited field is returned as a `subarray` view of the model's
 * bytes, so indexing a 1.4 GB model walks its ~kB of graph structure and skips every initializer
 * payload by its length prefix without touching it. Every read is bounds-checked against the
 * enclosing message, so a truncated or hostile file fails with an `OnnxGraphError` that names the
 * byte offset instead of reading garbage or throwing a RangeError from a typed array.
 *
 * Groups (wire types 3 and 4) are rejected: ONNX (proto2 without groups) never emits them, and
 * skipping them correctly would need unbounded nesting on hostile input.
 */

import { OnnxGraphError } from '../../errors.js';

export const WireType = {
  VARINT: 0,
  I64: 1,
  LEN: 2,
  I32: 5,
} as const;

/** One field of a message as byte ranges into the buffer it was read from. */
export interface ProtoField {
  readonly field: number;
  readonly wire: number;
  /** Offset of the tag's first byte. */
  readonly start: number;
  /** Offset of the value: after the tag and, for length-delimited fields, after the length. */
  readonly valueStart: number;
  /** One past the field's last byte. */
  readonly end: number;
}

const TWO_32 = 2 ** 32;
/** hi word bound for a safe unsigned value: hi * 2^32 + lo <= 2^53 - 1 needs hi < 2^21. */
const SAFE_HI = 2 ** 21;

function fail(what: string, pos: number, problem: string): never {
  throw new OnnxGraphError(
    `ONNX protobuf (${what}): ${problem} at byte ${pos}; the file is truncated, corrupt or not an ONNX model`,
  );
}

/**
 * A cursor over one message: `bytes[start, end)`. Reads never go past `end`, the enclosing
 * message's end, even when the buffer continues (a nested length that overruns its parent is an
 * error, not a read into the sibling fields).
 */
export class ProtoReader {
  pos: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly start = 0,
    readonly end = bytes.length,
    readonly what = 'message',
  ) {
    if (start < 0 || end > bytes.length || start > end) {
      throw new OnnxGraphError(`ONNX protobuf (${what}): range [${start}, ${end}) outside a ${bytes.length}-byte buffer`);
    }
    this.pos = start;
  }

  /** A reader over the payload of a length-delimited field read from the same buffer. */
  static of(bytes: Uint8Array, f: ProtoField, what: string): ProtoReader {
    if (f.wire !== WireType.LEN) fail(what, f.start, `field ${f.field} has wire type ${f.wire}, expected 2 (length-delimited)`);
    return new ProtoReader(bytes, f.valueStart, f.end, what);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Low and high 32-bit words of a varint of up to 10 bytes (64 bits). */
  private varint64(): { lo: number; hi: number } {
    const at = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) fail(this.what, at, 'varint runs past the end of the message');
      const b = this.bytes[this.pos++] ?? 0;
      const bits = b & 0x7f;
      if (i < 4) {
        lo |= bits << (7 * i);
      } else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else if (i < 9) {
        hi |= bits << (7 * i - 32);
      } else {
        // The 10th byte holds only bit 63.
        if (bits > 1) fail(this.what, at, 'varint exceeds 64 bits');
        hi |= bits << 31;
      }
      if ((b & 0x80) === 0) break;
      if (i === 9) fail(this.what, at, 'varint longer than 10 bytes');
    }
    return { lo: lo >>> 0, hi: hi >>> 0 };
  }

  /** An unsigned varint (lengths, dims, enums, uint64) as a number; above 2^53 - 1 is an error. */
  uint(): number {
    const at = this.pos;
    const { lo, hi } = this.varint64();
    if (hi >= SAFE_HI) fail(this.what, at, 'varint is not a safe integer (> 2^53 - 1)');
    return hi * TWO_32 + lo;
  }

  /** A signed (two's complement) int64/int32 varint as a number; outside ±(2^53 - 1) is an error. */
  int64(): number {
    const at = this.pos;
    const { lo, hi } = this.varint64();
    if (hi < 0x80000000) {
      if (hi >= SAFE_HI) fail(this.what, at, 'varint is not a safe integer (> 2^53 - 1)');
      return hi * TWO_32 + lo;
    }
    // Magnitude of a negative value: 2^64 - (hi * 2^32 + lo), computed without leaving doubles' exact range.
    const magHi = lo === 0 ? TWO_32 - hi : 0xffffffff - hi;
    const magLo = lo === 0 ? 0 : TWO_32 - lo;
    if (magHi >= SAFE_HI) fail(this.what, at, 'varint is not a safe integer (< -(2^53 - 1))');
    return -(magHi * TWO_32 + magLo);
  }

  fixed32(): number {
    const at = this.pos;
    if (this.end - this.pos < 4) fail(this.what, at, 'fixed32 runs past the end of the message');
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return ((b[p] ?? 0) | ((b[p + 1] ?? 0) << 8) | ((b[p + 2] ?? 0) << 16) | ((b[p + 3] ?? 0) << 24)) >>> 0;
  }

  /** An unsigned fixed64 as a number; above 2^53 - 1 is an error. */
  fixed64(): number {
    const at = this.pos;
    if (this.end - this.pos < 8) fail(this.what, at, 'fixed64 runs past the end of the message');
    const lo = this.fixed32();
    const hi = this.fixed32();
    if (hi >= SAFE_HI) fail(this.what, at, 'fixed64 is not a safe integer (> 2^53 - 1)');
    return hi * TWO_32 + lo;
  }

  /** A length-delimited value as a view into the buffer (no copy). */
  lengthDelimited(): Uint8Array {
    const at = this.pos;
    const len = this.uint();
    if (len > this.end - this.pos) {
      fail(this.what, at, `length ${len} runs past the end of the message (${this.end - this.pos} bytes left)`);
    }
    const view = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return view;
  }

  /** Reads a tag; field number 0 and group/reserved wire types are errors. */
  tag(): { field: number; wire: number } {
    const at = this.pos;
    const t = this.uint();
    const wire = t % 8;
    const field = Math.floor(t / 8);
    if (field === 0) fail(this.what, at, 'field number 0');
    if (wire === 3 || wire === 4) fail(this.what, at, `field ${field} is a group (wire type ${wire}), which ONNX never uses`);
    if (wire > 5) fail(this.what, at, `field ${field} has invalid wire type ${wire}`);
    return { field, wire };
  }

  /** Skips a value of the given wire type (the tag already read). */
  skip(wire: number): void {
    switch (wire) {
      case WireType.VARINT:
        this.varint64();
        return;
      case WireType.I64:
        if (this.end - this.pos < 8) fail(this.what, this.pos, 'fixed64 runs past the end of the message');
        this.pos += 8;
        return;
      case WireType.LEN:
        this.lengthDelimited();
        return;
      case WireType.I32:
        if (this.end - this.pos < 4) fail(this.what, this.pos, 'fixed32 runs past the end of the message');
        this.pos += 4;
        return;
      default:
        fail(this.what, this.pos, `cannot skip wire type ${wire}`);
    }
  }

  /** Reads the next field's tag and skips its value, returning its byte ranges. */
  next(): ProtoField {
    const start = this.pos;
    const { field, wire } = this.tag();
    let valueStart = this.pos;
    if (wire === WireType.LEN) {
      const len = this.uint();
      valueStart = this.pos;
      if (len > this.end - this.pos) {
        fail(this.what, start, `field ${field}: length ${len} runs past the end of the message (${this.end - this.pos} bytes left)`);
      }
      this.pos += len;
    } else {
      this.skip(wire);
    }
    return { field, wire, start, valueStart, end: this.pos };
  }

  /** Every field of the message, in wire order. */
  *fields(): Generator<ProtoField> {
    while (!this.done()) yield this.next();
  }

  /** Decodes a varint field's value (unsigned). */
  uintOf(f: ProtoField): number {
    return this.at(f, WireType.VARINT).uint();
  }

  /** Decodes a varint field's value as signed int64. */
  int64Of(f: ProtoField): number {
    return this.at(f, WireType.VARINT).int64();
  }

  /** A length-delimited field's payload as a UTF-8 string. */
  stringOf(f: ProtoField): string {
    const view = this.bytesOf(f);
    try {
      return utf8.decode(view);
    } catch (e) {
      throw new OnnxGraphError(`ONNX protobuf (${this.what}): field ${f.field} at byte ${f.start} is not valid UTF-8`, { cause: e });
    }
  }

  /** A length-delimited field's payload as a view (no copy). */
  bytesOf(f: ProtoField): Uint8Array {
    if (f.wire !== WireType.LEN) fail(this.what, f.start, `field ${f.field} has wire type ${f.wire}, expected 2 (length-delimited)`);
    return this.bytes.subarray(f.valueStart, f.end);
  }

  private at(f: ProtoField, wire: number): ProtoReader {
    if (f.wire !== wire) fail(this.what, f.start, `field ${f.field} has wire type ${f.wire}, expected ${wire}`);
    return new ProtoReader(this.bytes, f.valueStart, f.end, this.what);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Writing.

function checkWritable(v: number): void {
  if (!Number.isSafeInteger(v)) throw new OnnxGraphError(`ONNX protobuf writer: ${v} is not a safe integer`);
}

/** Bytes of `v` as a varint (negative values take protobuf's 10-byte two's-complement form). */
export function varintSize(v: number): number {
  checkWritable(v);
  if (v < 0) return 10;
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/**
 * Writes `v` as a varint at `dst[pos]`, padded with redundant continuation bytes to at least
 * `minBytes` (protobuf parsers accept non-minimal varints up to 10 bytes; padding lets a length
 * prefix keep its original width). Returns the position after it.
 */
export function writeVarint(dst: Uint8Array, pos: number, v: number, minBytes = 1): number {
  checkWritable(v);
  if (v < 0) {
    let u = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 9; i++) {
      dst[pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    dst[pos++] = Number(u);
    return pos;
  }
  const width = Math.min(10, Math.max(minBytes, varintSize(v)));
  for (let i = 0; i < width - 1; i++) {
    dst[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  dst[pos++] = v;
  return pos;
}

/** A growable buffer for small messages (graph nodes, value infos): never for initializers. */
export class ProtoWriter {
  private buf = new Uint8Array(64);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  get length(): number {
    return this.len;
  }

  varint(v: number): this {
    this.reserve(10);
    this.len = writeVarint(this.buf, this.len, v);
    return this;
  }

  tag(field: number, wire: number): this {
    if (!Number.isSafeInteger(field) || field < 1 || field >= 2 ** 29) {
      throw new OnnxGraphError(`ONNX protobuf writer: invalid field number ${field}`);
    }
    return this.varint(field * 8 + wire);
  }

  /** Appends bytes verbatim (e.g. a field copied unchanged from the source message). */
  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  uintField(field: number, v: number): this {
    return this.tag(field, WireType.VARINT).varint(v);
  }

  bytesField(field: number, bytes: Uint8Array): this {
    return this.tag(field, WireType.LEN).varint(bytes.length).raw(bytes);
  }

  stringField(field: number, s: string): this {
    return this.bytesField(field, utf8Encoder.encode(s));
  }

  /** A nested message, built by `build` into its own writer and then length-prefixed. */
  messageField(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytesField(field, inner.finish());
  }

  /** The bytes written so far (a view of the internal buffer; copy it before writing more). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
