/**
 * A `torch.save` zip read front to back, so an 822 MB checkpoint streams onto the GPU without
 * ever being held whole. torch.save writes `data.pkl` first and then one stored entry per
 * storage, each with a data descriptor (flag bit 3: sizes are zero in the local header and
 * follow the data). So: the pickle is found by scanning for its descriptor; each storage's
 * length comes from the pickle (numel × element size) and is checked against its descriptor.
 * Entries that are deflated, or written by other zip writers with sizes up front, work too.
 */
import { TorchCheckpointError } from '../errors.js';
import type { ByteReader } from '../io/byte-reader.js';
import type { StreamedTensor, TensorSink, TensorStream } from './tensor-stream.js';
import { materialise, tensorRefsOf, type TensorRef } from './torch.js';

const LOCAL = 0x04034b50;
const DESCRIPTOR = 0x08074b50;
const CENTRAL = 0x02014b50;
const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
/** data.pkl of a state dict is kilobytes; a larger "pickle" is a hostile or foreign file. */
const MAX_SMALL_ENTRY = 64 * 1024 * 1024;

interface LocalEntry {
  readonly name: string;
  readonly method: number;
  readonly descriptor: boolean;
  readonly compressedSize: number;
  readonly size: number;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16) | ((b[at + 3] ?? 0) << 24)) >>> 0;
}

function u64(b: Uint8Array, at: number): number {
  const hi = u32(b, at + 4);
  if (hi >= 0x200000) throw new TorchCheckpointError('A ZIP size field exceeds 2^53 bytes; the file is corrupt or hostile.');
  return hi * 2 ** 32 + u32(b, at);
}

async function localHeader(reader: ByteReader): Promise<LocalEntry | undefined> {
  const sig = u32(await reader.read(4, 'a ZIP record signature'), 0);
  if (sig === CENTRAL || sig === EOCD || sig === EOCD64) return undefined;
  if (sig !== LOCAL) throw new TorchCheckpointError(`Expected a ZIP local file header at byte ${reader.position - 4}, found signature 0x${sig.toString(16)}; the checkpoint is corrupt.`);
  const h = await reader.read(26, 'a ZIP local header');
  const flags = h[2] ?? 0;
  const method = (h[4] ?? 0) | ((h[5] ?? 0) << 8);
  let compressedSize = u32(h, 14);
  let size = u32(h, 18);
  const nameLen = (h[22] ?? 0) | ((h[23] ?? 0) << 8);
  const extraLen = (h[24] ?? 0) | ((h[25] ?? 0) << 8);
  const name = new TextDecoder().decode(await reader.read(nameLen, 'a ZIP entry name'));
  const extra = await reader.read(extraLen, 'a ZIP extra field');
  for (let x = 0; x + 4 <= extra.byteLength; ) {
    const id = (extra[x] ?? 0) | ((extra[x + 1] ?? 0) << 8);
    const len = (extra[x + 2] ?? 0) | ((extra[x + 3] ?? 0) << 8);
    if (id === 0x0001 && len >= 16) {
      // ZIP64: both sizes are present in the local header's extra field
      size = u64(extra, x + 4);
      compressedSize = u64(extra, x + 12);
    }
    x += 4 + len;
  }
  if (method !== 0 && method !== 8) throw new TorchCheckpointError(`ZIP entry "${name}" uses compression method ${method}; only stored (0) and deflate (8) are supported.`);
  return { name, method, descriptor: (flags & 8) !== 0, compressedSize, size };
}

const RECORDS = [LOCAL, CENTRAL, EOCD, EOCD64];

/** Whether the 4 bytes at `at` (when all held) are a ZIP record signature. */
function isRecord(b: Uint8Array, at: number, len = b.byteLength): boolean {
  return at + 4 <= len && RECORDS.includes(u32(b, at));
}

/**
 * A data descriptor's 64-bit form (ZIP64) is 8 bytes longer than the 32-bit one. It is chosen
 * only when a ZIP record follows it and none follows the 32-bit form — a real descriptor is
 * always followed by the next entry or the central directory — so a damaged next header is
 * reported as such, not read as a petabyte-sized length. `crcAt` is where the CRC field (after
 * the signature) starts in `b`.
 */
function isZip64Descriptor(b: Uint8Array, crcAt: number, len = b.byteLength): boolean {
  return !isRecord(b, crcAt + 12, len) && isRecord(b, crcAt + 20, len);
}

