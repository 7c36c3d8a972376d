/**
 * Column names from a table's `CREATE TABLE` statement, as SQLite stores it in `sqlite_schema`.
 * Only what a table scan needs: each column's name and declared type, which column (if any) is
 * an alias of the rowid (`INTEGER PRIMARY KEY`, https://www.sqlite.org/lang_createtable.html#rowid),
 * and whether the table is `WITHOUT ROWID` (stored as an index B-tree, which the reader refuses).
 */
import { FeatureCatalogError } from '../errors.js';

export interface SqliteColumn {
  readonly name: string;
  /** Declared type as written ('' when none), e.g. 'INTEGER', 'VARCHAR(20)'. */
  readonly type: string;
  /** The column is an alias of the rowid: the record stores NULL and the value is the rowid. */
  readonly rowidAlias: boolean;
  /** A VIRTUAL generated column: computed on read, absent from the stored record (read as NULL). */
  readonly virtual: boolean;
}

export interface ParsedCreateTable {
  readonly columns: SqliteColumn[];
  readonly withoutRowid: boolean;
}

/** Keywords that start a table constraint rather than a column definition. */
const TABLE_CONSTRAINTS = new Set(['CONSTRAINT', 'PRIMARY', 'UNIQUE', 'CHECK', 'FOREIGN']);
/** Keywords that end a column's type name and start its constraints. */
const COLUMN_CONSTRAINTS = new Set(['CONSTRAINT', 'PRIMARY', 'NOT', 'NULL', 'UNIQUE', 'CHECK', 'DEFAULT', 'COLLATE', 'REFERENCES', 'GENERATED', 'AS']);

type Token = { readonly kind: 'word' | 'quoted' | 'punct' | 'string' | 'number'; readonly text: string };

