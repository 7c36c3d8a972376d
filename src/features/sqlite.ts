/**
 * A read-only reader of the SQLite 3 file format (https://www.sqlite.org/fileformat2.html),
 * enough to scan a table: Goodfire ships its `autointerp` labels as a SQLite database, and a
 * page should not need a 1 MB SQL engine to read 65 536 rows of text.
 *
 * Covered: the 100-byte header (page size including 65 536 stored as 1, reserved bytes per page,
 * UTF-8 / UTF-16 text), the schema table on page 1, table B-trees (interior 0x05 and leaf 0x0D
 * pages), records with every serial type, payloads spilled to overflow pages, and `INTEGER
 * PRIMARY KEY` columns that alias the rowid. Not covered: indexes (a scan never needs them),
 * WITHOUT ROWID tables, and the write-ahead log (the main file must be checkpointed).
 *
 * The file is untrusted. Every page number is checked against the page count, every cell and
 * varint against its page, every payload against the file size; a B-tree walk visits each page at
 * most once (a page reached twice is a cycle or a shared subtree: refused), and an overflow chain
 * is as long as its payload needs and no longer. So a hostile file costs at most one pass over
 * its pages and ends in a FeatureCatalogError, never a hang.
 */
import { FeatureCatalogError } from '../errors.js';
import { parseCreateTable, type SqliteColumn } from './sqlite-sql.js';

export type { SqliteColumn } from './sqlite-sql.js';

/** A value as SQLite stores it: integers beyond ±2^53 stay `bigint`. */
export type SqliteValue = null | number | bigint | string | Uint8Array;

export interface SqliteTable {
  readonly name: string;
  /** Root page of the table's B-tree (0 for virtual tables, which have none). */
  readonly rootPage: number;
  readonly columns: readonly SqliteColumn[];
}

const MAGIC = 'SQLite format 3\u0000';
const HEADER_BYTES = 100;
const LEAF_TABLE = 0x0d;
const INTERIOR_TABLE = 0x05;
const SCHEMA_COLUMNS: readonly SqliteColumn[] = ['type', 'name', 'tbl_name', 'rootpage', 'sql'].map((name) => ({ name, type: '', rowidAlias: false, virtual: false }));

interface SchemaEntry {
  readonly type: string;
  readonly name: string;
  readonly rootPage: number;
  readonly sql: string;
}

export class SqliteDatabase {
  /** Bytes per page (512 … 65 536). */
  readonly pageSize: number;
  /** Bytes of each page that hold data (page size minus the reserved bytes at its end). */
  readonly usableSize: number;
  readonly pageCount: number;
  readonly encoding: 'utf-8' | 'utf-16le' | 'utf-16be';
  private readonly view: DataView;
  private readonly decoder: TextDecoder;
  private readonly schema: SchemaEntry[];
  private readonly parsed = new Map<string, SqliteTable>();