/** Reads an entry of unknown length: up to its data descriptor, whose size field must match. */
async function untilDescriptor(reader: ByteReader, name: string): Promise<Uint8Array> {
  let buf = new Uint8Array(64 * 1024);
  let len = 0;
  let scanned = 0;
  for (;;) {
    const more = await reader.peekSome();
    const eof = more.byteLength === 0;
    if (!eof) {
      // Take only what we need to look at: descriptors are found in the bytes we hold.
      const take = Math.min(more.byteLength, 1024 * 1024);
      if (len + take > buf.byteLength) {
        if (len + take > MAX_SMALL_ENTRY + 28) throw new TorchCheckpointError(`ZIP entry "${name}" runs past ${MAX_SMALL_ENTRY} bytes without a data descriptor; this is not a torch.save pickle.`);
        const bigger = new Uint8Array(Math.max(buf.byteLength * 2, len + take));
        bigger.set(buf.subarray(0, len));
        buf = bigger;
      }
      buf.set(await reader.read(take, `ZIP entry "${name}"`), len);
      len += take;
    }
    // A candidate is judged only with the 28 bytes that tell its two forms apart in hand (or at
    // EOF), so where the chunks of the stream happen to end cannot change what is read.
    const last = eof ? len - 16 : len - 28;
    for (; scanned <= last; scanned++) {
      if (u32(buf, scanned) !== DESCRIPTOR || u32(buf, scanned + 8) !== scanned) continue;
      // The 64-bit form also needs the high word of its compressed size (the 32-bit form's size field) to be 0.
      const end = scanned + (u32(buf, scanned + 12) === 0 && isZip64Descriptor(buf, scanned + 4, len) ? 24 : 16);
      // Give back what we read past the descriptor: it belongs to the next entry.
      reader.unread(buf.subarray(end, len));
      return buf.subarray(0, scanned);
    }
    if (eof) throw new TorchCheckpointError(`ZIP entry "${name}" has no data descriptor before the end of the file; the checkpoint is truncated.`);
    if (len > MAX_SMALL_ENTRY) throw new TorchCheckpointError(`ZIP entry "${name}" runs past ${MAX_SMALL_ENTRY} bytes without a data descriptor; this is not a torch.save pickle.`);
  }
}

/**
 * Inflates an entry, stopping as soon as the output passes `limit` bytes: a decompression bomb
 * costs one chunk more than the limit, not the memory it asks for. `declared` is the size the
 * local header gives (0 when a data descriptor follows instead).
 */
async function inflate(raw: Uint8Array, name: string, limit: number, limitIs: string, declared: number): Promise<Uint8Array> {
  const reader = new Blob([raw.slice()]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) throw new TorchCheckpointError(`ZIP entry "${name}" inflates to more than the ${limit} bytes ${limitIs}; the checkpoint is corrupt (or a decompression bomb).`);
      chunks.push(value);
    }
  } catch (cause) {
    void reader.cancel().catch(() => undefined);
    if (cause instanceof TorchCheckpointError) throw cause;
    // The platform reports bad streams as plain Error/TypeError ("unexpected end of file", "invalid block type").
    throw new TorchCheckpointError(`ZIP entry "${name}" could not be inflated (${String(cause)}); the checkpoint is corrupt.`, { cause });
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  if (declared !== 0 && total !== declared) throw new TorchCheckpointError(`ZIP entry "${name}" inflated to ${total} bytes, but its header says ${declared}; the checkpoint is corrupt.`);
  return out;
}

/**
 * A whole entry's bytes: the pickle and small records, or (`storageBytes` given) a storage that
 * cannot be streamed. Small records are held to MAX_SMALL_ENTRY, so a lying length cannot make
 * the reader buffer a large part of the file before data.pkl has even been found.
 */
async function wholeEntry(reader: ByteReader, e: LocalEntry, storageBytes?: number): Promise<Uint8Array> {
  let raw: Uint8Array;
  if (e.descriptor && e.compressedSize === 0) raw = await untilDescriptor(reader, e.name);
  else {
    if (storageBytes === undefined && e.compressedSize > MAX_SMALL_ENTRY) {
      throw new TorchCheckpointError(`ZIP entry "${e.name}" claims ${e.compressedSize} bytes; torch.save's pickle and records are under ${MAX_SMALL_ENTRY}. The file is corrupt or not a torch.save checkpoint.`);
    }
    raw = (await reader.read(e.compressedSize, `ZIP entry "${e.name}"`)).slice();
    if (e.descriptor) await readDescriptor(reader, e.name);
  }
  if (e.method !== 8) return raw;
  if (storageBytes !== undefined) return inflate(raw, e.name, storageBytes, 'the pickle gives its storage', e.size);
  return e.size !== 0 ? inflate(raw, e.name, e.size, 'its header declares', e.size) : inflate(raw, e.name, MAX_SMALL_ENTRY, 'a torch.save pickle or record may take', 0);
}

