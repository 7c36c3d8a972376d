/**
 * Hostile inputs for the streaming path: `loadSae` over `ByteReader`, `streamSafetensors` and
 * `streamTorchCheckpoint`, with the tensors routed to the real sinks (CPU backend).
 *
 * Named cases pin the error class and message for each kind of damage a streamed file can carry
 * (a header longer than the file, a cut mid-tensor, a pickle with no data descriptor, a storage
 * whose descriptor disagrees with the pickle or that is missing, a foreign record, a pickle that
 * would run a shell command, an abort while bytes are still coming). Property tests then push
 * random corruptions of published-layout fixtures through `loadSae` — every load must give an
 * Sae that encodes, or reject with a LoupeError; never a RangeError/TypeError, never hang — and
 * through the parsers in 0–7-byte pieces, where the outcome must not depend on chunk boundaries.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterEach, describe, expect, test } from 'vitest';
import { LoupeError, SafetensorsError, ShapeMismatchError, TorchCheckpointError } from '../../src/errors.js';
import { streamSafetensors } from '../../src/formats/safetensors-stream.js';
import type { StreamedTensor, TensorSink, TensorStream } from '../../src/formats/tensor-stream.js';
import { streamTorchCheckpoint } from '../../src/formats/torch-stream.js';
import { ByteReader, type ByteStream } from '../../src/io/byte-reader.js';
import type { SaeFiles } from '../../src/io/folder.js';
import { loadSae, type LoadSaeOptions } from '../../src/runtime/load.js';
import { FORMATS_DIR } from '../helpers/format-cases.js';
import { concat, DTYPE_BYTES, f32bytes, int, OP, pickle, safetensorsFile, str, tuple } from '../helpers/pickle-builders.js';
import { byteMutations, mutate, type Field } from '../helpers/byte-mutations.js';

const enc = new TextEncoder();
const fixture = (path: string): Uint8Array => new Uint8Array(readFileSync(`${FORMATS_DIR}${path}`));

/**
 * One load or parse may take this long at most; past it the run fails as a hang. (A synchronous
 * infinite loop would block the timer too — vitest's test timeout is the backstop for that.)
 */
const PER_RUN_MS = 5_000;


const LOAD: LoadSaeOptions = { backend: 'cpu', warmup: false };

// ---------------------------------------------------------------------------------------------
// Builders (pickle and safetensors helpers in tests/helpers/pickle-builders.ts; the zip builder writes torch.save's
// streaming layout: sizes zero in the local header, a data descriptor after each entry's data).




/** `_rebuild_tensor_v2(storage(key, FloatStorage, numel), offset, shape, stride, False, None)`, without PROTO/STOP. */
function tensorOps(t: { key: string; numel: number; shape: number[]; stride?: number[]; offset?: number }): Uint8Array {
  const stride = t.stride ?? t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
  return pickle(
    OP.GLOBAL, 'torch._utils\n_rebuild_tensor_v2\n',
    OP.MARK,
    tuple(str('storage'), pickle(OP.GLOBAL, 'torch\nFloatStorage\n'), str(t.key), str('cpu'), int(t.numel)),
    OP.BINPERSID,
    int(t.offset ?? 0),
    tuple(...t.shape.map(int)),
    tuple(...stride.map(int)),
    OP.NEWFALSE,
    OP.NONE,
    OP.TUPLE,
    OP.REDUCE,
  );
}
/** A state dict {name: tensor, ...}. */
const stateDict = (tensors: Record<string, Uint8Array>): Uint8Array =>
  pickle(OP.PROTO, 2, OP.EMPTY_DICT, OP.MARK, ...Object.entries(tensors).flatMap(([k, ops]) => [str(k), ops]), OP.SETITEMS, OP.STOP);

interface StreamEntry {
  readonly name: string;
  readonly data: Uint8Array;
  /** torch.save's way (default): flag bit 3, sizes zero in the local header, a descriptor after the data. */
  readonly descriptor?: boolean;
  /** Set flag bit 3 but write no descriptor. */
  readonly dropDescriptor?: boolean;
  /** The compressed size the descriptor claims (default: the true one). */
  readonly descriptorSize?: number;
  /** 32- or 64-bit (ZIP64) sizes in the descriptor, with or without its optional signature (default '32'). */
  readonly descriptorForm?: '32' | '64' | '32-nosig' | '64-nosig';
  readonly deflate?: boolean;
  /** The uncompressed size to claim in the local header of an entry without descriptor. */
  readonly claimSize?: number;
}

