/**
 * The SQLite reader (src/features/sqlite.ts) against files SQLite itself wrote:
 * tests/fixtures/catalog/*.sqlite and the rows SQLite read back from them (expected.json, both by
 * tools/golden/make_catalog_fixtures.py), and Tiny-R1's examples.sqlite (Python's sqlite3, via
 * tools/tiny-r1/features.py) against the CSVs written from the same rows. Then hostile files:
 * crafted damage (cycles, out-of-range pages, absurd sizes, truncation) and random byte damage,
 * which must end in a FeatureCatalogError or a valid scan, never a hang or another error.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FeatureCatalogError } from '../../src/errors.js';
import { parseCsv } from '../../src/features/csv.js';
import { SqliteDatabase, type SqliteValue } from '../../src/features/sqlite.js';
import { mutate, type Mutation } from '../helpers/byte-mutations.js';

const FIXTURES = 'tests/fixtures/catalog';
const TINY = 'demo/public/models/tiny-r1/examples';

type Encoded =
  | null
  | string
  | number
  | { int: string }
  | { float: 'inf' | '-inf' | '-0' }
  | { blob: string }
  | { textSha256: string; bytes: number }
  | { blobSha256: string; bytes: number };
interface ExpectedTable {
  columns: string[];
  rows?: Encoded[][];
  virtual?: string[];
  withoutRowid?: boolean;
}
const expected = JSON.parse(readFileSync(`${FIXTURES}/expected.json`, 'utf8')) as { files: Record<string, Record<string, ExpectedTable>> };

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Whether the reader's value equals SQLite's (decoded from expected.json). */
function same(actual: SqliteValue, want: Encoded): boolean {
  if (want === null || typeof want === 'string') return actual === want;
  if (typeof want === 'number') return typeof actual === 'number' && Object.is(actual, want);
  // Integers beyond ±(2^53 − 1) come back as bigint.
  if ('int' in want) return actual === BigInt(want.int);
  if ('float' in want) return Object.is(actual, { inf: Infinity, '-inf': -Infinity, '-0': -0 }[want.float]);
  if ('blob' in want) return actual instanceof Uint8Array && hex(actual) === want.blob;
  if ('textSha256' in want) return typeof actual === 'string' && sha256(new TextEncoder().encode(actual)) === want.textSha256;
  return actual instanceof Uint8Array && actual.byteLength === want.bytes && sha256(actual) === want.blobSha256;
}

function read(name: string): Uint8Array {
  return new Uint8Array(readFileSync(`${FIXTURES}/${name}`));
}

describe('SQLite reader vs files written by SQLite', () => {
  for (const [file, tables] of Object.entries(expected.files)) {
    it(`${file}: every table, every row, every column`, () => {
      const db = SqliteDatabase.open(read(file), file);
      expect(db.tableNames()).toEqual(Object.keys(tables));
      for (const [name, t] of Object.entries(tables)) {
        if (t.withoutRowid === true) {
          expect(() => db.table(name)).toThrow(/WITHOUT ROWID/);
          continue;
        }
        expect(db.table(name)?.columns.map((c) => c.name)).toEqual(t.columns);
        const rows = db.rows(name);
        const want = t.rows ?? [];
        expect(rows.length).toBe(want.length);
        const virtual = new Set((t.virtual ?? []).map((v) => t.columns.indexOf(v)));
        rows.forEach((r, i) => {
          const w = want[i] ?? [];
          r.forEach((v, c) => {
            const ok = virtual.has(c) ? v === null : same(v, w[c] ?? null);
            if (!ok) expect.fail(`${file} ${name} row ${i} column ${t.columns[c]}: got ${String(v)}, SQLite read ${JSON.stringify(w[c])}`);
          });
        });
      }
    });
  }

  it('reads the header: page sizes (65536 stored as 1), reserved bytes, text encodings', () => {
    const cases: [string, number, number, string][] = [
      ['autointerp-p512.sqlite', 512, 512, 'utf-8'],
      ['types-p1024.sqlite', 1024, 1024, 'utf-8'],
      ['big-p65536.sqlite', 65536, 65536, 'utf-8'],
      ['reserved-p4096.sqlite', 4096, 4096 - 32, 'utf-8'],
      ['utf16le.sqlite', 1024, 1024, 'utf-16le'],
      ['utf16be.sqlite', 1024, 1024, 'utf-16be'],
    ];
    for (const [file, pageSize, usable, encoding] of cases) {
      if (expected.files[file] === undefined) continue; // reserved-bytes fixture needs the sqlite3 shell
      const bytes = read(file);
      const db = SqliteDatabase.open(bytes);
      expect([db.pageSize, db.usableSize, db.encoding, db.pageCount]).toEqual([pageSize, usable, encoding, bytes.byteLength / pageSize]);
    }
    expect(read('big-p65536.sqlite').subarray(16, 18)).toEqual(new Uint8Array([0, 1]));
  });

  it('selects columns by name, in the order asked, and refuses unknown tables and columns', () => {
    const db = SqliteDatabase.open(read('types-p1024.sqlite'));
    const rows = db.rows('KINDS', ['text value', 'ID']);
    expect(rows[0]).toEqual(['negative rowid', -5]); // rowid order: the negative rowid first
    expect(rows[1]).toEqual(['int 0', 1]);
    expect(() => db.rows('nope')).toThrow(FeatureCatalogError);
    expect(() => db.rows('kinds', ['nope'])).toThrow(/no column "nope"/);
    // `PRIMARY KEY (n)` on an INTEGER column aliases the rowid.
    expect(db.table('pk_table')?.columns.map((c) => c.rowidAlias)).toEqual([false, true]);
    expect(db.table('kinds')?.columns.find((c) => c.name === 'g')?.virtual).toBe(true);
  });
});

