/**
 * Byte splicing: replace a few ranges of a large buffer with new bytes while every other byte
 * is copied exactly once (into a new buffer) or moved within the same buffer. This is what keeps
 * a graph edit of a 1.4 GB model at "old size + a few hundred bytes" of allocation.
 */

import { OnnxGraphError } from '../../errors.js';

/** Replace `src[start, end)` with `bytes` (start === end inserts). */
export interface Splice {
  readonly start: number;
  readonly end: number;
  readonly bytes: Uint8Array;
}

function checkSplices(srcLength: number, splices: readonly Splice[]): number {
  let pos = 0;
  let delta = 0;
  for (const s of splices) {
    if (s.start < pos || s.end < s.start || s.end > srcLength) {
      throw new OnnxGraphError(`internal: splices overlap or are out of order at [${s.start}, ${s.end})`);
    }
    pos = s.end;
    delta += s.bytes.length - (s.end - s.start);
  }
  return delta;
}

/** Size change of applying `splices` (sorted, non-overlapping). */
export function spliceDelta(srcLength: number, splices: readonly Splice[]): number {
  return checkSplices(srcLength, splices);
}

/** A new buffer: `src` with `splices` applied. Each unchanged range is copied once. */
export function applySplices(src: Uint8Array, splices: readonly Splice[]): Uint8Array {
  const out = new Uint8Array(src.length + checkSplices(src.length, splices));
  let from = 0;
  let to = 0;
  for (const s of splices) {
    out.set(src.subarray(from, s.start), to);
    to += s.start - from;
    out.set(s.bytes, to);
    to += s.bytes.length;
    from = s.end;
  }
  out.set(src.subarray(from), to);
  return out;
}

/**
 * Applies `splices` inside `buf`, whose first `srcLength` bytes are the source and whose length
 * is the capacity. Works back to front, so each unchanged range moves right (copyWithin handles
 * the overlap) before anything to its left is written over it. That needs every splice to grow
 * or keep its range (the cumulative shift never goes negative); tap edits always do.
 * The splice bytes must not alias `buf`. Returns the new length.
 */
export function applySplicesInPlace(buf: Uint8Array, srcLength: number, splices: readonly Splice[]): number {
  const delta = checkSplices(srcLength, splices);
  if (splices.some((s) => s.bytes.length < s.end - s.start)) {
    throw new OnnxGraphError('internal: an in-place splice may only grow its range');
  }
  const newLength = srcLength + delta;
  if (newLength > buf.length) {
    throw new OnnxGraphError(`in-place ONNX edit needs ${newLength} bytes of capacity, the buffer has ${buf.length}`);
  }
  // shift[k] = total growth of splices before k; the tail after the last splice moves by `delta`.
  let shift = delta;
  let tailEnd = srcLength;
  for (let k = splices.length - 1; k >= 0; k--) {
    const s = splices[k];
    if (s === undefined) continue;
    if (shift !== 0 && tailEnd > s.end) buf.copyWithin(s.end + shift, s.end, tailEnd);
    shift -= s.bytes.length - (s.end - s.start);
    buf.set(s.bytes, s.start + shift);
    tailEnd = s.start;
  }
  return newLength;
}