/** Reads a data descriptor and returns its compressed-size field. */
async function readDescriptor(reader: ByteReader, name: string): Promise<number> {
  const what = `the data descriptor of "${name}"`;
  // The signature is optional in the spec (torch writes it); sizes are 32-bit, or 64-bit in
  // ZIP64 — told apart by which form a record signature follows.
  const head = await reader.read(4, what);
  const withSig = u32(head, 0) === DESCRIPTOR;
  const body = await reader.read(withSig ? 12 : 8, what);
  const csizeAt = withSig ? 4 : 0;
  // What follows the 32-bit form: 4 bytes, then the 8 by which the 64-bit form is longer, then 4.
  const next = await reader.peek(12);
  if (!isRecord(next, 0) && isRecord(next, 8)) {
    const more = await reader.read(8, what);
    const all = new Uint8Array(body.byteLength + more.byteLength);
    all.set(body);
    all.set(more, body.byteLength);
    return u64(all, csizeAt);
  }
  return u32(body, csizeAt);
}

function isContiguous(ref: TensorRef): boolean {
  let expect = 1;
  for (let d = ref.shape.length - 1; d >= 0; d--) {
    if ((ref.shape[d] ?? 1) !== 1 && ref.stride[d] !== expect) return false;
    expect *= ref.shape[d] ?? 1;
  }
  return true;
}

function isTransposed2d(ref: TensorRef): boolean {
  const [r, c] = ref.shape;
  return ref.shape.length === 2 && r !== undefined && c !== undefined && ref.stride[0] === 1 && ref.stride[1] === r;
}

