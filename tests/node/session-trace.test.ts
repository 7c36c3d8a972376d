/**
 * Trace files (docs/session.md): the reader against files written by an independent Python
 * writer (tools/golden/make_trace_fixtures.py — the Tiny-R1 PyTorch golden run, and a synthetic
 * run with every flag), the TypeScript writer byte-for-byte against the same files, record →
 * replay identity over random runs and any chunking, and damaged files: every complete token
 * before the damage is replayed, then a TraceFormatError — never a hang, never another error;
 * huge declared sizes are refused before any byte of them is awaited.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { SessionError, TraceFormatError } from '../../src/errors.js';
import type { SourceToken } from '../../src/session/source.js';
import { TraceSource, recordTrace } from '../../src/session/trace.js';
import { MAX_TRACE_HEADER_BYTES, crc32, encodeTrace, type TraceHeader } from '../../src/session/trace-format.js';
import type { TokenReadout } from '../../src/session/types.js';
import { byteMutations, mutate, type Field } from '../helpers/byte-mutations.js';

const DIR = new URL('../fixtures/traces/', import.meta.url);
interface Expected {
  header: TraceHeader;
  status: string;
  bytes: number;
  tokens: Array<Omit<TokenReadout, 'indices' | 'values'> & { indices: number[]; values: number[] }>;
}
const expected = JSON.parse(readFileSync(new URL('expected.json', DIR), 'utf8')) as Record<string, Expected>;
const golden = JSON.parse(readFileSync(new URL('../../demo/public/models/tiny-r1/golden.json', import.meta.url), 'utf8')) as { ids: number[]; prompt_ids: number[]; codes: Array<{ indices: number[]; values: number[] }> };
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(`${name}.loupetrace`, DIR)));

const run = (signal = new AbortController().signal) => ({ messages: [], maxNewTokens: 0, steering: undefined, sae: undefined, signal });

function asReadout(t: SourceToken): TokenReadout {
  if (t.codes === undefined) throw new Error('a trace token without codes');
  return { position: t.position, tokenId: t.tokenId, text: t.text, phase: t.phase, steered: t.steered, indices: t.codes.indices, values: t.codes.values, nonFinite: t.codes.nonFinite };
}

/** Replays a trace: the tokens it gave and the error it ended with (if any). */
async function replay(source: TraceSource): Promise<{ tokens: TokenReadout[]; error: unknown }> {
  const tokens: TokenReadout[] = [];
  try {
    for await (const t of source.generate(run())) tokens.push(asReadout(t));
    return { tokens, error: undefined };
  } catch (error) {
    return { tokens, error };
  }
}

/** A stream of `bytes` cut at `cuts`. */
function streamOf(bytes: Uint8Array, cuts: readonly number[]): ReadableStream<Uint8Array> {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    pieces.push(bytes.slice(from, c));
    from = c;
  }
  return new ReadableStream({
    pull(controller) {
      const p = pieces.shift();
      if (p === undefined) controller.close();
      else controller.enqueue(p);
    },
  });
}

function plain(t: TokenReadout): unknown {
  return { ...t, indices: Array.from(t.indices), values: Array.from(t.values) };
}

