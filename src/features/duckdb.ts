/**
 * DuckDB-WASM, loaded only when a page asks for max-activating examples: `openDuckDb` imports
 * `@duckdb/duckdb-wasm` dynamically, so a page without an example database never downloads it.
 *
 * Two builds behind one small interface (`DuckDbEngine`):
 * - in a page, the asynchronous build: a Web Worker running the engine. Its `.wasm` and worker
 *   script must come from the page's own origin (`{ mainModule, mainWorker }`; the demo serves them
 *   under /duckdb/, see vite.config.ts `duckdbAssets`). Remote files are read with HTTP range
 *   requests (DuckDBDataProtocol.HTTP), so a multi-GB database costs only the pages a query reads.
 * - in Node, the blocking build (`duckdb-node-blocking.cjs`, NODE_RUNTIME). It has no HTTP file
 *   system (DuckDB-WASM reads URLs with synchronous XMLHttpRequest, which Node lacks), so callers
 *   register whole files as buffers (examples.ts downloads them).
 *
 * Callers pass constant SQL text and parameters; nothing untrusted is ever spliced into SQL.
 */
import type { AsyncDuckDB, AsyncDuckDBConnection } from '@duckdb/duckdb-wasm';
import type * as DuckDbBlocking from '@duckdb/duckdb-wasm/blocking';
import type { DuckDBBindings, DuckDBConnection } from '@duckdb/duckdb-wasm/blocking';
import { FeatureCatalogError } from '../errors.js';

/** Where a page finds DuckDB-WASM's engine and worker (URLs on the page's own origin). */
export interface DuckDbBundle {
  /** The engine, e.g. `duckdb-eh.wasm` (exception-handling build) or `duckdb-mvp.wasm`. */
  readonly mainModule: string;
  /** The matching worker script, e.g. `duckdb-browser-eh.worker.js`. */
  readonly mainWorker: string;
  /** The pthread worker, for the cross-origin-isolated (coi) build only. */
  readonly pthreadWorker?: string;
}

export interface DuckDbOptions {
  /** Required in a page; ignored in Node (which uses the installed package's files). */
  readonly bundle?: DuckDbBundle;
  /**
   * In a page: a query still running after this long stops the worker (default 120 s), so a
   * damaged file that sends DuckDB into a loop costs a worker, not the page. Node's blocking
   * build runs on the caller's thread and cannot be interrupted.
   */
  readonly queryTimeoutMs?: number;
}

/** A value in a query result (DuckDB INTEGER → number, BIGINT → bigint, VARCHAR → string …). */
export type SqlValue = null | boolean | number | bigint | string | Uint8Array | object;
export type SqlRow = Record<string, SqlValue>;

/** The slice of DuckDB the feature catalog uses. */
export interface DuckDbEngine {
  /** Whether `registerUrl` works (HTTP range reads in a page); false in Node, where files are registered as buffers. */
  readonly rangeReads: boolean;
  /** True once the engine was stopped (closed, or a query ran past the timeout); it answers nothing more. */
  readonly stopped: boolean;
  /** Makes `url` (absolute) readable as the file `name`, by HTTP range requests. */
  registerUrl(name: string, url: string): Promise<void>;
  /** Makes `bytes` readable as the file `name` (the bytes are copied). */
  registerBuffer(name: string, bytes: Uint8Array): Promise<void>;
  dropFile(name: string): Promise<void>;
  /** Runs `sql` — constant text — with positional `?` parameters. */
  query(sql: string, params?: readonly (number | string)[]): Promise<SqlRow[]>;
  /** Ends the engine (terminates the worker in a page). */
  close(): Promise<void>;
}

/** Node, where the blocking build is used (no Web Workers, no bundle URLs needed). */
export function inNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined';
}

/** Starts DuckDB-WASM: the worker build in a page (needs `bundle`), the blocking build in Node. */
export async function openDuckDb(options: DuckDbOptions = {}): Promise<DuckDbEngine> {
  try {
    const engine = inNode() ? await openNode() : await openBrowser(options);
    // DuckDB fetches extensions from extensions.duckdb.org on demand; the catalog needs none, and
    // a page must not load code from elsewhere because a file looked like Parquet or SQLite.
    await engine.query('SET autoinstall_known_extensions = false');
    await engine.query('SET autoload_known_extensions = false');
    return engine;
  } catch (e) {
    if (e instanceof FeatureCatalogError) throw e;
    throw new FeatureCatalogError(`DuckDB-WASM could not start (${String(e)}). The example database needs it; labels still work without.`, { cause: e });
  }
}

type Arrowish = { toArray(): Array<{ toJSON(): Record<string, unknown> }> };

function rowsOf(table: Arrowish): SqlRow[] {
  return table.toArray().map((r) => r.toJSON() as SqlRow);
}