/** A zip laid out as torch.save writes it, central directory included. */
function torchSaveZip(entries: readonly StreamEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = e.deflate === true ? new Uint8Array(deflateRawSync(e.data)) : e.data;
    const desc = e.descriptor ?? true;
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, desc ? 8 : 0, true);
    lv.setUint16(8, e.deflate === true ? 8 : 0, true);
    lv.setUint32(18, desc ? 0 : body.length, true);
    lv.setUint32(22, desc ? 0 : (e.claimSize ?? e.data.length), true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const form = e.descriptorForm ?? '32';
    const wide = form.startsWith('64');
    const sig = form.endsWith('nosig') ? 0 : 4;
    const descriptor = new Uint8Array(desc && e.dropDescriptor !== true ? sig + 4 + (wide ? 16 : 8) : 0);
    if (descriptor.length > 0) {
      const dv = new DataView(descriptor.buffer);
      if (sig > 0) dv.setUint32(0, 0x08074b50, true);
      const csize = BigInt(e.descriptorSize ?? body.length);
      if (wide) {
        dv.setBigUint64(sig + 4, csize, true);
        dv.setBigUint64(sig + 12, BigInt(e.data.length), true);
      } else {
        dv.setUint32(sig + 4, Number(csize), true);
        dv.setUint32(sig + 8, e.data.length, true);
      }
    }
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(8, desc ? 8 : 0, true);
    cv.setUint16(10, e.deflate === true ? 8 : 0, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    parts.push(local, body, descriptor);
    centrals.push(central);
    offset += local.length + body.length + descriptor.length;
  }
  const cd = concat(centrals);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cd.length, true);
  ev.setUint32(16, offset, true);
  return concat([...parts, cd, eocd]);
}

/** A Goodfire-R1-shaped SAE small enough to build by hand: W [2, 4], b_enc [4], b_dec [2]. */
const MINI_CONFIG = enc.encode(JSON.stringify({ d_in: 2, expansion_factor: 2, k: 1 }));
const MINI_TENSORS = {
  W: { key: '0', values: [1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 4] },
  b_enc: { key: '1', values: [0.5, -0.5, 0.25, 0], shape: [4] },
  b_dec: { key: '2', values: [0, 0], shape: [2] },
};
type MiniName = keyof typeof MINI_TENSORS;
function miniGoodfire(edit: { omit?: MiniName; storage?: Partial<Record<MiniName, Partial<StreamEntry>>>; pkl?: Partial<StreamEntry>; pickleBytes?: Uint8Array } = {}): Uint8Array {
  const names = Object.keys(MINI_TENSORS) as MiniName[];
  const pkl = edit.pickleBytes ?? stateDict(Object.fromEntries(names.map((n) => [n, tensorOps({ key: MINI_TENSORS[n].key, numel: MINI_TENSORS[n].values.length, shape: MINI_TENSORS[n].shape })])));
  return torchSaveZip([
    { name: 'mini/data.pkl', data: pkl, ...edit.pkl },
    { name: 'mini/byteorder', data: enc.encode('little') },
    ...names.filter((n) => n !== edit.omit).map((n) => ({ name: `mini/data/${MINI_TENSORS[n].key}`, data: f32bytes(MINI_TENSORS[n].values), ...edit.storage?.[n] })),
    { name: 'mini/version', data: enc.encode('3\n') },
  ]);
}
const miniFiles = (pt: Uint8Array | Blob): SaeFiles => ({ 'config.json': MINI_CONFIG, 'mini.pt': pt });

/** `bytes` as a Blob whose stream() hands them out in the given piece sizes (a slow network). */
class PiecewiseBlob extends Blob {
  readonly #bytes: Uint8Array;
  readonly #sizes: readonly number[];
  readonly #stallAfter: number;
  readonly #hot: ReadonlyArray<readonly [number, number]> | undefined;
  /** Whether the reader cancelled the stream (it stops reading the source on an abort or error). */
  cancelled = false;
  /** `stallAfter`: bytes sent before the stream goes quiet for good; `hot`: see `pieces`. */
  constructor(bytes: Uint8Array, sizes: readonly number[], options: { stallAfter?: number; hot?: ReadonlyArray<readonly [number, number]> } = {}) {
    super([bytes.slice()]);
    this.#bytes = bytes;
    this.#sizes = sizes;
    this.#stallAfter = options.stallAfter ?? Infinity;
    this.#hot = options.hot;
  }
  override stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
    const it = pieces(this.#bytes, this.#sizes, this.#hot, 32 * 1024)[Symbol.asyncIterator]();
    let sent = 0;
    const stallAfter = this.#stallAfter;
    const cancelled = (): void => {
      this.cancelled = true;
    };
    return new ReadableStream<Uint8Array<ArrayBuffer>>({
      cancel: cancelled,
      async pull(controller) {
        // A connection that goes quiet: the read never completes.
        if (sent >= stallAfter) return new Promise<void>(() => undefined);
        const r = await it.next();
        if (r.done === true) controller.close();
        else {
          sent += r.value.byteLength;
          controller.enqueue(r.value.slice());
        }
      },
    });
  }
}

/**
 * `bytes` in pieces whose sizes cycle through `sizes` (0 yields an empty chunk). Outside the `hot`
 * ranges, when given, pieces run up to `coarse` bytes, so a large file costs few chunks while
 * every record boundary still falls at arbitrary places.
 */