  private constructor(
    private readonly bytes: Uint8Array,
    private readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < HEADER_BYTES) throw this.error(`is ${bytes.byteLength} bytes, shorter than the 100-byte SQLite header; the file is truncated`);
    for (let i = 0; i < MAGIC.length; i++) {
      if (bytes[i] !== MAGIC.charCodeAt(i)) throw this.error('does not start with "SQLite format 3"; it is not a SQLite 3 database');
    }
    const rawPageSize = this.view.getUint16(16);
    this.pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
    if (this.pageSize < 512 || (this.pageSize & (this.pageSize - 1)) !== 0) throw this.error(`declares page size ${rawPageSize}; SQLite page sizes are powers of two from 512 to 65536`);
    if ((bytes[19] ?? 0) > 2) throw this.error(`has read version ${bytes[19] ?? 0}; this reader knows versions 1 (rollback journal) and 2 (WAL)`);
    this.usableSize = this.pageSize - (bytes[20] ?? 0);
    if (this.usableSize < 480) throw this.error(`reserves ${bytes[20] ?? 0} bytes of each ${this.pageSize}-byte page, leaving fewer than the 480 SQLite requires`);
    if (bytes[21] !== 64 || bytes[22] !== 32 || bytes[23] !== 32) throw this.error('has payload fractions other than 64/32/32, which every SQLite 3 file has; the header is damaged');
    const filePages = Math.floor(bytes.byteLength / this.pageSize);
    const headerPages = this.view.getUint32(28);
    // The in-header page count is valid only when the change counter matches "version valid for".
    const headerValid = headerPages > 0 && this.view.getUint32(24) === this.view.getUint32(92);
    if (headerValid && headerPages > filePages) {
      throw this.error(`declares ${headerPages} pages of ${this.pageSize} bytes but holds ${bytes.byteLength} bytes (${filePages} whole pages); the file is truncated`);
    }
    this.pageCount = headerValid ? headerPages : filePages;
    if (this.pageCount < 1) throw this.error(`is ${bytes.byteLength} bytes, less than one ${this.pageSize}-byte page; the file is truncated`);
    const enc = this.view.getUint32(56);
    if (enc > 3) throw this.error(`declares text encoding ${enc}; SQLite's are 1 (UTF-8), 2 (UTF-16le) and 3 (UTF-16be)`);
    this.encoding = enc === 2 ? 'utf-16le' : enc === 3 ? 'utf-16be' : 'utf-8';
    this.decoder = new TextDecoder(this.encoding);
    this.schema = [];
    this.scanTree(1, SCHEMA_COLUMNS, [0, 1, 3, 4], 'sqlite_schema', (v) => {
      const [type, name, root, sql] = v;
      if (typeof type !== 'string' || typeof name !== 'string') return;
      this.schema.push({ type, name, rootPage: typeof root === 'number' ? root : -1, sql: typeof sql === 'string' ? sql : '' });
    });
  }

  /** Opens `bytes` (the whole file); `source` names it in error messages. */
  static open(bytes: Uint8Array, source = 'SQLite file'): SqliteDatabase {
    return new SqliteDatabase(bytes, source);
  }

  /** Names of the file's tables, in schema order. */
  tableNames(): string[] {
    return this.schema.filter((e) => e.type === 'table').map((e) => e.name);
  }

  /** A table by name (case-insensitive, as SQL names are), or undefined. */
  table(name: string): SqliteTable | undefined {
    const key = name.toLowerCase();
    const cached = this.parsed.get(key);
    if (cached !== undefined) return cached;
    const entry = this.schema.find((e) => e.type === 'table' && e.name.toLowerCase() === key);
    if (entry === undefined) return undefined;
    const what = `table ${entry.name} in ${this.source}`;
    const parsed = parseCreateTable(entry.sql, what);
    if (parsed.withoutRowid) throw new FeatureCatalogError(`The ${what} is a WITHOUT ROWID table (an index B-tree); this reader scans rowid tables only. Export it as CSV instead.`);
    if (entry.rootPage < 1 || entry.rootPage > this.pageCount) {
      throw new FeatureCatalogError(`The ${what} has root page ${entry.rootPage}, outside pages 1..${this.pageCount}; it is a virtual table or the schema is damaged.`);
    }
    const table: SqliteTable = { name: entry.name, rootPage: entry.rootPage, columns: parsed.columns };
    this.parsed.set(key, table);
    return table;
  }

  /**
   * Scans `tableName` in rowid order, calling `row` with the values of `columns` (names,
   * case-insensitive; default every column) in that order. A column the record does not store
   * (added later by ALTER TABLE, or VIRTUAL) reads as null.
   */
  scan(tableName: string, columns: readonly string[] | undefined, row: (values: SqliteValue[], rowid: number | bigint) => void): void {
    const table = this.table(tableName);
    if (table === undefined) throw new FeatureCatalogError(`${this.source} has no table ${JSON.stringify(tableName)} (tables: ${this.tableNames().join(', ') || 'none'}).`);
    const names = columns ?? table.columns.map((c) => c.name);
    const picks = names.map((n) => {
      const i = table.columns.findIndex((c) => c.name.toLowerCase() === n.toLowerCase());
      if (i === -1) throw new FeatureCatalogError(`Table ${table.name} in ${this.source} has no column ${JSON.stringify(n)} (columns: ${table.columns.map((c) => c.name).join(', ')}).`);
      return i;
    });
    this.scanTree(table.rootPage, table.columns, picks, `table ${table.name}`, row);
  }

  /** Every row of `tableName` (see scan). */
  rows(tableName: string, columns?: readonly string[]): SqliteValue[][] {
    const out: SqliteValue[][] = [];
    this.scan(tableName, columns, (v) => void out.push(v));
    return out;
  }

  private error(msg: string): FeatureCatalogError {
    return new FeatureCatalogError(`${this.source} ${msg}.`);
  }

  /** Walks the table B-tree at `root` depth-first (rowid order), decoding the picked columns of each row. */
  private scanTree(root: number, columns: readonly SqliteColumn[], picks: readonly number[], what: string, row: (values: SqliteValue[], rowid: number | bigint) => void): void {
    // Record field index of each column (VIRTUAL generated columns are not stored).
    const fieldOf: number[] = [];
    let field = 0;
    for (const c of columns) fieldOf.push(c.virtual ? -1 : field++);
    const seen = new Uint8Array(this.pageCount + 1);
    const stack = [root];
    while (stack.length > 0) {
      const page = stack.pop() ?? 0;
      this.checkPage(page, what);
      if (seen[page] === 1) throw this.error(`reaches page ${page} twice while scanning ${what}; its B-tree pointers form a cycle or share a subtree, so the file is damaged`);
      seen[page] = 1;
      const start = (page - 1) * this.pageSize;
      const h = start + (page === 1 ? HEADER_BYTES : 0);
      const end = start + this.usableSize;
      const kind = this.bytes[h];
      if (kind !== LEAF_TABLE && kind !== INTERIOR_TABLE) {
        throw this.error(`has page ${page} of type 0x${(kind ?? 0).toString(16).padStart(2, '0')} in ${what}; expected a table B-tree page (0x05 interior or 0x0d leaf)`);
      }
      const cells = this.view.getUint16(h + 3);
      const headerLen = kind === LEAF_TABLE ? 8 : 12;
      const pointers = h + headerLen;
      if (pointers + 2 * cells > end) throw this.error(`has page ${page} claiming ${cells} cells, more than fit in the page; the file is damaged`);
      if (kind === INTERIOR_TABLE) {
        // Children in key order: cell 0's left child first, the right-most pointer last.
        const right = this.view.getUint32(h + 8);
        this.checkPage(right, what);
        stack.push(right);
        for (let c = cells - 1; c >= 0; c--) {
          const cell = start + this.view.getUint16(pointers + 2 * c);
          if (cell < pointers + 2 * cells || cell + 4 > end) throw this.error(`has page ${page} with cell ${c} outside its content area; the file is damaged`);
          const child = this.view.getUint32(cell);
          this.checkPage(child, what);
          stack.push(child);
        }
        continue;
      }
      for (let c = 0; c < cells; c++) {
        const cell = start + this.view.getUint16(pointers + 2 * c);
        if (cell < pointers + 2 * cells || cell >= end) throw this.error(`has page ${page} with cell ${c} outside its content area; the file is damaged`);
        const [size, p1] = this.varint(cell, end, page);
        const [key, p2] = this.varint(p1, end, page);
        const payload = this.payload(size, p2, end, page, what);
        // Rowids are signed 64-bit; the varint holds their two's complement.
        const rowid = typeof key === 'bigint' ? narrow(BigInt.asIntN(64, key)) : key;
        row(this.record(payload, columns, fieldOf, picks, rowid, page), rowid);
      }
    }
  }

  private checkPage(page: number, what: string): void {
    if (!Number.isInteger(page) || page < 1 || page > this.pageCount) {
      throw this.error(`points to page ${page} while scanning ${what}, outside pages 1..${this.pageCount}; the file is truncated or damaged`);
    }
  }

  /** A varint at `pos` that must end before `end` (the page's usable end). */
  private varint(pos: number, end: number, page: number): [number | bigint, number] {
    const r = readVarint(this.bytes, pos, end);
    if (r[1] < 0) throw this.error(`has a varint running past the end of page ${page}; the file is damaged`);
    return r;
  }

  /** The payload of a table leaf cell: local bytes, plus its overflow chain when it spilled. */
  private payload(size: number | bigint, at: number, end: number, page: number, what: string): Uint8Array {
    const u = this.usableSize;
    if (typeof size === 'bigint' || size > this.pageCount * u) {
      throw this.error(`has a row of ${size} bytes on page ${page} in ${what}, more than the whole file holds; the file is damaged`);
    }
    // How much stays on the page (fileformat2 §1.6, "cell payload overflow").
    const maxLocal = u - 35;
    const minLocal = Math.floor(((u - 12) * 32) / 255) - 23;
    let local = size;
    if (size > maxLocal) {
      const k = minLocal + ((size - minLocal) % (u - 4));
      local = k <= maxLocal ? k : minLocal;
    }
    if (at + local + (local < size ? 4 : 0) > end) throw this.error(`has a row on page ${page} in ${what} that runs past the end of the page; the file is damaged`);
    if (local === size) return this.bytes.subarray(at, at + size);
    const out = new Uint8Array(size);
    out.set(this.bytes.subarray(at, at + local));
    let filled = local;
    let next = this.view.getUint32(at + local);
    // Each overflow page carries u − 4 bytes, so the loop ends after ⌈(size − local)/(u − 4)⌉ pages.
    while (filled < size) {
      this.checkPage(next, `the overflow chain of a row in ${what}`);
      const start = (next - 1) * this.pageSize;
      const n = Math.min(size - filled, u - 4);
      out.set(this.bytes.subarray(start + 4, start + 4 + n), filled);
      filled += n;
      next = this.view.getUint32(start);
    }
    return out;
  }

  /** Decodes the picked columns of one record (https://www.sqlite.org/fileformat2.html#record_format). */
  private record(payload: Uint8Array, columns: readonly SqliteColumn[], fieldOf: readonly number[], picks: readonly number[], rowid: number | bigint, page: number): SqliteValue[] {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const bad = (msg: string): FeatureCatalogError => this.error(`has a malformed row on page ${page} (${msg}); the file is damaged`);
    const [hdr, first] = readVarint(payload, 0, payload.length);
    if (first < 0 || typeof hdr === 'bigint' || hdr < first || hdr > payload.length) throw bad(`header size ${hdr} of a ${payload.length}-byte record`);
    // Serial types and body offsets of the fields.
    const types: number[] = [];
    const offsets: number[] = [];
    let p = first;
    let body = hdr;
    while (p < hdr) {
      const [t, q] = readVarint(payload, p, hdr);
      if (q < 0 || typeof t === 'bigint') throw bad('a serial type past the record header');
      if (t === 10 || t === 11) throw bad(`reserved serial type ${t}`);
      types.push(t);
      offsets.push(body);
      body += fieldSize(t);
      p = q;
    }
    if (body > payload.length) throw bad(`fields totalling ${body} bytes in a ${payload.length}-byte record`);
    return picks.map((c) => {
      if (columns[c]?.rowidAlias === true) return rowid;
      const f = fieldOf[c] ?? -1;
      const t = types[f];
      const o = offsets[f];
      if (f < 0 || t === undefined || o === undefined) return null;
      switch (t) {
        case 0:
          return null;
        case 1:
          return view.getInt8(o);
        case 2:
          return view.getInt16(o);
        case 3:
          return (view.getInt8(o) << 16) | view.getUint16(o + 1);
        case 4:
          return view.getInt32(o);
        case 5:
          return view.getInt16(o) * 2 ** 32 + view.getUint32(o + 2);
        case 6:
          return narrow(view.getBigInt64(o));
        case 7:
          return view.getFloat64(o);
        case 8:
          return 0;
        case 9:
          return 1;
        default: {
          const n = fieldSize(t);
          const bytes = payload.subarray(o, o + n);
          return t % 2 === 0 ? bytes.slice() : this.decoder.decode(bytes);
        }
      }
    });
  }
}

