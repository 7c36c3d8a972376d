/**
 * Comparing sparse codes with a reference the way llm.c compares kernels: a tolerance that
 * scales with the value (atol + rtol·|ref|), indices required to match only where the
 * reference's values are separated by more than that tolerance, and the first mismatches
 * reported with token, position, expected and actual.
 */
import type { SparseCodes } from '../../src/sae/codes.js';
import { tokenCodes } from '../../src/sae/codes.js';

export interface Tolerance {
  readonly atol: number;
  readonly rtol: number;
}

export const TOLERANCE: Record<'f32' | 'f16' | 'bf16' | 'bf16-compute', Tolerance> = {
  // f32 accumulation in a different order than the f64 reference / torch's BLAS
  f32: { atol: 2e-5, rtol: 2e-4 },
  f16: { atol: 2e-5, rtol: 2e-4 },
  bf16: { atol: 2e-5, rtol: 2e-4 },
  // the reference itself computed in bf16 (Goodfire): its outputs carry bf16 rounding (2^-9 relative per step)
  'bf16-compute': { atol: 2e-2, rtol: 1.6e-2 },
};

function within(a: number, b: number, tol: Tolerance, scale: number): boolean {
  return Math.abs(a - b) <= tol.atol * scale + tol.rtol * Math.abs(b);
}

/**
 * Checks `actual` against a reference given as dense codes [T][dSae] (`expectedDense`, zeros =
 * not selected) plus the reference's pre-activations (for judging near-ties at the selection
 * boundary). `scale` makes atol relative to the typical magnitude of the values.
 */
export function compareCodes(
  actual: SparseCodes,
  expectedDense: Float32Array,
  preActs: Float32Array,
  dSae: number,
  tol: Tolerance,
  scale = 1,
): string[] {
  const problems: string[] = [];
  const T = actual.tokens;
  // Sorted order within every token, and no zeros stored.
  for (let t = 0; t < T; t++) {
    const { indices, values } = tokenCodes(actual, t);
    for (let j = 1; j < indices.length; j++) {
      const v0 = values[j - 1] ?? 0;
      const v1 = values[j] ?? 0;
      if (v0 < v1 || (v0 === v1 && (indices[j - 1] ?? 0) >= (indices[j] ?? 0))) {
        problems.push(`token ${t}: codes not sorted at position ${j} (${indices[j - 1]}:${v0} then ${indices[j]}:${v1})`);
      }
    }
    values.forEach((v, j) => {
      if (v === 0 || !Number.isFinite(v)) problems.push(`token ${t}: stored value ${v} at position ${j}`);
    });
  }
  for (let t = 0; t < T && problems.length < 20; t++) {
    const ref: Array<[number, number]> = [];
    let boundary = -Infinity; // largest reference pre-activation that was NOT selected
    for (let f = 0; f < dSae; f++) {
      const v = expectedDense[t * dSae + f] ?? 0;
      if (v !== 0) ref.push([f, v]);
      else {
        const p = preActs[t * dSae + f] ?? NaN;
        if (Number.isFinite(p) && p > boundary) boundary = p;
      }
    }
    ref.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const { indices, values } = tokenCodes(actual, t);
    const got = new Map<number, number>();
    indices.forEach((f, j) => got.set(f, values[j] ?? NaN));
    const lowestSelected = ref.length > 0 ? (ref[ref.length - 1]?.[1] ?? 0) : Infinity;
    for (const [f, v] of ref) {
      const a = got.get(f);
      const clearlyIn = !within(v, Math.max(boundary, 0), tol, scale) && v > boundary;
      if (a === undefined) {
        if (clearlyIn) problems.push(`token ${t}: feature ${f} (ref ${v}) missing; boundary ${boundary}`);
      } else if (!within(a, v, tol, scale)) {
        problems.push(`token ${t}: feature ${f} value ${a}, expected ${v}`);
      }
    }
    for (const [f, a] of got) {
      if ((expectedDense[t * dSae + f] ?? 0) !== 0) continue;
      // An extra feature is acceptable only as a near-tie at the reference's selection boundary.
      const p = preActs[t * dSae + f] ?? NaN;
      const nearBoundary = within(p, lowestSelected, tol, scale) || within(p, 0, tol, scale);
      if (!nearBoundary || !within(a, p, tol, scale)) {
        problems.push(`token ${t}: extra feature ${f} value ${a} (ref pre ${p}, lowest selected ${lowestSelected})`);
      }
    }
    // Positions whose reference value is separated from both neighbours must hold the same index.
    for (let j = 0; j < ref.length && j < indices.length; j++) {
      const v = ref[j]?.[1] ?? 0;
      const prev = j > 0 ? ref[j - 1]?.[1] : undefined;
      const next = j + 1 < ref.length ? ref[j + 1]?.[1] : boundary;
      const separated = (prev === undefined || !within(v, prev, tol, scale)) && (next === undefined || !within(v, next, tol, scale));
      if (separated && indices[j] !== ref[j]?.[0]) {
        problems.push(`token ${t}: position ${j} holds feature ${indices[j]}, expected ${ref[j]?.[0]} (value ${v})`);
      }
    }
  }
  return problems.slice(0, 20);
}

/** Dense [T][dSae] from CSR codes. */
export function denseOf(codes: SparseCodes, dSae: number): Float32Array {
  const out = new Float32Array(codes.tokens * dSae);
  for (let t = 0; t < codes.tokens; t++) {
    const { indices, values } = tokenCodes(codes, t);
    indices.forEach((f, j) => {
      out[t * dSae + f] = values[j] ?? 0;
    });
  }
  return out;
}

/** Max |a − b| / (atol·scale + rtol·|b|) over finite reference entries; ≤ 1 passes. */
export function worstRatio(a: Float32Array, b: Float32Array, tol: Tolerance, scale = 1): { ratio: number; at: number } {
  let ratio = 0;
  let at = -1;
  for (let i = 0; i < b.length; i++) {
    const r = b[i] ?? NaN;
    if (!Number.isFinite(r)) continue;
    const q = Math.abs((a[i] ?? NaN) - r) / (tol.atol * scale + tol.rtol * Math.abs(r));
    if (!(q <= ratio)) {
      ratio = q;
      at = i;
    }
  }
  return { ratio, at };
}