/** Reads a torch.save zip up to and including its pickle; `pump` streams the storages. */
export async function streamTorchCheckpoint(reader: ByteReader): Promise<TensorStream> {
  let prefix: string | undefined;
  let refs: Map<string, TensorRef> | undefined;
  while (refs === undefined) {
    const e = await localHeader(reader);
    if (e === undefined) throw new TorchCheckpointError('The zip ended without a data.pkl: not a torch.save checkpoint.');
    // Checked before reading: a storage can be large, and this reader would have to hold it.
    if (/(^|\/)data\/[^/]+$/.test(e.name)) {
      throw new TorchCheckpointError('This zip stores tensor data before data.pkl; Loupe streams torch.save checkpoints, which write data.pkl first. Load it from memory with readTorchCheckpoint instead.');
    }
    const bytes = await wholeEntry(reader, e);
    if (e.name === 'data.pkl' || e.name.endsWith('/data.pkl')) {
      prefix = e.name.slice(0, e.name.length - 'data.pkl'.length);
      refs = tensorRefsOf(bytes);
    }
  }
  const byStorage = new Map<string, Array<{ name: string; ref: TensorRef }>>();
  const tensors = new Map<string, StreamedTensor>();
  for (const [name, ref] of refs) {
    // The pickle's storage sizes become read lengths below: they must be whole, addressable byte counts.
    const { key, numel, size, dtype } = ref.storage;
    if (!Number.isSafeInteger(numel) || numel < 0 || !Number.isSafeInteger(numel * size)) {
      throw new TorchCheckpointError(`Storage ${key} of tensor "${name}" has ${numel} elements in the pickle; expected a non-negative integer below 2^53 bytes. The checkpoint is corrupt.`);
    }
    const other = byStorage.get(key)?.[0]?.ref.storage;
    if (other !== undefined && (other.numel !== numel || other.dtype !== dtype)) {
      throw new TorchCheckpointError(`Storage ${key} is ${other.numel} × ${other.dtype} for one tensor but ${numel} × ${dtype} for "${name}"; the pickle is corrupt.`);
    }
    const list = byStorage.get(ref.storage.key) ?? [];
    list.push({ name, ref });
    byStorage.set(ref.storage.key, list);
    tensors.set(name, { name, dtype: ref.storage.dtype, shape: ref.shape, order: isContiguous(ref) || !isTransposed2d(ref) ? 'row-major' : 'column-major' });
  }
  const storagePrefix = `${prefix ?? ''}data/`;
  return {
    tensors,
    async pump(route) {
      const wanted = new Map<string, Array<{ name: string; ref: TensorRef; sink: TensorSink }>>();
      for (const [key, list] of byStorage) {
        const sinks = list.flatMap((x) => {
          const t = tensors.get(x.name);
          const sink = t !== undefined ? route(t) : undefined;
          return sink !== undefined ? [{ ...x, sink }] : [];
        });
        if (sinks.length > 0) wanted.set(key, sinks);
      }
      while (wanted.size > 0) {
        const e = await localHeader(reader);
        if (e === undefined) {
          // The central directory was reached, so the entries are complete: the storage is missing, not cut off.
          const missing = [...wanted.entries()].map(([k, list]) => `${list.map((x) => `"${x.name}"`).join(', ')} (${storagePrefix}${k})`);
          throw new TorchCheckpointError(
            `The zip's entries ended at byte ${reader.position - 4} without the storage${missing.length > 1 ? 's' : ''} of ${missing.join(', ')}; the checkpoint is incomplete or corrupt. Download it again, or re-save it with torch.save.`,
          );
        }
        if (e.name.endsWith('byteorder')) {
          const order = new TextDecoder().decode(await wholeEntry(reader, e)).trim();
          if (order !== 'little') throw new TorchCheckpointError(`The checkpoint was saved ${order}-endian; Loupe reads little-endian checkpoints only.`);
          continue;
        }
        const key = e.name.startsWith(storagePrefix) ? e.name.slice(storagePrefix.length) : undefined;
        const targets = key !== undefined ? wanted.get(key) : undefined;
        const first = targets?.[0];
        if (key === undefined || targets === undefined || first === undefined) {
          // Not wanted: skipped without keeping it (its length from the header, or the pickle).
          const info = key !== undefined ? byStorage.get(key)?.[0]?.ref.storage : undefined;
          if (!e.descriptor || e.compressedSize > 0) {
            await reader.skip(e.compressedSize, `ZIP entry "${e.name}"`);
            if (e.descriptor) await readDescriptor(reader, e.name);
          } else if (info !== undefined && e.method === 0) {
            const bytes = info.numel * info.size;
            await reader.skip(bytes, `storage ${key ?? ''}`);
            // Checked even though nothing is kept: a wrong length would put the parser inside the next entry.
            const recorded = await readDescriptor(reader, e.name);
            if (recorded !== bytes) throw new TorchCheckpointError(`Storage ${key ?? ''} holds ${recorded} bytes, but the pickle says ${info.numel} × ${info.size} = ${bytes}; the checkpoint is corrupt.`);
          } else {
            await untilDescriptor(reader, e.name);
          }
          continue;
        }
        wanted.delete(key);
        const { size: elem, numel } = first.ref.storage;
        const bytes = numel * elem;
        const streamable = e.method === 0 && targets.every((t) => isContiguous(t.ref) || isTransposed2d(t.ref));
        if (streamable) {
          if (!e.descriptor && e.compressedSize !== bytes) {
            throw new TorchCheckpointError(`Storage ${key} holds ${e.compressedSize} bytes, but the pickle says ${numel} × ${elem} = ${bytes}.`);
          }
          const windows = targets.map((t) => {
            const numelT = t.ref.shape.reduce((a, b) => a * b, 1);
            const start = t.ref.offset * elem;
            if (start + numelT * elem > bytes) throw new TorchCheckpointError(`Tensor "${t.name}" reaches past the end of storage ${key}; the checkpoint is corrupt.`);
            return { start, end: start + numelT * elem, sink: t.sink };
          });
          let at = 0;
          await reader.pipe(bytes, `storage ${key}`, async (piece) => {
            const pEnd = at + piece.byteLength;
            for (const w of windows) {
              const s = Math.max(w.start, at);
              const t = Math.min(w.end, pEnd);
              if (s < t) await w.sink.write(piece.subarray(s - at, t - at));
            }
            at = pEnd;
          });
          if (e.descriptor) {
            const recorded = await readDescriptor(reader, e.name);
            if (recorded !== bytes) throw new TorchCheckpointError(`Storage ${key} holds ${recorded} bytes, but the pickle says ${numel} × ${elem} = ${bytes}; the checkpoint is corrupt.`);
          }
          for (const w of windows) await w.sink.end();
        } else {
          // Deflated, or a view with gaps: gather this storage in memory, then deliver row-major.
          let raw: Uint8Array;
          if (e.method === 0 && e.descriptor && e.compressedSize === 0) {
            raw = (await reader.read(bytes, `storage ${key}`)).slice();
            const recorded = await readDescriptor(reader, e.name);
            if (recorded !== bytes) throw new TorchCheckpointError(`Storage ${key} holds ${recorded} bytes, but the pickle says ${numel} × ${elem} = ${bytes}; the checkpoint is corrupt.`);
          } else raw = await wholeEntry(reader, e, bytes);
          if (raw.byteLength !== bytes) throw new TorchCheckpointError(`Storage ${key} holds ${raw.byteLength} bytes, but the pickle says ${numel} × ${elem} = ${bytes}.`);
          for (const t of targets) {
            const m = materialise(t.ref, raw, t.name);
            const view = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
            const order = tensors.get(t.name)?.order;
            if (order === 'column-major') {
              throw new TorchCheckpointError(`Tensor "${t.name}" is a transposed view inside a compressed storage; re-save it with torch.save (uncompressed).`);
            }
            await t.sink.write(view);
            await t.sink.end();
          }
        }
      }
      await reader.cancel();
    },
    cancel: () => reader.cancel(),
  };
}
