/**
 * Max-activating examples through DuckDB-WASM (src/features/examples.ts) and the catalog around
 * them (src/features/catalog.ts).
 *
 * Reference: Tiny-R1's tokens.csv and activations.csv (Python's csv, features.py), read here and
 * ranked in plain TypeScript: top N by strength (as f32, the file's FLOAT), ties by sequence_id
 * then token_idx ascending; context |token_idx − hit| ≤ window; the feature's activation at each
 * context token, 0 where none is stored. examples.duckdb was written from the same CSVs by DuckDB's
 * own CSV reader (tools/tiny-r1/write_duckdb.mjs), so the two sides share no parsing code.
 * Schema-error and Goodfire-variant files are written in the test with @duckdb/node-api.
 * One DuckDB-WASM instance serves the whole file (instantiation takes seconds).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeatureCatalogError } from '../../src/errors.js';
import { loadFeatureCatalog } from '../../src/features/catalog.js';
import { parseCsv } from '../../src/features/csv.js';
import { openDuckDb, type DuckDbEngine } from '../../src/features/duckdb.js';
import { checkDuckDbFile } from '../../src/features/duckdb-file.js';
import { ExampleDatabase } from '../../src/features/examples.js';
import type { FeatureExample } from '../../src/features/types.js';
import { serveFixtures, type TestServer } from '../helpers/http-server.js';

const TINY = 'demo/public/models/tiny-r1/examples';
const DUCKDB_FILE = `${TINY}/examples.duckdb`;
const duckdbBytes = new Uint8Array(readFileSync(DUCKDB_FILE));

// ------------------------------------------------------------------- the independent reference

const tokens = new Map<number, Map<number, { id: number; text: string }>>();
for (const [s, t, id, text] of parseCsv(readFileSync(`${TINY}/tokens.csv`, 'utf8')).slice(1)) {
  const seq = Number(s);
  let m = tokens.get(seq);
  if (m === undefined) tokens.set(seq, (m = new Map()));
  m.set(Number(t), { id: Number(id), text: text ?? '' });
}
/** feature → rows (seq, tok, strength as f32). */
const acts = new Map<number, { seq: number; tok: number; v: number }[]>();
for (const [f, s, t, v] of parseCsv(readFileSync(`${TINY}/activations.csv`, 'utf8')).slice(1)) {
  const feature = Number(f);
  let a = acts.get(feature);
  if (a === undefined) acts.set(feature, (a = []));
  a.push({ seq: Number(s), tok: Number(t), v: Math.fround(Number(v)) });
}

function reference(feature: number, limit: number, window: number): FeatureExample[] {
  const rows = [...(acts.get(feature) ?? [])];
  rows.sort((a, b) => b.v - a.v || a.seq - b.seq || a.tok - b.tok);
  const at = new Map(rows.map((r) => [`${r.seq}:${r.tok}`, r.v]));
  return rows.slice(0, limit).map((h) => {
    const seqTokens = tokens.get(h.seq) ?? new Map<number, { id: number; text: string }>();
    const ctx = [...seqTokens.keys()].filter((i) => Math.abs(i - h.tok) <= window).sort((a, b) => a - b);
    return {
      featureId: feature,
      sequenceId: h.seq,
      tokenIdx: h.tok,
      strength: h.v,
      tokens: ctx.map((i) => ({ tokenIdx: i, tokenId: seqTokens.get(i)?.id ?? -1, text: seqTokens.get(i)?.text ?? '', activation: at.get(`${h.seq}:${i}`) ?? 0 })),
    };
  });
}

/** Features whose top 10 hold tied strengths (ties decided by sequence_id, token_idx). */
function featuresWithTies(n: number): number[] {
  const out: number[] = [];
  for (const [f, rows] of acts) {
    const top = [...rows].sort((a, b) => b.v - a.v).slice(0, 10);
    if (new Set(top.map((r) => r.v)).size < top.length) out.push(f);
    if (out.length >= n) break;
  }
  return out;
}

