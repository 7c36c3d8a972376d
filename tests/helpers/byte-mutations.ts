/**
 * Random byte-level damage for property tests of the file readers (in-memory and streaming):
 * flips, truncations, insertions and deletions aimed mostly at the parts a reader interprets,
 * plus overwrites of known length/offset fields with values near the truth or at an edge.
 */
import fc from 'fast-check';
import { concat } from './pickle-builders.js';

export type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly xor: number }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: 'delete'; readonly at: number; readonly count: number }
  | { readonly kind: 'write'; readonly at: number; readonly bytes: Uint8Array };

export function mutate(base: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let b: Uint8Array = base.slice();
  for (const m of mutations) {
    // Positions are drawn against the base file; wrap them onto the current (possibly shorter) bytes.
    const at = b.length === 0 ? 0 : m.at % (b.length + (m.kind === 'insert' || m.kind === 'truncate' ? 1 : 0));
    switch (m.kind) {
      case 'flip':
        if (at < b.length) b[at] = (b[at] ?? 0) ^ m.xor;
        break;
      case 'truncate':
        b = b.slice(0, at);
        break;
      case 'insert':
        b = concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + m.count))]);
        break;
      case 'write':
        b.set(m.bytes.subarray(0, Math.max(0, b.length - at)), at);
        break;
    }
  }
  return b;
}

/** Little-endian bytes of `value` in `width` bytes (the value is taken modulo 2^(8·width)). */
export function le(value: bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  let v = BigInt.asUintN(8 * width, value);
  for (let i = 0; i < width; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** A value for a length/offset field: mostly near the truth or at an edge, sometimes anything. */
export function fieldValue(truth: number, fileLength: number): fc.Arbitrary<bigint> {
  return fc.oneof(
    fc.integer({ min: -64, max: 64 }).map((d) => BigInt(Math.max(0, truth + d))),
    fc.constantFrom(0n, 1n, 8n, 0xffffn, 0xffffffffn, 0xfffffffen, BigInt(fileLength), BigInt(fileLength + 1), 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  );
}

export type Field = { readonly at: number; readonly width: number; readonly truth: number };

/**
 * Byte-level damage aimed mostly at `hot` (the parts of the file the parser interprets: headers,
 * descriptors, the pickle, tensor boundaries) and sometimes anywhere, plus overwrites of known
 * fields and truncation at any length.
 */
export function byteMutations(base: Uint8Array, hot: ReadonlyArray<readonly [number, number]>, fields: readonly Field[]): fc.Arbitrary<Mutation[]> {
  const pos = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...hot).chain(([a, b]) => fc.integer({ min: a, max: Math.max(a, b - 1) })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: base.length }) },
  );
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: pos, xor: fc.integer({ min: 1, max: 255 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.oneof(pos, fc.integer({ min: 0, max: base.length })) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: pos, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: pos, count: fc.integer({ min: 1, max: 32 }) }) },
    {
      weight: 3,
      arbitrary: fc
        .constantFrom(...fields)
        .chain((f) => fieldValue(f.truth, base.length).map((v): Mutation => ({ kind: 'write', at: f.at, bytes: le(v, f.width) }))),
    },
  );
  return fc.array(mutation, { minLength: 1, maxLength: 4 });
}
