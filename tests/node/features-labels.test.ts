/**
 * Label readers: Goodfire's autointerp table as CSV and as SQLite, Neuronpedia's explanation
 * exports, format sniffing (gzip included), download over HTTP, and hostile files. References:
 * Tiny-R1's features.json (Python's json, written beside the CSV and SQLite files from the same
 * labels), the rows SQLite read back from tests/fixtures/catalog (expected.json), gzip by zlib.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeatureCatalogError } from '../../src/errors.js';
import { fetchFeatureLabels, readFeatureLabels, sniffLabelFormat } from '../../src/features/label-file.js';
import { readAutointerpCsv, readAutointerpCsvStream, readAutointerpSqlite } from '../../src/features/labels.js';
import { readNeuronpediaExplanations } from '../../src/features/neuronpedia.js';
import type { FeatureLabel } from '../../src/features/types.js';
import { mutate, type Mutation } from '../helpers/byte-mutations.js';
import { serveFixtures, type TestServer } from '../helpers/http-server.js';

const TINY = 'demo/public/models/tiny-r1/examples';
const FIXTURES = 'tests/fixtures/catalog';
const bytesOf = (path: string): Uint8Array<ArrayBuffer> => new Uint8Array(readFileSync(path));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

interface TinyFeature {
  feature_id: number;
  label: string;
  quality: number;
  interestingness: number;
}
const tinyFeatures = (JSON.parse(readFileSync(`${TINY}/features.json`, 'utf8')) as { features: TinyFeature[] }).features;
const tinyExpected: FeatureLabel[] = tinyFeatures.map((f) => ({
  featureId: f.feature_id,
  label: f.label,
  quality: f.quality,
  interestingness: f.interestingness,
  dead: f.label === 'dead feature',
}));

describe("Tiny-R1's labels", () => {
  it('autointerp.csv = features.json', () => {
    const labels = readAutointerpCsv(bytesOf(`${TINY}/autointerp.csv`));
    expect(labels).toEqual(tinyExpected);
    expect(labels.filter((l) => l.dead).length).toBe(4);
  });

  it("examples.sqlite's autointerp table = features.json", () => {
    expect(readAutointerpSqlite(bytesOf(`${TINY}/examples.sqlite`))).toEqual(tinyExpected);
  });

  it('sniffed from bytes, whatever the container', async () => {
    expect(await readFeatureLabels(bytesOf(`${TINY}/autointerp.csv`))).toEqual(tinyExpected);
    expect(await readFeatureLabels(bytesOf(`${TINY}/examples.sqlite`))).toEqual(tinyExpected);
    expect(await readFeatureLabels(new Uint8Array(gzipSync(readFileSync(`${TINY}/autointerp.csv`))))).toEqual(tinyExpected);
  });
});

type Encoded = null | string | number | Record<string, string | number>;
const expected = JSON.parse(readFileSync(`${FIXTURES}/expected.json`, 'utf8')) as { files: Record<string, Record<string, { columns: string[]; rows: Encoded[][] }>> };

/** FeatureLabels from SQLite's own reading of an autointerp table (expected.json), by the documented rules. */
function labelsFromExpected(file: string): FeatureLabel[] {
  const t = expected.files[file]?.['autointerp'];
  if (t === undefined) throw new Error(`no autointerp table in ${file}`);
  const col = (n: string): number => t.columns.indexOf(n);
  const score = (v: Encoded | undefined): number | undefined => (v === null || v === undefined ? undefined : Number(v));
  const seen = new Map<number, FeatureLabel>();
  for (const r of t.rows) {
    const id = Number(r[col('feature_id')]);
    if (seen.has(id)) continue;
    const cell = r[col('label')] ?? '';
    // Long text is stored in expected.json as its SHA-256 (see make_catalog_fixtures.py).
    const label = typeof cell === 'object' && cell !== null ? `sha256:${String(cell['textSha256'])}` : String(cell);
    const q = col('quality') >= 0 ? score(r[col('quality')]) : undefined;
    const i = col('interestingness') >= 0 ? score(r[col('interestingness')]) : undefined;
    seen.set(id, { featureId: id, label, ...(q !== undefined ? { quality: q } : {}), ...(i !== undefined ? { interestingness: i } : {}), dead: label.trim().toLowerCase() === 'dead feature' });
  }
  return [...seen.values()].sort((a, b) => a.featureId - b.featureId);
}