// ------------------------------------------------------------------------------------- tests

let engine: DuckDbEngine;
let tinyDb: ExampleDatabase;
let tmp: string;

beforeAll(async () => {
  engine = await openDuckDb();
  tinyDb = await ExampleDatabase.open(engine, duckdbBytes);
  tmp = mkdtempSync(join(tmpdir(), 'loupe-examples-'));
}, 120_000);

afterAll(async () => {
  await tinyDb.close();
  await engine.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("Tiny-R1's examples.duckdb vs the CSVs", () => {
  const dead = [...Array(1024).keys()].filter((f) => !acts.has(f));
  const tied = featuresWithTies(4);

  it('has tied and dead features to test (sanity of the reference)', () => {
    expect(tied.length).toBe(4);
    expect(dead.length).toBeGreaterThan(0);
  });

  const cases: [string, number[], number, number][] = [
    ['default query (10 hits, window 5)', [540, 0, 1023, 317], 10, 5],
    ['window 0: the hit alone', [540, 2], 3, 0],
    ['wide window, many hits', [0, 2, 700], 40, 12],
    ['a hit at token 2 clips its context at the sequence start', [2], 5, 5],
  ];
  for (const [what, features, limit, window] of cases) {
    it(what, async () => {
      for (const f of features) {
        const got = await tinyDb.examples(f, { limit, window });
        expect(got, `feature ${f}`).toEqual(reference(f, limit, window));
      }
    });
  }

  it('breaks ties by sequence_id, then token_idx', async () => {
    for (const f of tied) {
      const got = await tinyDb.examples(f, { limit: 10 });
      expect(got, `feature ${f}`).toEqual(reference(f, 10, 5));
      for (let i = 1; i < got.length; i++) {
        const a = got[i - 1];
        const b = got[i];
        if (a === undefined || b === undefined) continue;
        expect(a.strength > b.strength || (a.strength === b.strength && (a.sequenceId < b.sequenceId || (a.sequenceId === b.sequenceId && a.tokenIdx < b.tokenIdx)))).toBe(true);
      }
    }
  });

  it('returns every hit when the feature has fewer than the limit, and none for a dead feature', async () => {
    const small = [...acts.entries()].find(([, r]) => r.length < 10)?.[0];
    if (small !== undefined) expect(await tinyDb.examples(small, { limit: 10 })).toEqual(reference(small, 10, 5));
    expect(await tinyDb.examples(dead[0] ?? 0)).toEqual([]);
    expect(await tinyDb.examples(540, { limit: 0 })).toEqual([]);
    // A feature id past the SAE is simply absent from the file.
    expect(await tinyDb.examples(5000)).toEqual([]);
  });

  it('validates feature id, limit and window as integers in range', async () => {
    for (const [f, q] of [
      [-1, {}],
      [1.5, {}],
      [Number.NaN, {}],
      [2 ** 31, {}],
      [1, { limit: -1 }],
      [1, { limit: 1001 }],
      [1, { window: 2.5 }],
      [1, { window: 257 }],
    ] as const) {
      await expect(tinyDb.examples(f, q), JSON.stringify([f, q])).rejects.toThrow(FeatureCatalogError);
    }
  });

  it('honours an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(tinyDb.examples(540, { signal: ac.signal })).rejects.toThrow(/abort/i);
  });
});

// --------------------------------------------------------------- Goodfire variants and errors

/** Writes a DuckDB file readable by DuckDB-WASM (storage v1.0.0) from SQL statements on `t`. */
async function writeDuckDb(name: string, statements: readonly string[]): Promise<Uint8Array> {
  const path = join(tmp, name);
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();
  await con.run(`ATTACH '${path}' AS t (STORAGE_VERSION 'v1.0.0')`);
  await con.run(`ATTACH '${join(process.cwd(), DUCKDB_FILE)}' AS tiny (READ_ONLY)`);
  for (const s of statements) await con.run(s);
  await con.run('DETACH t');
  con.closeSync();
  instance.closeSync();
  return new Uint8Array(readFileSync(path));
}

describe('Goodfire layouts', () => {
  it("two files (Goodfire's tokens.db and feature_activations.db), BIGINT ids and DOUBLE strengths", async () => {
    const tokensFile = await writeDuckDb('tokens.db', [
      'CREATE TABLE t.tokens AS SELECT CAST(sequence_id AS BIGINT) AS sequence_id, CAST(token_idx AS BIGINT) AS token_idx, CAST(token AS BIGINT) AS token, decoded_token FROM tiny.tokens',
    ]);
    const actsFile = await writeDuckDb('feature_activations.db', [
      // Another column order, an extra column, rows in another order.
      'CREATE TABLE t.activations AS SELECT CAST(strength AS DOUBLE) AS strength, token_idx, sequence_id, CAST(feature_id AS BIGINT) AS feature_id, 1 AS extra FROM tiny.activations ORDER BY sequence_id DESC, token_idx',
    ]);
    const db = await ExampleDatabase.open(engine, { tokens: tokensFile, activations: actsFile });
    try {
      for (const f of [540, 0, 2]) expect(await db.examples(f, { limit: 7, window: 4 }), `feature ${f}`).toEqual(reference(f, 7, 4));
    } finally {
      await db.close();
    }
  });

  it('names a missing table, a missing column, and a column of the wrong type', async () => {
    const cases: [string, string[], RegExp][] = [
      ['no-activations.duckdb', ['CREATE TABLE t.tokens AS SELECT * FROM tiny.tokens LIMIT 5'], /has no activations table \(tables: tokens\)/],
      ['empty.duckdb', ['CREATE TABLE t.other (x INTEGER)'], /has no tokens table \(tables: other\)/],
      [
        'no-decoded.duckdb',
        ['CREATE TABLE t.tokens AS SELECT sequence_id, token_idx, token FROM tiny.tokens LIMIT 5', 'CREATE TABLE t.activations AS SELECT * FROM tiny.activations LIMIT 5'],
        /table tokens has no decoded_token column \(columns: sequence_id, token_idx, token\)/,
      ],
      [
        'text-strength.duckdb',
        ['CREATE TABLE t.tokens AS SELECT * FROM tiny.tokens LIMIT 5', 'CREATE TABLE t.activations AS SELECT feature_id, sequence_id, token_idx, CAST(strength AS VARCHAR) AS strength FROM tiny.activations LIMIT 5'],
        /column activations\.strength is VARCHAR; expected a numeric type/,
      ],
      [
        'float-ids.duckdb',
        ['CREATE TABLE t.tokens AS SELECT CAST(sequence_id AS DOUBLE) AS sequence_id, token_idx, token, decoded_token FROM tiny.tokens LIMIT 5', 'CREATE TABLE t.activations AS SELECT * FROM tiny.activations LIMIT 5'],
        /column tokens\.sequence_id is DOUBLE; expected an integer type/,
      ],
    ];
    for (const [name, sql, message] of cases) {
      const bytes = await writeDuckDb(name, sql);
      await expect(ExampleDatabase.open(engine, bytes), name).rejects.toThrow(message);
    }
  });

  it('refuses files that are not DuckDB databases', async () => {
    const garbage = new Uint8Array(8192).map((_, i) => (i * 7919) & 0xff);
    await expect(ExampleDatabase.open(engine, garbage)).rejects.toThrow(/shorter than DuckDB's 12 KiB of headers/);
    await expect(ExampleDatabase.open(engine, readFileSync(`${TINY}/examples.sqlite`))).rejects.toThrow(/lacks the "DUCK" magic/);
    // The engine is still usable afterwards.
    expect(await tinyDb.examples(540, { limit: 1 })).toEqual(reference(540, 1, 5));
  });

  it('refuses truncated files before DuckDB-WASM sees them (it loops forever on a file ending inside a block)', async () => {
    const B = 262144;
    const H = 12288;
    expect(duckdbBytes.length).toBe(H + 5 * B); // Tiny-R1's file: headers + 5 blocks of 256 KiB
    for (const at of [4096, H, H + 1, H + B, H + B + 1, 500000, duckdbBytes.length - 4096, duckdbBytes.length - 1]) {
      const t0 = performance.now();
      await expect(ExampleDatabase.open(engine, duckdbBytes.slice(0, at)), `truncated at ${at}`).rejects.toThrow(FeatureCatalogError);
      expect(performance.now() - t0).toBeLessThan(5000);
    }
    expect(() => checkDuckDbFile(duckdbBytes, duckdbBytes.length - 1, 'x')).toThrow(/header declares 5 blocks of 262144 bytes/);
    expect(checkDuckDbFile(duckdbBytes, duckdbBytes.length, 'x')).toEqual({ blockSize: B, blockCount: 5 });
    // A header declaring more blocks than the file holds, or an odd block size.
    const more = duckdbBytes.slice();
    new DataView(more.buffer).setBigUint64(4096 + 32, 6n, true);
    expect(() => checkDuckDbFile(more, more.length, 'x')).toThrow(/truncated or damaged/);
    const odd = duckdbBytes.slice();
    new DataView(odd.buffer).setBigUint64(4096 + 40, 300000n, true);
    expect(() => checkDuckDbFile(odd, odd.length, 'x')).toThrow(/blocks of 300000 bytes/);
  });

  it('turns damage inside blocks into FeatureCatalogErrors (DuckDB checksums every block)', async () => {
    let seed = 11;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let k = 0; k < 6; k++) {
      const b = duckdbBytes.slice();
      for (let j = 0; j < 8; j++) {
        const at = 12288 + Math.floor(rnd() * (b.length - 12288));
        b[at] = (b[at] ?? 0) ^ (1 + Math.floor(rnd() * 255));
      }
      try {
        const db = await ExampleDatabase.open(engine, b);
        try {
          for (let f = 0; f < 1024; f += 97) await db.examples(f);
        } finally {
          await db.close();
        }
      } catch (e) {
        expect(e).toBeInstanceOf(FeatureCatalogError);
      }
    }
  });
});

// ------------------------------------------------------------------------------------ catalog

describe('loadFeatureCatalog', () => {
  const labelsCsv = new Uint8Array(readFileSync(`${TINY}/autointerp.csv`));

  it('labels, search and examples on a borrowed engine; close leaves the engine running', async () => {
    const catalog = await loadFeatureCatalog({ size: 1024, labels: labelsCsv, examples: duckdbBytes, duckdbEngine: engine });
    expect(catalog.size).toBe(1024);
    expect(catalog.label(540)?.label).toMatch(/Wait/);
    expect(catalog.search('#540')[0]?.featureId).toBe(540);
    expect(await catalog.examples(540, { limit: 4, window: 3 })).toEqual(reference(540, 4, 3));
    await expect(catalog.examples(1024)).rejects.toThrow(/not one of this SAE's features \(0\.\.1023\)/);
    await catalog.close?.();
    await expect(catalog.examples(540)).rejects.toThrow(/closed/);
    expect(await tinyDb.examples(540, { limit: 1 })).toEqual(reference(540, 1, 5));
  });

  it('opens the example database only when examples are asked for, and retries a failed open', async () => {
    const calls: string[] = [];
    let failNext = true;
    const spy: DuckDbEngine = {
      rangeReads: false,
      stopped: false,
      registerUrl: (n, u) => (calls.push('registerUrl'), engine.registerUrl(n, u)),
      registerBuffer: (n, b) => {
        calls.push('registerBuffer');
        if (failNext) {
          failNext = false;
          return Promise.reject(new FeatureCatalogError('simulated failure'));
        }
        return engine.registerBuffer(n, b);
      },
      dropFile: (n) => engine.dropFile(n),
      query: (s, p) => engine.query(s, p),
      close: () => Promise.resolve(),
    };
    const catalog = await loadFeatureCatalog({ labels: labelsCsv, examples: duckdbBytes, duckdbEngine: spy });
    expect(catalog.size).toBe(1024); // the highest labelled feature + 1
    expect(calls).toEqual([]);
    await expect(catalog.examples(540)).rejects.toThrow(/simulated failure/);
    expect(await catalog.examples(540, { limit: 2 })).toEqual(reference(540, 2, 5));
    expect(calls).toEqual(['registerBuffer', 'registerBuffer']);
    await catalog.close?.();
  });

  it('owns its engine from file: URLs in Node, and closes it', async () => {
    const catalog = await loadFeatureCatalog({
      size: 1024,
      labels: pathToFileURL(`${TINY}/examples.sqlite`).href,
      examples: pathToFileURL(DUCKDB_FILE).href,
    });
    expect(catalog.label(2)?.label).toContain('Box');
    expect(await catalog.examples(2, { limit: 3 })).toEqual(reference(2, 3, 5));
    await catalog.close?.();
  });

  describe('over HTTP', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serveFixtures([{ at: '/tiny', dir: TINY }]);
    });
    afterAll(async () => server.close());

    it('downloads labels and the example database (Node has no DuckDB HTTP file system)', async () => {
      expect(engine.rangeReads).toBe(false);
      const catalog = await loadFeatureCatalog({ size: 1024, labels: `${server.origin}/tiny/autointerp.csv`, examples: `${server.origin}/tiny/examples.duckdb`, duckdbEngine: engine });
      expect(await catalog.examples(33, { limit: 5 })).toEqual(reference(33, 5, 5));
      await catalog.close?.();
      const missing = await loadFeatureCatalog({ examples: `${server.origin}/tiny/nope.duckdb`, duckdbEngine: engine, size: 4 });
      await expect(missing.examples(1)).rejects.toThrow(/answered 404/);
    });
  });

  it('checks size against labels and the map, and derives it when not given', async () => {
    await expect(loadFeatureCatalog({ size: 100, labels: labelsCsv })).rejects.toThrow(/describes feature 1023, but the SAE has 100 features/);
    const map = new Float32Array(8).fill(0.5);
    expect((await loadFeatureCatalog({ map })).size).toBe(4);
    await expect(loadFeatureCatalog({ map, size: 5 })).rejects.toThrow(/holds 4 features; the SAE has 5/);
    await expect(loadFeatureCatalog({ map: new Float32Array(3) })).rejects.toThrow(/two \(x, y\) per feature/);
    await expect(loadFeatureCatalog({ map: Float32Array.of(0, 1.5) })).rejects.toThrow(/coordinate 1 \(feature 0\) is 1\.5/);
    await expect(loadFeatureCatalog({ map: Float32Array.of(Number.NaN, 0) })).rejects.toThrow(FeatureCatalogError);
    await expect(loadFeatureCatalog({ size: -1 })).rejects.toThrow(/size must be/);
    // With nothing to tell the size, it is 0 (unknown) and any feature id may be asked for.
    const unsized = await loadFeatureCatalog({ examples: duckdbBytes, duckdbEngine: engine });
    expect(unsized.size).toBe(0);
    expect(await unsized.examples(540, { limit: 1 })).toEqual(reference(540, 1, 5));
    await expect(unsized.examples(-1)).rejects.toThrow(/a non-negative integer/);
    await unsized.close?.();
    const bare = await loadFeatureCatalog({ size: 16 });
    expect([bare.size, bare.label(3), bare.search('x'), await bare.examples(3), bare.map]).toEqual([16, undefined, [], [], undefined]);
  });
});