/** SQL tokens: identifiers/keywords, quoted identifiers ("x", [x], `x`), strings ('x'), punctuation. */
function tokenize(sql: string, what: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  const bad = (msg: string): FeatureCatalogError => new FeatureCatalogError(`SQLite schema of ${what}: ${msg} in ${JSON.stringify(sql.slice(0, 200))}.`);
  while (i < n) {
    const c = sql[i] ?? '';
    if (/\s/.test(c)) {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const e = sql.indexOf('\n', i);
      i = e === -1 ? n : e + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const e = sql.indexOf('*/', i + 2);
      i = e === -1 ? n : e + 2;
    } else if (c === '"' || c === '`' || c === "'") {
      // Quoted identifier or string; the quote character doubled stands for itself.
      let text = '';
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(c, j);
        if (e === -1) throw bad(`an unterminated ${c} quote`);
        text += sql.slice(j, e);
        if (sql[e + 1] === c) {
          text += c;
          j = e + 2;
        } else {
          j = e + 1;
          break;
        }
      }
      out.push({ kind: c === "'" ? 'string' : 'quoted', text });
      i = j;
    } else if (c === '[') {
      const e = sql.indexOf(']', i + 1);
      if (e === -1) throw bad('an unterminated [ quote');
      out.push({ kind: 'quoted', text: sql.slice(i + 1, e) });
      i = e + 1;
    } else if (/[\p{L}\p{N}_$]/u.test(c)) {
      let j = i + 1;
      while (j < n && /[\p{L}\p{N}_$]/u.test(sql[j] ?? '')) j++;
      const text = sql.slice(i, j);
      out.push({ kind: /^\d/.test(text) ? 'number' : 'word', text });
      i = j;
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}

const upper = (t: Token | undefined): string => (t !== undefined && t.kind === 'word' ? t.text.toUpperCase() : '');

/** Parses `CREATE [TEMP] TABLE [IF NOT EXISTS] [schema.]name (col defs, constraints) [options]`. */
export function parseCreateTable(sql: string, what: string): ParsedCreateTable {
  const tokens = tokenize(sql, what);
  const bad = (msg: string): FeatureCatalogError =>
    new FeatureCatalogError(`SQLite schema of ${what}: ${msg}; expected a CREATE TABLE statement, found ${JSON.stringify(sql.slice(0, 200))}.`);
  if (upper(tokens[0]) !== 'CREATE') throw bad('no CREATE');
  const open = tokens.findIndex((t) => t.kind === 'punct' && t.text === '(');
  if (open === -1) throw bad('no column list');
  // Split the parenthesised body at top-level commas.
  const defs: Token[][] = [[]];
  let depth = 0;
  let close = -1;
  for (let k = open + 1; k < tokens.length; k++) {
    const t = tokens[k];
    if (t === undefined) break;
    if (t.kind === 'punct' && t.text === '(') depth++;
    if (t.kind === 'punct' && t.text === ')') {
      if (depth === 0) {
        close = k;
        break;
      }
      depth--;
    }
    if (depth === 0 && t.kind === 'punct' && t.text === ',') defs.push([]);
    else defs[defs.length - 1]?.push(t);
  }
  if (close === -1) throw bad('an unclosed column list');
  const tail = tokens.slice(close + 1).map(upper);
  const withoutRowid = tail.some((w, k) => w === 'WITHOUT' && tail[k + 1] === 'ROWID');

  const columns: { name: string; type: string; pk: boolean; desc: boolean; virtual: boolean }[] = [];
  let tablePk: string[] | undefined;
  for (const def of defs) {
    const first = def[0];
    if (first === undefined) throw bad('an empty column definition');
    if (first.kind === 'word' && TABLE_CONSTRAINTS.has(first.text.toUpperCase())) {
      // PRIMARY KEY (a, b) as a table constraint: a single INTEGER column is a rowid alias.
      const p = def.findIndex((t) => upper(t) === 'PRIMARY');
      if (p !== -1 && upper(def[p + 1]) === 'KEY') {
        const names: string[] = [];
        let d = 0;
        for (const t of def.slice(p + 2)) {
          if (t.kind === 'punct' && t.text === '(') d++;
          else if (t.kind === 'punct' && t.text === ')') d--;
          else if (d === 1 && (t.kind === 'word' || t.kind === 'quoted') && names.length === 0) names.push(t.text);
          else if (d === 1 && t.kind === 'punct' && t.text === ',') names.push('');
        }
        tablePk = names;
      }
      continue;
    }
    if (first.kind !== 'word' && first.kind !== 'quoted' && first.kind !== 'string') throw bad(`a column definition starting with ${JSON.stringify(first.text)}`);
    // The type name: the words (and a parenthesised size) up to the first constraint keyword.
    const typeWords: string[] = [];
    let k = 1;
    for (; k < def.length; k++) {
      const t = def[k];
      if (t === undefined || (t.kind === 'word' && COLUMN_CONSTRAINTS.has(t.text.toUpperCase()))) break;
      if (t.kind === 'punct' && t.text === '(') {
        const e = def.findIndex((u, m) => m > k && u.kind === 'punct' && u.text === ')');
        if (e === -1) break;
        typeWords.push(`(${def.slice(k + 1, e).map((u) => u.text).join('')})`);
        k = e;
        continue;
      }
      typeWords.push(t.text);
    }
    const rest = def.slice(k).map(upper);
    const pkAt = rest.findIndex((w, m) => w === 'PRIMARY' && rest[m + 1] === 'KEY');
    columns.push({
      name: first.text,
      type: typeWords.join(' ').replace(/ \(/g, '('),
      pk: pkAt !== -1,
      desc: pkAt !== -1 && rest[pkAt + 2] === 'DESC',
      // `[GENERATED ALWAYS] AS (expr) [VIRTUAL|STORED]`: only STORED ones are in the record.
      virtual: rest.includes('AS') && !rest.includes('STORED'),
    });
  }
  if (columns.length === 0) throw bad('no columns');
  // "INTEGER PRIMARY KEY" (exactly that type name; not DESC, a historical quirk) aliases the rowid.
  let alias = -1;
  if (!withoutRowid) {
    const colPk = columns.findIndex((c) => c.pk);
    if (colPk !== -1 && !(columns[colPk]?.desc ?? false) && columns[colPk]?.type.toUpperCase() === 'INTEGER') alias = colPk;
    if (colPk === -1 && tablePk !== undefined && tablePk.length === 1) {
      const m = columns.findIndex((c) => c.name.toLowerCase() === tablePk?.[0]?.toLowerCase());
      if (m !== -1 && columns[m]?.type.toUpperCase() === 'INTEGER') alias = m;
    }
  }
  return { columns: columns.map((c, m) => ({ name: c.name, type: c.type, rowidAlias: m === alias, virtual: c.virtual })), withoutRowid };
}
