/**
 * Byte builders for hostile-input tests of the file readers (in-memory and streaming): a
 * safetensors file from a header and data, and pickle opcodes written from the pickle spec.
 */
const enc = new TextEncoder();

export const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** u64 header length (or `lengthOverride`), the JSON header, then `data`. */
export function safetensorsFile(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): Uint8Array {
  const json = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Pickle bytes from opcodes (numbers), raw text (strings, as UTF-8) and raw bytes. */
export function pickle(...parts: ReadonlyArray<number | string | Uint8Array>): Uint8Array {
  return concat(parts.map((p) => (typeof p === 'number' ? Uint8Array.of(p) : typeof p === 'string' ? enc.encode(p) : p)));
}

export const OP = {
  PROTO: 0x80, STOP: 0x2e, MARK: 0x28, NONE: 0x4e, NEWFALSE: 0x89, GLOBAL: 0x63, STACK_GLOBAL: 0x93, REDUCE: 0x52,
  TUPLE: 0x74, TUPLE1: 0x85, EMPTY_DICT: 0x7d, EMPTY_LIST: 0x5d, SETITEM: 0x73, SETITEMS: 0x75, APPENDS: 0x65, BINPUT: 0x71,
  LONG_BINPUT: 0x72, BINGET: 0x68, LONG_BINGET: 0x6a, BINPERSID: 0x51, BINUNICODE: 0x58, BINUNICODE8: 0x8d, BINBYTES: 0x42,
} as const;

export const u32le = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

export const u64le = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
};

/** BINUNICODE: opcode, u32 length, UTF-8 bytes. */
export const str = (s: string): Uint8Array => {
  const b = enc.encode(s);
  return pickle(OP.BINUNICODE, u32le(b.length), b);
};

/** A non-negative integer as LONG1 (any size), the way pickle writes ints above 2^31. */
export const int = (n: number): Uint8Array => {
  const bytes: number[] = [];
  let v = BigInt(n);
  while (v > 0n) {
    bytes.push(Number(v & 0xffn));
    v >>= 8n;
  }
  if ((bytes[bytes.length - 1] ?? 0x80) & 0x80) bytes.push(0);
  return pickle(0x8a, bytes.length, Uint8Array.from(bytes));
};

export const tuple = (...items: Uint8Array[]): Uint8Array => pickle(OP.MARK, ...items, OP.TUPLE);

export const f32bytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);