describe("Tiny-R1's examples.sqlite (Python's sqlite3) vs the CSVs written from the same rows", () => {
  const db = SqliteDatabase.open(new Uint8Array(readFileSync(`${TINY}/examples.sqlite`)), 'examples.sqlite');
  const csv = (name: string): string[][] => parseCsv(readFileSync(`${TINY}/${name}`, 'utf8')).slice(1);

  it('tokens, activations and autointerp agree cell for cell', () => {
    const t0 = performance.now();
    const tables = { tokens: db.rows('tokens'), activations: db.rows('activations'), autointerp: db.rows('autointerp') };
    const ms = performance.now() - t0;
    for (const [name, rows] of Object.entries(tables)) {
      const ref = csv(`${name}.csv`);
      expect(rows.length).toBe(ref.length);
      rows.forEach((r, i) => {
        const w = ref[i] ?? [];
        r.forEach((v, c) => {
          const cell = w[c] ?? '';
          const ok = typeof v === 'number' ? v === Number(cell) : v === cell;
          if (!ok) expect.fail(`${name} row ${i} column ${c}: SQLite ${JSON.stringify(v)}, CSV ${JSON.stringify(cell)}`);
        });
      });
    }
    // 113 k rows of a 2.4 MB file: a scan is a few hundred milliseconds at most.
    expect(ms).toBeLessThan(3000);
  });
});

// ------------------------------------------------------------------------------ hostile files

const be32 = (b: Uint8Array, at: number, v: number): void => new DataView(b.buffer, b.byteOffset).setUint32(at, v >>> 0);
const be16 = (b: Uint8Array, at: number, v: number): void => new DataView(b.buffer, b.byteOffset).setUint16(at, v);