describe('autointerp SQLite (Goodfire layout, SQLite-written fixtures)', () => {
  it("Goodfire's columns incl. seqs/indices, text-typed scores, NULLs, a 3-level B-tree, rows out of id order", () => {
    const labels = readAutointerpSqlite(bytesOf(`${FIXTURES}/autointerp-p512.sqlite`));
    expect(labels.length).toBe(2000);
    expect(labels).toEqual(labelsFromExpected('autointerp-p512.sqlite'));
    expect(labels.filter((l) => l.dead).length).toBeGreaterThan(10);
    expect(labels.some((l) => l.label.includes('\n') && l.label.includes('🤔'))).toBe(true);
  });

  it('UTF-16 and reserved-byte files', () => {
    const hashLong = (l: FeatureLabel): FeatureLabel => ([...l.label].length > 1000 ? { ...l, label: `sha256:${createHash('sha256').update(l.label).digest('hex')}` } : l);
    for (const f of ['utf16le.sqlite', 'utf16be.sqlite', 'reserved-p4096.sqlite']) {
      if (expected.files[f] === undefined) continue;
      expect(readAutointerpSqlite(bytesOf(`${FIXTURES}/${f}`)).map(hashLong), f).toEqual(labelsFromExpected(f));
    }
  });

  it('names a missing table or column', () => {
    expect(() => readAutointerpSqlite(bytesOf(`${FIXTURES}/types-p1024.sqlite`))).toThrow(/no autointerp table \(tables: kinds, pk_table, wr\)/);
    expect(() => readAutointerpSqlite(bytesOf(`${FIXTURES}/types-p1024.sqlite`), 'x', 'kinds')).toThrow(/no feature_id column/);
  });
});

describe('autointerp CSV rules', () => {
  const header = 'feature_id,label,quality,interestingness,model_name,prompt_version\n';
  const read = (s: string): FeatureLabel[] => readAutointerpCsv(s, 'test.csv');

  it('finds columns by name, in any order, ignoring extra ones (pandas index, seqs, indices)', () => {
    const csv = '"",interestingness,seqs,"label",feature_id,indices,quality\r\n0,0.5,"[1, 2]","a, ""b""",7,"[3]",0.9\r\n1,,[],c,3,[],\r\n';
    expect(read(`\uFEFF${csv}`)).toEqual([
      { featureId: 3, label: 'c', dead: false },
      { featureId: 7, label: 'a, "b"', quality: 0.9, interestingness: 0.5, dead: false },
    ]);
  });

  it('needs only feature_id and label', () => {
    expect(read('label,feature_id\nx,1\n')).toEqual([{ featureId: 1, label: 'x', dead: false }]);
    expect(read('feature_id,label\n')).toEqual([]);
  });

  it('marks "dead feature" labels dead (any case, trimmed) and keeps the first row of a feature', () => {
    const labels = read(`${header}1,dead feature,,,m,v\n2, Dead Feature ,,,m,v\n3,a dead feature? no,0.1,0.2,m,v\n1,second row,0.5,0.5,m,v\n`);
    expect(labels.map((l) => [l.featureId, l.dead, l.label])).toEqual([
      [1, true, 'dead feature'],
      [2, true, ' Dead Feature '],
      [3, false, 'a dead feature? no'],
    ]);
  });

  it('reads empty, NaN and None scores as absent and integral text ids ("12.0")', () => {
    const labels = read(`${header}12.0,a,nan,NaN,m,v\n13,b,None,,m,v\n14,c,1e-3,-0.5,m,v\n`);
    expect(labels).toEqual([
      { featureId: 12, label: 'a', dead: false },
      { featureId: 13, label: 'b', dead: false },
      { featureId: 14, label: 'c', quality: 0.001, interestingness: -0.5, dead: false },
    ]);
  });

  it('refuses malformed rows with the line and column', () => {
    expect(() => read('id,label\n1,x\n')).toThrow(/test\.csv: the header row has no feature_id column/);
    expect(() => read('feature_id,text\n1,x\n')).toThrow(/no label column/);
    expect(() => read(`${header}1,a,0.5,0.5,m\n`)).toThrow(/test\.csv, line 2: 5 fields where the header has 6/);
    expect(() => read(`${header}1,a,0.5,0.5,m,v\nabc,b,,,m,v\n`)).toThrow(/line 3, column feature_id: expected a feature id/);
    for (const bad of ['-1', '1.5', '2147483648', '', '0x10', '1e3']) {
      expect(() => read(`${header}${bad},a,,,m,v\n`), bad).toThrow(FeatureCatalogError);
    }
    expect(() => read(`${header}1,a,high,,m,v\n`)).toThrow(/column quality: expected a number or an empty cell, found "high"/);
    expect(() => read('')).toThrow(/is empty/);
  });

  it('streams: any chunking (UTF-8 sequences split included) gives the same labels', async () => {
    const bytes = bytesOf(`${TINY}/autointerp.csv`);
    for (const size of [1, 7, 4096, 1 << 20]) {
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
      }
      const labels = size === 1 ? await readAutointerpCsvStream(chunks()) : await readAutointerpCsvStream(new Blob([bytes]).stream().pipeThrough(rechunk(size)));
      expect(labels, `chunks of ${size}`).toEqual(tinyExpected);
    }
  });
});

