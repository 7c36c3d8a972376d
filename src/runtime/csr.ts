/**
 * Assembling and checking CSR `SparseCodes` around the GPU kernels: from the fixed-width top-k
 * outputs, from per-pass chunks, and the per-token transform records of prepare_input.
 */
import { ShapeMismatchError } from '../errors.js';
import type { SaeConfig } from '../sae/config.js';
import type { SparseCodes } from '../sae/codes.js';

export function splitTransform(tr: Float32Array, tokens: number): { nonFinite: Uint8Array; outScale: Float32Array; outShift: Float32Array } {
  const nonFinite = new Uint8Array(tokens);
  const outScale = new Float32Array(tokens);
  const outShift = new Float32Array(tokens);
  for (let t = 0; t < tokens; t++) {
    outScale[t] = tr[t * 4] ?? 1;
    outShift[t] = tr[t * 4 + 1] ?? 0;
    nonFinite[t] = (tr[t * 4 + 2] ?? 0) > 0 ? 1 : 0;
  }
  return { nonFinite, outScale, outShift };
}

/** CSR from the fixed-width [T][k] outputs of topk_select (already sorted per token). */
export function codesFromTopk(
  config: SaeConfig,
  tokens: number,
  k: number,
  idx: Uint32Array,
  val: Float32Array,
  counts: Uint32Array,
  tr: Float32Array,
): SparseCodes {
  const offsets = new Uint32Array(tokens + 1);
  for (let t = 0; t < tokens; t++) offsets[t + 1] = (offsets[t] ?? 0) + Math.min(k, counts[t] ?? 0);
  const nnz = offsets[tokens] ?? 0;
  const indices = new Uint32Array(nnz);
  const values = new Float32Array(nnz);
  for (let t = 0; t < tokens; t++) {
    const n = (offsets[t + 1] ?? 0) - (offsets[t] ?? 0);
    indices.set(idx.subarray(t * k, t * k + n), offsets[t] ?? 0);
    values.set(val.subarray(t * k, t * k + n), offsets[t] ?? 0);
  }
  const { nonFinite, outScale, outShift } = splitTransform(tr, tokens);
  const nonFiniteTokens = Uint32Array.from([...nonFinite.keys()].filter((t) => nonFinite[t] === 1));
  const codes: SparseCodes = { tokens, offsets, indices, values, nonFiniteTokens };
  return config.inputNorm === 'none' ? codes : { ...codes, inputTransform: { outScale, outShift } };
}

export function concatCodes(parts: readonly SparseCodes[]): SparseCodes {
  const tokens = parts.reduce((n, p) => n + p.tokens, 0);
  const nnz = parts.reduce((n, p) => n + p.indices.length, 0);
  const offsets = new Uint32Array(tokens + 1);
  const indices = new Uint32Array(nnz);
  const values = new Float32Array(nnz);
  const nonFinite: number[] = [];
  const outScale = new Float32Array(tokens);
  const outShift = new Float32Array(tokens);
  let hasTransform = false;
  let t0 = 0;
  let base = 0;
  for (const p of parts) {
    for (let t = 0; t < p.tokens; t++) offsets[t0 + t + 1] = base + (p.offsets[t + 1] ?? 0);
    indices.set(p.indices, base);
    values.set(p.values, base);
    for (const t of p.nonFiniteTokens) nonFinite.push(t0 + t);
    if (p.inputTransform !== undefined) {
      hasTransform = true;
      outScale.set(p.inputTransform.outScale, t0);
      outShift.set(p.inputTransform.outShift, t0);
    }
    t0 += p.tokens;
    base += p.indices.length;
  }
  const codes: SparseCodes = { tokens, offsets, indices, values, nonFiniteTokens: Uint32Array.from(nonFinite) };
  return hasTransform ? { ...codes, inputTransform: { outScale, outShift } } : codes;
}

/** Rejects codes that would index outside the decoder (hostile or mismatched input). */
export function checkCodes(codes: SparseCodes, dSae: number): void {
  const T = codes.tokens;
  if (!Number.isInteger(T) || T < 0) throw new ShapeMismatchError(`codes.tokens must be a non-negative integer, got ${String(T)}.`);
  if (codes.offsets.length !== T + 1) throw new ShapeMismatchError(`codes.offsets must have tokens + 1 = ${T + 1} entries, got ${codes.offsets.length}.`);
  if (codes.indices.length !== codes.values.length) {
    throw new ShapeMismatchError(`codes.indices (${codes.indices.length}) and codes.values (${codes.values.length}) must have the same length.`);
  }
  let prev = 0;
  for (let t = 0; t <= T; t++) {
    const o = codes.offsets[t] ?? 0;
    if (o < prev || o > codes.indices.length || (t === 0 && o !== 0)) {
      throw new ShapeMismatchError(`codes.offsets must start at 0, never decrease and end at indices.length (${codes.indices.length}); entry ${t} is ${o}.`);
    }
    prev = o;
  }
  if (prev !== codes.indices.length) throw new ShapeMismatchError(`codes.offsets ends at ${prev}, but there are ${codes.indices.length} codes.`);
  for (const i of codes.indices) {
    if (i >= dSae) throw new ShapeMismatchError(`A code names feature ${i}, but this SAE has dSae = ${dSae} features (0..${dSae - 1}).`);
  }
}
