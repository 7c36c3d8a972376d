/**
 * Hostile inputs for the two in-memory readers, `readSafetensors` and `readTorchCheckpoint`.
 *
 * Named cases pin the error class and the message for each kind of damage a file can carry
 * (truncation, lying lengths and offsets, a pickle that would run a shell command, resource
 * bombs). Property tests then push thousands of random corruptions of real files through both
 * readers: every call must either return well-formed tensors (data length = product of shape)
 * or throw the reader's named error — never a RangeError/TypeError from deep inside, never hang.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterEach, describe, expect, test } from 'vitest';
import { LoupeError, SafetensorsError, TorchCheckpointError } from '../../src/errors.js';
import { MAX_HEADER_BYTES, readSafetensors, type SafetensorsTensor } from '../../src/formats/safetensors.js';
import { readTorchCheckpoint } from '../../src/formats/torch.js';
import { GOLDEN_DIR } from '../helpers/golden.js';
import { DTYPE_BYTES, f32bytes, int, OP, pickle, safetensorsFile, str, tuple, u32le, u64le } from '../helpers/pickle-builders.js';
import { byteMutations, mutate, type Mutation } from '../helpers/byte-mutations.js';

const TORCH_DIR = fileURLToPath(new URL('../fixtures/torch/', import.meta.url));
const readTorchFixture = (name: string): Uint8Array => new Uint8Array(readFileSync(`${TORCH_DIR}${name}`));
const enc = new TextEncoder();

/** One call may take this long at most: a hang or a quadratic blow-up shows as a failure, not a stuck run. */
const PER_CALL_MS = 2_000;


// ---------------------------------------------------------------------------------------------
// Builders: safetensors files, stored/deflated zips, pickles.


const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface ZipSpec {
  readonly name: string;
  readonly data: Uint8Array;
  /** Deflate the entry (method 8) instead of storing it. */
  readonly deflate?: boolean;
  /** Lie in the central directory: the uncompressed size to claim. */
  readonly claimSize?: number;
  /** Write the sizes as ZIP64 (0xffffffff + extra field 0x0001) with these 64-bit values. */
  readonly zip64?: { readonly size: bigint; readonly compressedSize: bigint };
}

/** A zip as `zipfile` writes it (no comment, no data descriptors); Python's zipfile reads these. */
function makeZip(specs: readonly ZipSpec[]): Uint8Array {
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const s of specs) {
    const name = enc.encode(s.name);
    const body = s.deflate === true ? new Uint8Array(deflateRawSync(s.data)) : s.data;
    const method = s.deflate === true ? 8 : 0;
    const crc = crc32(s.data);
    const local = new Uint8Array(30 + name.length + body.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, method, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, s.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    local.set(body, 30 + name.length);
    const extra = new Uint8Array(s.zip64 === undefined ? 0 : 20);
    if (s.zip64 !== undefined) {
      const ev = new DataView(extra.buffer);
      ev.setUint16(0, 0x0001, true);
      ev.setUint16(2, 16, true);
      ev.setBigUint64(4, s.zip64.size, true);
      ev.setBigUint64(12, s.zip64.compressedSize, true);
    }
    const central = new Uint8Array(46 + name.length + extra.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, method, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, s.zip64 === undefined ? body.length : 0xffffffff, true);
    cv.setUint32(24, s.zip64 === undefined ? (s.claimSize ?? s.data.length) : 0xffffffff, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, extra.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    central.set(extra, 46 + name.length);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const cdSize = centrals.reduce((a, c) => a + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, specs.length, true);
  ev.setUint16(10, specs.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...centrals, eocd]) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** A torch.save-shaped zip around a data.pkl and optional storages `archive/data/<key>`. */
function checkpoint(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, deflate = false): Uint8Array {
  return makeZip([
    { name: 'archive/data.pkl', data: pickle, deflate },
    { name: 'archive/byteorder', data: enc.encode('little') },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data, deflate })),
    { name: 'archive/version', data: enc.encode('3\n') },
  ]);
}


/** `torch._utils._rebuild_tensor_v2(storage('0', FloatStorage, numel), offset, shape, stride, False, None)`. */
function tensorPickle(t: { shape: number[]; stride: number[]; offset?: number; storageNumel: number }): Uint8Array {
  return pickle(
    OP.PROTO, 2,
    OP.GLOBAL, 'torch._utils\n_rebuild_tensor_v2\n',
    OP.MARK,
    tuple(str('storage'), pickle(OP.GLOBAL, 'torch\nFloatStorage\n'), str('0'), str('cpu'), int(t.storageNumel)),
    OP.BINPERSID,
    int(t.offset ?? 0),
    tuple(...t.shape.map(int)),
    tuple(...t.stride.map(int)),
    OP.NEWFALSE,
    OP.NONE,
    OP.TUPLE,
    OP.REDUCE,
    OP.STOP,
  );
}

// ---------------------------------------------------------------------------------------------
// Shared assertions.

async function rejection(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected the reader to throw, but it returned');
}