function rechunk(size: number): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, ctl) {
      for (let at = 0; at < chunk.length; at += size) ctl.enqueue(chunk.slice(at, at + size));
    },
  });
}

describe('Neuronpedia explanation exports', () => {
  // Shaped like rows of Neuronpedia's Explanation table (schema.prisma) as its exports carry them.
  const records = [
    { id: 'c1', modelId: 'gemma-2-2b', layer: '20-gemmascope-res-16k', index: '10956', description: ' curly braces', typeName: 'oai_token-act-pair', explanationModelName: 'gpt-4o-mini', authorId: 'x' },
    { modelId: 'gemma-2-2b', layer: '20-gemmascope-res-16k', index: 3, description: 'dead feature', explanationModelName: 'gpt-4o-mini' },
    { modelId: 'gemma-2-2b', layer: '20-gemmascope-res-16k', index: '10956', description: 'braces (scored)', scores: [{ value: 0.42, explanationScoreTypeName: 'recall_alt' }, { value: 3.5 }] },
    { modelId: 'gemma-2-2b', layer: '20-gemmascope-res-16k', index: '7', description: 'ünïcödé <b>text</b>', scores: [{ value: -0.2 }] },
  ];
  const want: FeatureLabel[] = [
    { featureId: 3, label: 'dead feature', dead: true },
    { featureId: 7, label: 'ünïcödé <b>text</b>', dead: false },
    // Two explanations of 10956: the one with a score in [0, 1] wins over the unscored one.
    { featureId: 10956, label: 'braces (scored)', quality: 0.42, dead: false },
  ];

  it('reads a JSON array, a wrapped array, JSON Lines, and one object', () => {
    expect(readNeuronpediaExplanations(JSON.stringify(records))).toEqual(want);
    expect(readNeuronpediaExplanations(JSON.stringify({ explanations: records, modelId: 'gemma-2-2b' }))).toEqual(want);
    expect(readNeuronpediaExplanations(JSON.stringify({ data: records }))).toEqual(want);
    expect(readNeuronpediaExplanations(`${records.map((r) => JSON.stringify(r)).join('\n')}\n`)).toEqual(want);
    expect(readNeuronpediaExplanations(`\uFEFF${records.map((r) => JSON.stringify(r)).join('\r\n')}`)).toEqual(want);
    expect(readNeuronpediaExplanations(JSON.stringify(records[1]))).toEqual([want[0]]);
  });

  it('keeps the first explanation on equal quality', () => {
    const two = [
      { index: '1', description: 'first' },
      { index: 1, description: 'second' },
    ];
    expect(readNeuronpediaExplanations(JSON.stringify(two))).toEqual([{ featureId: 1, label: 'first', dead: false }]);
  });

  it('is sniffed as JSON, also gzipped (.jsonl.gz, the bulk export)', async () => {
    const jsonl = records.map((r) => JSON.stringify(r)).join('\n');
    expect(sniffLabelFormat(utf8(`  \n${jsonl}`))).toBe('json');
    expect(await readFeatureLabels(utf8(jsonl))).toEqual(want);
    expect(await readFeatureLabels(new Uint8Array(gzipSync(jsonl)))).toEqual(want);
  });

  it('refuses what is not an explanation export, by name', () => {
    expect(() => readNeuronpediaExplanations('[{"description":"x"}]')).toThrow(/explanation 1: expected an "index"/);
    expect(() => readNeuronpediaExplanations('[{"index":"1","description":5}]')).toThrow(/expected a "description" string, found a number/);
    expect(() => readNeuronpediaExplanations('[{"index":"-1","description":"x"}]')).toThrow(/field index: expected a feature id/);
    expect(() => readNeuronpediaExplanations('[1, 2]')).toThrow(/explanation 1: expected an object, found a number/);
    expect(() => readNeuronpediaExplanations('{"a": 1, "b": 2}')).toThrow(/without an "explanations" array/);
    expect(() => readNeuronpediaExplanations('[{"index": 1,')).toThrow(/not valid JSON/);
    expect(() => readNeuronpediaExplanations('{"index": 1, "description": "a"}\n{"index": 2,')).toThrow(/line 2: not valid JSON/);
    expect(() => readNeuronpediaExplanations('"just a string"')).toThrow(FeatureCatalogError);
    expect(() => readNeuronpediaExplanations('  ')).toThrow(/is empty/);
  });
});

