/**
 * Max-activating examples from Goodfire-schema DuckDB files, one query path for Tiny-R1's
 * examples.duckdb and Goodfire's real databases (github.com/goodfire-ai/r1-interpretability:
 * `tokens.db` and `feature_activations.db`, or one file holding both tables):
 *
 *   tokens      (sequence_id, token_idx, token, decoded_token)     every token of each sequence
 *   activations (feature_id, sequence_id, token_idx, strength)     nonzero activations only (COO)
 *
 * For a feature, the top `limit` activations by strength — ties broken by sequence_id, then
 * token_idx, both ascending — each with the tokens |token_idx − hit| ≤ window of its sequence and
 * the feature's activation at each of them (0 where the table stores none). Strengths compare in
 * the column's own type (FLOAT in Goodfire's and Tiny-R1's files), so ties are ties as stored.
 *
 * A file's DuckDB headers and size are checked first (duckdb-file.ts: DuckDB-WASM hangs on a
 * file that ends inside a block). Files are attached READ_ONLY under aliases Loupe makes up from
 * counters; the schema is checked
 * before the first query (a missing table or column, or one of the wrong type, is a
 * FeatureCatalogError naming it); feature id, limit and window are validated integers passed as
 * statement parameters. Nothing from the caller or the file is spliced into SQL text.
 */
import { FeatureCatalogError } from '../errors.js';
import type { DuckDbEngine, SqlRow, SqlValue } from './duckdb.js';
import { checkDuckDbFile, DUCKDB_HEADER_BYTES, readFileHead, readWholeFile } from './duckdb-file.js';
import { MAX_FEATURE_ID } from './labels.js';
import type { ExampleQuery, ExampleToken, FeatureExample } from './types.js';

/** A database file: a URL (absolute, relative to the page, or file: in Node) or its bytes. */
export type ExampleFile = string | URL | Uint8Array | ArrayBuffer;
/** Goodfire ships tokens and activations as two databases; one file may also hold both tables. */
export type ExampleSource = ExampleFile | { readonly tokens: ExampleFile; readonly activations: ExampleFile };

export const DEFAULT_LIMIT = 10;
export const DEFAULT_WINDOW = 5;
/** Bounds on a query: enough for any viewer, small enough that a typo cannot ask for millions of rows. */
export const MAX_LIMIT = 1000;
export const MAX_WINDOW = 256;

const INTEGER_TYPES = new Set(['TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT', 'UTINYINT', 'USMALLINT', 'UINTEGER', 'UBIGINT', 'UHUGEINT']);
const isInteger = (t: string): boolean => INTEGER_TYPES.has(t);
const isNumeric = (t: string): boolean => isInteger(t) || t === 'FLOAT' || t === 'DOUBLE' || t.startsWith('DECIMAL');
const isText = (t: string): boolean => t === 'VARCHAR';

/** The columns each table must have, and the types they may take. */
const SCHEMA = {
  tokens: { sequence_id: isInteger, token_idx: isInteger, token: isInteger, decoded_token: isText },
  activations: { feature_id: isInteger, sequence_id: isInteger, token_idx: isInteger, strength: isNumeric },
} as const;
const EXPECTED_TYPE: Record<string, string> = {
  sequence_id: 'an integer type',
  token_idx: 'an integer type',
  token: 'an integer type',
  feature_id: 'an integer type',
  decoded_token: 'VARCHAR',
  strength: 'a numeric type (FLOAT, DOUBLE, DECIMAL or integer)',
};

let opened = 0;

export class ExampleDatabase {
  private closed = false;

  private constructor(
    private readonly engine: DuckDbEngine,
    /** Aliases of the attached databases holding each table (Loupe's own identifiers). */
    private readonly tokensAlias: string,
    private readonly activationsAlias: string,
    private readonly attached: readonly { alias: string; file: string }[],
    private readonly ownsEngine: boolean,
  ) {}

