/**
 * A DuckDB database file's layout, checked before DuckDB-WASM sees the file, and the fetching of
 * example files.
 *
 * Why: DuckDB-WASM 1.32 loops forever when a registered file ends inside a block (a truncated
 * download is enough), in Node on the caller's thread. A DuckDB file is a 4 KiB main header
 * ("DUCK" at byte 8), two 4 KiB database headers, then whole blocks of `block_alloc_size` bytes
 * (256 KiB by default), `block_count` of them (DuckDB's storage/storage_info.hpp: DatabaseHeader
 * = iteration, meta_block, free_list, block_count, block_alloc_size, vector_size, …; the header
 * with the higher iteration is the live one). A file shorter than its header's blocks, or ending
 * inside a block, is refused here with a FeatureCatalogError. What is inside the blocks is
 * checksummed by DuckDB itself.
 */
import { FeatureCatalogError } from '../errors.js';

/** Main header plus the two database headers. */
export const DUCKDB_HEADER_BYTES = 3 * 4096;
const DEFAULT_BLOCK = 262144;

export interface DuckDbLayout {
  readonly blockSize: number;
  readonly blockCount: number;
}

/** Checks the headers in `head` (the file's first 12 KiB or more) against the file's `size`. */
export function checkDuckDbFile(head: Uint8Array, size: number, what: string): DuckDbLayout {
  const bad = (msg: string): FeatureCatalogError => new FeatureCatalogError(`${what} ${msg}; expected a DuckDB database file (Goodfire's schema).`);
  if (size < DUCKDB_HEADER_BYTES || head.byteLength < DUCKDB_HEADER_BYTES) throw bad(`is ${size} bytes, shorter than DuckDB's 12 KiB of headers: truncated or not DuckDB`);
  if (head[8] !== 0x44 || head[9] !== 0x55 || head[10] !== 0x43 || head[11] !== 0x4b) throw bad('lacks the "DUCK" magic at byte 8: it is not a DuckDB database');
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const u64 = (at: number): number => {
    const v = view.getBigUint64(at, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(v);
  };
  const [h1, h2] = [4096, 8192];
  const live = u64(h1 + 8) >= u64(h2 + 8) ? h1 : h2;
  const blockCount = u64(live + 32);
  const declared = u64(live + 40);
  const blockSize = declared === 0 ? DEFAULT_BLOCK : declared;
  if (!Number.isInteger(blockSize) || blockSize < 4096 || blockSize > 1 << 24 || (blockSize & (blockSize - 1)) !== 0) {
    throw bad(`declares blocks of ${declared} bytes (DuckDB's are powers of two, 256 KiB by default): the header is damaged`);
  }
  const body = size - DUCKDB_HEADER_BYTES;
  if (body % blockSize !== 0 || !(blockCount <= body / blockSize)) {
    throw bad(
      `is ${size} bytes but its header declares ${blockCount} blocks of ${blockSize} bytes after 12 KiB of headers (${DUCKDB_HEADER_BYTES + blockCount * blockSize} bytes); the file is truncated or damaged`,
    );
  }
  return { blockSize, blockCount };
}

interface FetchOptions {
  readonly fetch?: typeof fetch | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** A whole file: `file:` URLs from disk in Node, others by HTTP. */
export async function readWholeFile(url: string, options: FetchOptions): Promise<Uint8Array> {
  if (url.startsWith('file:')) {
    const fsName = 'node:fs/promises';
    const fs = (await import(/* @vite-ignore */ fsName)) as { readFile(p: URL): Promise<Uint8Array> };
    try {
      return await fs.readFile(new URL(url));
    } catch (e) {
      throw new FeatureCatalogError(`Cannot read the example database ${url} (${String(e)}).`, { cause: e });
    }
  }
  const res = await get(url, options, undefined);
  return new Uint8Array(await res.arrayBuffer());
}

/** The first `n` bytes of a remote file and its total size (Range request; a 200 answer is cut short). */
export async function readFileHead(url: string, n: number, options: FetchOptions): Promise<{ head: Uint8Array; size: number }> {
  const res = await get(url, options, `bytes=0-${n - 1}`);
  const total = Number(/\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '')?.[1] ?? Number.NaN);
  const length = Number(res.headers.get('content-length') ?? Number.NaN);
  const size = res.status === 206 ? total : length;
  if (!Number.isSafeInteger(size)) {
    await res.body?.cancel().catch(() => undefined);
    throw new FeatureCatalogError(`GET ${url} did not say the file's size (no Content-Range or Content-Length); DuckDB needs it to read the database by ranges.`);
  }
  if (res.status === 206 || res.body === null) return { head: new Uint8Array(await res.arrayBuffer()).subarray(0, n), size };
  // The server ignored Range: read the first n bytes and hang up.
  const reader = res.body.getReader();
  const head = new Uint8Array(n);
  let got = 0;
  try {
    while (got < n) {
      const r = await reader.read();
      if (r.done) break;
      const take = Math.min(n - got, r.value.byteLength);
      head.set(r.value.subarray(0, take), got);
      got += take;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return { head: head.subarray(0, got), size };
}

async function get(url: string, options: FetchOptions, range: string | undefined): Promise<Response> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  let res: Response;
  try {
    res = await doFetch(url, { ...(range !== undefined ? { headers: { Range: range } } : {}), ...(options.signal !== undefined ? { signal: options.signal } : {}) });
  } catch (e) {
    if (options.signal?.aborted === true) throw e;
    throw new FeatureCatalogError(`GET ${url} failed (${String(e)}); the example database is unreachable.`, { cause: e });
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new FeatureCatalogError(`GET ${url} answered ${res.status} ${res.statusText}; the example database is unavailable.`);
  }
  return res;
}