function pieces(bytes: Uint8Array, sizes: readonly number[], hot?: ReadonlyArray<readonly [number, number]>, coarse = 4096): AsyncIterable<Uint8Array> {
  const cycle = sizes.some((s) => s > 0) ? sizes : [1];
  return {
    async *[Symbol.asyncIterator]() {
      let at = 0;
      let i = 0;
      while (at < bytes.length) {
        let n: number;
        const inHot = hot === undefined || hot.some(([a, b]) => at >= a && at < b);
        if (inHot) n = cycle[i++ % cycle.length] ?? 1;
        else {
          const next = Math.min(...(hot ?? []).map(([a]) => a).filter((a) => a > at), bytes.length);
          n = Math.min(coarse, next - at);
        }
        yield bytes.subarray(at, Math.min(bytes.length, at + n));
        at += n;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Outcomes.

class Hang extends Error {
  override name = 'Hang';
}

/** `p`, or a Hang failure after PER_RUN_MS. */
async function bounded<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Hang(`${what} did not settle within ${PER_RUN_MS} ms`)), PER_RUN_MS);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Anything but a LoupeError with a useful message fails the property. */
function refusal(e: unknown, what: string): LoupeError {
  if (e instanceof Hang) throw e;
  if (!(e instanceof LoupeError)) {
    const err = e as { name?: unknown; message?: unknown };
    throw new Error(`${what} threw ${String(err.name ?? typeof e)}: ${String(err.message ?? e)}`, { cause: e });
  }
  if (e.message.length < 20) throw new Error(`${what}: unhelpful error message ${JSON.stringify(e.message)}`);
  return e;
}

/** Loads `files` on the CPU; an Sae must also encode a zero vector. Returns the refusal's class, or 'ok'. */
async function loadOutcome(files: SaeFiles): Promise<string> {
  let sae;
  try {
    sae = await bounded('loadSae', loadSae({ files }, LOAD));
  } catch (e) {
    return refusal(e, 'loadSae').name;
  }
  try {
    const codes = await bounded('encode', sae.encode(new Float32Array(sae.config.dIn)));
    if (codes === undefined) throw new Error('encode returned nothing');
  } catch (e) {
    return `encode:${refusal(e, 'encode').name}`;
  } finally {
    sae.destroy();
  }
  return 'ok';
}

/**
 * Parses a weights stream with the streaming parser, routing the tensors `want` picks to
 * recording sinks. Returns a transcript (headers, then each delivered tensor's length and
 * checksum) or the refusal — the same for any chunking of the same bytes.
 */
async function parseTranscript(format: 'safetensors' | 'torch', body: ByteStream, size: number | undefined, want: (name: string) => boolean): Promise<string> {
  const reader = new ByteReader(body, { truncated: (what, at) => (format === 'torch' ? new TorchCheckpointError(`cut at ${at} in ${what}`) : new SafetensorsError(`cut at ${at} in ${what}`)) });
  const log: string[] = [];
  let stream: TensorStream | undefined;
  try {
    stream = format === 'torch' ? await streamTorchCheckpoint(reader) : await streamSafetensors(reader, size);
    const headers = [...stream.tensors.values()];
    for (const t of headers) log.push(`${t.name} ${t.dtype} [${t.shape.join(',')}] ${t.order}`);
    await stream.pump((t: StreamedTensor): TensorSink | undefined => {
      if (!want(t.name)) return undefined;
      const expected = t.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[t.dtype] ?? NaN);
      let n = 0;
      let sum = 0;
      let ended = false;
      return {
        write(bytes) {
          if (ended) throw new Error(`"${t.name}": write after end`);
          for (const b of bytes) sum = (sum * 31 + b) >>> 0;
          n += bytes.byteLength;
        },
        end() {
          if (ended) throw new Error(`"${t.name}": end twice`);
          ended = true;
          // The parser must not end a tensor short or long without an error of its own.
          if (n !== expected) throw new Error(`"${t.name}" ended after ${n} bytes, its header needs ${expected}`);
          log.push(`${t.name}: ${n} bytes, sum ${sum}`);
        },
      };
    });
    return log.join('\n');
  } catch (e) {
    await stream?.cancel();
    return `${refusal(e, `${format} parser`).name}: ${(e as Error).message}`;
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await bounded('the call', p);
  } catch (e) {
    if (e instanceof Hang) throw e;
    return e;
  }
  throw new Error('expected a rejection, but the call resolved');
}

/** Rejects with exactly `cls` (not merely some Error) and a message matching `message`. */
async function expectNamed(p: Promise<unknown>, cls: new (message: string) => LoupeError, message: RegExp): Promise<void> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(cls);
  expect((e as Error).message).toMatch(message);
}

// ---------------------------------------------------------------------------------------------
// Named cases: safetensors.

