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

/** Reads an entry of unknown length: up to its data descriptor, whose size field must match. */
async function untilDescriptor(reader: ByteReader, name: string): Promise<Uint8Array> {
  let buf = new Uint8Array(64 * 1024);
  let len = 0;
  let scanned = 0;
  for (;;) {
    const more = await reader.peekSome();
    if (more.byteLength === 0) throw new TorchCheckpointError(`ZIP entry "${name}" has no data descriptor before the end of the file; the checkpoint is truncated.`);
    // Take only what we need to look at: descriptors are found in the bytes we hold.
    const take = Math.min(more.byteLength, 1024 * 1024);
    if (len + take > buf.byteLength) {
      if (len + take > MAX_SMALL_ENTRY + 24) throw new TorchCheckpointError(`ZIP entry "${name}" runs past ${MAX_SMALL_ENTRY} bytes without a data descriptor; this is not a torch.save pickle.`);
      const bigger = new Uint8Array(Math.max(buf.byteLength * 2, len + take));
      bigger.set(buf.subarray(0, len));
      buf = bigger;
    }
    buf.set(await reader.read(take, `ZIP entry "${name}"`), len);
    len += take;
    for (; scanned + 16 <= len; scanned++) {
      if (u32(buf, scanned) !== DESCRIPTOR) continue;
      const zip64 = scanned + 24 <= len && u32(buf, scanned + 8) === scanned && u32(buf, scanned + 12) === 0;
      if (u32(buf, scanned + 8) !== scanned && !zip64) continue;
      const end = scanned + (zip64 ? 24 : 16);
      // Give back what we read past the descriptor: it belongs to the next entry.
      const rest = buf.subarray(end, len);
      reader.unread(rest);
      return buf.subarray(0, scanned);
    }
    scanned = Math.max(0, len - 24);
    if (len > MAX_SMALL_ENTRY) throw new TorchCheckpointError(`ZIP entry "${name}" runs past ${MAX_SMALL_ENTRY} bytes without a data descriptor; this is not a torch.save pickle.`);
  }
}

async function inflate(raw: Uint8Array, name: string, size: number | undefined): Promise<Uint8Array> {
  try {
    const stream = new Blob([raw.slice()]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    const out = new Uint8Array(await new Response(stream).arrayBuffer());
    if (size !== undefined && size !== 0 && out.byteLength !== size) throw new Error(`inflated to ${out.byteLength} bytes, header says ${size}`);
    return out;
  } catch (cause) {
    throw new TorchCheckpointError(`ZIP entry "${name}" could not be inflated (${String(cause)}); the checkpoint is corrupt.`, { cause });
  }
}

/** A whole (small or foreign-written) entry's bytes. */
async function wholeEntry(reader: ByteReader, e: LocalEntry): Promise<Uint8Array> {
  let raw: Uint8Array;
  if (e.descriptor && e.compressedSize === 0) raw = await untilDescriptor(reader, e.name);
  else {
    raw = (await reader.read(e.compressedSize, `ZIP entry "${e.name}"`)).slice();
    if (e.descriptor) await readDescriptor(reader, e.name);
  }
  return e.method === 8 ? inflate(raw, e.name, e.size) : raw;
}

/** Reads a data descriptor and returns its compressed-size field. */
async function readDescriptor(reader: ByteReader, name: string): Promise<number> {
  const what = `the data descriptor of "${name}"`;
  // The signature is optional in the spec (torch writes it); sizes are 32-bit, or 64-bit in
  // ZIP64 — told apart by whether a record signature follows the shorter form.
  const head = await reader.read(4, what);
  const withSig = u32(head, 0) === DESCRIPTOR;
  const body = await reader.read(withSig ? 12 : 8, what);
  const csizeAt = withSig ? 4 : 0;
  const next = await reader.peek(4);
  const records = [LOCAL, CENTRAL, EOCD, EOCD64];
  if (next.byteLength === 4 && !records.includes(u32(next, 0))) {
    const more = await reader.read(withSig ? 8 : 4, what);
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
    const bytes = await wholeEntry(reader, e);
    if (e.name === 'data.pkl' || e.name.endsWith('/data.pkl')) {
      prefix = e.name.slice(0, e.name.length - 'data.pkl'.length);
      refs = tensorRefsOf(bytes);
    } else if (e.name.endsWith('/data/0') || e.name.startsWith('data/')) {
      throw new TorchCheckpointError('This zip stores tensor data before data.pkl; Loupe streams torch.save checkpoints, which write data.pkl first. Load it from memory with readTorchCheckpoint instead.');
    }
  }
  const byStorage = new Map<string, Array<{ name: string; ref: TensorRef }>>();
  const tensors = new Map<string, StreamedTensor>();
  for (const [name, ref] of refs) {
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
          throw new TorchCheckpointError(`The checkpoint ended before the storages of ${[...wanted.values()].flat().map((x) => `"${x.name}"`).join(', ')}; it is truncated.`);
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
            await reader.skip(info.numel * info.size, `storage ${key ?? ''}`);
            await readDescriptor(reader, e.name);
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
            await readDescriptor(reader, e.name);
          } else raw = await wholeEntry(reader, e);
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