  /**
   * Attaches `source` to `engine` and checks its schema. With `ownsEngine` the database closes
   * the engine when it closes; otherwise the engine is borrowed and left running.
   */
  static async open(
    engine: DuckDbEngine,
    source: ExampleSource,
    options: { ownsEngine?: boolean | undefined; signal?: AbortSignal | undefined; fetch?: typeof fetch | undefined } = {},
  ): Promise<ExampleDatabase> {
    const n = ++opened;
    const files = isSplit(source) ? [source.tokens, source.activations] : [source];
    const attached: { alias: string; file: string; what: string }[] = [];
    try {
      for (const [k, f] of files.entries()) {
        options.signal?.throwIfAborted();
        const alias = `loupe_examples_${n}_${k}`;
        const file = `${alias}.duckdb`;
        const what = describeFile(f);
        if (typeof f === 'string' || f instanceof URL) {
          const url = String(f);
          if (engine.rangeReads && !url.startsWith('file:')) {
            // Only the headers now; DuckDB reads the rest by ranges as queries need it.
            const { head, size } = await readFileHead(url, DUCKDB_HEADER_BYTES, options);
            checkDuckDbFile(head, size, what);
            await engine.registerUrl(file, url);
          } else {
            const bytes = await readWholeFile(url, options);
            checkDuckDbFile(bytes, bytes.byteLength, what);
            await engine.registerBuffer(file, bytes);
          }
        } else {
          const bytes = f instanceof Uint8Array ? f : new Uint8Array(f);
          checkDuckDbFile(bytes, bytes.byteLength, what);
          await engine.registerBuffer(file, bytes);
        }
        try {
          // TYPE duckdb: without it DuckDB sniffs other formats (a SQLite file makes it try to load
          // its sqlite extension, which hangs DuckDB-WASM in Node and would fetch code in a page).
          await engine.query(`ATTACH '${file}' AS ${alias} (TYPE duckdb, READ_ONLY)`);
        } catch (e) {
          await engine.dropFile(file).catch(() => undefined);
          throw new FeatureCatalogError(`${what} could not be opened as a DuckDB database (${message(e)}); expected a Goodfire-schema .duckdb file.`, { cause: e });
        }
        attached.push({ alias, file, what });
      }
      const [tk, ac] = attached.length === 2 ? attached : [attached[0], attached[0]];
      if (tk === undefined || ac === undefined) throw new FeatureCatalogError('No example database was given.');
      await checkTable(engine, tk.alias, tk.what, 'tokens');
      await checkTable(engine, ac.alias, ac.what, 'activations');
      return new ExampleDatabase(engine, tk.alias, ac.alias, attached, options.ownsEngine ?? false);
    } catch (e) {
      for (const a of attached) {
        await engine.query(`DETACH ${a.alias}`).catch(() => undefined);
        await engine.dropFile(a.file).catch(() => undefined);
      }
      if (options.ownsEngine === true) await engine.close().catch(() => undefined);
      throw e;
    }
  }

  /** Whether queries can still run (false once closed, or once the engine was stopped). */
  get usable(): boolean {
    return !this.closed && !this.engine.stopped;
  }

  /** The feature's strongest activations with their context (see the module comment for the order). */
  async examples(featureId: number, query: ExampleQuery = {}): Promise<FeatureExample[]> {
    if (this.closed) throw new FeatureCatalogError('The example database was closed; load the catalog again.');
    const id = checkInteger(featureId, 0, MAX_FEATURE_ID, 'featureId');
    const limit = checkInteger(query.limit ?? DEFAULT_LIMIT, 0, MAX_LIMIT, 'limit');
    const window = checkInteger(query.window ?? DEFAULT_WINDOW, 0, MAX_WINDOW, 'window');
    query.signal?.throwIfAborted();
    if (limit === 0) return [];
    const T = `${this.tokensAlias}.main.tokens`;
    const A = `${this.activationsAlias}.main.activations`;
    // hits: the top `limit` activations. ctx: the feature's activations in those sequences (one
    // value per token even if the table repeats a row). The LEFT JOIN keeps a hit whose sequence
    // has no tokens stored (it comes back with an empty context).
    let rows: SqlRow[];
    try {
      rows = await this.engine.query(
      `WITH hits AS (
         SELECT sequence_id, token_idx, strength FROM ${A}
         WHERE feature_id = CAST(? AS INTEGER) AND strength IS NOT NULL
         ORDER BY strength DESC, sequence_id ASC, token_idx ASC
         LIMIT CAST(? AS INTEGER)
       ),
       ctx AS (
         SELECT sequence_id, token_idx, max(strength) AS strength FROM ${A}
         WHERE feature_id = CAST(? AS INTEGER) AND sequence_id IN (SELECT sequence_id FROM hits)
         GROUP BY sequence_id, token_idx
       )
       SELECT h.sequence_id AS seq, h.token_idx AS hit, CAST(h.strength AS DOUBLE) AS hit_strength,
              t.token_idx AS idx, t.token AS token, t.decoded_token AS text,
              CAST(COALESCE(c.strength, 0) AS DOUBLE) AS act
       FROM hits h
       LEFT JOIN ${T} t ON t.sequence_id = h.sequence_id
         AND t.token_idx BETWEEN h.token_idx - CAST(? AS INTEGER) AND h.token_idx + CAST(? AS INTEGER)
       LEFT JOIN ctx c ON c.sequence_id = t.sequence_id AND c.token_idx = t.token_idx
       ORDER BY h.strength DESC, h.sequence_id ASC, h.token_idx ASC, t.token_idx ASC`,
      [id, limit, id, window, window],
      );
    } catch (e) {
      if (e instanceof FeatureCatalogError) throw e;
      throw new FeatureCatalogError(`The examples query for feature ${id} failed (${message(e)}); the example database is damaged or unreadable.`, { cause: e });
    }
    query.signal?.throwIfAborted();
    return group(id, rows);
  }