const ST_CFG = fixture('saelens-standard/cfg.json');
const ST = fixture('saelens-standard/sae_weights.safetensors');
const ST_HEADER_END = 8 + Number(new DataView(ST.buffer, ST.byteOffset).getBigUint64(0, true));
const stFiles = (weights: Uint8Array | Blob): SaeFiles => ({ 'cfg.json': ST_CFG, 'sae_weights.safetensors': weights });

/** A server that sends no Content-Length, as a chunked or compressed download does: the loader learns the size only at EOF. */
function lengthlessFetch(files: Record<string, Uint8Array>): typeof fetch {
  return (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const path = new URL(input instanceof Request ? input.url : String(input)).pathname.replace(/^\/sae\//, '');
    const bytes = files[path];
    if (bytes === undefined) return Promise.resolve(new Response(null, { status: 404, statusText: 'Not Found' }));
    if (init?.method === 'HEAD') return Promise.resolve(new Response(null, { status: 200 }));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 16 * 1024) controller.enqueue(bytes.slice(at, at + 16 * 1024));
        controller.close();
      },
    });
    return Promise.resolve(new Response(body, { status: 200 }));
  };
}

describe('streamed safetensors: named hostile cases', () => {
  test('the fixture loads cleanly from memory and in 1–7-byte pieces (so the damage below is what the errors are about)', async () => {
    expect(await loadOutcome(stFiles(ST))).toBe('ok');
    expect(await loadOutcome(stFiles(new PiecewiseBlob(ST, [1, 7, 3, 2, 5])))).toBe('ok');
  });

  test('header length larger than the file', async () => {
    const bytes = ST.slice();
    new DataView(bytes.buffer).setBigUint64(0, BigInt(ST.length), true);
    await expectNamed(loadSae({ files: stFiles(bytes) }, LOAD), SafetensorsError, new RegExp(`claims ${ST.length} bytes, but the file has ${ST.length - 8} bytes after the length field`));
    // Without a known size (no Content-Length) the claim is only found out at EOF: the truncation error names where.
    const fetchIt = lengthlessFetch({ 'cfg.json': ST_CFG, 'sae_weights.safetensors': safetensorsFile({}, new Uint8Array(0), 90n * 1024n * 1024n) });
    await expectNamed(
      loadSae('https://hub.test/sae/sae_weights.safetensors', { ...LOAD, fetch: fetchIt, cache: false }),
      SafetensorsError,
      /sae_weights\.safetensors ended at byte 10 while reading the JSON header; the file is truncated/,
    );
  });

  test('truncated mid-tensor', async () => {
    // Ordered by offset: W_dec [0, 127872), then W_enc: cut 1000 bytes into W_enc.
    const cut = ST_HEADER_END + 127_872 + 1000;
    await expectNamed(loadSae({ files: stFiles(ST.subarray(0, cut)) }, LOAD), SafetensorsError, /data_offsets \[127872, 255744\] lie outside the \d+-byte data section\. The file is truncated/);
    const fetchIt = lengthlessFetch({ 'cfg.json': ST_CFG, 'sae_weights.safetensors': ST.subarray(0, cut) });
    await expectNamed(
      loadSae('https://hub.test/sae/sae_weights.safetensors', { ...LOAD, fetch: fetchIt, cache: false }),
      SafetensorsError,
      new RegExp(`sae_weights\\.safetensors ended at byte ${cut} while reading tensor "W_enc"; the file is truncated`),
    );
  });
});

describe('the sinks behind the streams', () => {
  /** A SAELens-standard file for a config of d_in × d_sae (zero-filled weights). */
  const saelens = (dIn: number, dSae: number): SaeFiles => {
    const cfg = enc.encode(JSON.stringify({ architecture: 'standard', d_in: dIn, d_sae: dSae, dtype: 'float32', apply_b_dec_to_input: true, normalize_activations: 'none' }));
    const header: Record<string, unknown> = {};
    let off = 0;
    for (const [name, shape] of [['W_enc', [dIn, dSae]], ['W_dec', [dSae, dIn]], ['b_enc', [dSae]], ['b_dec', [dIn]]] as const) {
      const n = 4 * shape.reduce((a: number, b: number) => a * b, 1);
      header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n] };
      off += n;
    }
    return { 'cfg.json': cfg, 'sae_weights.safetensors': safetensorsFile(header, new Uint8Array(off)) };
  };

  test.each([
    [0, 4],
    [4, 0],
  ])('a config of d_in %i × d_sae %i is refused by name, not as a truncated file', async (dIn, dSae) => {
    await expectNamed(loadSae({ files: saelens(dIn, dSae) }, LOAD), ShapeMismatchError, new RegExp(`is a ${dSae} × ${dIn} \\(d_sae × d_in\\) weight matrix; both must be positive integers`));
  });

  test.each([NaN, Infinity, 0, -1])('chunkBytes %s still loads (no zero-byte chunk buffer to spin on)', async (chunkBytes) => {
    const sae = await bounded('loadSae', loadSae({ files: saelens(3, 5) }, { ...LOAD, chunkBytes }));
    expect(sae.config.dSae).toBe(5);
    sae.destroy();
  });
});

