/**
 * Feature labels from Goodfire's `autointerp` table, as CSV or as SQLite, into FeatureLabel[].
 *
 * Goodfire's table (github.com/goodfire-ai/r1-interpretability, db_example.ipynb) has the columns
 * `feature_id, label, seqs, indices, quality, interestingness, model_name, prompt_version`; Tiny-R1's
 * (tools/tiny-r1/features.py) the same without `seqs`/`indices`. Columns are found by name (any
 * order, extra columns ignored); `feature_id` and `label` are required. Goodfire's notebook reads
 * the SQLite file with `sqlite_all_varchar`, so numbers may be stored as text: both are accepted.
 *
 * Rules, whatever the container: a feature id is an integer in [0, 2^31) (DuckDB INTEGER; an SAE
 * has far fewer features); quality / interestingness are kept as the file gives them when finite,
 * and are absent when the cell is empty, NULL or NaN; the label "dead feature" (any case, trimmed)
 * marks a dead feature; when a feature appears twice the first row wins. The result is sorted by
 * feature id. Anything else malformed is a FeatureCatalogError naming the row and column.
 */
import { FeatureCatalogError } from '../errors.js';
import { CsvParser } from './csv.js';
import { SqliteDatabase, type SqliteValue } from './sqlite.js';
import type { FeatureLabel } from './types.js';

/** Goodfire's label for features that never fire. */
export const DEAD_LABEL = 'dead feature';
/** Feature ids fit DuckDB's INTEGER (and every SAE's dSae). */
export const MAX_FEATURE_ID = 2 ** 31 - 1;

/** One autointerp row's cells, before validation (CSV gives strings; SQLite gives typed values). */
type Cell = SqliteValue | undefined;

/** Collects validated labels; the first row of a feature wins. */
export class LabelCollector {
  private readonly byId = new Map<number, FeatureLabel>();

  constructor(private readonly source: string) {}

  /** Adds one row; `where` locates it in error messages ("line 12", "row 7"). */
  add(featureId: Cell, label: Cell, quality: Cell, interestingness: Cell, where: string): void {
    const id = featureIdOf(featureId, `${this.source}, ${where}, column feature_id`);
    if (this.byId.has(id)) return;
    const text = textOf(label, `${this.source}, ${where}, column label`);
    const q = scoreOf(quality, `${this.source}, ${where}, column quality`);
    const i = scoreOf(interestingness, `${this.source}, ${where}, column interestingness`);
    this.byId.set(id, {
      featureId: id,
      label: text,
      ...(q !== undefined ? { quality: q } : {}),
      ...(i !== undefined ? { interestingness: i } : {}),
      dead: isDeadLabel(text),
    });
  }

  /** Replaces a feature's label when `better` says so (Neuronpedia keeps its best explanation). */
  offer(l: FeatureLabel, better: (old: FeatureLabel, candidate: FeatureLabel) => boolean): void {
    const old = this.byId.get(l.featureId);
    if (old === undefined || better(old, l)) this.byId.set(l.featureId, l);
  }

  labels(): FeatureLabel[] {
    return [...this.byId.values()].sort((a, b) => a.featureId - b.featureId);
  }
}

export function isDeadLabel(label: string): boolean {
  return label.trim().toLowerCase() === DEAD_LABEL;
}

/** A feature id from a cell: an integer (or integral text such as "12" / "12.0") in [0, 2^31). */
export function featureIdOf(v: Cell, where: string): number {
  let n: number | undefined;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'bigint') n = v >= 0n && v <= BigInt(MAX_FEATURE_ID) ? Number(v) : Number.NaN;
  else if (typeof v === 'string' && /^\s*\+?\d+(\.0*)?\s*$/.test(v)) n = Number(v);
  if (n === undefined || !Number.isInteger(n) || n < 0 || n > MAX_FEATURE_ID) {
    throw new FeatureCatalogError(`${where}: expected a feature id (an integer from 0 to ${MAX_FEATURE_ID}), found ${describe(v)}.`);
  }
  return n;
}

function textOf(v: Cell, where: string): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new FeatureCatalogError(`${where}: expected text, found a ${v.byteLength}-byte blob.`);
}

/** A score cell: a finite number, or absent (empty, NULL, NaN, "None"). */
function scoreOf(v: Cell, where: string): number | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const s = v.trim();
    if (s === '' || /^(nan|none|null)$/i.test(s)) return undefined;
    const n = Number(s);
    if (Number.isFinite(n)) return n;
  }
  throw new FeatureCatalogError(`${where}: expected a number or an empty cell, found ${describe(v)}.`);
}