describe('trace files written by Python (an independent writer)', () => {
  test.for(['tiny-r1-golden', 'flags'])('%s: the reader gives exactly what the writer wrote', async (name) => {
    const want = expected[name] as Expected;
    const source = TraceSource.fromBytes(fixture(name));
    expect(source.header).toEqual(want.header);
    const { tokens, error } = await replay(source);
    expect(error).toBeUndefined();
    expect(tokens.map(plain)).toEqual(want.tokens);
    expect(source.end).toEqual({ tokens: want.tokens.length, status: want.status });
  });

  test('the Tiny-R1 trace holds the PyTorch golden run: ids, phases and codes', async () => {
    const { tokens } = await replay(TraceSource.fromBytes(fixture('tiny-r1-golden')));
    expect(tokens.map((t) => t.tokenId)).toEqual(golden.ids);
    expect(tokens.filter((t) => t.phase === 'prompt')).toHaveLength(golden.prompt_ids.length);
    tokens.forEach((t, i) => {
      expect(Array.from(t.indices)).toEqual(golden.codes[i]?.indices);
      expect(Array.from(t.values)).toEqual(golden.codes[i]?.values.map(Math.fround));
    });
    expect(tokens.map((t) => t.text).join('')).toContain('What is 12 × 4 - 7?');
  });

  test.for(['tiny-r1-golden', 'flags'])('%s: the TypeScript writer reproduces the Python file byte for byte', async (name) => {
    const bytes = fixture(name);
    const source = TraceSource.fromBytes(bytes);
    const { tokens } = await replay(source);
    const again = encodeTrace(source.header, tokens, { status: (expected[name] as Expected).status as 'done' });
    expect(again.length).toBe(bytes.length);
    expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
  });

  test('the split characters of the synthetic run arrive joined on the token that completes them', async () => {
    const { tokens } = await replay(TraceSource.fromBytes(fixture('flags')));
    expect(tokens.map((t) => t.text).slice(1, 3)).toEqual(['caf', 'é ∞']);
    expect(tokens.map((t) => t.text).slice(6, 9)).toEqual(['', '', '😀!']);
    const nan = tokens[4] as TokenReadout;
    expect(nan.nonFinite).toBe(true);
    expect(nan.indices).toHaveLength(0);
  });
});

const readoutArb = (dSae: number): fc.Arbitrary<Omit<TokenReadout, 'position'>> =>
  fc
    .record({
      tokenId: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      text: fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 })),
      phase: fc.constantFrom('prompt' as const, 'thinking' as const, 'answer' as const),
      steered: fc.boolean(),
      nonFinite: fc.boolean(),
      codes: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: dSae - 1 }), fc.oneof(fc.float({ noNaN: true, noDefaultInfinity: true }), fc.constant(1.5))), { selector: ([f]) => f, maxLength: 10 }),
    })
    .map(({ codes, nonFinite, ...t }) => {
      const sorted = nonFinite ? [] : codes.map(([f, v]) => [f, Math.fround(v)] as const).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      return { ...t, nonFinite, indices: Uint32Array.from(sorted, ([f]) => f), values: Float32Array.from(sorted, ([, v]) => v) };
    });

const headerArb = (dSae: number): fc.Arbitrary<TraceHeader> =>
  fc.record({
    format: fc.constant('loupe-trace' as const),
    version: fc.constant(1),
    model: fc.string(),
    hookpoint: fc.string(),
    dIn: fc.integer({ min: 1, max: 8192 }),
    dSae: fc.constant(dSae),
    sae: fc.record({ name: fc.string(), k: fc.integer({ min: 1, max: dSae }) }, { requiredKeys: [] }),
    messages: fc.array(fc.record({ role: fc.constantFrom('system' as const, 'user' as const, 'assistant' as const), content: fc.string() }), { maxLength: 3 }),
    steering: fc.option(
      // The header is JSON, which has no −0 (JSON.stringify(-0) is "0"); a push of −0 is a push of 0.
      fc.record({ push: fc.array(fc.record({ feature: fc.integer({ min: 0, max: dSae - 1 }), strength: fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)) }), { maxLength: 3 }), start: fc.oneof(fc.nat(), fc.constantFrom('after-prefix' as const, 'answer' as const)) }, { requiredKeys: [] }),
      { nil: null },
    ),
  });

