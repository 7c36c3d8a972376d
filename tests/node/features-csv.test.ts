/**
 * The RFC 4180 parser (src/features/csv.ts): edge cases by hand, a round-trip property against an
 * independent serialiser written here, chunking invariance, Python's csv module as the reference
 * on Tiny-R1's real files (embedded newlines and quotes in 56 k tokens), and speed on a
 * multi-megabyte table.
 */
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FeatureCatalogError } from '../../src/errors.js';
import { CsvParser, parseCsv } from '../../src/features/csv.js';

const TINY = 'demo/public/models/tiny-r1/examples';

/** Parses `text` fed in pieces cut at `cuts`. */
function parseChunked(text: string, cuts: readonly number[]): string[][] {
  const parser = new CsvParser();
  const rows: string[][] = [];
  const sink = (r: string[]): void => void rows.push(r);
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    parser.push(text.slice(at, c), sink);
    at = Math.max(at, c);
  }
  parser.push(text.slice(at), sink);
  parser.end(sink);
  return rows;
}

describe('CSV edge cases', () => {
  const cases: [string, string, string[][]][] = [
    ['LF', 'a,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['CRLF', 'a,b\r\n1,2\r\n', [['a', 'b'], ['1', '2']]],
    ['lone CR', 'a,b\r1,2', [['a', 'b'], ['1', '2']]],
    ['no final line end', 'a,b\n1,2', [['a', 'b'], ['1', '2']]],
    ['comma inside quotes', '"a,b",c\n', [['a,b', 'c']]],
    ['doubled quotes', '"say ""hi""",x\n', [['say "hi"', 'x']]],
    ['only a doubled quote', '""""\n', [['"']]],
    ['newline inside quotes', '"line 1\nline 2",x\n', [['line 1\nline 2', 'x']]],
    ['CRLF inside quotes', '"a\r\nb"\r\nc\r\n', [['a\r\nb'], ['c']]],
    ['empty fields', ',,\n', [['', '', '']]],
    ['quoted empty field', '""\n', [['']]],
    ['trailing comma at the end of input', 'a,', [['a', '']]],
    ['trailing comma before a line end', 'a,\nb', [['a', ''], ['b']]],
    ['byte-order mark', '\uFEFFa,b\n', [['a', 'b']]],
    ['a BOM later is text', 'a,\uFEFFb\n', [['a', '\uFEFFb']]],
    ['empty lines are skipped', 'a\n\n\r\nb\n\n', [['a'], ['b']]],
    ['quote inside an unquoted field is text', 'ab"c,d\n', [['ab"c', 'd']]],
    ['spaces are kept', ' a , b \n', [[' a ', ' b ']]],
    ['unicode', 'é,🤔,中文\n', [['é', '🤔', '中文']]],
    ['empty input', '', []],
    ['only a BOM', '\uFEFF', []],
  ];
  for (const [what, text, rows] of cases) {
    it(what, () => {
      expect(parseCsv(text)).toEqual(rows);
      // Every split point gives the same records.
      for (let c = 0; c <= text.length; c++) expect(parseChunked(text, [c])).toEqual(rows);
    });
  }

  it('names the line of text after a closing quote, counting line breaks inside quotes', () => {
    expect(() => parseCsv('"abc"x,y\n')).toThrow(/line 1: found "x" after the closing quote/);
    expect(() => parseCsv('a\n"x\ny",1\n"bad"z\n', 'f.csv')).toThrow(/f\.csv, line 4/);
    expect(() => parseCsv('a\n"x\ny",1\n"bad"z\n')).toThrow(FeatureCatalogError);
  });

  it('names the line where an unterminated quote starts', () => {
    expect(() => parseCsv('a,b\n1,"open\nmore\n')).toThrow(/starts on line 2 never closes/);
    expect(() => parseChunked('a,b\n1,"open\nmore', [5, 9])).toThrow(FeatureCatalogError);
  });

  it('hands each record its starting line', () => {
    const lines: number[] = [];
    const p = new CsvParser();
    const sink = (_: string[], line: number): void => void lines.push(line);
    p.push('h\n"a\nb"\nc\r\n\r\nd', sink);
    p.end(sink);
    expect(lines).toEqual([1, 2, 4, 6]);
  });
});

/** An independent RFC 4180 writer: quotes when needed (or always), doubles quotes. */
function serialise(rows: string[][], opts: { crlf: boolean; bom: boolean; quoteAll: boolean; finalNewline: boolean }): string {
  const eol = opts.crlf ? '\r\n' : '\n';
  const field = (f: string): string => (opts.quoteAll || /[",\r\n]/.test(f) || f.startsWith('\uFEFF') ? `"${f.split('"').join('""')}"` : f);
  // A record of one empty field would be an empty line (skipped): quote it, as Python's writer does.
  const line = (r: string[]): string => (r.length === 1 && r[0] === '' ? '""' : r.map(field).join(','));
  const body = rows.map(line).join(eol);
  return (opts.bom ? '\uFEFF' : '') + body + (opts.finalNewline && rows.length > 0 ? eol : '');
}

describe('CSV round trip (property)', () => {
  const cell = fc.array(fc.constantFrom('a', 'b', ' ', ',', '"', '\n', '\r', '\r\n', 'é', '🤔', '\uFEFF', '0', 'x y'), { maxLength: 6 }).map((p) => p.join(''));
  const table = fc.array(fc.array(cell, { minLength: 1, maxLength: 5 }), { maxLength: 8 });
  const options = fc.record({ crlf: fc.boolean(), bom: fc.boolean(), quoteAll: fc.boolean(), finalNewline: fc.boolean() });

  it('parse(serialise(table)) = table, fed whole or in random pieces', () => {
    fc.assert(
      fc.property(table, options, fc.array(fc.nat(), { maxLength: 6 }), (rows, opts, cuts) => {
        const text = serialise(rows, opts);
        expect(parseCsv(text)).toEqual(rows);
        expect(parseChunked(text, cuts.map((c) => c % (text.length + 1)))).toEqual(rows);
      }),
      { numRuns: 500, seed: 4180 },
    );
  });

  it('random damage ends in records or a FeatureCatalogError', () => {
    fc.assert(
      fc.property(table, options, fc.nat(), fc.constantFrom('"', ',', '\n', 'x', ''), (rows, opts, at, insert) => {
        const text = serialise(rows, opts);
        const k = at % (text.length + 1);
        const damaged = text.slice(0, k) + insert + text.slice(k + (insert === '' ? 1 : 0));
        try {
          parseCsv(damaged);
        } catch (e) {
          expect(e).toBeInstanceOf(FeatureCatalogError);
        }
      }),
      { numRuns: 500, seed: 4181 },
    );
  });
});

describe("Python's csv module as the reference", () => {
  const python = (file: string): string[][] =>
    JSON.parse(
      execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], encoding="utf-8", newline="")))))', file], {
        maxBuffer: 1 << 28,
      }).toString('utf8'),
    ) as string[][];

  for (const name of ['tokens.csv', 'autointerp.csv', 'activations.csv']) {
    it(`${name} (Tiny-R1, written by Python's csv)`, async () => {
      const { readFileSync } = await import('node:fs');
      const text = readFileSync(`${TINY}/${name}`, 'utf8');
      const ours = parseCsv(text);
      const ref = python(`${TINY}/${name}`);
      expect(ours.length).toBe(ref.length);
      expect(ours).toEqual(ref);
    });
  }

  it('a table with every awkward character, written by Python', () => {
    const script = [
      'import csv, io, json, sys',
      'rows = [["id", "text"]] + [[str(i), t] for i, t in enumerate(["a,b", "q\\"q", "l1\\nl2", "cr\\r\\nlf", "", " sp ", "é🤔", "\\"", "end,"])]',
      'buf = io.StringIO(); csv.writer(buf, lineterminator="\\r\\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)',
      'print(json.dumps({"csv": buf.getvalue(), "rows": rows}))',
    ].join('\n');
    const { csv, rows } = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script]).toString('utf8')) as { csv: string; rows: string[][] };
    expect(parseCsv(csv)).toEqual(rows);
  });
});

describe('CSV speed', () => {
  it('parses a 20 MB label table at tens of MB/s or better', () => {
    // Goodfire-like rows: a quoted label with commas and quotes, and a long seqs list.
    const row = (i: number): string => `${i},"label ${i}, with ""quotes"" and, commas","[${'12345, '.repeat(40)}1]",0.9,0.6,claude-3-7-sonnet-latest,v0-dev\n`;
    const parts = ['feature_id,label,seqs,quality,interestingness,model_name,prompt_version\n'];
    let size = 0;
    for (let i = 0; size < 20e6; i++) {
      const r = row(i);
      parts.push(r);
      size += r.length;
    }
    const text = parts.join('');
    const t0 = performance.now();
    const rows = parseCsv(text);
    const ms = performance.now() - t0;
    expect(rows.length).toBe(parts.length);
    expect(rows[1]?.[1]).toBe('label 0, with "quotes" and, commas');
    // ~20 MB in well under 2 s even on a loaded 2-core machine.
    expect(ms).toBeLessThan(4000);
  });
});