function describe(v: Cell): string {
  if (v === undefined) return 'no cell (the row is short)';
  if (v === null) return 'NULL';
  if (v instanceof Uint8Array) return `a ${v.byteLength}-byte blob`;
  const s = String(v);
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

// ------------------------------------------------------------------------------------------ CSV

/** Reads an autointerp CSV incrementally: feed text with `push`, then `end()` for the labels. */
export class AutointerpCsvReader {
  private readonly parser: CsvParser;
  private readonly collector: LabelCollector;
  private columns: { id: number; label: number; quality: number; interestingness: number; width: number } | undefined;
  private readonly sink = (fields: string[], line: number): void => this.row(fields, line);

  constructor(private readonly source = 'autointerp CSV') {
    this.parser = new CsvParser(source);
    this.collector = new LabelCollector(source);
  }

  push(text: string): void {
    this.parser.push(text, this.sink);
  }

  end(): FeatureLabel[] {
    this.parser.end(this.sink);
    if (this.columns === undefined) throw new FeatureCatalogError(`${this.source} is empty; expected a header row with feature_id and label columns.`);
    return this.collector.labels();
  }

  private row(fields: string[], line: number): void {
    const c = this.columns;
    if (c === undefined) {
      const names = fields.map((f) => f.trim().toLowerCase());
      const at = (n: string): number => names.indexOf(n);
      const id = at('feature_id');
      const label = at('label');
      if (id === -1 || label === -1) {
        throw new FeatureCatalogError(
          `${this.source}: the header row has no ${id === -1 ? 'feature_id' : 'label'} column (found: ${fields.slice(0, 12).map((f) => JSON.stringify(f)).join(', ')}). ` +
            "Expected Goodfire's autointerp columns feature_id, label, quality, interestingness, model_name, prompt_version.",
        );
      }
      this.columns = { id, label, quality: at('quality'), interestingness: at('interestingness'), width: fields.length };
      return;
    }
    if (fields.length !== c.width) {
      throw new FeatureCatalogError(`${this.source}, line ${line}: ${fields.length} fields where the header has ${c.width}; the file is truncated or not well-formed CSV.`);
    }
    this.collector.add(fields[c.id], fields[c.label], c.quality >= 0 ? fields[c.quality] : undefined, c.interestingness >= 0 ? fields[c.interestingness] : undefined, `line ${line}`);
  }
}

/** Bytes decoded in slices of this size, so a large file never exists as one string. */
const DECODE_SLICE = 1 << 20;

/** Labels from an autointerp CSV (text, or UTF-8 bytes). */
export function readAutointerpCsv(input: string | Uint8Array, source?: string): FeatureLabel[] {
  const reader = new AutointerpCsvReader(source);
  if (typeof input === 'string') {
    reader.push(input);
  } else {
    const decoder = new TextDecoder('utf-8');
    for (let at = 0; at < input.byteLength; at += DECODE_SLICE) {
      reader.push(decoder.decode(input.subarray(at, at + DECODE_SLICE), { stream: true }));
    }
    reader.push(decoder.decode());
  }
  return reader.end();
}

/** Labels from an autointerp CSV arriving as a byte stream (parsed as it downloads). */
export async function readAutointerpCsvStream(stream: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>, source?: string): Promise<FeatureLabel[]> {
  const reader = new AutointerpCsvReader(source);
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of iterate(stream)) reader.push(decoder.decode(chunk, { stream: true }));
  reader.push(decoder.decode());
  return reader.end();
}

/** Chunks of a ReadableStream or an async iterable (older browsers lack ReadableStream iteration). */
export async function* iterate(stream: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (!('getReader' in stream)) {
    yield* stream;
    return;
  }
  const r = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await r.read();
      if (done) return;
      yield value;
    }
  } finally {
    r.releaseLock();
  }
}

// --------------------------------------------------------------------------------------- SQLite

/** Labels from the `autointerp` table (or `table`) of a SQLite database file. */
export function readAutointerpSqlite(bytes: Uint8Array, source = 'autointerp SQLite file', table = 'autointerp'): FeatureLabel[] {
  const db = SqliteDatabase.open(bytes, source);
  const t = db.table(table);
  if (t === undefined) {
    throw new FeatureCatalogError(`${source} has no ${table} table (tables: ${db.tableNames().join(', ') || 'none'}); expected Goodfire's autointerp table.`);
  }
  const has = (n: string): boolean => t.columns.some((c) => c.name.toLowerCase() === n);
  for (const required of ['feature_id', 'label']) {
    if (!has(required)) throw new FeatureCatalogError(`The ${table} table of ${source} has no ${required} column (columns: ${t.columns.map((c) => c.name).join(', ')}).`);
  }
  const optional = ['quality', 'interestingness'].filter(has);
  const collector = new LabelCollector(source);
  let n = 0;
  db.scan(table, ['feature_id', 'label', ...optional], (v) => {
    n++;
    const q = optional.indexOf('quality');
    const i = optional.indexOf('interestingness');
    collector.add(v[0], v[1], q >= 0 ? v[2 + q] : undefined, i >= 0 ? v[2 + i] : undefined, `row ${n} of ${table}`);
  });
  return collector.labels();
}
