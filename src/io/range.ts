/**
 * `readSafetensorsHeader(url)`: the tensor list of a remote safetensors file from two HTTP
 * Range requests (8 bytes, then the JSON header) — what a 400 MB file holds, before deciding to
 * download it. A server that ignores Range gets its body cancelled after the header.
 */
import { SafetensorsError, SaeSourceError } from '../errors.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsEntry } from '../formats/safetensors.js';
import { ByteReader } from './byte-reader.js';

export interface RemoteHeader {
  readonly entries: SafetensorsEntry[];
  readonly metadata: Record<string, string>;
  /** File size, from Content-Range (or Content-Length when Range is ignored). */
  readonly size: number | undefined;
  /** Whether the server answered with 206 Partial Content. */
  readonly rangeSupported: boolean;
}

export async function readSafetensorsHeader(url: string | URL, options: { fetch?: typeof fetch; signal?: AbortSignal } = {}): Promise<RemoteHeader> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const href = String(url);
  const ranged = async (from: number, to: number): Promise<Response> => {
    const res = await doFetch(href, { headers: { Range: `bytes=${from}-${to}` }, ...(options.signal !== undefined ? { signal: options.signal } : {}) });
    if (!res.ok) throw new SaeSourceError(`GET ${href} (Range bytes=${from}-${to}) answered ${res.status} ${res.statusText}.`);
    return res;
  };
  const first = await ranged(0, 7);
  const truncated = (what: string, at: number): Error => new SafetensorsError(`${href} ended at byte ${at} while reading ${what}; the file is truncated.`);
  if (first.status !== 206 || first.body === null) {
    // No Range support: read the header off the full body, then hang up.
    const reader = new ByteReader(first.body ?? new Blob([]).stream(), { signal: options.signal, truncated });
    try {
      const n = headerLength(await reader.read(8, 'the header length'), undefined);
      const { entries, metadata } = parseSafetensorsHeader(await reader.read(n, 'the JSON header'), undefined);
      const len = Number(first.headers.get('content-length') ?? NaN);
      return { entries, metadata, size: Number.isSafeInteger(len) ? len : undefined, rangeSupported: false };
    } finally {
      await reader.cancel();
    }
  }
  const lenBytes = new Uint8Array(await first.arrayBuffer());
  const total = Number(/\/(\d+)\s*$/.exec(first.headers.get('content-range') ?? '')?.[1] ?? NaN);
  const size = Number.isSafeInteger(total) ? total : undefined;
  if (lenBytes.byteLength < 8) throw truncated('the header length', lenBytes.byteLength);
  const n = headerLength(lenBytes, size);
  const json = new Uint8Array(await (await ranged(8, 8 + n - 1)).arrayBuffer());
  if (json.byteLength !== n) throw truncated('the JSON header', 8 + json.byteLength);
  const { entries, metadata } = parseSafetensorsHeader(json, size !== undefined ? size - 8 - n : undefined);
  return { entries, metadata, size, rangeSupported: true };
}

function headerLength(bytes: Uint8Array, size: number | undefined): number {
  const len = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  const room = size !== undefined ? Math.min(MAX_HEADER_BYTES, size - 8) : MAX_HEADER_BYTES;
  if (len > BigInt(room)) throw new SafetensorsError(`The header claims ${len} bytes, more than ${room} available; the file is truncated or not safetensors.`);
  return Number(len);
}