async function openBrowser(options: DuckDbOptions): Promise<DuckDbEngine> {
  const bundle = options.bundle;
  if (bundle === undefined) {
    throw new FeatureCatalogError(
      'Max-activating examples need DuckDB-WASM, and no bundle was given: pass duckdb: { mainModule, mainWorker } with URLs of duckdb-eh.wasm and ' +
        "duckdb-browser-eh.worker.js served from this page's origin (copy them from node_modules/@duckdb/duckdb-wasm/dist/).",
    );
  }
  const base = typeof document !== 'undefined' ? document.baseURI : (globalThis as { location?: { href: string } }).location?.href;
  const abs = (u: string): string => (base !== undefined ? new URL(u, base).href : u);
  // A wasm URL that does not load fails inside the worker, where instantiate() never hears of it:
  // ask the server first, for a clear error instead of a timeout.
  for (const url of [bundle.mainModule, bundle.mainWorker]) {
    const res = await fetch(abs(url), { method: 'HEAD' }).catch((e: unknown) => e);
    if (!(res instanceof Response) || !res.ok) {
      throw new FeatureCatalogError(
        `DuckDB-WASM's ${url === bundle.mainModule ? 'engine' : 'worker'} ${abs(url)} is not served (${res instanceof Response ? `HTTP ${res.status}` : String(res)}); ` +
          'serve duckdb-eh.wasm and duckdb-browser-eh.worker.js from node_modules/@duckdb/duckdb-wasm/dist/ on this origin.',
      );
    }
  }
  const duckdb = await import('@duckdb/duckdb-wasm');
  const worker = new Worker(abs(bundle.mainWorker));
  const db: AsyncDuckDB = new duckdb.AsyncDuckDB(new duckdb.VoidLogger(), worker);
  // Past the checks above, a failure may still leave instantiate() unsettled: listen for the
  // worker's own error event, and give up after the query timeout in any case.
  const timeoutMs = options.queryTimeoutMs ?? 120_000;
  let onError: ((e: ErrorEvent) => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      db.instantiate(abs(bundle.mainModule), bundle.pthreadWorker !== undefined ? abs(bundle.pthreadWorker) : null),
      new Promise<never>((_, reject) => {
        onError = (e) => reject(new Error(e.message || 'the worker reported an error'));
        worker.addEventListener('error', onError);
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    worker.terminate();
    throw new FeatureCatalogError(
      `DuckDB-WASM failed to start from ${abs(bundle.mainModule)} with worker ${abs(bundle.mainWorker)} (${e instanceof Error ? e.message : String(e)}); check that both URLs are served from this origin.`,
      { cause: e },
    );
  } finally {
    clearTimeout(timer);
    if (onError !== undefined) worker.removeEventListener('error', onError);
  }
  const conn: AsyncDuckDBConnection = await db.connect();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await conn.close().catch(() => undefined);
    await db.terminate();
  };
  /** Runs `work` unless the engine stopped; past the timeout, stops the worker and refuses. */
  const guarded = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    if (stopped) throw new FeatureCatalogError('DuckDB-WASM was stopped; load the catalog again to query examples.');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void stop();
        reject(new FeatureCatalogError(`DuckDB-WASM spent over ${timeoutMs / 1000} s on ${what} and was stopped; the example database may be damaged or the server too slow.`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([work(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    rangeReads: true,
    get stopped() {
      return stopped;
    },
    async registerUrl(name, url) {
      await guarded('registering a file', () => db.registerFileURL(name, abs(url), duckdb.DuckDBDataProtocol.HTTP, false));
    },
    async registerBuffer(name, bytes) {
      // registerFileBuffer transfers (detaches) the buffer to the worker: hand it a copy.
      await guarded('registering a file', () => db.registerFileBuffer(name, bytes.slice()));
    },
    async dropFile(name) {
      if (!stopped) await db.dropFile(name);
    },
    query(sql, params = []) {
      return guarded('a query', async () => {
        if (params.length === 0) return rowsOf(await conn.query(sql));
        const stmt = await conn.prepare(sql);
        try {
          return rowsOf(await stmt.query(...params));
        } finally {
          await stmt.close();
        }
      });
    },
    close: stop,
  };
}

interface NodeRequire {
  (id: string): unknown;
  resolve(id: string): string;
}

type BlockingModule = typeof DuckDbBlocking;

async function openNode(): Promise<DuckDbEngine> {
  // Node-only module, named in a variable so that bundlers leave it alone.
  const moduleName = 'node:module';
  const { createRequire } = (await import(/* @vite-ignore */ moduleName)) as { createRequire(from: string): NodeRequire };
  const require = createRequire(import.meta.url);
  const duckdb = require('@duckdb/duckdb-wasm/dist/duckdb-node-blocking.cjs') as BlockingModule;
  const file = (f: string): string => require.resolve(`@duckdb/duckdb-wasm/dist/${f}`);
  const db: DuckDBBindings = await duckdb.createDuckDB(
    {
      mvp: { mainModule: file('duckdb-mvp.wasm'), mainWorker: file('duckdb-node-mvp.worker.cjs') },
      eh: { mainModule: file('duckdb-eh.wasm'), mainWorker: file('duckdb-node-eh.worker.cjs') },
    },
    new duckdb.VoidLogger(),
    duckdb.NODE_RUNTIME,
  );
  await db.instantiate(() => undefined);
  const conn: DuckDBConnection = db.connect();
  let stopped = false;
  const live = (): void => {
    if (stopped) throw new FeatureCatalogError('DuckDB-WASM was closed; load the catalog again to query examples.');
  };
  // The blocking build answers synchronously; the interface stays asynchronous for the worker build.
  return {
    rangeReads: false,
    get stopped() {
      return stopped;
    },
    registerUrl() {
      return Promise.reject(new FeatureCatalogError("DuckDB-WASM in Node cannot read URLs (it has no HTTP file system); register the file's bytes instead."));
    },
    registerBuffer(name, bytes) {
      return Promise.resolve().then(() => {
        live();
        db.registerFileBuffer(name, bytes.slice());
      });
    },
    dropFile(name) {
      return Promise.resolve().then(() => {
        if (!stopped) db.dropFile(name);
      });
    },
    query(sql, params = []) {
      return Promise.resolve().then(() => {
        live();
        if (params.length === 0) return rowsOf(conn.query(sql));
        const stmt = conn.prepare(sql);
        try {
          return rowsOf(stmt.query(...params));
        } finally {
          stmt.close();
        }
      });
    },
    close() {
      return Promise.resolve().then(() => {
        if (stopped) return;
        stopped = true;
        conn.close();
        db.reset();
      });
    },
  };
}
