/**
 * The client's stream parser (src/sources/frames.ts) against frames built by an independent
 * encoder written from docs/protocol.md (tests/helpers/loupe-frames.ts): the document's worked
 * example byte for byte, arbitrary chunkings, and every malformed case with its named error.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { MalformedFrameError, ProtocolVersionError } from '../../src/errors.js';
import { activationToF32, FrameParser, type Frame } from '../../src/sources/frames.js';
import { concat, endFrame, frame, headerFrame, jsonFrame, preamble, tokenFrame, type Dtype } from '../helpers/loupe-frames.js';

function parseAll(bytes: Uint8Array, cuts: readonly number[] = []): Frame[] {
  const p = new FrameParser();
  const out: Frame[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.byteLength]) {
    // copy each piece so views into one piece cannot alias the next
    for (const f of p.push(bytes.slice(at, c))) out.push(f.kind === 'token' ? { ...f, activation: f.activation.slice(), text: f.text.slice() } : f);
    at = c;
  }
  return out;
}

describe('FrameParser', () => {
  test('the worked example of docs/protocol.md, byte for byte', () => {
    const header = headerFrame({ d_in: 4, dtype: 'f16' });
    const token = Uint8Array.from([
      0x1d, 0, 0, 0, 0x02, 0, 0, 0, 0, 0xeb, 0x25, 0, 0, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0x48, 0x69, 0, 0, 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x38,
    ]);
    expect(token).toEqual(tokenFrame({ position: 0, tokenId: 9707, phase: 0, text: 'Hi', values: [1, -2, 0, 0.5], dtype: 'f16' }));
    const frames = parseAll(concat([preamble(), header, token]));
    expect(frames.map((f) => f.kind)).toEqual(['header', 'token']);
    const t = frames[1];
    if (t?.kind !== 'token') throw new Error('no token');
    expect([t.position, t.tokenId, t.phase, t.steered, new TextDecoder().decode(t.text)]).toEqual([0, 9707, 'prompt', false, 'Hi']);
    expect(Array.from(activationToF32(t.activation, 'f16', 4))).toEqual([1, -2, 0, 0.5]);
  });

  test('any chunking gives the same frames (frames split across chunks, many per chunk)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Dtype>('f32', 'f16', 'bf16'),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.record({ text: fc.string({ maxLength: 9 }), steered: fc.boolean() }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (dtype, dIn, toks, rawCuts) => {
          const values = (i: number): number[] => Array.from({ length: dIn }, (_, j) => ((i * 31 + j * 7) % 17) - 8 + 0.5);
          const parts = [preamble(), headerFrame({ d_in: dIn, dtype }), ...toks.map((t, i) => tokenFrame({ position: i, tokenId: 100 + i, phase: i < 2 ? 0 : 1, flags: t.steered ? 1 : 0, text: t.text, values: values(i), dtype })), endFrame('eos', 2, toks.length - 2)];
          const bytes = concat(parts);
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
          const frames = parseAll(bytes, cuts);
          expect(frames.map((f) => f.kind)).toEqual(['header', ...toks.map(() => 'token'), 'end']);
          frames.forEach((f, k) => {
            if (f.kind !== 'token') return;
            const i = k - 1;
            expect(f.position).toBe(i);
            expect(f.steered).toBe(toks[i]?.steered);
            expect(new TextDecoder().decode(f.text)).toBe(toks[i]?.text);
            // f32 exact; f16/bf16 values here (halves) are exactly representable too
            expect(Array.from(activationToF32(f.activation, dtype, dIn))).toEqual(values(i));
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  const base = (dtype: Dtype = 'f32'): Uint8Array => concat([preamble(), headerFrame({ d_in: 3, dtype })]);

  test('malformed streams get named errors', () => {
    expect(() => parseAll(Uint8Array.from([0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31]))).toThrow(/Loupe preamble/);
    expect(() => parseAll(concat([preamble(2, 0)]))).toThrow(ProtocolVersionError);
    expect(() => parseAll(concat([preamble(), headerFrame({ d_in: 3, dtype: 'f32', version: 2 })]))).toThrow(ProtocolVersionError);
    // bad length: zero and above the cap
    expect(() => parseAll(concat([base(), Uint8Array.from([0, 0, 0, 0, 2])]))).toThrow(MalformedFrameError);
    expect(() => parseAll(concat([base(), Uint8Array.from([0xff, 0xff, 0xff, 0x7f, 2])]))).toThrow(/claims/);
    // a token payload one byte short (truncated activation)
    const t = tokenFrame({ position: 0, tokenId: 1, phase: 0, text: 'a', values: [1, 2, 3], dtype: 'f32' });
    const short = frame(2, t.slice(5, t.byteLength - 1));
    expect(() => parseAll(concat([base(), short]))).toThrow(/truncated or corrupt/);
    // wrong dIn
    expect(() => parseAll(concat([base(), tokenFrame({ position: 0, tokenId: 1, phase: 0, text: '', values: [1, 2, 3, 4], dtype: 'f32' })]))).toThrow(/d_in 4, but the HEADER said 3/);
    // token before header, second header, bad phase, non-JSON header
    expect(() => parseAll(concat([preamble(), t]))).toThrow(/before the HEADER/);
    expect(() => parseAll(concat([base(), headerFrame({ d_in: 3, dtype: 'f32' })]))).toThrow(/second HEADER/);
    expect(() => parseAll(concat([base(), tokenFrame({ position: 0, tokenId: 1, phase: 2, text: '', values: [1, 2, 3], dtype: 'f32' }).map((b, i) => (i === 13 ? 7 : b))]))).toThrow(/phase 7/);
    expect(() => parseAll(concat([preamble(), frame(1, new TextEncoder().encode('{nope'))]))).toThrow(MalformedFrameError);
    expect(() => parseAll(concat([preamble(), jsonFrame(1, { protocol: 'loupe-stream', version: 1, d_in: -1, dtype: 'f32', layer: 0, prompt_tokens: 0, resume_from: 0 })]))).toThrow(/d_in/);
  });

  test('unknown frame types are skipped; a cut stream is visible as midFrame', () => {
    const frames = parseAll(concat([base(), frame(42, Uint8Array.from([1, 2, 3])), endFrame()]));
    expect(frames.map((f) => f.kind)).toEqual(['header', 'end']);
    const p = new FrameParser();
    const bytes = concat([base(), tokenFrame({ position: 0, tokenId: 1, phase: 0, text: 'x', values: [1, 2, 3], dtype: 'bf16' })]);
    p.push(bytes.subarray(0, bytes.byteLength - 2));
    expect(p.midFrame).toBe(true);
  });
});