  /** Detaches the files (and ends the engine when this database owns it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const a of this.attached) {
      await this.engine.query(`DETACH ${a.alias}`).catch(() => undefined);
      await this.engine.dropFile(a.file).catch(() => undefined);
    }
    if (this.ownsEngine) await this.engine.close();
  }
}

function isSplit(s: ExampleSource): s is { readonly tokens: ExampleFile; readonly activations: ExampleFile } {
  return typeof s === 'object' && !(s instanceof URL) && !(s instanceof Uint8Array) && !(s instanceof ArrayBuffer);
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function describeFile(f: ExampleFile): string {
  if (typeof f === 'string' || f instanceof URL) return String(f);
  return `the ${f.byteLength}-byte example database`;
}

function checkInteger(v: number, min: number, max: number, name: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new FeatureCatalogError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}.`);
  return v;
}

/** Checks that `table` exists in the attached database `alias` with the columns examples need. */
async function checkTable(engine: DuckDbEngine, alias: string, what: string, table: keyof typeof SCHEMA): Promise<void> {
  let rows: SqlRow[];
  try {
    rows = await engine.query(
      `SELECT table_name AS t, column_name AS c, data_type AS ty FROM information_schema.columns
       WHERE table_catalog = ? AND table_schema = 'main' ORDER BY table_name, ordinal_position`,
      [alias],
    );
  } catch (e) {
    if (e instanceof FeatureCatalogError) throw e;
    throw new FeatureCatalogError(`${what}: its tables could not be listed (${message(e)}); the file is damaged.`, { cause: e });
  }
  const tables = [...new Set(rows.map((r) => String(r['t'])))];
  const cols = rows.filter((r) => String(r['t']).toLowerCase() === table);
  if (cols.length === 0) {
    throw new FeatureCatalogError(
      `${what} has no ${table} table (tables: ${tables.join(', ') || 'none'}); expected Goodfire's schema: ` +
        'tokens(sequence_id, token_idx, token, decoded_token) and activations(feature_id, sequence_id, token_idx, strength).',
    );
  }
  for (const [name, ok] of Object.entries(SCHEMA[table])) {
    const col = cols.find((r) => String(r['c']).toLowerCase() === name);
    if (col === undefined) {
      throw new FeatureCatalogError(`${what}: table ${table} has no ${name} column (columns: ${cols.map((r) => String(r['c'])).join(', ')}).`);
    }
    const type = String(col['ty']).toUpperCase();
    if (!ok(type)) throw new FeatureCatalogError(`${what}: column ${table}.${name} is ${type}; expected ${EXPECTED_TYPE[name] ?? 'another type'}.`);
  }
}

function num(v: SqlValue | undefined): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return Number.NaN;
}

/** Rows (one per context token, in query order) → one FeatureExample per hit. */
function group(featureId: number, rows: readonly SqlRow[]): FeatureExample[] {
  const out: { featureId: number; sequenceId: number; tokenIdx: number; strength: number; tokens: ExampleToken[] }[] = [];
  let cur: (typeof out)[number] | undefined;
  for (const r of rows) {
    const seq = num(r['seq']);
    const hit = num(r['hit']);
    if (cur === undefined || cur.sequenceId !== seq || cur.tokenIdx !== hit) {
      cur = { featureId, sequenceId: seq, tokenIdx: hit, strength: num(r['hit_strength']), tokens: [] };
      out.push(cur);
    }
    if (r['idx'] === null || r['idx'] === undefined) continue;
    const idx = num(r['idx']);
    // A token stored twice in a damaged file appears once.
    if (cur.tokens.length > 0 && cur.tokens[cur.tokens.length - 1]?.tokenIdx === idx) continue;
    const text = r['text'];
    cur.tokens.push({ tokenIdx: idx, tokenId: num(r['token']), text: typeof text === 'string' ? text : '', activation: num(r['act']) });
  }
  return out;
}