describe('record → replay', () => {
  test('replay gives exactly the recorded readouts and header, read whole or in any chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }).chain((dSae) => fc.tuple(headerArb(dSae), fc.array(readoutArb(dSae), { maxLength: 25 }))),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.constantFrom('done' as const, 'cancelled' as const, 'error' as const),
        async ([header, raw], cuts, status) => {
          const tokens = raw.map((t, position) => ({ ...t, position }));
          const bytes = encodeTrace(header, tokens, { status });
          for (const source of [TraceSource.fromBytes(bytes), await TraceSource.open(streamOf(bytes, cuts)), await TraceSource.open(new Blob([bytes as Uint8Array<ArrayBuffer>]))]) {
            expect(source.header).toEqual(header);
            const r = await replay(source);
            expect(r.error).toBeUndefined();
            expect(r.tokens.map(plain)).toEqual(tokens.map(plain));
            expect(source.end?.status).toBe(status);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  test('recordTrace of bare readouts needs dIn, and takes the SAE as a name', async () => {
    const tokens = (await replay(TraceSource.fromBytes(fixture('flags')))).tokens;
    const readouts = { dSae: 40, tokens };
    expect(() => recordTrace(readouts as never, {})).toThrow(SessionError);
    const bytes = recordTrace(readouts as never, { dIn: 16, sae: 'my sae', model: 'm', createdAt: '2025-01-01T00:00:00.000Z' });
    const back = TraceSource.fromBytes(bytes);
    expect(back.header).toMatchObject({ dIn: 16, dSae: 40, model: 'm', hookpoint: 'unknown', sae: { name: 'my sae' }, steering: null });
    expect((await replay(back)).tokens.map(plain)).toEqual(tokens.map(plain));
  });

  test('a trace opened from a stream replays once; from bytes, any number of times', async () => {
    const bytes = fixture('flags');
    const once = await TraceSource.open(streamOf(bytes, [100, 700]));
    expect((await replay(once)).tokens).toHaveLength(12);
    expect((await replay(once)).error).toBeInstanceOf(SessionError);
    const many = TraceSource.fromBytes(bytes);
    for (let i = 0; i < 3; i++) expect((await replay(many)).tokens).toHaveLength(12);
  });

  test('pacing: generated tokens at the given rate, prompt tokens at once; an abort stops the wait', async () => {
    const source = TraceSource.fromBytes(fixture('flags'), { tokensPerSecond: 50 });
    const t0 = performance.now();
    const times: number[] = [];
    for await (const _ of source.generate(run())) times.push(performance.now() - t0);
    // 3 prompt tokens, then 9 generated ones 20 ms apart
    expect(times[2]).toBeLessThan(60);
    expect((times[11] as number) - (times[2] as number)).toBeGreaterThanOrEqual(9 * 20 - 10);
    const slow = TraceSource.fromBytes(fixture('flags'), { tokensPerSecond: 0.5 });
    const controller = new AbortController();
    const got: number[] = [];
    const t1 = performance.now();
    const done = (async () => {
      for await (const t of slow.generate(run(controller.signal))) got.push(t.position);
    })();
    setTimeout(() => controller.abort(), 50);
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(got).toEqual([0, 1, 2]);
    expect(() => TraceSource.fromBytes(fixture('flags'), { tokensPerSecond: 0 })).toThrow(SessionError);
  });
});

/** Where the records of a trace start, for aiming mutations. */
function layout(bytes: Uint8Array): { headerEnd: number; records: Array<{ at: number; end: number }> } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = v.getUint32(12, true);
  const headerEnd = 16 + h + 4;
  const records: Array<{ at: number; end: number }> = [];
  for (let at = headerEnd; at < bytes.length; ) {
    const end = at + 5 + v.getUint32(at + 1, true) + 4;
    records.push({ at, end });
    at = end;
  }
  return { headerEnd, records };
}

describe('damaged and hostile traces', () => {
  const base = fixture('flags');
  const { headerEnd, records } = layout(base);
  const tokenRecords = records.slice(0, -1);
  const all = (async () => (await replay(TraceSource.fromBytes(base))).tokens.map(plain))();
  const hot: Array<[number, number]> = [[0, 16], [headerEnd - 4, headerEnd], ...records.map((r): [number, number] => [r.at, Math.min(r.end, r.at + 21)])];
  const fields: Field[] = [
    { at: 12, width: 4, truth: headerEnd - 20 },
    ...records.map((r) => ({ at: r.at + 1, width: 4, truth: r.end - r.at - 9 })),
    ...tokenRecords.map((r) => ({ at: r.at + 5 + 12, width: 4, truth: new DataView(base.buffer, base.byteOffset).getUint32(r.at + 5 + 12, true) })),
    ...tokenRecords.map((r) => ({ at: r.at + 5 + 10, width: 2, truth: new DataView(base.buffer, base.byteOffset).getUint16(r.at + 5 + 10, true) })),
  ];

  test('every complete token before the damage, then TraceFormatError (whole or streamed)', async () => {
    const original = await all;
    await fc.assert(
      fc.asyncProperty(byteMutations(base, hot, fields), fc.array(fc.nat(), { maxLength: 4 }), async (mutations, cuts) => {
        const bytes = mutate(base, mutations);
        let firstDiff = 0;
        while (firstDiff < Math.min(bytes.length, base.length) && bytes[firstDiff] === base[firstDiff]) firstDiff++;
        const identical = firstDiff === base.length && bytes.length === base.length;
        // tokens whose records lie wholly before the first changed byte must come out
        const intact = firstDiff < headerEnd ? 0 : tokenRecords.filter((r) => r.end <= firstDiff).length;
        for (const open of [() => Promise.resolve(TraceSource.fromBytes(bytes)), () => TraceSource.open(streamOf(bytes, cuts))]) {
          let source: TraceSource;
          try {
            source = await open();
          } catch (e) {
            expect(e).toBeInstanceOf(TraceFormatError);
            expect(identical).toBe(false);
            expect(intact).toBe(0);
            continue;
          }
          const r = await replay(source);
          if (identical) {
            expect(r.error).toBeUndefined();
            expect(r.tokens.map(plain)).toEqual(original);
            continue;
          }
          expect(r.error).toBeInstanceOf(TraceFormatError);
          expect(r.tokens.length).toBeGreaterThanOrEqual(intact);
          expect(r.tokens.map(plain)).toEqual(original.slice(0, r.tokens.length));
        }
      }),
      { numRuns: 400 },
    );
  }, 120_000);

  /** A stream that sends `bytes` and then never ends: a reader that waits for more hangs. */
  const stalled = (bytes: Uint8Array): ReadableStream<Uint8Array> =>
    new ReadableStream({
      start(controller) {
        controller.enqueue(bytes);
      },
    });

  function preamble(headerBytes: number): Uint8Array {
    const b = new Uint8Array(16);
    b.set(new TextEncoder().encode('LOUPETRC'));
    new DataView(b.buffer).setUint8(8, 1);
    new DataView(b.buffer).setUint32(12, headerBytes, true);
    return b;
  }

  function withCrc(head: Uint8Array): Uint8Array {
    const out = new Uint8Array(head.length + 4);
    out.set(head);
    new DataView(out.buffer).setUint32(head.length, crc32(head), true);
    return out;
  }

  function traceWithHeader(json: string): Uint8Array {
    const body = new TextEncoder().encode(json);
    const head = new Uint8Array(16 + body.length);
    head.set(preamble(body.length));
    head.set(body, 16);
    return withCrc(head);
  }

  test('a header length of 4 GiB is refused at once, without waiting for it', async () => {
    await expect(TraceSource.open(stalled(preamble(0xffffffff)))).rejects.toThrow(/claims 4294967295 bytes/);
    await expect(TraceSource.open(stalled(preamble(MAX_TRACE_HEADER_BYTES + 1)))).rejects.toBeInstanceOf(TraceFormatError);
  });

  test('a record length of 4 GiB is refused at once, after the tokens before it', async () => {
    const cut = tokenRecords[3]?.at as number;
    const bytes = new Uint8Array(cut + 5);
    bytes.set(base.subarray(0, cut));
    bytes[cut] = 1;
    new DataView(bytes.buffer).setUint32(cut + 1, 0xffffffff, true);
    const source = await TraceSource.open(stalled(bytes));
    const r = await replay(source);
    expect(r.tokens).toHaveLength(3);
    expect(r.error).toBeInstanceOf(TraceFormatError);
    expect(String(r.error)).toMatch(/claims 4294967295 bytes/);
  });

  test.for([
    ['a huge dSae', { dSae: 2 ** 31 }, /dSae must be an integer in 1 … 2097152/],
    ['a huge dIn', { dIn: 2 ** 40 }, /dIn must be/],
    ['a fractional dSae', { dSae: 1.5 }, /dSae/],
    ['another format', { format: 'pickle' }, /not a Loupe trace/],
    ['another version', { version: 2 }, /version/],
    ['a steering feature out of range', { steering: { push: [{ feature: 40, strength: 1 }] } }, /steering.push feature/],
    ['a bad message role', { messages: [{ role: 'tool', content: 'x' }] }, /role/],
  ] as const)('a header with %s is refused with a message naming the field', ([, patch, message]) => {
    const good = { format: 'loupe-trace', version: 1, model: 'm', hookpoint: 'h', dIn: 16, dSae: 40, sae: {}, messages: [], steering: null };
    const bytes = traceWithHeader(JSON.stringify({ ...good, ...patch }));
    expect(() => TraceSource.fromBytes(bytes)).toThrow(message);
    expect(() => TraceSource.fromBytes(bytes)).toThrow(TraceFormatError);
  });

  test('__proto__ keys in a header pollute nothing: the header is rebuilt from the fields it knows', () => {
    const json = '{"format":"loupe-trace","version":1,"model":"m","hookpoint":"h","dIn":16,"dSae":40,"__proto__":{"dSae":5,"polluted":1},"sae":{"__proto__":{"polluted":1}},"messages":[],"steering":null,"extra":{"constructor":{"prototype":{"polluted":1}}}}';
    const source = TraceSource.fromBytes(traceWithHeader(json));
    expect(source.header.dSae).toBe(40);
    expect(Object.getPrototypeOf(source.header)).toBe(Object.prototype);
    expect(Object.keys(source.header)).not.toContain('extra');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test('not a trace, empty, or cut inside the header', async () => {
    expect(() => TraceSource.fromBytes(new TextEncoder().encode('{"format":"loupe-trace"}'))).toThrow(/does not start with "LOUPETRC"/);
    expect(() => TraceSource.fromBytes(new Uint8Array(0))).toThrow(/empty/);
    expect(() => TraceSource.fromBytes(base.subarray(0, 40))).toThrow(/inside its header/);
    const noEnd = base.subarray(0, records.at(-1)?.at);
    const r = await replay(TraceSource.fromBytes(noEnd));
    expect(r.tokens).toHaveLength(12);
    expect(String(r.error)).toMatch(/without its END record/);
  });

  test('token records that break the rules: out of order, duplicates, bad positions, features ≥ dSae', async () => {
    const header: TraceHeader = { format: 'loupe-trace', version: 1, model: 'm', hookpoint: 'h', dIn: 4, dSae: 8, sae: {}, messages: [], steering: null };
    const t = (p: number, indices: number[], values: number[]): TokenReadout => ({ position: p, tokenId: p, text: '', phase: 'prompt', steered: false, nonFinite: false, indices: Uint32Array.from(indices), values: Float32Array.from(values) });
    const cases: Array<[TokenReadout[], RegExp]> = [
      [[t(0, [1, 2], [1, 2])], /out of order/],
      [[t(0, [2, 1], [1, 1])], /out of order/],
      [[t(0, [1, 1], [2, 1])], /twice/],
      [[t(0, [1], [1]), t(2, [1], [1])], /position 2; expected 1/],
      [[t(0, [1], [Infinity])], /non-finite/],
      [[{ ...t(0, [1], [1]), nonFinite: true }], /non-finite token/],
      [[t(0, [3], [2]), t(1, [9], [1])], /feature 9, but the trace's SAE has dSae = 8/],
    ];
    for (const [tokens, message] of cases) {
      // written for dSae 64 (so the writer takes feature 9), read under a header that says 8
      const wide = encodeTrace({ ...header, dSae: 64 }, tokens, { status: 'done' });
      const narrow = encodeTrace(header, [], { status: 'done' });
      const bytes = new Uint8Array([...narrow.subarray(0, layout(narrow).headerEnd), ...wide.subarray(layout(wide).headerEnd)]);
      const r = await replay(TraceSource.fromBytes(bytes));
      expect(String(r.error)).toMatch(message);
      expect(r.error).toBeInstanceOf(TraceFormatError);
    }
    expect(() => encodeTrace(header, [t(0, [9], [1])], { status: 'done' })).toThrow(/feature 9/);
  });
});