describe('sniffing and gzip', () => {
  it('tells the formats apart by content', () => {
    expect(sniffLabelFormat(bytesOf(`${TINY}/examples.sqlite`).subarray(0, 16))).toBe('sqlite');
    expect(sniffLabelFormat(new Uint8Array(gzipSync('x')))).toBe('gzip');
    expect(sniffLabelFormat(utf8('\uFEFF [1]'))).toBe('json');
    expect(sniffLabelFormat(utf8('feature_id,label'))).toBe('csv');
    // "SQLite format 3" without its NUL is not a database.
    expect(sniffLabelFormat(utf8('SQLite format 3,x'))).toBe('csv');
  });

  it('refuses damaged gzip and gzip inside gzip', async () => {
    const gz = new Uint8Array(gzipSync(readFileSync(`${TINY}/autointerp.csv`)));
    await expect(readFeatureLabels(gz.slice(0, gz.length >> 1))).rejects.toThrow(FeatureCatalogError);
    await expect(readFeatureLabels(new Uint8Array(gzipSync(gz)))).rejects.toThrow(/gzip inside gzip/);
  });
});

describe('label files over HTTP', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await serveFixtures([
      { at: '/tiny', dir: TINY },
      { at: '/catalog', dir: FIXTURES },
    ]);
  });
  afterAll(async () => server.close());

  it('streams a CSV, reads a SQLite file, and names a 404', async () => {
    expect(await fetchFeatureLabels(`${server.origin}/tiny/autointerp.csv`)).toEqual(tinyExpected);
    expect(await fetchFeatureLabels(`${server.origin}/tiny/examples.sqlite`)).toEqual(tinyExpected);
    expect(await fetchFeatureLabels(`${server.origin}/catalog/utf16le.sqlite`)).toEqual(labelsFromExpected('utf16le.sqlite'));
    await expect(fetchFeatureLabels(`${server.origin}/tiny/missing.csv`)).rejects.toThrow(/answered 404/);
  });

  it('stops the download when the file turns out malformed', async () => {
    // types-p1024.sqlite has no autointerp table: refused after the download.
    await expect(fetchFeatureLabels(`${server.origin}/catalog/types-p1024.sqlite`)).rejects.toThrow(/no autointerp table/);
    // tokens.csv is CSV without a feature_id column: refused on its header, the rest never read.
    const before = server.requests.length;
    await expect(fetchFeatureLabels(`${server.origin}/tiny/tokens.csv`)).rejects.toThrow(/no feature_id column/);
    const req = server.requests[before];
    await new Promise((r) => setTimeout(r, 50));
    expect(req?.aborted).toBe(true);
    expect(req?.bytesSent ?? 0).toBeLessThan(833933);
  });
});

describe('hostile label files', () => {
  const flip: fc.Arbitrary<Mutation[]> = fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 40 }) }),
    ),
    { minLength: 1, maxLength: 4 },
  );
  const csv = bytesOf(`${TINY}/autointerp.csv`).subarray(0, 6000);
  const json = utf8(
    JSON.stringify(Array.from({ length: 40 }, (_, i) => ({ modelId: 'm', layer: 'l', index: String(i), description: `d "${i}", é`, scores: [{ value: i / 40 }] }))),
  );
  const jsonl = utf8(
    Array.from({ length: 40 }, (_, i) => JSON.stringify({ index: i, description: `line ${i}` })).join('\n'),
  );
  const sqlite = bytesOf(`${FIXTURES}/utf16le.sqlite`);

  for (const [name, base] of [
    ['CSV', csv],
    ['JSON', json],
    ['JSON Lines', jsonl],
    ['SQLite', sqlite],
    ['gzip', new Uint8Array(gzipSync(csv))],
  ] as const) {
    it(`${name}: damage ends in labels or a FeatureCatalogError`, async () => {
      await fc.assert(
        fc.asyncProperty(flip, async (ms) => {
          try {
            const labels = await readFeatureLabels(mutate(base, ms));
            for (const l of labels) expect(Number.isInteger(l.featureId) && l.featureId >= 0).toBe(true);
          } catch (e) {
            if (!(e instanceof FeatureCatalogError)) throw e;
          }
        }),
        { numRuns: 150, seed: 7 },
      );
    });
  }
});