// ---------------------------------------------------------------------------------------------
// Named cases: torch.save checkpoints.

const GF_CFG = fixture('goodfire/config.json');
const GF = fixture('goodfire/DeepSeek-R1-SAE-l37.pt');
const gfFiles = (weights: Uint8Array | Blob): SaeFiles => ({ 'config.json': GF_CFG, 'DeepSeek-R1-SAE-l37.pt': weights });

/** Where each entry of a torch.save zip sits (from its central directory): local header, data, descriptor. */
interface StreamLayout {
  readonly entries: Array<{ name: string; local: number; dataStart: number; dataEnd: number; descriptorEnd: number }>;
  readonly cdOffset: number;
}
function streamLayout(bytes: Uint8Array): StreamLayout {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const eocd = bytes.length - 22;
  if (v.getUint32(eocd, true) !== 0x06054b50) throw new Error('fixture has a zip comment');
  const eocd64 = v.getUint32(eocd - 20, true) === 0x07064b50 ? Number(v.getBigUint64(eocd - 12, true)) : undefined;
  const count = eocd64 === undefined ? v.getUint16(eocd + 10, true) : Number(v.getBigUint64(eocd64 + 32, true));
  const cdOffset = eocd64 === undefined ? v.getUint32(eocd + 16, true) : Number(v.getBigUint64(eocd64 + 48, true));
  const found: Array<{ name: string; local: number; dataStart: number; dataEnd: number }> = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    const local = v.getUint32(p + 42, true);
    const nameLen = v.getUint16(p + 28, true);
    const dataStart = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    found.push({ name: new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen)), local, dataStart, dataEnd: dataStart + v.getUint32(p + 20, true) });
    p += 46 + nameLen + v.getUint16(p + 30, true) + v.getUint16(p + 32, true);
  }
  const entries = found.map((e, i) => ({ ...e, descriptorEnd: found[i + 1]?.local ?? cdOffset }));
  return { entries, cdOffset };
}
const GF_LAYOUT = streamLayout(GF);
const gfEntry = (suffix: string): StreamLayout['entries'][number] => {
  const e = GF_LAYOUT.entries.find((x) => x.name.endsWith(suffix));
  if (e === undefined) throw new Error(`no ${suffix} in the fixture`);
  return e;
};

