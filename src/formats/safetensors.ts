/**
 * safetensors reader: 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
 * The file is untrusted: the header length is capped, every entry is checked (known dtype,
 * integer shape, offsets inside the data and consistent with shape × dtype size, no overlaps),
 * and tensors are zero-copy views where alignment allows.
 */
import { SafetensorsError } from '../errors.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_SIZE: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Headers above this are refused (real ones are a few KB to a few MB even for sharded LLMs). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface SafetensorsTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** F16/BF16 as raw Uint16 bits; BOOL as Uint8. */
  readonly data: TensorData;
}

export interface SafetensorsFile {
  readonly tensors: Record<string, SafetensorsTensor>;
  readonly metadata: Record<string, string>;
}

/** A typed array of `n` elements of `dtype` over `buf` at `offset` (which must be aligned). */
export function typedArrayOf(dtype: SafetensorsDtype, buf: ArrayBuffer, offset: number, n: number): TensorData {
  switch (dtype) {
    case 'F64': return new Float64Array(buf, offset, n);
    case 'F32': return new Float32Array(buf, offset, n);
    case 'F16':
    case 'BF16': return new Uint16Array(buf, offset, n);
    case 'I64': return new BigInt64Array(buf, offset, n);
    case 'I32': return new Int32Array(buf, offset, n);
    case 'I16': return new Int16Array(buf, offset, n);
    case 'I8': return new Int8Array(buf, offset, n);
    case 'U8':
    case 'BOOL': return new Uint8Array(buf, offset, n);
  }
}

function view(dtype: SafetensorsDtype, buf: ArrayBuffer, offset: number, bytes: number): TensorData {
  const size = DTYPE_SIZE[dtype];
  // Unaligned data (legal in the format) is copied once so typed arrays can view it.
  if (offset % size === 0) return typedArrayOf(dtype, buf, offset, bytes / size);
  return typedArrayOf(dtype, buf.slice(offset, offset + bytes), 0, bytes / size);
}

/**
 * A header value for an error message, as JSON cut to a readable length. JSON.parse nests without
 * limit but JSON.stringify recurses, so a hostile `[[[…]]]` would otherwise end in a RangeError.
 */
function shown(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = `${Array.isArray(v) ? 'an array' : 'an object'} nested too deeply to print`;
  }
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a whole safetensors file held in memory. Throws `SafetensorsError` on any inconsistency. */
export function readSafetensors(bytes: ArrayBuffer | Uint8Array): SafetensorsFile {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  // Work on an ArrayBuffer that starts at the file's first byte so offsets are file offsets.
  const buf = u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? (u8.buffer as ArrayBuffer) : u8.slice().buffer;
  if (buf.byteLength < 8) {
    throw new SafetensorsError(`A safetensors file starts with an 8-byte header length; this one has only ${buf.byteLength} bytes. The file is truncated.`);
  }
  const headerLen = new DataView(buf).getBigUint64(0, true);
  if (headerLen > BigInt(Math.min(MAX_HEADER_BYTES, buf.byteLength - 8))) {
    throw new SafetensorsError(
      `The header claims ${headerLen} bytes, but the file has ${buf.byteLength - 8} bytes after the length field (cap ${MAX_HEADER_BYTES}). The file is truncated or not safetensors.`,
    );
  }
  const n = Number(headerLen);
  const { entries, metadata } = parseSafetensorsHeader(new Uint8Array(buf, 8, n), buf.byteLength - 8 - n);
  const dataStart = 8 + n;
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const e of entries) {
    // defineProperty, not assignment: a tensor named "__proto__" would otherwise replace the result's prototype.
    Object.defineProperty(tensors, e.name, {
      value: { dtype: e.dtype, shape: e.shape, data: view(e.dtype, buf, dataStart + e.begin, e.end - e.begin) },
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return { tensors, metadata };
}

/** One tensor entry of a safetensors header; offsets are relative to the data section. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/**
 * Checks a safetensors JSON header (the N bytes after the length field) and returns its
 * entries sorted by offset. `dataLen` is the size of the data section when known; streaming
 * readers that do not know it yet pass undefined and check for truncation as bytes arrive.
 */
export function parseSafetensorsHeader(json: Uint8Array, dataLen: number | undefined): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (cause) {
    throw new SafetensorsError(`The safetensors header is not valid UTF-8 JSON (${String(cause)}).`, { cause });
  }
  if (!isRecord(header)) throw new SafetensorsError('The safetensors header must be a JSON object of tensor entries.');
  let metadata: Record<string, string> = {};
  const ranges: SafetensorsEntry[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw new SafetensorsError('__metadata__ must be an object of string values.');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (!isRecord(entry)) throw new SafetensorsError(`Tensor "${name}": entry must be an object with dtype, shape, data_offsets.`);
    const { dtype, shape, data_offsets: offsets } = entry;
    // hasOwn, not `in`: "toString" or "__proto__" are `in` every object.
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZE, dtype)) {
      throw new SafetensorsError(`Tensor "${name}": dtype ${shown(dtype)} is not supported. Should be one of: ${Object.keys(DTYPE_SIZE).join(', ')}.`);
    }
    if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError(`Tensor "${name}": shape must be an array of non-negative integers, got ${shown(shape)}.`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o): o is number => Number.isSafeInteger(o) && (o as number) >= 0)) {
      throw new SafetensorsError(`Tensor "${name}": data_offsets must be [begin, end] integers, got ${shown(offsets)}.`);
    }
    const [begin, end] = offsets as [number, number];
    const dt = dtype as SafetensorsDtype;
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    if (end < begin || (dataLen !== undefined && end > dataLen)) {
      throw new SafetensorsError(`Tensor "${name}": data_offsets [${begin}, ${end}] lie outside the ${dataLen ?? '?'}-byte data section. The file is truncated or corrupt.`);
    }
    if (end - begin !== count * DTYPE_SIZE[dt]) {
      throw new SafetensorsError(
        `Tensor "${name}": shape [${shape.join(', ')}] × ${dt} needs ${count * DTYPE_SIZE[dt]} bytes, but data_offsets span ${end - begin}.`,
      );
    }
    ranges.push({ name, dtype: dt, shape: shape as number[], begin, end });
  }
  ranges.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1];
    const cur = ranges[i];
    if (prev !== undefined && cur !== undefined && cur.begin < prev.end) {
      throw new SafetensorsError(`Tensors "${prev.name}" and "${cur.name}" overlap in the data section; the file is corrupt.`);
    }
  }
  return { entries: ranges, metadata };
}

/** Byte size of one element of a safetensors dtype. */
export function dtypeSize(dtype: SafetensorsDtype): number {
  return DTYPE_SIZE[dtype];
}