/** Opens and scans every table; returns 'ok' or the error's class name. */
function scanAll(bytes: Uint8Array): string {
  try {
    const db = SqliteDatabase.open(bytes);
    for (const t of db.tableNames()) {
      try {
        db.rows(t);
      } catch (e) {
        if (e instanceof FeatureCatalogError && /WITHOUT ROWID/.test(e.message)) continue;
        throw e;
      }
    }
    return 'ok';
  } catch (e) {
    if (e instanceof FeatureCatalogError) return 'FeatureCatalogError';
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

/** Root page and B-tree depth facts of the 512-byte autointerp fixture. */
function autointerpRoot(bytes: Uint8Array): number {
  return SqliteDatabase.open(bytes).table('autointerp')?.rootPage ?? 0;
}

describe('hostile SQLite files', () => {
  const base = read('autointerp-p512.sqlite');
  const P = 512;
  const page = (n: number): number => (n - 1) * P;

  it('refuses bad headers by name', () => {
    const cases: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
      ['empty', () => new Uint8Array(0), /shorter than the 100-byte/],
      ['not SQLite', (b) => (b.set([0x50, 0x4b], 0), b), /not a SQLite 3 database/],
      ['page size 0', (b) => (be16(b, 16, 0), b), /page size/],
      ['page size 1000', (b) => (be16(b, 16, 1000), b), /page size/],
      ['page size 256', (b) => (be16(b, 16, 256), b), /page size/],
      ['reserved 255 of 512', (b) => ((b[20] = 255), b), /480/],
      ['payload fractions', (b) => ((b[21] = 10), b), /payload fractions/],
      ['read version 3', (b) => ((b[19] = 3), b), /read version/],
      ['text encoding 7', (b) => (be32(b, 56, 7), b), /text encoding/],
      ['more pages than the file', (b) => (be32(b, 28, 100000), b), /truncated/],
    ];
    for (const [what, damage, message] of cases) {
      expect(() => SqliteDatabase.open(damage(base.slice())), what).toThrow(message);
    }
  });

  it('refuses truncation at any page boundary and inside pages', () => {
    for (const at of [100, 511, 512, 1024, 1500, P * 100, P * 400 + 17, base.length - P, base.length - 1]) {
      expect(scanAll(base.slice(0, at)), `truncated at ${at}`).toBe('FeatureCatalogError');
    }
  });

  it('refuses cyclic and out-of-range page pointers without hanging', () => {
    const root = autointerpRoot(base);
    expect(base[page(root)]).toBe(0x05); // the root is an interior page (the tree is 3 deep)
    const child = new DataView(base.buffer, base.byteOffset).getUint32(page(root) + 8);
    const cases: [string, (b: Uint8Array) => void][] = [
      ['root points to itself', (b) => be32(b, page(root) + 8, root)],
      ['child points back to the root', (b) => be32(b, page(child) + 8, root)],
      ['child page 0', (b) => be32(b, page(root) + 8, 0)],
      ['child past the end', (b) => be32(b, page(root) + 8, base.length / P + 1)],
      ['child 0xffffffff', (b) => be32(b, page(root) + 8, 0xffffffff)],
      ['a table page of the wrong type', (b) => (b[page(child)] = 0x0a)],
      ['more cells than fit', (b) => be16(b, page(root) + 3, 0xffff)],
      ['a cell pointer outside the page', (b) => be16(b, page(root) + 12, 2)],
    ];
    for (const [what, damage] of cases) {
      const b = base.slice();
      damage(b);
      const t0 = performance.now();
      expect(scanAll(b), what).toBe('FeatureCatalogError');
      expect(performance.now() - t0, what).toBeLessThan(2000);
    }
  });

  it('bounds overflow chains and payload sizes', () => {
    // In the 65536-byte file, row 1 (150 000 characters) spills over several overflow pages.
    const big = read('big-p65536.sqlite');
    const db = SqliteDatabase.open(big);
    const root = db.table('big')?.rootPage ?? 0;
    const B = 65536;
    const leaf = (root - 1) * B;
    const view = new DataView(big.buffer, big.byteOffset);
    const cells = view.getUint16(leaf + 3);
    expect(cells).toBe(4);
    const cell1 = leaf + view.getUint16(leaf + 8 + 2);
    // payload varint, rowid varint, then the local part; the overflow pointer follows it.
    const overflowAt = (b: Uint8Array): number => {
      const d = new DataView(b.buffer, b.byteOffset);
      let p = cell1;
      let size = 0;
      while (((b[p] ?? 0) & 0x80) !== 0) size = size * 128 + ((b[p++] ?? 0) & 0x7f);
      size = size * 128 + (b[p++] ?? 0);
      while (((b[p] ?? 0) & 0x80) !== 0) p++;
      p++;
      const u = B - 35;
      const m = Math.floor(((B - 12) * 32) / 255) - 23;
      const k = m + ((size - m) % (B - 4));
      const local = k <= u ? k : m;
      void d;
      return p + local;
    };
    const at = overflowAt(big);
    const first = view.getUint32(at);
    expect(first).toBeGreaterThan(1);
    const cases: [string, (b: Uint8Array) => void, string[]][] = [
      ['overflow page 0', (b) => be32(b, at, 0), ['FeatureCatalogError']],
      ['overflow page past the end', (b) => be32(b, at, 99), ['FeatureCatalogError']],
      // An overflow page that points to itself is read until the payload is full: garbage, but finite.
      ['overflow page points to itself', (b) => be32(b, (first - 1) * B, first), ['ok', 'FeatureCatalogError']],
      // A 9-byte payload size (2^63 …) is refused before any allocation.
      ['absurd payload size', (b) => b.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], cell1), ['FeatureCatalogError']],
    ];
    for (const [what, damage, allowed] of cases) {
      const b = big.slice();
      damage(b);
      expect(allowed, what).toContain(scanAll(b));
    }
  });

  it('random byte damage ends in a FeatureCatalogError or a valid scan, quickly', () => {
    const types = read('types-p1024.sqlite');
    const P2 = 1024;
    const pages = types.length / P2;
    // Hot regions: the file header, and every page's B-tree header and cell pointers.
    const hot: [number, number][] = [[0, 100], [100, 160], ...Array.from({ length: pages - 1 }, (_, k): [number, number] => [(k + 1) * P2, (k + 1) * P2 + 48])];
    const pos = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...hot).chain(([a, b]) => fc.integer({ min: a, max: b - 1 })) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: types.length }) },
    );
    const word = fc.oneof(fc.constantFrom(0, 1, 2, pages, pages + 1, 0xffff, 0x7fffffff, 0xffffffff), fc.integer({ min: 0, max: 0xffffffff }));
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: pos, xor: fc.integer({ min: 1, max: 255 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.integer({ min: 0, max: types.length }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: pos, count: fc.integer({ min: 1, max: 64 }) }) },
      {
        weight: 3,
        arbitrary: fc.tuple(pos, word, fc.constantFrom(2, 4)).map(([at, v, w]): Mutation => {
          const bytes = new Uint8Array(w);
          if (w === 2) new DataView(bytes.buffer).setUint16(0, v & 0xffff);
          else new DataView(bytes.buffer).setUint32(0, v);
          return { kind: 'write', at, bytes };
        }),
      },
    );
    let slowest = 0;
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        const t0 = performance.now();
        const outcome = scanAll(mutate(types, ms));
        slowest = Math.max(slowest, performance.now() - t0);
        return outcome === 'ok' || outcome === 'FeatureCatalogError';
      }),
      { numRuns: 400, seed: 20240 },
    );
    expect(slowest).toBeLessThan(1000);
  });
});
