/**
 * UMAP stage 1, exact: unit rows under cosine distance, the kNN graph they produce, the bounded
 * heaps both kNN searches fill, and the blocked brute-force search used up to `exactKnnLimit` rows.
 */
import type { Pacer } from './random.js';

// ────────────────────────────────────────────────────────────────────────────── rows

/**
 * Scales each row to unit length so that cosine distance is 1 − dot. All-zero rows stay zero:
 * their cosine is undefined and they end up at distance 1 from everything.
 */
export function normaliseRows(rows: Float32Array, n: number, d: number, inPlace = false): Float32Array {
  const out = inPlace ? rows : new Float32Array(rows);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    let s = 0;
    for (let t = 0; t < d; t++) {
      const v = out[o + t] ?? 0;
      s += v * v;
    }
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let t = 0; t < d; t++) out[o + t] = (out[o + t] ?? 0) * inv;
    }
  }
  return out;
}

/** Cosine distance between unit rows i and j of `x`. */
export function cosineDistance(x: Float32Array, d: number, i: number, j: number): number {
  const a = i * d;
  const b = j * d;
  let s0 = 0;
  let s1 = 0;
  let t = 0;
  for (; t + 1 < d; t += 2) {
    s0 += (x[a + t] ?? 0) * (x[b + t] ?? 0);
    s1 += (x[a + t + 1] ?? 0) * (x[b + t + 1] ?? 0);
  }
  if (t < d) s0 += (x[a + t] ?? 0) * (x[b + t] ?? 0);
  return Math.max(0, 1 - (s0 + s1));
}

// ────────────────────────────────────────────────────────────────────────────── k nearest neighbours

/** Each row's k nearest other rows, nearest first: row i's list is at [i·k, (i+1)·k). */
export interface KnnGraph {
  readonly n: number;
  readonly k: number;
  readonly indices: Int32Array;
  readonly distances: Float32Array;
}

/**
 * Offers (j, dist) to row i's bounded max-heap (root = current k-th nearest). Strict `<` keeps
 * the earlier-offered of two equal distances, so ties resolve the same way on every run.
 * `flags`, when given, travel with their entries (NN-descent's "new" marks); the offered entry gets 1.
 */
export function heapOffer(indices: Int32Array, distances: Float32Array, base: number, k: number, j: number, dist: number, flags?: Uint8Array): boolean {
  if (!(dist < (distances[base] ?? -Infinity))) return false;
  let pos = 0;
  for (;;) {
    const l = 2 * pos + 1;
    if (l >= k) break;
    const r = l + 1;
    let c = l;
    if (r < k && (distances[base + r] ?? 0) > (distances[base + l] ?? 0)) c = r;
    const dc = distances[base + c] ?? 0;
    if (dc <= dist) break;
    distances[base + pos] = dc;
    indices[base + pos] = indices[base + c] ?? -1;
    if (flags !== undefined) flags[base + pos] = flags[base + c] ?? 0;
    pos = c;
  }
  distances[base + pos] = dist;
  indices[base + pos] = j;
  if (flags !== undefined) flags[base + pos] = 1;
  return true;
}

/** Turns every row's heap into an ascending list (in place), ties by index. */
export function sortRows(g: KnnGraph): void {
  const { n, k, indices, distances } = g;
  const order = Array.from({ length: k }, (_, s) => s);
  const idx = new Int32Array(k);
  const dst = new Float32Array(k);
  for (let i = 0; i < n; i++) {
    const base = i * k;
    for (let s = 0; s < k; s++) order[s] = s;
    order.sort((p, q) => (distances[base + p] ?? 0) - (distances[base + q] ?? 0) || (indices[base + p] ?? 0) - (indices[base + q] ?? 0));
    for (let s = 0; s < k; s++) {
      const o = order[s] ?? s;
      idx[s] = indices[base + o] ?? -1;
      dst[s] = distances[base + o] ?? Infinity;
    }
    indices.set(idx, base);
    distances.set(dst, base);
  }
}

export function emptyKnn(n: number, k: number): KnnGraph {
  return { n, k, indices: new Int32Array(n * k).fill(-1), distances: new Float32Array(n * k).fill(Infinity) };
}

const TILE = 4;
const BLOCK = 64;