describe('streamed torch.save checkpoints: named hostile cases', () => {
  test('the fixtures load cleanly (real and hand-built, whole and in 1–7-byte pieces)', async () => {
    expect(GF_LAYOUT.entries.every((e) => e.descriptorEnd - e.dataEnd === 16)).toBe(true);
    expect(await loadOutcome(gfFiles(GF))).toBe('ok');
    expect(await loadOutcome(miniFiles(miniGoodfire()))).toBe('ok');
    expect(await loadOutcome(miniFiles(new PiecewiseBlob(miniGoodfire(), [1, 7, 3, 2, 5])))).toBe('ok');
    const sae = await loadSae({ files: miniFiles(miniGoodfire()) }, LOAD);
    // W [2, 4]: feature 1 reads column 1 (2, 6) of W; b_enc 0.5 on feature 0 wins for x = 0.
    const codes = await sae.encode(Float32Array.of(0, 0));
    expect(Array.from(codes.indices)).toEqual([0]);
    sae.destroy();
  });

  test('a data.pkl with no data descriptor ends with a named error at EOF', async () => {
    await expectNamed(loadSae({ files: miniFiles(miniGoodfire({ pkl: { dropDescriptor: true } })) }, LOAD), TorchCheckpointError, /ZIP entry "mini\/data\.pkl" has no data descriptor before the end of the file; the checkpoint is truncated/);
    const cut = torchSaveZip([{ name: 'archive/data.pkl', data: stateDict({}), dropDescriptor: true }]);
    await expectNamed(loadSae({ files: miniFiles(cut) }, LOAD), TorchCheckpointError, /"archive\/data\.pkl" has no data descriptor before the end of the file/);
  });

  test('a data.pkl with no data descriptor in an endless stream stops at the 64 MiB cap', async () => {
    const local = torchSaveZip([{ name: 'archive/data.pkl', data: new Uint8Array(0), dropDescriptor: true }]).subarray(0, 30 + 'archive/data.pkl'.length);
    const zeros = new Uint8Array(1024 * 1024);
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      yield local;
      for (;;) {
        pulled += zeros.length;
        yield zeros;
      }
    }
    const reader = new ByteReader(endless(), { truncated: (what, at) => new TorchCheckpointError(`cut at ${at} in ${what}`) });
    await expectNamed(streamTorchCheckpoint(reader), TorchCheckpointError, /ZIP entry "archive\/data\.pkl" runs past 67108864 bytes without a data descriptor; this is not a torch\.save pickle/);
    expect(pulled).toBeLessThanOrEqual(66 * 1024 * 1024);
  });

  test('a storage whose data descriptor disagrees with the pickle', async () => {
    const bytes = miniGoodfire({ storage: { W: { descriptorSize: 28 } } });
    await expectNamed(loadSae({ files: miniFiles(bytes) }, LOAD), TorchCheckpointError, /Storage 0 holds 28 bytes, but the pickle says 8 × 4 = 32; the checkpoint is corrupt/);
    // The real checkpoint: W is storage 0.
    const w = gfEntry('/data/0');
    const patched = GF.slice();
    new DataView(patched.buffer).setUint32(w.dataEnd + 8, w.dataEnd - w.dataStart - 2, true);
    await expectNamed(loadSae({ files: gfFiles(patched) }, LOAD), TorchCheckpointError, new RegExp(`Storage 0 holds ${w.dataEnd - w.dataStart - 2} bytes, but the pickle says \\d+ × 2 = ${w.dataEnd - w.dataStart}`));
    // A storage the loader skips is checked too: a lying descriptor would send the parser into the middle of the next entry.
    const reader = new ByteReader(pieces(bytes, [4096]), { truncated: (what, at) => new TorchCheckpointError(`cut at ${at} in ${what}`) });
    const stream = await streamTorchCheckpoint(reader);
    await expectNamed(stream.pump((t) => (t.name === 'b_dec' ? { write: () => undefined, end: () => undefined } : undefined)), TorchCheckpointError, /Storage 0 holds 28 bytes, but the pickle says 8 × 4 = 32/);
  });

  test.each([
    ['negative', pickle(0x4a, Uint8Array.of(0xfe, 0xff, 0xff, 0xff)), /Storage 2 of tensor "b_dec" has -2 elements in the pickle; expected a non-negative integer/],
    ['fractional', pickle(0x47, Uint8Array.of(0x3f, 0xd0, 0, 0, 0, 0, 0, 0)), /Storage 2 of tensor "b_dec" has 0\.25 elements in the pickle/],
    ['2^51 (2^53 bytes)', int(2 ** 51), /Storage 2 of tensor "b_dec" has 2251799813685248 elements in the pickle; expected a non-negative integer below 2\^53 bytes/],
  ])('a storage size in the pickle that is %s', async (_name, numel, message) => {
    // b_dec's storage reference with `numel` spliced in for its element count.
    const ops = (n: MiniName, count: Uint8Array): Uint8Array => {
      const t = MINI_TENSORS[n];
      return pickle(
        OP.GLOBAL, 'torch._utils\n_rebuild_tensor_v2\n', OP.MARK,
        tuple(str('storage'), pickle(OP.GLOBAL, 'torch\nFloatStorage\n'), str(t.key), str('cpu'), count),
        OP.BINPERSID, int(0), tuple(...t.shape.map(int)), tuple(int(1)), OP.NEWFALSE, OP.NONE, OP.TUPLE, OP.REDUCE,
      );
    };
    const pkl = stateDict({ W: tensorOps({ key: '0', numel: 8, shape: [2, 4] }), b_enc: tensorOps({ key: '1', numel: 4, shape: [4] }), b_dec: ops('b_dec', numel) });
    await expectNamed(loadSae({ files: miniFiles(miniGoodfire({ pickleBytes: pkl })) }, LOAD), TorchCheckpointError, message);
  });

  test.each(['64', '32-nosig', '64-nosig'] as const)('storage descriptors in the %s form read like the usual 32-bit form', async (form) => {
    const names = Object.keys(MINI_TENSORS) as MiniName[];
    const bytes = miniGoodfire({ storage: Object.fromEntries(names.map((n) => [n, { descriptorForm: form }])), pkl: { descriptorForm: form.startsWith('64') ? '64' : '32' } });
    const sae = await bounded('loadSae', loadSae({ files: miniFiles(bytes) }, LOAD));
    const codes = await sae.encode(Float32Array.of(1, -1));
    sae.destroy();
    const ref = await loadSae({ files: miniFiles(miniGoodfire()) }, LOAD);
    expect(codes).toEqual(await ref.encode(Float32Array.of(1, -1)));
    ref.destroy();
    // Each storage must be read with its own length: a descriptor read short leaves bytes that the next header would trip on.
    const lying = miniGoodfire({ storage: { b_enc: { descriptorForm: form, descriptorSize: 12 } } });
    await expectNamed(loadSae({ files: miniFiles(lying) }, LOAD), TorchCheckpointError, /Storage 1 holds 12 bytes, but the pickle says 4 × 4 = 16/);
  });

  test('a storage entry missing from the zip', async () => {
    await expectNamed(loadSae({ files: miniFiles(miniGoodfire({ omit: 'b_enc' })) }, LOAD), TorchCheckpointError, /without the storage of "b_enc" \(mini\/data\/1\)/);
  });

  test('an unknown record signature where a local header belongs', async () => {
    const b = gfEntry('/data/1');
    const patched = GF.slice();
    new DataView(patched.buffer).setUint32(b.local, 0x04034b51, true);
    await expectNamed(loadSae({ files: gfFiles(patched) }, LOAD), TorchCheckpointError, new RegExp(`Expected a ZIP local file header at byte ${b.local}, found signature 0x4034b51; the checkpoint is corrupt`));
  });

  describe('a pickle naming os.system', () => {
    const marker = join(tmpdir(), `loupe-hostile-stream-${process.pid}-${Date.now()}`);
    afterEach(() => rmSync(marker, { force: true }));

    test('is refused and nothing runs', async () => {
      const pkl = pickle(OP.PROTO, 2, OP.GLOBAL, 'os\nsystem\n', str(`touch ${marker}`), OP.TUPLE1, OP.REDUCE, OP.STOP);
      expect(existsSync(marker)).toBe(false);
      await expectNamed(loadSae({ files: miniFiles(miniGoodfire({ pickleBytes: pkl })) }, LOAD), TorchCheckpointError, /"os\.system", which Loupe refuses/);
      // Give a spawned shell, had there been one, time to run.
      await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(marker)).toBe(false);
    });
  });

  test('a deflated data.pkl is held to its declared size (a decompression bomb stops early)', async () => {
    const bomb = torchSaveZip([{ name: 'archive/data.pkl', data: new Uint8Array(16 * 1024 * 1024), deflate: true, descriptor: false, claimSize: 100 }]);
    expect(bomb.length).toBeLessThan(100_000);
    await expectNamed(loadSae({ files: miniFiles(bomb) }, LOAD), TorchCheckpointError, /"archive\/data\.pkl" inflates to more than the 100 bytes its header declares/);
  });
});