/** The call throws exactly `cls` (not merely some Error) with `message`, and does so quickly. */
async function expectNamed(fn: () => unknown, cls: typeof SafetensorsError | typeof TorchCheckpointError, message: RegExp): Promise<void> {
  const t0 = performance.now();
  const e = await rejection(fn);
  expect(performance.now() - t0).toBeLessThan(PER_CALL_MS);
  expect(e).toBeInstanceOf(cls);
  expect((e as Error).message).toMatch(message);
}

const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A returned tensor must be internally consistent: known dtype, integer shape, data matching it. */
function checkTensor(name: string, t: SafetensorsTensor): void {
  const size = DTYPE_BYTES[t.dtype];
  if (size === undefined) throw new Error(`tensor "${name}": unknown dtype ${String(t.dtype)}`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
  if (t.data.length !== product(t.shape)) throw new Error(`tensor "${name}": ${t.data.length} elements for shape [${t.shape.join(', ')}]`);
  if (t.data.BYTES_PER_ELEMENT !== size) throw new Error(`tensor "${name}": ${t.data.BYTES_PER_ELEMENT}-byte elements for ${t.dtype}`);
}

// ---------------------------------------------------------------------------------------------
// Named cases: safetensors.

describe('readSafetensors: named hostile cases', () => {
  const golden = new Uint8Array(readFileSync(`${GOLDEN_DIR}saelens-standard-layernorm-f16-t7.safetensors`));
  const st = (header: unknown, data?: Uint8Array, len?: bigint) => () => readSafetensors(safetensorsFile(header, data, len));

  test('the golden base file reads cleanly (so the damage below is what the errors are about)', () => {
    const { tensors, metadata } = readSafetensors(golden);
    expect(Object.keys(tensors).sort()).toEqual(['b_dec', 'b_enc', 'cosine', 'decoder', 'encoder', 'feature_acts', 'fvu', 'mse', 'pre_acts', 'x', 'x_hat']);
    expect(Object.keys(metadata)).toContain('config');
    for (const [name, t] of Object.entries(tensors)) checkTensor(name, t);
  });

  test.each([
    ['inside the length field', 5, /only 5 bytes/],
    ['inside the header', 100, /claims \d+ bytes, but the file has 92 bytes/],
    ['inside the data', -100, /outside the \d+-byte data section/],
  ])('truncated %s', async (_where, cut, message) => {
    await expectNamed(() => readSafetensors(golden.subarray(0, cut < 0 ? golden.length + cut : cut)), SafetensorsError, message);
  });

  test('header length larger than the file', async () => {
    await expectNamed(st({}, new Uint8Array(0), 1000n), SafetensorsError, /claims 1000 bytes, but the file has 2 bytes/);
  });

  test('header length above the cap, in a file big enough to hold it', async () => {
    // The file really has more than MAX_HEADER_BYTES after the length field: only the cap refuses it.
    const bytes = new Uint8Array(MAX_HEADER_BYTES + 64);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
    await expectNamed(() => readSafetensors(bytes), SafetensorsError, new RegExp(`claims ${MAX_HEADER_BYTES + 1} bytes.*cap ${MAX_HEADER_BYTES}`));
    await expectNamed(st({}, new Uint8Array(0), 2n ** 64n - 1n), SafetensorsError, /claims 18446744073709551615 bytes/);
  });

  test.each([
    ['truncated JSON', '{"a": '],
    ['not JSON at all', 'GIF89a\u0000\u0001'],
    ['invalid UTF-8', Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d)],
  ])('non-JSON header: %s', async (_name, header) => {
    const bytes = header instanceof Uint8Array ? (() => {
      const out = new Uint8Array(8 + header.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
      out.set(header, 8);
      return out;
    })() : safetensorsFile(header);
    await expectNamed(() => readSafetensors(bytes), SafetensorsError, /header is not valid UTF-8 JSON/);
  });

  test.each([
    ['end past the data', [0, 16], /data_offsets \[0, 16\] lie outside the 8-byte data section/],
    ['begin after end', [8, 4], /data_offsets \[8, 4\] lie outside/],
    ['negative begin', [-4, 4], /data_offsets must be \[begin, end\] integers, got \[-4,4\]/],
    ['fractional end', [0, 4.5], /data_offsets must be \[begin, end\] integers/],
    ['three offsets', [0, 4, 8], /data_offsets must be \[begin, end\] integers/],
    ['beyond 2^53', [0, 2 ** 60], /data_offsets must be \[begin, end\] integers/],
  ])('out-of-range offsets: %s', async (_name, offsets, message) => {
    await expectNamed(st({ a: { dtype: 'U8', shape: [4], data_offsets: offsets } }, new Uint8Array(8)), SafetensorsError, message);
  });

  test('overlapping offsets', async () => {
    const header = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } };
    await expectNamed(st(header, new Uint8Array(12)), SafetensorsError, /Tensors "a" and "b" overlap/);
  });

  test.each([
    ['too few bytes for the shape', 'F32', [3], [0, 8], /shape \[3\] × F32 needs 12 bytes, but data_offsets span 8/],
    ['too many bytes for the shape', 'BF16', [2, 2], [0, 16], /shape \[2, 2\] × BF16 needs 8 bytes, but data_offsets span 16/],
    ['shape whose product overflows', 'U8', [2 ** 40, 2 ** 40], [0, 16], /needs \d.* bytes, but data_offsets span 16/],
  ])('size/shape mismatch: %s', async (_name, dtype, shape, offsets, message) => {
    await expectNamed(st({ a: { dtype, shape, data_offsets: offsets } }, new Uint8Array(16)), SafetensorsError, message);
  });

  // Names of Object.prototype members must not pass for dtypes ("toString" in {} is true).
  test.each(['F8', 'f32', '', 'toString', '__proto__', 'constructor', 'hasOwnProperty'])('unknown dtype %j', async (dtype) => {
    await expectNamed(st({ a: { dtype, shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), SafetensorsError, /dtype ".*" is not supported\. Should be one of: F64, F32/);
  });

  test.each([
    ['negative', [-1]],
    ['non-integer', [1.5]],
    ['a string', ['4']],
    ['not an array', 4],
    ['above 2^53', [2 ** 54]],
  ])('shape that is %s', async (_name, shape) => {
    await expectNamed(st({ a: { dtype: 'U8', shape, data_offsets: [0, 4] } }, new Uint8Array(4)), SafetensorsError, /shape must be an array of non-negative integers/);
  });

  // JSON.parse accepts any nesting, but printing the bad value for the message must not recurse into a RangeError.
  test.each([
    ['dtype', /dtype an array nested too deeply to print is not supported/],
    ['shape', /shape must be an array of non-negative integers, got an array nested too deeply to print/],
    ['data_offsets', /data_offsets must be \[begin, end\] integers, got an array nested too deeply to print/],
  ])('%s nested 100 000 arrays deep', async (field, message) => {
    const fields: Record<string, string> = { dtype: '"U8"', shape: '[1]', data_offsets: '[0,1]', [field]: `${'['.repeat(100_000)}${']'.repeat(100_000)}` };
    const json = `{"a":{${Object.entries(fields).map(([k, v]) => `"${k}":${v}`).join(',')}}}`;
    await expectNamed(() => readSafetensors(safetensorsFile(json, new Uint8Array(1))), SafetensorsError, message);
  });

  test('a tensor named "__proto__" is an ordinary tensor, not a new prototype for the result', () => {
    const { tensors } = readSafetensors(safetensorsFile(JSON.parse('{"__proto__": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}'), Uint8Array.of(7, 9)));
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(tensors)).toBe(Object.prototype);
    expect(Array.from(Object.getOwnPropertyDescriptor(tensors, '__proto__')?.value.data as Uint8Array)).toEqual([7, 9]);
    // Lookups of other names must not fall through to the tensor entry's own fields.
    expect(tensors['data']).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Named cases: torch checkpoints.

/** Offsets of a zip's records, read from a known-good file to aim damage precisely. */
interface ZipLayout {
  readonly eocd: number;
  /** The ZIP64 end record (PyTorch writes one), whose count/size/offset the reader uses instead. */
  readonly eocd64: number | undefined;
  readonly cdOffset: number;
  readonly centrals: number[];
  readonly locals: number[];
  /** Each entry's name and stored bytes (sizes from the central directory: torch's local headers say 0). */
  readonly entries: Array<{ name: string; data: Uint8Array }>;
}
function zipLayout(bytes: Uint8Array): ZipLayout {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const eocd = bytes.length - 22;
  if (v.getUint32(eocd, true) !== 0x06054b50) throw new Error('fixture has a zip comment');
  const eocd64 = v.getUint32(eocd - 20, true) === 0x07064b50 ? Number(v.getBigUint64(eocd - 12, true)) : undefined;
  const count = eocd64 === undefined ? v.getUint16(eocd + 10, true) : Number(v.getBigUint64(eocd64 + 32, true));
  const cdOffset = eocd64 === undefined ? v.getUint32(eocd + 16, true) : Number(v.getBigUint64(eocd64 + 48, true));
  const centrals: number[] = [];
  const locals: number[] = [];
  const entries: Array<{ name: string; data: Uint8Array }> = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    const local = v.getUint32(p + 42, true);
    const nameLen = v.getUint16(p + 28, true);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    centrals.push(p);
    locals.push(local);
    entries.push({ name: new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen)), data: bytes.subarray(start, start + v.getUint32(p + 20, true)) });
    p += 46 + nameLen + v.getUint16(p + 30, true) + v.getUint16(p + 32, true);
  }
  return { eocd, eocd64, cdOffset, centrals, locals, entries };
}

function patched(bytes: Uint8Array, edit: (v: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  edit(new DataView(copy.buffer));
  return copy;
}

describe('readTorchCheckpoint: named hostile cases', () => {
  const stateDict = readTorchFixture('state_dict.pt');
  const layout = zipLayout(stateDict);
  const first = layout.centrals[0] ?? -1;

  test('the hand-built zip and pickle builders produce a checkpoint the reader accepts', async () => {
    const t = await readTorchCheckpoint(checkpoint(tensorPickle({ shape: [2, 2], stride: [1, 2], storageNumel: 4 }), { 0: f32bytes([1, 2, 3, 4]) }));
    expect(t['']?.shape).toEqual([2, 2]);
    expect(Array.from(t['']?.data as Float32Array)).toEqual([1, 3, 2, 4]);
    const d = await readTorchCheckpoint(checkpoint(tensorPickle({ shape: [3], stride: [1], offset: 1, storageNumel: 4 }), { 0: f32bytes([1, 2, 3, 4]) }, true));
    expect(Array.from(d['']?.data as Float32Array)).toEqual([2, 3, 4]);
  });

  test.each([
    ['to nothing', 0, /not a torch\.save/],
    ['inside the first local header', 20, /not a torch\.save/],
    ['just before the end record', -23, /end-of-central-directory/],
    ['one byte short', -1, /end-of-central-directory/],
  ])('truncated zip: cut %s', async (_name, cut, message) => {
    await expectNamed(() => readTorchCheckpoint(stateDict.subarray(0, cut < 0 ? stateDict.length + cut : cut)), TorchCheckpointError, message);
  });

  test('corrupt central directory signature', async () => {
    const bytes = patched(stateDict, (v) => v.setUint32(first, 0x02014b51, true));
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /ZIP central directory entry 0 is malformed/);
  });

  test('central directory offset past the end of the file', async () => {
    const bytes = patched(stateDict, (v) => {
      v.setUint32(layout.eocd + 16, stateDict.length + 100, true);
      if (layout.eocd64 !== undefined) v.setBigUint64(layout.eocd64 + 48, BigInt(stateDict.length + 100), true);
    });
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /central directory \(\d+\+\d+\) lies past the end of the \d+-byte file/);
  });

  test.each([
    ['a byte with no local header', 1],
    ['past the end of the file', 0xfffffff0],
  ])('entry pointing at a missing local header: %s', async (_name, offset) => {
    const bytes = patched(stateDict, (v) => v.setUint32(first + 42, offset, true));
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /"state_dict\/data\.pkl" points at a missing local header/);
  });

  test('entry claiming 4 GiB of data in a small file', async () => {
    const bytes = patched(stateDict, (v) => v.setUint32(first + 20, 0xfffffff0, true));
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /"state_dict\/data\.pkl" runs past the end of the file/);
  });

  test('extra field running past the end of the file', async () => {
    const layoutLast = layout.centrals[layout.centrals.length - 1] ?? -1;
    const bytes = patched(stateDict, (v) => v.setUint16(layoutLast + 30, 0xffff, true));
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /central directory entry \d+ .*runs past the end/);
  });

  test.each([
    ['2^60 bytes (beyond 2^53)', 2n ** 60n, /holds 1152921504606846976, beyond what this reader can address/],
    ['2^52 bytes', 2n ** 52n, /runs past the end of the file/],
  ])('ZIP64 entry claiming %s', async (_name, size, message) => {
    const pkl = tensorPickle({ shape: [1], stride: [1], storageNumel: 1 });
    const bytes = makeZip([{ name: 'archive/data.pkl', data: pkl, zip64: { size, compressedSize: size } }, { name: 'archive/data/0', data: f32bytes([1]) }]);
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, message);
  });

  test('deflated entry claiming more than deflate can expand to is refused before inflating', async () => {
    const pkl = tensorPickle({ shape: [1], stride: [1], storageNumel: 1 });
    const bytes = makeZip([{ name: 'archive/data.pkl', data: pkl, deflate: true, claimSize: 2 ** 31 }, { name: 'archive/data/0', data: f32bytes([1]) }]);
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /"archive\/data\.pkl" claims 2147483648 bytes from \d+ compressed/);
  });

  test('a deflate bomb (16 MiB of zeros, header says 100 bytes) stops at the declared size', async () => {
    const bomb = makeZip([{ name: 'archive/data.pkl', data: new Uint8Array(16 * 1024 * 1024), deflate: true, claimSize: 100 }]);
    expect(bomb.length).toBeLessThan(200_000);
    await expectNamed(() => readTorchCheckpoint(bomb), TorchCheckpointError, /"archive\/data\.pkl" inflates to more than the 100 bytes its header declares/);
  });

  test('corrupt deflate data', async () => {
    const deflated = readTorchFixture('deflated.pt');
    const local = zipLayout(deflated).locals[0] ?? -1;
    // 0xff as the first byte of the stream: a final block of type 3, which deflate reserves.
    const bytes = patched(deflated, (v) => v.setUint8(local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true), 0xff));
    await expectNamed(() => readTorchCheckpoint(bytes), TorchCheckpointError, /"state_dict\/data\.pkl" is not valid deflate data/);
  });

  describe('pickles that would run code', () => {
    const marker = join(tmpdir(), `loupe-hostile-${process.pid}-${Date.now()}`);
    afterEach(() => rmSync(marker, { force: true }));
    const touch = `touch ${marker}`;
    const payloads: Array<[string, Uint8Array, RegExp]> = [
      ['GLOBAL os.system', pickle(OP.PROTO, 2, OP.GLOBAL, 'os\nsystem\n', str(touch), OP.TUPLE1, OP.REDUCE, OP.STOP), /"os\.system", which Loupe refuses/],
      ['GLOBAL posix.system', pickle(OP.PROTO, 2, OP.GLOBAL, 'posix\nsystem\n', str(touch), OP.TUPLE1, OP.REDUCE, OP.STOP), /"posix\.system", which Loupe refuses/],
      [
        'STACK_GLOBAL builtins.eval',
        pickle(OP.PROTO, 4, str('builtins'), str('eval'), OP.STACK_GLOBAL, str(`__import__('os').system(${JSON.stringify(touch)})`), OP.TUPLE1, OP.REDUCE, OP.STOP),
        /"builtins\.eval", which Loupe refuses/,
      ],
      [
        'GLOBAL __builtin__.getattr',
        pickle(OP.PROTO, 2, OP.GLOBAL, '__builtin__\ngetattr\n', OP.GLOBAL, 'os\nsystem\n', str('__call__'), 0x86, OP.REDUCE, OP.STOP),
        /"__builtin__\.getattr", which Loupe refuses/,
      ],
    ];

    const python = spawnSync('python3', ['-c', 'pass']).status === 0;
    test.skipIf(!python)('the os.system payload really runs a command under Python pickle (so the check below means something)', () => {
      const bytes = payloads[0]?.[1] ?? new Uint8Array(0);
      const r = spawnSync('python3', ['-c', 'import pickle, sys; pickle.loads(sys.stdin.buffer.read())'], { input: bytes });
      expect(r.status).toBe(0);
      expect(existsSync(marker)).toBe(true);
    });

    test.each(payloads)('%s with REDUCE is refused and nothing runs', async (_name, pkl, message) => {
      expect(existsSync(marker)).toBe(false);
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl)), TorchCheckpointError, message);
      expect(existsSync(marker)).toBe(false);
    });
  });

  describe('resource bombs fail fast', () => {
    const nest = (depth: number): Uint8Array => {
      // {'a': {'a': {... {} ...}}} built outside-in: push dict, key, dict, key, ..., then SETITEM all the way up.
      const level = pickle(0x8c, 1, 'a', OP.EMPTY_DICT);
      const body = new Uint8Array(level.length * depth);
      for (let i = 0; i < depth; i++) body.set(level, i * level.length);
      return pickle(OP.PROTO, 2, OP.EMPTY_DICT, body, new Uint8Array(depth).fill(OP.SETITEM), OP.STOP);
    };

    test('a dict nested 200 000 deep', async () => {
      await expectNamed(() => readTorchCheckpoint(checkpoint(nest(200_000))), TorchCheckpointError, /nested more than \d+ dicts deep/);
    });

    test('a dict that contains itself', async () => {
      const pkl = pickle(OP.PROTO, 2, OP.EMPTY_DICT, OP.BINPUT, 0, str('self'), OP.BINGET, 0, OP.SETITEM, OP.STOP);
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl)), TorchCheckpointError, /dict that contains itself/);
    });

    test('a billion laughs: 64 levels of a dict holding the one below twice', async () => {
      // d0 = {}; d(i+1) = {'a': di, 'b': di}: 2^64 paths through 65 dicts.
      const parts: Array<number | Uint8Array> = [OP.PROTO, 2, OP.EMPTY_DICT, OP.LONG_BINPUT, u32le(0)];
      for (let i = 1; i <= 64; i++) {
        parts.push(OP.EMPTY_DICT, OP.LONG_BINPUT, u32le(i));
        for (const k of ['a', 'b']) parts.push(str(k), OP.LONG_BINGET, u32le(i - 1), OP.SETITEM);
      }
      parts.push(OP.STOP);
      await expectNamed(() => readTorchCheckpoint(checkpoint(pickle(...parts))), TorchCheckpointError, /more than \d+ entries/);
    });

    test('APPENDS of 300 000 items neither overflows the stack nor invents tensors', async () => {
      const pkl = pickle(OP.PROTO, 2, OP.EMPTY_LIST, OP.MARK, new Uint8Array(300_000).fill(OP.NONE), OP.APPENDS, OP.STOP);
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl)), TorchCheckpointError, /holds no tensors/);
    });

    test.each([
      ['BINUNICODE8 of 2^62 bytes', pickle(OP.PROTO, 4, OP.BINUNICODE8, u64le(2n ** 62n), 'abc', OP.STOP)],
      ['BINUNICODE8 of 2^64-1 bytes', pickle(OP.PROTO, 4, OP.BINUNICODE8, u64le(2n ** 64n - 1n), 'abc', OP.STOP)],
      ['BINBYTES of 4 GiB', pickle(OP.PROTO, 2, OP.BINBYTES, u32le(0xffffffff), 'abc', OP.STOP)],
    ])('%s', async (_name, pkl) => {
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl)), TorchCheckpointError, /needs \d+ more bytes but the stream ends/);
    });

    test('invalid UTF-8 in a GLOBAL name', async () => {
      const pkl = pickle(OP.PROTO, 2, OP.GLOBAL, Uint8Array.of(0x74, 0xff, 0x0a, 0x78, 0x0a), OP.STOP);
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl)), TorchCheckpointError, /Pickle stream: text that is not valid UTF-8/);
    });

    test('a one-float storage broadcast (stride 0) to 10^9 × 10^9 elements', async () => {
      const pkl = tensorPickle({ shape: [1e9, 1e9], stride: [0, 0], storageNumel: 1 });
      await expectNamed(() => readTorchCheckpoint(checkpoint(pkl, { 0: f32bytes([1]) })), TorchCheckpointError, /Tensor "" has 1000000000000000000 elements but its storage holds 1/);
    });

    test('an empty tensor with a storage offset far past its storage reads as empty', async () => {
      const t = await readTorchCheckpoint(checkpoint(tensorPickle({ shape: [0, 3], stride: [3, 1], offset: 2 ** 40, storageNumel: 1 }), { 0: f32bytes([1]) }));
      expect(t['']?.shape).toEqual([0, 3]);
      expect(t['']?.data.length).toBe(0);
    });

    test('a state dict key "__proto__" is an ordinary tensor name', async () => {
      const pkl = tensorPickle({ shape: [1], stride: [1], storageNumel: 1 });
      // Wrap the bare tensor in {'__proto__': tensor}: EMPTY_DICT, key, <tensor ops without PROTO/STOP>, SETITEM.
      const body = pkl.subarray(2, pkl.length - 1);
      const t = await readTorchCheckpoint(checkpoint(pickle(OP.PROTO, 2, OP.EMPTY_DICT, str('__proto__'), body, OP.SETITEM, OP.STOP), { 0: f32bytes([5]) }));
      expect(Object.keys(t)).toEqual(['__proto__']);
      expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
      expect(Array.from(Object.getOwnPropertyDescriptor(t, '__proto__')?.value.data as Float32Array)).toEqual([5]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests: random corruption of real files.


/** Runs one reader call and classifies the outcome; anything but tensors or the named error fails the property. */
async function outcome(call: () => unknown, cls: typeof SafetensorsError | typeof TorchCheckpointError, check: (result: unknown) => void): Promise<'ok' | 'refused'> {
  const t0 = performance.now();
  let result: unknown;
  try {
    result = await call();
  } catch (e) {
    const ms = performance.now() - t0;
    if (ms > PER_CALL_MS) throw new Error(`the reader took ${ms.toFixed(0)} ms to refuse the file`);
    if (!(e instanceof LoupeError)) throw new Error(`the reader threw ${(e as Error).name ?? typeof e}: ${(e as Error).message ?? String(e)}`, { cause: e });
    if (!(e instanceof cls)) throw new Error(`the reader threw ${e.name}, expected ${cls.name}: ${e.message}`);
    if (e.message.length < 20) throw new Error(`unhelpful error message: ${JSON.stringify(e.message)}`);
    return 'refused';
  }
  const ms = performance.now() - t0;
  if (ms > PER_CALL_MS) throw new Error(`the reader took ${ms.toFixed(0)} ms`);
  check(result);
  return 'ok';
}

const SAFETENSORS_BYTE_RUNS = 1500;
const SAFETENSORS_JSON_RUNS = 1000;
const TORCH_BYTE_RUNS = 1500;
const TORCH_PICKLE_RUNS = 1000;

describe('readSafetensors: random corruption (property)', () => {
  const golden = new Uint8Array(readFileSync(`${GOLDEN_DIR}saelens-standard-layernorm-f16-t7.safetensors`));
  const small = readTorchFixture('expected.safetensors');
  const headerEnd = (b: Uint8Array): number => 8 + Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  const checkFile = (r: unknown): void => {
    const { tensors, metadata } = r as ReturnType<typeof readSafetensors>;
    for (const [name, t] of Object.entries(tensors)) checkTensor(name, t);
    for (const v of Object.values(metadata)) if (typeof v !== 'string') throw new Error('metadata value is not a string');
  };

  test.each([
    ['golden saelens-standard-layernorm-f16-t7', golden],
    ['torch expected.safetensors', small],
  ])(`byte flips, truncations, insertions, deletions, header-length rewrites of %s`, async (_name, base) => {
    const end = headerEnd(base);
    const arb = byteMutations(base, [[0, end], [end - 8, end + 64]], [{ at: 0, width: 8, truth: end - 8 }]);
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(arb, async (muts) => {
        seen[await outcome(() => readSafetensors(mutate(base, muts)), SafetensorsError, checkFile)]++;
      }),
      { numRuns: SAFETENSORS_BYTE_RUNS / 2 },
    );
    // The corruptions must actually reach the reader's checks, and some must leave a readable file.
    expect(seen.refused).toBeGreaterThan(SAFETENSORS_BYTE_RUNS / 10);
    expect(seen.ok).toBeGreaterThan(0);
  });

  test('random JSON header mutations keep every entry named in the header, or are refused', async () => {
    const base = golden;
    const end = headerEnd(base);
    const header = JSON.parse(new TextDecoder().decode(base.subarray(8, end))) as Record<string, unknown>;
    const entries = Object.entries(header);
    const data = base.subarray(end);
    const weirdName = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', '__metadata__', '', 'data', 'shape'), fc.string({ maxLength: 8 }));
    const dtype = fc.oneof(fc.constantFrom('F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8', 'toString', '__proto__', 'valueOf', ''), fc.jsonValue({ maxDepth: 1 }));
    const dim = fc.oneof(fc.integer({ min: -3, max: 4096 }), fc.constantFrom(0, 1, 0.5, -0, 2 ** 53, 2 ** 64, 1e308, -1), fc.jsonValue({ maxDepth: 0 }));
    const offset = fc.oneof(fc.integer({ min: -16, max: data.length + 16 }), fc.constantFrom(0, data.length, 2 ** 53, 2 ** 60, 0.5), fc.jsonValue({ maxDepth: 0 }));
    const idx = fc.nat({ max: entries.length - 1 });
    type HeaderMutation =
      | { kind: 'field'; i: number; field: string; value: unknown }
      | { kind: 'drop-field'; i: number; field: string }
      | { kind: 'rename'; i: number; to: string }
      | { kind: 'replace'; i: number; value: unknown }
      | { kind: 'shift'; i: number; begin: number; end: number }
      | { kind: 'add'; name: string; value: unknown };
    const field = fc.constantFrom('dtype', 'shape', 'data_offsets');
    const mutation: fc.Arbitrary<HeaderMutation> = fc.oneof(
      fc.record({ kind: fc.constant('field' as const), i: idx, field: fc.constant('dtype'), value: dtype }),
      fc.record({ kind: fc.constant('field' as const), i: idx, field: fc.constant('shape'), value: fc.oneof(fc.array(dim, { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 })) }),
      fc.record({ kind: fc.constant('field' as const), i: idx, field: fc.constant('data_offsets'), value: fc.oneof(fc.array(offset, { maxLength: 3 }), fc.jsonValue({ maxDepth: 2 })) }),
      fc.record({ kind: fc.constant('drop-field' as const), i: idx, field }),
      fc.record({ kind: fc.constant('rename' as const), i: idx, to: weirdName }),
      fc.record({ kind: fc.constant('replace' as const), i: idx, value: fc.jsonValue({ maxDepth: 3 }) }),
      fc.record({ kind: fc.constant('shift' as const), i: idx, begin: fc.integer({ min: -64, max: 64 }), end: fc.integer({ min: -64, max: 64 }) }),
      fc.record({ kind: fc.constant('add' as const), name: weirdName, value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ dtype, shape: fc.array(dim, { maxLength: 3 }), data_offsets: fc.array(offset, { minLength: 2, maxLength: 2 }) })) }),
    );
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (muts) => {
        // Entries as [name, value] pairs, serialised by hand so names like "__proto__" survive into the JSON text.
        const list: Array<[string, unknown]> = entries.map(([k, v]) => [k, structuredClone(v)]);
        for (const m of muts) {
          if (m.kind === 'add') {
            list.push([m.name, m.value]);
            continue;
          }
          const slot = list[m.i % list.length];
          if (slot === undefined) continue;
          const v = slot[1];
          const rec = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
          if (m.kind === 'field' && rec !== undefined) rec[m.field] = m.value;
          else if (m.kind === 'drop-field' && rec !== undefined) delete rec[m.field];
          else if (m.kind === 'rename') slot[0] = m.to;
          else if (m.kind === 'replace') slot[1] = m.value;
          else if (m.kind === 'shift' && rec !== undefined && Array.isArray(rec['data_offsets'])) {
            const [b, e] = rec['data_offsets'] as number[];
            rec['data_offsets'] = [(b ?? 0) + m.begin, (e ?? 0) + m.end];
          }
        }
        const json = `{${list.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`;
        const bytes = safetensorsFile(json, data);
        const names = new Set(list.map(([k]) => k).filter((k) => k !== '__metadata__'));
        seen[
          await outcome(() => readSafetensors(bytes), SafetensorsError, (r) => {
            checkFile(r);
            const got = Object.keys((r as ReturnType<typeof readSafetensors>).tensors);
            if (got.length !== names.size || !got.every((k) => names.has(k))) throw new Error(`tensors ${JSON.stringify(got)} but the header names ${JSON.stringify([...names])}`);
          })
        ]++;
      }),
      { numRuns: SAFETENSORS_JSON_RUNS },
    );
    expect(seen.refused).toBeGreaterThan(SAFETENSORS_JSON_RUNS / 4);
    expect(seen.ok).toBeGreaterThan(0);
  });
});

