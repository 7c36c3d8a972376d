/**
 * UMAP stage 1, approximate: a random-projection forest seeds every row's neighbour list, then
 * NN-descent (Dong, Moses & Li 2011) refines it; used above `exactKnnLimit` rows.
 */
import { cosineDistance, emptyKnn, heapOffer, sortRows, type KnnGraph } from './knn.js';
import type { Pacer, Random } from './random.js';

/** Like heapOffer but skips j when it is already in the heap (NN-descent meets pairs repeatedly). */
function heapOfferUnique(indices: Int32Array, distances: Float32Array, base: number, k: number, j: number, dist: number, flags?: Uint8Array): boolean {
  if (!(dist < (distances[base] ?? -Infinity))) return false;
  for (let s = 0; s < k; s++) if (indices[base + s] === j) return false;
  return heapOffer(indices, distances, base, k, j, dist, flags);
}

/**
 * One random-projection tree (angular): each node splits its rows by the hyperplane through the
 * origin halfway between two of its rows (normal x_a − x_b), until at most `leafSize` remain.
 * Calls `leaf` with each leaf's rows.
 */
async function rpTreeLeaves(
  x: Float32Array,
  n: number,
  d: number,
  leafSize: number,
  rng: Random,
  leaf: (rows: Int32Array) => void,
  pacer: Pacer | undefined,
): Promise<void> {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const scratch = new Int32Array(n);
  const normal = new Float32Array(d);
  const stack: [number, number][] = [[0, n]];
  while (stack.length > 0) {
    const range = stack.pop();
    if (range === undefined) break;
    const [lo, hi] = range;
    const size = hi - lo;
    if (size <= leafSize) {
      leaf(order.subarray(lo, hi));
      continue;
    }
    const a = order[lo + rng.int(size)] ?? 0;
    let b = order[lo + rng.int(size - 1)] ?? 0;
    if (b === a) b = order[hi - 1] ?? 0;
    for (let t = 0; t < d; t++) normal[t] = (x[a * d + t] ?? 0) - (x[b * d + t] ?? 0);
    let left = lo;
    let right = hi;
    for (let p = lo; p < hi; p++) {
      if ((p & 255) === 0 && pacer?.due() === true) await pacer.yield('knn', 0, 1);
      const r = order[p] ?? 0;
      let m = 0;
      for (let t = 0, o = r * d; t < d; t++) m += (normal[t] ?? 0) * (x[o + t] ?? 0);
      const goLeft = m > 0 || (m === 0 && rng.next() < 0.5);
      if (goLeft) scratch[left++] = r;
      else scratch[--right] = r;
    }
    order.set(scratch.subarray(lo, hi), lo);
    // A degenerate split (duplicates, or a and b identical) halves the range instead.
    const mid = left === lo || left === hi ? lo + (size >> 1) : left;
    stack.push([lo, mid], [mid, hi]);
  }
}

/** Row i's NN-descent candidates: a bounded heap keyed by a random priority (a uniform sample). */
function candidateOffer(idx: Int32Array, pri: Float32Array, base: number, m: number, j: number, p: number): void {
  for (let s = 0; s < m; s++) if (idx[base + s] === j) return;
  heapOffer(idx, pri, base, m, j, p);
}

/**
 * Approximate kNN: a random-projection forest gives every row candidates from its leaves, then
 * NN-descent (Dong et al. 2011) repeats "a neighbour of a neighbour is likely a neighbour": each
 * row's sampled new and old neighbours (both directions) are compared pairwise, until fewer than
 * δ·n·k lists change. Cost ≈ n·(trees·leafSize + iterations·(2m)²)·d, m = candidates per row.
 */
export async function nnDescentKnn(x: Float32Array, n: number, d: number, k: number, rng: Random, pacer?: Pacer): Promise<KnnGraph> {
  const g = emptyKnn(n, k);
  const { indices, distances } = g;
  const isNew = new Uint8Array(n * k);
  const offer = (i: number, j: number, dist: number): number => (heapOfferUnique(indices, distances, i * k, k, j, dist, isNew) ? 1 : 0);
  const nTrees = Math.min(32, 4 + Math.round(Math.sqrt(Math.sqrt(n)) / 2));
  const leafSize = Math.max(2 * (k + 1), 32);
  for (let t = 0; t < nTrees; t++) {
    await rpTreeLeaves(
      x,
      n,
      d,
      leafSize,
      rng,
      (rows) => {
        for (let p = 0; p < rows.length; p++) {
          const a = rows[p] ?? 0;
          for (let q = p + 1; q < rows.length; q++) {
            const b = rows[q] ?? 0;
            const dist = cosineDistance(x, d, a, b);
            offer(a, b, dist);
            offer(b, a, dist);
          }
        }
      },
      pacer,
    );
    pacer?.report('knn', t + 1, nTrees + 10);
  }
  // Rows whose leaves were too small to fill k slots get random rows.
  for (let i = 0; i < n; i++) {
    for (let tries = 0; (indices[i * k] ?? -1) < 0 && tries < 4 * k; tries++) {
      const j = rng.int(n);
      if (j !== i) offer(i, j, cosineDistance(x, d, i, j));
    }
  }
  isNew.fill(1);
  const m = Math.min(60, k);
  const newIdx = new Int32Array(n * m);
  const newPri = new Float32Array(n * m);
  const oldIdx = new Int32Array(n * m);
  const oldPri = new Float32Array(n * m);
  const maxIterations = 12;
  const delta = 0.001;
  for (let iter = 0; iter < maxIterations; iter++) {
    newIdx.fill(-1);
    newPri.fill(Infinity);
    oldIdx.fill(-1);
    oldPri.fill(Infinity);
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < k; s++) {
        const j = indices[i * k + s] ?? -1;
        if (j < 0) continue;
        const p = rng.next();
        if (isNew[i * k + s] === 1) {
          candidateOffer(newIdx, newPri, i * m, m, j, p);
          candidateOffer(newIdx, newPri, j * m, m, i, p);
        } else {
          candidateOffer(oldIdx, oldPri, i * m, m, j, p);
          candidateOffer(oldIdx, oldPri, j * m, m, i, p);
        }
      }
    }
    // Sampled new neighbours are old from now on.
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < k; s++) {
        if (isNew[i * k + s] !== 1) continue;
        const j = indices[i * k + s] ?? -1;
        for (let c = 0; c < m; c++) {
          if (newIdx[i * m + c] === j) {
            isNew[i * k + s] = 0;
            break;
          }
        }
      }
    }
    let updates = 0;
    for (let i = 0; i < n; i++) {
      const nb = i * m;
      for (let p = 0; p < m; p++) {
        const u = newIdx[nb + p] ?? -1;
        if (u < 0) continue;
        for (let q = p + 1; q < m; q++) {
          const v = newIdx[nb + q] ?? -1;
          if (v < 0) continue;
          const dist = cosineDistance(x, d, u, v);
          updates += offer(u, v, dist) + offer(v, u, dist);
        }
        for (let q = 0; q < m; q++) {
          const v = oldIdx[nb + q] ?? -1;
          if (v < 0 || v === u) continue;
          const dist = cosineDistance(x, d, u, v);
          updates += offer(u, v, dist) + offer(v, u, dist);
        }
      }
      if (pacer?.due() === true) await pacer.yield('knn', nTrees + iter + i / n, nTrees + maxIterations);
    }
    if (updates <= delta * n * k) break;
  }
  sortRows(g);
  pacer?.report('knn', 1, 1);
  return g;
}