// ---------------------------------------------------------------------------------------------
// Named cases: aborts.

describe('an abort while the weights stream in', () => {
  test.each([
    ['safetensors', (b: Blob) => stFiles(b), ST],
    ['torch.save', (b: Blob) => gfFiles(b), GF],
  ])('%s: an abort fired mid-stream rejects with AbortError and stops reading', async (_name, files, bytes) => {
    const controller = new AbortController();
    let afterAbort = 0;
    let aborted = false;
    const load = loadSae(
      { files: files(new PiecewiseBlob(bytes, [4096])) },
      {
        ...LOAD,
        signal: controller.signal,
        onProgress: (p) => {
          if (aborted) afterAbort++;
          if (p.loaded > 64 * 1024 && !aborted) {
            aborted = true;
            controller.abort();
          }
        },
      },
    );
    const e = await rejection(load);
    expect(e).toMatchObject({ name: 'AbortError' });
    expect(aborted).toBe(true);
    expect(afterAbort).toBe(0);
  });

  test.each([
    ['in the header', 4],
    ['mid-tensor', 64 * 1024],
  ])('a stream that stalls %s still rejects promptly with AbortError', async (_name, stallAfter) => {
    for (const [files, bytes] of [[stFiles, ST], [gfFiles, GF]] as const) {
      const controller = new AbortController();
      const blob = new PiecewiseBlob(bytes, [stallAfter], { stallAfter });
      const load = loadSae({ files: files(blob) }, { ...LOAD, signal: controller.signal });
      setTimeout(() => controller.abort(), 20);
      const e = await rejection(load);
      expect(e).toMatchObject({ name: 'AbortError' });
      // The stalled read is cancelled, not left holding the stream (a connection, a file handle) open.
      expect(blob.cancelled).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests: random corruption of real files, through loadSae and through the parsers in pieces.


/** Record boundaries of a safetensors file: the length field, the JSON header, each tensor's ends, EOF. */
function safetensorsTargets(base: Uint8Array): { hot: Array<[number, number]>; fields: Field[] } {
  const end = 8 + Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(base.subarray(8, end))) as Record<string, { data_offsets?: number[] }>;
  const edges = Object.values(header).flatMap((t) => t.data_offsets ?? []).map((o) => end + o);
  return {
    hot: [[0, end], ...edges.map((e): [number, number] => [Math.max(0, e - 8), Math.min(base.length, e + 8)]), [Math.max(0, base.length - 16), base.length]],
    fields: [{ at: 0, width: 8, truth: end - 8 }],
  };
}

/** Record boundaries of a torch.save zip: local headers, the pickle, descriptors, the directory; and their fields. */
function torchTargets(base: Uint8Array): { hot: Array<[number, number]>; fields: Field[] } {
  const { entries, cdOffset } = streamLayout(base);
  const v = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const hot: Array<[number, number]> = [[cdOffset, base.length]];
  const fields: Field[] = [];
  const field = (at: number, width: number): Field => ({ at, width, truth: width === 2 ? v.getUint16(at, true) : v.getUint32(at, true) });
  for (const [i, e] of entries.entries()) {
    hot.push([e.local, Math.min(e.dataEnd, e.dataStart + 32)], [Math.max(e.dataStart, e.dataEnd - 8), Math.min(base.length, e.descriptorEnd + 8)]);
    if (i === 0) hot.push([e.dataStart, e.dataEnd]); // the pickle
    // signature, flags, method, compressed and uncompressed size, name and extra lengths
    fields.push(field(e.local, 4), field(e.local + 6, 2), field(e.local + 8, 2), field(e.local + 18, 4), field(e.local + 22, 4), field(e.local + 26, 2), field(e.local + 28, 2));
    // the descriptor: signature, crc, compressed and uncompressed size
    if (e.descriptorEnd - e.dataEnd >= 16) fields.push(field(e.dataEnd, 4), field(e.dataEnd + 4, 4), field(e.dataEnd + 8, 4), field(e.dataEnd + 12, 4));
  }
  return { hot, fields };
}

const SAFETENSORS_LOAD_RUNS = 1500;
const TORCH_LOAD_RUNS = 1500;
const PIECEWISE_RUNS = 800;

describe('loadSae on corrupted weights (property)', () => {
  test.each([
    ['saelens-standard (safetensors)', ST, stFiles, safetensorsTargets(ST), SAFETENSORS_LOAD_RUNS, 'SafetensorsError'],
    ['goodfire (torch.save)', GF, gfFiles, torchTargets(GF), TORCH_LOAD_RUNS, 'TorchCheckpointError'],
  ])('%s: byte flips, truncations, insertions, deletions and field rewrites give an Sae or a LoupeError', async (_name, base, files, { hot, fields }, runs, parserError) => {
    const seen = new Map<string, number>();
    // Tiny pieces around the base file's record boundaries, so the real sinks also meet rows split across chunks.
    const near = hot.map(([a, b]): [number, number] => [Math.max(0, a - 32), b + 32]);
    await fc.assert(
      fc.asyncProperty(byteMutations(base, hot, fields), fc.option(fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 8 }), { freq: 7 }), async (muts, sizes) => {
        const bytes = mutate(base, muts);
        const o = await loadOutcome(files(bytes));
        seen.set(o, (seen.get(o) ?? 0) + 1);
        // One run in eight also streams the same bytes in pieces: the outcome must not change.
        if (sizes !== null) expect(await loadOutcome(files(new PiecewiseBlob(bytes, sizes, { hot: near })))).toBe(o);
      }),
      { numRuns: runs },
    );
    // The corruptions must reach the parser's own checks, and some must leave a loadable file.
    expect(seen.get(parserError) ?? 0).toBeGreaterThan(runs / 10);
    expect(seen.get('ok') ?? 0).toBeGreaterThan(0);
  });
});

describe('streaming parsers in 0–7-byte pieces (property)', () => {
  const mini = miniGoodfire();
  const miniSt = safetensorsFile({ a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'U8', shape: [3], data_offsets: [16, 19] }, __metadata__: { k: 'v' } }, concat([f32bytes([1, 2, 3, 4]), Uint8Array.of(7, 8, 9)]));
  const cases: Array<[string, 'safetensors' | 'torch', Uint8Array, { hot: Array<[number, number]>; fields: Field[] }]> = [
    ['hand-built safetensors', 'safetensors', miniSt, safetensorsTargets(miniSt)],
    ['saelens-standard', 'safetensors', ST, safetensorsTargets(ST)],
    ['hand-built torch.save', 'torch', mini, torchTargets(mini)],
    ['goodfire', 'torch', GF, torchTargets(GF)],
  ];

  test.each(cases)('%s: the outcome does not depend on where chunk boundaries fall', async (_name, format, base, { hot, fields }) => {
    const runs = PIECEWISE_RUNS / cases.length;
    const seen = { ok: 0, refused: 0 };
    const small = base.length < 4096;
    await fc.assert(
      fc.asyncProperty(
        byteMutations(base, hot, fields),
        fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.boolean(),
        async (muts, sizes, mask, sized) => {
          const bytes = mutate(base, muts);
          // Which tensors the "loader" wants (the rest are skipped), by a stable hash of the name.
          const want = (name: string): boolean => mask[[...name].reduce((a, c) => a + c.charCodeAt(0), 0) % mask.length] ?? true;
          const size = sized ? bytes.length : undefined;
          // Tiny pieces everywhere in small files; in large ones around every record boundary of the base layout.
          const hotHere = small ? undefined : hot.map(([a, b]): [number, number] => [Math.max(0, a - 32), b + 32]);
          const whole = await bounded('parse (one chunk)', parseTranscript(format, pieces(bytes, [bytes.length + 1]), size, want));
          const piecewise = await bounded('parse (in pieces)', parseTranscript(format, pieces(bytes, sizes, hotHere), size, want));
          expect(piecewise).toBe(whole);
          seen[whole.startsWith(format === 'torch' ? 'TorchCheckpointError' : 'SafetensorsError') ? 'refused' : 'ok']++;
        },
      ),
      { numRuns: runs },
    );
    expect(seen.refused).toBeGreaterThan(runs / 10);
    expect(seen.ok).toBeGreaterThan(0);
  });
});