/**
 * Exact kNN by brute force: every pair once (j > i), in BLOCK × BLOCK tiles of rows so both
 * tiles stay in cache, each tile in 4 × 4 register blocks (16 dot products share 8 loads per
 * dimension — about 3.5× the plain loop in V8). Cost: n²·d multiply-adds.
 */
export async function exactKnn(x: Float32Array, n: number, d: number, k: number, pacer?: Pacer): Promise<KnnGraph> {
  const g = emptyKnn(n, k);
  const { indices, distances } = g;
  const offer = (i: number, j: number, dot: number): void => {
    const dist = Math.max(0, 1 - dot);
    heapOffer(indices, distances, i * k, k, j, dist);
    heapOffer(indices, distances, j * k, k, i, dist);
  };
  const pairsTotal = (n * (n - 1)) / 2;
  let pairsDone = 0;
  for (let i0 = 0; i0 < n; i0 += BLOCK) {
    const i1 = Math.min(n, i0 + BLOCK);
    for (let j0 = i0; j0 < n; j0 += BLOCK) {
      const j1 = Math.min(n, j0 + BLOCK);
      for (let i = i0; i < i1; i += TILE) {
        const iEnd = Math.min(i1, i + TILE);
        // Within the diagonal tile only j > i counts; start the 4×4 blocks past this row group.
        const jFirst = j0 === i0 ? iEnd : j0;
        if (j0 === i0) {
          for (let a = i; a < iEnd; a++) for (let b = a + 1; b < iEnd; b++) offer(a, b, 1 - cosineDistance(x, d, a, b));
        }
        let j = jFirst;
        if (iEnd - i === TILE) {
          const a0 = i * d;
          const a1 = a0 + d;
          const a2 = a1 + d;
          const a3 = a2 + d;
          for (; j + TILE <= j1; j += TILE) {
            const b0 = j * d;
            const b1 = b0 + d;
            const b2 = b1 + d;
            const b3 = b2 + d;
            let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0; // prettier-ignore
            let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0; // prettier-ignore
            for (let t = 0; t < d; t++) {
              const p0 = x[a0 + t] ?? 0;
              const p1 = x[a1 + t] ?? 0;
              const p2 = x[a2 + t] ?? 0;
              const p3 = x[a3 + t] ?? 0;
              const q0 = x[b0 + t] ?? 0;
              const q1 = x[b1 + t] ?? 0;
              const q2 = x[b2 + t] ?? 0;
              const q3 = x[b3 + t] ?? 0;
              s00 += p0 * q0; s01 += p0 * q1; s02 += p0 * q2; s03 += p0 * q3; // prettier-ignore
              s10 += p1 * q0; s11 += p1 * q1; s12 += p1 * q2; s13 += p1 * q3; // prettier-ignore
              s20 += p2 * q0; s21 += p2 * q1; s22 += p2 * q2; s23 += p2 * q3; // prettier-ignore
              s30 += p3 * q0; s31 += p3 * q1; s32 += p3 * q2; s33 += p3 * q3; // prettier-ignore
            }
            offer(i, j, s00); offer(i, j + 1, s01); offer(i, j + 2, s02); offer(i, j + 3, s03); // prettier-ignore
            offer(i + 1, j, s10); offer(i + 1, j + 1, s11); offer(i + 1, j + 2, s12); offer(i + 1, j + 3, s13); // prettier-ignore
            offer(i + 2, j, s20); offer(i + 2, j + 1, s21); offer(i + 2, j + 2, s22); offer(i + 2, j + 3, s23); // prettier-ignore
            offer(i + 3, j, s30); offer(i + 3, j + 1, s31); offer(i + 3, j + 2, s32); offer(i + 3, j + 3, s33); // prettier-ignore
          }
        }
        for (; j < j1; j++) for (let a = i; a < iEnd; a++) offer(a, j, 1 - cosineDistance(x, d, a, j));
      }
      pairsDone += j0 === i0 ? ((i1 - i0) * (i1 - i0 - 1)) / 2 : (i1 - i0) * (j1 - j0);
      if (pacer?.due() === true) await pacer.yield('knn', pairsDone, pairsTotal);
    }
  }
  sortRows(g);
  pacer?.report('knn', pairsTotal, pairsTotal);
  return g;
}
