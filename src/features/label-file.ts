/**
 * Any label file → FeatureLabel[], the format told by content, not by name: a SQLite database
 * ("SQLite format 3\0"), gzip (1f 8b: decompressed, then sniffed again — Neuronpedia's exports are
 * .jsonl.gz), JSON (the first non-blank character is `[` or `{`: a Neuronpedia export), and
 * otherwise CSV (Goodfire's autointerp table). From a URL, CSV is parsed as it downloads.
 */
import { FeatureCatalogError } from '../errors.js';
import { iterate, readAutointerpCsv, readAutointerpCsvStream, readAutointerpSqlite } from './labels.js';
import { readNeuronpediaExplanations } from './neuronpedia.js';
import type { FeatureLabel } from './types.js';

export type LabelFormat = 'sqlite' | 'gzip' | 'json' | 'csv';

/** A label file fetched or read whole is capped here (a decompressed gzip bomb stops at it). */
export const MAX_LABEL_BYTES = 1 << 30;

const SQLITE_MAGIC = 'SQLite format 3\u0000';

/** The format of a label file from its first bytes (16 are enough). */
export function sniffLabelFormat(head: Uint8Array): LabelFormat {
  if (head.length >= 16 && [...SQLITE_MAGIC].every((c, i) => head[i] === c.charCodeAt(0))) return 'sqlite';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  let i = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (head[i] === 0x5b || head[i] === 0x7b) return 'json';
  return 'csv';
}

/** Labels from a whole file's bytes, whatever its format. */
export async function readFeatureLabels(bytes: Uint8Array, source = 'label file'): Promise<FeatureLabel[]> {
  return fromBytes(bytes, source, true);
}

async function fromBytes(bytes: Uint8Array, source: string, mayUnzip: boolean): Promise<FeatureLabel[]> {
  const format = sniffLabelFormat(bytes.subarray(0, 64));
  switch (format) {
    case 'sqlite':
      return readAutointerpSqlite(bytes, source);
    case 'json':
      return readNeuronpediaExplanations(bytes, source);
    case 'csv':
      return readAutointerpCsv(bytes, source);
    case 'gzip':
      if (!mayUnzip) throw new FeatureCatalogError(`${source} is gzip inside gzip; expected one layer of compression.`);
      return fromBytes(await gunzip(bytes, source), `${source} (decompressed)`, false);
  }
}

/** Decompresses gzip with the platform's DecompressionStream, refusing output past MAX_LABEL_BYTES. */
async function gunzip(bytes: Uint8Array, source: string): Promise<Uint8Array> {
  const input = new Blob([bytes.slice()]).stream().pipeThrough(new DecompressionStream('gzip'));
  try {
    return await collect(input, source, 'decompressed');
  } catch (e) {
    if (e instanceof FeatureCatalogError) throw e;
    throw new FeatureCatalogError(`${source} is not valid gzip (${String(e)}); the file is truncated or damaged.`, { cause: e });
  }
}

async function collect(stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, source: string, what: string, first?: Uint8Array): Promise<Uint8Array> {
  const parts: Uint8Array[] = first !== undefined ? [first] : [];
  let total = first?.byteLength ?? 0;
  for await (const c of iterate(stream)) {
    total += c.byteLength;
    if (total > MAX_LABEL_BYTES) throw new FeatureCatalogError(`${source} is over ${MAX_LABEL_BYTES} bytes ${what}; a label file is a few MB. Refusing to read it.`);
    parts.push(c);
  }
  return concat(parts, total);
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Labels from a URL: sniffed on the first bytes; CSV is parsed while it downloads. */
export async function fetchFeatureLabels(url: string, options: { fetch?: typeof fetch; signal?: AbortSignal } = {}): Promise<FeatureLabel[]> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  let res: Response;
  try {
    res = await doFetch(url, options.signal !== undefined ? { signal: options.signal } : {});
  } catch (e) {
    if (options.signal?.aborted === true) throw e;
    throw new FeatureCatalogError(`GET ${url} failed (${String(e)}); the label file is unreachable.`, { cause: e });
  }
  if (!res.ok) throw new FeatureCatalogError(`GET ${url} answered ${res.status} ${res.statusText}; the label file is unavailable.`);
  if (res.body === null) return readFeatureLabels(new Uint8Array(await res.arrayBuffer()), url);
  // Read until 64 bytes (or the end) are in hand, then decide.
  const reader = res.body.getReader();
  try {
    const head: Uint8Array[] = [];
    let headBytes = 0;
    let done = false;
    while (headBytes < 64) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        break;
      }
      head.push(r.value);
      headBytes += r.value.byteLength;
    }
    const first = concat(head, headBytes);
    const rest: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        while (!done) {
          const r = await reader.read();
          if (r.done) return;
          yield r.value;
        }
      },
    };
    if (sniffLabelFormat(first) === 'csv') {
      const all: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          yield first;
          yield* rest;
        },
      };
      return await readAutointerpCsvStream(all, url);
    }
    return await readFeatureLabels(await collect(rest, url, 'downloaded', first), url);
  } catch (e) {
    // Stop the download: nothing more of it is needed.
    await reader.cancel().catch(() => undefined);
    throw e;
  }
}