/** Bytes a field of serial type `t` occupies in the record body. */
function fieldSize(t: number): number {
  if (t >= 12) return Math.floor((t - 12) / 2);
  return [0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0][t] ?? 0;
}

/**
 * A varint at `pos` (1–9 bytes, big-endian groups of 7 bits, the 9th byte contributing all 8),
 * as a number when exact and a bigint otherwise; `next` is -1 when it runs past `end`.
 */
function readVarint(b: Uint8Array, pos: number, end: number): [value: number | bigint, next: number] {
  let v = 0;
  // Seven groups (49 bits) are exact in a double.
  for (let i = 0; i < 7; i++) {
    if (pos + i >= end) return [0, -1];
    const byte = b[pos + i] ?? 0;
    v = v * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) return [v, pos + i + 1];
  }
  if (pos + 7 >= end) return [0, -1];
  const b7 = b[pos + 7] ?? 0;
  let big = BigInt(v) * 128n + BigInt(b7 & 0x7f);
  if ((b7 & 0x80) === 0) return [narrow(big), pos + 8];
  if (pos + 8 >= end) return [0, -1];
  big = big * 256n + BigInt(b[pos + 8] ?? 0);
  return [narrow(big), pos + 9];
}

/** A bigint as a number when it is exactly representable. */
function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
