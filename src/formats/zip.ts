/**
 * A minimal, defensive ZIP reader for PyTorch checkpoints (`torch.save` writes a zip of stored,
 * 64-byte-aligned entries). Reads the central directory (ZIP64 included), returns entries as
 * zero-copy views when stored, and inflates deflated ones with the platform's
 * DecompressionStream. Offsets and sizes from the file are checked before use.
 */
import { TorchCheckpointError } from '../errors.js';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  /** Offset of the entry's data (after its local header). */
  readonly dataOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64_LOCATOR = 0x07064b50;
const EOCD64 = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TorchCheckpointError(`A ZIP field holds ${v}, beyond what this reader can address.`);
  return Number(v);
}

/** The entries of a zip held in memory, by name. */
export function readZipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  // The end-of-central-directory record sits in the last 22 + 65535 bytes (comment max).
  let eocd = -1;
  for (let i = n - 22; i >= Math.max(0, n - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new TorchCheckpointError('No ZIP end-of-central-directory record: this is not a torch.save (zip) checkpoint, or it is truncated.');
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (eocd >= 20 && view.getUint32(eocd - 20, true) === EOCD64_LOCATOR) {
    const at = u64(view, eocd - 20 + 8);
    if (at + 56 > n || view.getUint32(at, true) !== EOCD64) throw new TorchCheckpointError('The ZIP64 end record is missing or out of bounds; the file is corrupt.');
    count = u64(view, at + 32);
    cdSize = u64(view, at + 40);
    cdOffset = u64(view, at + 48);
  }
  if (cdOffset + cdSize > n) throw new TorchCheckpointError(`The ZIP central directory (${cdOffset}+${cdSize}) lies past the end of the ${n}-byte file; it is truncated.`);
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let p = cdOffset;
  for (let e = 0; e < count; e++) {
    if (p + 46 > n || view.getUint32(p, true) !== CENTRAL) throw new TorchCheckpointError(`ZIP central directory entry ${e} is malformed.`);
    const method = view.getUint16(p + 10, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    // The variable-length tail is read field by field below; it must lie inside the file first.
    const tail = nameLen + extraLen + commentLen;
    if (p + 46 + tail > n) {
      throw new TorchCheckpointError(
        `ZIP central directory entry ${e} runs past the end of the file: its name, extra field and comment need ${tail} bytes, only ${Math.max(0, n - p - 46)} remain. The file is truncated or corrupt; re-save it with torch.save.`,
      );
    }
    const name = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extra field (0x0001): 64-bit sizes/offset for the fields saturated at 0xffffffff.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = view.getUint16(x, true);
      const len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        // One 8-byte value per field saturated at 0xffffffff, all inside this field and the extra area;
        // otherwise we would read the next field, or past the end of the file.
        const saturated = [size, compressedSize, localOffset].filter((v) => v === 0xffffffff).length;
        if (len < 8 * saturated || x + 4 + len > xEnd) {
          throw new TorchCheckpointError(
            `ZIP entry "${name}": its ZIP64 extra field holds ${len} bytes (${xEnd - x - 4} left in the extra area), but ${saturated} saturated size/offset fields need ${8 * saturated}. The file is corrupt; re-save it with torch.save.`,
          );
        }
        let q = x + 4;
        if (size === 0xffffffff) {
          size = u64(view, q);
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = u64(view, q);
          q += 8;
        }
        if (localOffset === 0xffffffff) localOffset = u64(view, q);
      }
      x += 4 + len;
    }
    if (localOffset + 30 > n || view.getUint32(localOffset, true) !== LOCAL) {
      throw new TorchCheckpointError(`ZIP entry "${name}" points at a missing local header; the file is corrupt or truncated.`);
    }
    const dataOffset = localOffset + 30 + view.getUint16(localOffset + 26, true) + view.getUint16(localOffset + 28, true);
    if (dataOffset + compressedSize > n) throw new TorchCheckpointError(`ZIP entry "${name}" runs past the end of the file; it is truncated.`);
    entries.set(name, { name, method, compressedSize, size, dataOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** An entry's bytes: a view for stored entries, inflated for deflated ones. */
export async function readZipEntry(bytes: Uint8Array, entry: ZipEntry): Promise<Uint8Array> {
  const raw = bytes.subarray(entry.dataOffset, entry.dataOffset + entry.compressedSize);
  if (entry.method === 0) return raw;
  if (entry.method !== 8) throw new TorchCheckpointError(`ZIP entry "${entry.name}" uses compression method ${entry.method}; only stored (0) and deflate (8) are supported.`);
  // Deflate expands at most 1032:1, so a larger claim is a lie, and honouring it would invite a bomb.
  if (entry.size > entry.compressedSize * 1032 + 1024) {
    throw new TorchCheckpointError(
      `ZIP entry "${entry.name}" claims ${entry.size} bytes from ${entry.compressedSize} compressed, more than deflate can expand to (1032:1). The file is corrupt; re-save it with torch.save.`,
    );
  }
  // Inflate chunk by chunk and stop as soon as the output passes the declared size: a bomb costs at most one chunk more.
  const reader = new Blob([raw.slice()]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  const chunks: Uint8Array[] = [];
  let inflated = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      inflated += value.byteLength;
      if (inflated > entry.size) {
        throw new TorchCheckpointError(`ZIP entry "${entry.name}" inflates to more than the ${entry.size} bytes its header declares; the file is corrupt (or a decompression bomb).`);
      }
      chunks.push(value);
    }
  } catch (cause) {
    void reader.cancel().catch(() => undefined);
    if (cause instanceof TorchCheckpointError) throw cause;
    // The platform reports bad streams as plain Error/TypeError ("unexpected end of file", "invalid block type").
    throw new TorchCheckpointError(`ZIP entry "${entry.name}" is not valid deflate data (${String(cause)}); the file is corrupt or truncated. Re-save it with torch.save.`, { cause });
  }
  const out = new Uint8Array(inflated);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  if (out.byteLength !== entry.size) throw new TorchCheckpointError(`ZIP entry "${entry.name}" inflated to ${out.byteLength} bytes, its header says ${entry.size}.`);
  return out;
}
