/**
 * `loadFeatureCatalog`: one SAE's labels, max-activating examples and feature map behind the
 * FeatureCatalog contract (types.ts).
 *
 *   const catalog = await loadFeatureCatalog({
 *     size: sae.config.dSae,
 *     labels: 'models/tiny-r1/examples/autointerp.csv',    // CSV, SQLite or Neuronpedia JSON(.gz)
 *     examples: 'models/tiny-r1/examples/examples.duckdb', // Goodfire-schema DuckDB
 *     duckdb: { mainModule: 'duckdb/duckdb-eh.wasm', mainWorker: 'duckdb/duckdb-browser-eh.worker.js' },
 *   });
 *   catalog.search('backtracking');  catalog.label(540);  await catalog.examples(540, { limit: 5 });
 *
 * Labels are read at load. The example database is opened on the first `examples()` call, so
 * DuckDB-WASM (several MB) is downloaded only by pages that show examples; a failed open is
 * forgotten, so the next call retries. Labels and example tokens are untrusted text: components
 * render them as text, never as HTML.
 */
import { FeatureCatalogError } from '../errors.js';
import { inNode, openDuckDb, type DuckDbBundle, type DuckDbEngine, type DuckDbOptions } from './duckdb.js';
import { ExampleDatabase, type ExampleSource } from './examples.js';
import { fetchFeatureLabels, readFeatureLabels } from './label-file.js';
import { MAX_FEATURE_ID } from './labels.js';
import { LabelIndex } from './search.js';
import type { ExampleQuery, FeatureCatalog, FeatureExample, FeatureLabel } from './types.js';

/** A label file (URL or bytes; CSV, SQLite or Neuronpedia JSON, told apart by content) or labels already read. */
export type LabelSource = string | URL | Uint8Array | ArrayBuffer | readonly FeatureLabel[];

export interface FeatureCatalogOptions {
  readonly labels?: LabelSource;
  /** Max-activating examples: a Goodfire-schema DuckDB file (URL or bytes), or `{ tokens, activations }` for Goodfire's two files. */
  readonly examples?: ExampleSource;
  /** Feature-map coordinates [x0, y0, x1, y1, …] in [0, 1], two per feature. */
  readonly map?: Float32Array;
  /** Number of features (the SAE's dSae). Default: half the map's length, else the highest labelled id + 1, else 0 (unknown). */
  readonly size?: number;
  readonly fetch?: typeof fetch;
  /**
   * DuckDB-WASM's engine and worker URLs on the page's origin; needed in a page when `examples` is
   * given; `queryTimeoutMs` as in DuckDbOptions.
   */
  readonly duckdb?: DuckDbBundle & Pick<DuckDbOptions, 'queryTimeoutMs'>;
  /** A running DuckDB to use instead of starting one; borrowed, so `close()` leaves it running. */
  readonly duckdbEngine?: DuckDbEngine;
  /** Aborts the label download. */
  readonly signal?: AbortSignal;
}

export async function loadFeatureCatalog(options: FeatureCatalogOptions): Promise<FeatureCatalog> {
  if (options.examples !== undefined && options.duckdb === undefined && options.duckdbEngine === undefined && !inNode()) {
    throw new FeatureCatalogError(
      "Examples were given without DuckDB-WASM: pass duckdb: { mainModule, mainWorker } (URLs of duckdb-eh.wasm and duckdb-browser-eh.worker.js on this page's origin).",
    );
  }
  const labels = options.labels !== undefined ? await loadLabels(options.labels, options) : [];
  const size = catalogSize(options, labels);
  return new LoadedCatalog(size, new LabelIndex(labels), options);
}

async function loadLabels(source: LabelSource, options: FeatureCatalogOptions): Promise<readonly FeatureLabel[]> {
  if (Array.isArray(source)) return source as readonly FeatureLabel[];
  if (source instanceof Uint8Array) return readFeatureLabels(source);
  if (source instanceof ArrayBuffer) return readFeatureLabels(new Uint8Array(source));
  const url = String(source as string | URL);
  if (url.startsWith('file:') && inNode()) {
    const fsName = 'node:fs/promises';
    const fs = (await import(/* @vite-ignore */ fsName)) as { readFile(p: URL): Promise<Uint8Array> };
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(new URL(url));
    } catch (e) {
      throw new FeatureCatalogError(`Cannot read the label file ${url} (${String(e)}).`, { cause: e });
    }
    return readFeatureLabels(bytes, url);
  }
  return fetchFeatureLabels(url, { ...(options.fetch !== undefined ? { fetch: options.fetch } : {}), ...(options.signal !== undefined ? { signal: options.signal } : {}) });
}