describe('readTorchCheckpoint: random corruption (property)', () => {
  const checkTensors = (r: unknown): void => {
    const tensors = r as Record<string, SafetensorsTensor>;
    if (Object.keys(tensors).length === 0) throw new Error('returned no tensors without an error');
    for (const [name, t] of Object.entries(tensors)) checkTensor(name, t);
  };
  /** Copy into a buffer at `shift` so the reader also meets unaligned views of the same file. */
  const placed = (bytes: Uint8Array, shift: number): Uint8Array => {
    const out = new Uint8Array(bytes.length + shift);
    out.set(bytes, shift);
    return out.subarray(shift);
  };

  test.each(['state_dict.pt', 'deflated.pt', 'nested.pt'])('byte-level damage and zip field rewrites of %s', async (file) => {
    const base = readTorchFixture(file);
    const { eocd, eocd64, cdOffset, centrals, locals } = zipLayout(base);
    const v = new DataView(base.buffer, base.byteOffset, base.byteLength);
    const fields: Array<{ at: number; width: number; truth: number }> = [
      { at: eocd + 10, width: 2, truth: v.getUint16(eocd + 10, true) },
      { at: eocd + 12, width: 4, truth: v.getUint32(eocd + 12, true) },
      { at: eocd + 16, width: 4, truth: v.getUint32(eocd + 16, true) },
      ...(eocd64 === undefined
        ? []
        : [32, 40, 48].map((o) => ({ at: eocd64 + o, width: 8, truth: Number(v.getBigUint64(eocd64 + o, true)) })).concat([{ at: eocd - 12, width: 8, truth: eocd64 }])),
      ...centrals.flatMap((c) =>
        ([[10, 2], [20, 4], [24, 4], [28, 2], [30, 2], [32, 2], [42, 4]] as const).map(([o, width]) => ({ at: c + o, width, truth: width === 2 ? v.getUint16(c + o, true) : v.getUint32(c + o, true) })),
      ),
      ...locals.flatMap((l) => [26, 28].map((o) => ({ at: l + o, width: 2, truth: v.getUint16(l + o, true) }))),
    ];
    const pklEnd = locals[1] ?? base.length;
    const arb = fc.tuple(byteMutations(base, [[0, pklEnd], [cdOffset, base.length]], fields), fc.integer({ min: 0, max: 7 }));
    const runs = Math.round(TORCH_BYTE_RUNS / 3);
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(arb, async ([muts, shift]) => {
        seen[await outcome(() => readTorchCheckpoint(placed(mutate(base, muts), shift)), TorchCheckpointError, checkTensors)]++;
      }),
      { numRuns: runs },
    );
    expect(seen.refused).toBeGreaterThan(runs / 10);
    expect(seen.ok).toBeGreaterThan(0);
  });

  test('pickle-level damage inside a valid zip (opcodes spliced, flipped, cut)', async () => {
    const bases = ['state_dict.pt', 'nested.pt'].map((file) => zipLayout(readTorchFixture(file)).entries);
    // Opcode sequences that stress the VM's bookkeeping: memo, marks, persistent ids, reductions, lengths.
    const splices = [
      [0x68, 0], [0x68, 5], [0x6a, 0xff, 0xff, 0xff, 0xff], [0x71, 0], [0x94], [0x28], [0x74], [0x6c], [0x64], [0x73], [0x75], [0x61], [0x65],
      [0x51], [0x52], [0x62], [0x2e], [0x30], [0x85], [0x86], [0x87], [0x29], [0x7d], [0x5d], [0x4e], [0x88],
      [0x58, 0xff, 0xff, 0xff, 0x7f], [0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40], [0x42, 0xff, 0xff, 0xff, 0xff], [0x8a, 0xff], [0x95, 0, 0, 0, 0, 0, 0, 0, 0x80],
      [0x8c, 2, 0xc3, 0x28], [0x63, ...enc.encode('builtins\neval\n')], [0x63, ...enc.encode('torch\nFloatStorage\n')], [0x4a, 0xff, 0xff, 0xff, 0xff],
      [0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x40],
    ].map((s) => Uint8Array.from(s));
    const pklMutation: fc.Arbitrary<Mutation> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat({ max: 1024 }), bytes: fc.constantFrom(...splices) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: 1024 }), xor: fc.integer({ min: 1, max: 255 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.nat({ max: 1024 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat({ max: 1024 }), count: fc.integer({ min: 1, max: 12 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: 1024 }) }) },
    );
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: bases.length - 1 }), fc.array(pklMutation, { minLength: 1, maxLength: 4 }), fc.boolean(), async (which, muts, deflate) => {
        const specs = bases[which] ?? [];
        const bytes = makeZip(specs.map((s) => (s.name.endsWith('/data.pkl') ? { ...s, data: mutate(s.data, muts), deflate } : s)));
        seen[await outcome(() => readTorchCheckpoint(bytes), TorchCheckpointError, checkTensors)]++;
      }),
      { numRuns: TORCH_PICKLE_RUNS },
    );
    expect(seen.refused).toBeGreaterThan(TORCH_PICKLE_RUNS / 4);
    expect(seen.ok).toBeGreaterThan(0);
  });
});