function catalogSize(options: FeatureCatalogOptions, labels: readonly FeatureLabel[]): number {
  const maxId = labels.reduce((m, l) => Math.max(m, l.featureId), -1);
  const map = options.map;
  let size = options.size;
  if (size !== undefined && (!Number.isInteger(size) || size < 0 || size > MAX_FEATURE_ID + 1)) {
    throw new FeatureCatalogError(`size must be the SAE's number of features (an integer from 0 to 2^31), got ${String(size)}.`);
  }
  if (map !== undefined) {
    if (map.length % 2 !== 0) throw new FeatureCatalogError(`The feature map has ${map.length} numbers; expected two (x, y) per feature.`);
    if (size !== undefined && map.length !== 2 * size) throw new FeatureCatalogError(`The feature map holds ${map.length / 2} features; the SAE has ${size}. Is it another SAE's map?`);
    for (let i = 0; i < map.length; i++) {
      const v = map[i] ?? Number.NaN;
      if (!(v >= 0 && v <= 1)) throw new FeatureCatalogError(`Feature-map coordinate ${i} (feature ${i >> 1}) is ${v}; expected numbers in [0, 1].`);
    }
    size ??= map.length / 2;
  }
  if (size !== undefined && maxId >= size) {
    throw new FeatureCatalogError(`The label file describes feature ${maxId}, but the SAE has ${size} features (0..${size - 1}). Is it another SAE's label file?`);
  }
  return size ?? maxId + 1;
}

class LoadedCatalog implements FeatureCatalog {
  readonly map?: Float32Array;
  private db: Promise<ExampleDatabase> | undefined;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly index: LabelIndex,
    private readonly options: FeatureCatalogOptions,
  ) {
    if (options.map !== undefined) this.map = options.map;
  }

  label(featureId: number): FeatureLabel | undefined {
    return this.index.get(featureId);
  }

  search(query: string, limit?: number): FeatureLabel[] {
    return this.index.search(query, limit);
  }

  async examples(featureId: number, query: ExampleQuery = {}): Promise<FeatureExample[]> {
    // size 0: nothing said how many features the SAE has, so only the id's form is checked.
    if (!Number.isInteger(featureId) || featureId < 0 || featureId > MAX_FEATURE_ID || (this.size > 0 && featureId >= this.size)) {
      throw new FeatureCatalogError(`Feature ${String(featureId)} is not one of this SAE's features (${this.size > 0 ? `0..${this.size - 1}` : 'a non-negative integer'}).`);
    }
    if (this.options.examples === undefined) return [];
    if (this.closed) throw new FeatureCatalogError('The feature catalog was closed; load it again to query examples.');
    query.signal?.throwIfAborted();
    const opening = this.database();
    const db = await opening;
    try {
      return await db.examples(featureId, query);
    } finally {
      // A stopped engine (a query past the timeout) answers nothing more: start afresh next time.
      if (!db.usable && this.db === opening) {
        this.db = undefined;
        await db.close().catch(() => undefined);
      }
    }
  }

  /** The example database, opened once; a failed open is forgotten so that the next call retries. */
  private database(): Promise<ExampleDatabase> {
    if (this.db !== undefined) return this.db;
    const { examples, duckdb, duckdbEngine, fetch } = this.options;
    if (examples === undefined) return Promise.reject(new FeatureCatalogError('This catalog has no example database.'));
    const opening = (async () => {
      const engine =
        duckdbEngine ??
        (await openDuckDb(
          duckdb !== undefined
            ? {
                bundle: duckdb,
                ...(duckdb.queryTimeoutMs !== undefined ? { queryTimeoutMs: duckdb.queryTimeoutMs } : {}),
              }
            : {},
        ));
      return ExampleDatabase.open(engine, examples, { ownsEngine: duckdbEngine === undefined, fetch });
    })();
    this.db = opening;
    opening.catch(() => {
      if (this.db === opening) this.db = undefined;
    });
    return opening;
  }

  async close(): Promise<void> {
    this.closed = true;
    const db = this.db;
    this.db = undefined;
    if (db !== undefined) await (await db.catch(() => undefined))?.close();
  }
}
