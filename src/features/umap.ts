/**
 * UMAP (McInnes, Healy & Melville 2018, "UMAP: Uniform Manifold Approximation and Projection",
 * arXiv:1802.03426), written from the paper for Loupe's feature map: 2-D coordinates for the
 * rows of an SAE decoder under cosine distance.
 *
 * Stages (section numbers are the paper's):
 *   1. k nearest neighbours under cosine distance — exact and blocked up to `exactKnnLimit` rows,
 *      random-projection forest + NN-descent (Dong, Moses & Li 2011) above it;
 *   2. per-point ρ (distance to the nearest neighbour) and σ by bisection so that
 *      Σ_j exp(−max(0, d_ij − ρ_i) / σ_i) = log2 k (§3.1, Definition 8 and Algorithm 3);
 *   3. fuzzy union of the directed memberships, w = a + b − a·b (§3.1, Algorithm 2);
 *   4. spectral initial layout from the normalised graph Laplacian (§4.1), by subspace iteration;
 *   5. SGD on the fuzzy-set cross entropy with negative sampling (§3.2, Algorithm 5), with
 *      Φ(d) = 1 / (1 + a d^{2b}) fitted to the min_dist curve (Definition 11);
 *   6. a uniform rescale into [0, 1]² (Loupe's map contract).
 *
 * Plain TypeScript over Float32Arrays. Every stage is async only to yield to the event loop
 * (a page or worker stays responsive and an AbortSignal is honoured within one slice); all
 * randomness comes from one seeded generator, so a seed gives the same map on every run.
 */
import { FeatureCatalogError, ShapeMismatchError } from '../errors.js';

// ────────────────────────────────────────────────────────────────────────────── options

export type UmapStage = 'normalise' | 'knn' | 'graph' | 'init' | 'optimise';

export interface UmapProgress {
  readonly stage: UmapStage;
  /** Work done and total within the stage (units differ per stage: rows, iterations, epochs). */
  readonly done: number;
  readonly total: number;
  /** Rough overall fraction in [0, 1] (fixed stage weights; good enough for a progress bar). */
  readonly fraction: number;
}

export type UmapInit = 'spectral' | 'pca' | 'random';
export type KnnMethod = 'auto' | 'exact' | 'nn-descent';

/** Options that travel to a worker: plain data only. */
export interface UmapParameters {
  /** Neighbours per point in the kNN graph, the point itself not counted (default 15; capped at n − 1). */
  readonly nNeighbors?: number;
  /** Smallest distance between embedded points: how tightly clusters pack (default 0.1). */
  readonly minDist?: number;
  /** Scale of the embedded membership curve, with minDist fixing a and b (default 1). */
  readonly spread?: number;
  /** SGD epochs; default 500 up to 10 000 points, then 500·10⁴/n, never below 200. */
  readonly nEpochs?: number;
  /** Negative samples per positive sample (default 5, the paper's). */
  readonly negativeSampleRate?: number;
  /** Initial SGD step α, decayed linearly to 0 (default 1). */
  readonly learningRate?: number;
  /** Weight γ of the repulsive term (default 1). */
  readonly repulsionStrength?: number;
  /** Initial layout (default 'spectral'). */
  readonly init?: UmapInit;
  /** kNN search: 'auto' is exact up to `exactKnnLimit` rows, NN-descent above (default 'auto'). */
  readonly knn?: KnnMethod;
  /** Largest row count for which 'auto' takes the exact kNN (default 16 384). */
  readonly exactKnnLimit?: number;
  /** Seed of the generator behind every random choice (default 0). */
  readonly seed?: number;
  /** Milliseconds of work between yields to the event loop (default 25). */
  readonly sliceMs?: number;
  /**
   * Unit-normalise the input rows in place instead of on a copy (saves one dSae × dIn buffer; the
   * caller's array is changed). Default false.
   */
  readonly normaliseInPlace?: boolean;
}

export interface UmapOptions extends UmapParameters {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: UmapProgress) => void;
}

export const UMAP_DEFAULTS = {
  nNeighbors: 15,
  minDist: 0.1,
  spread: 1,
  negativeSampleRate: 5,
  learningRate: 1,
  repulsionStrength: 1,
  init: 'spectral' as UmapInit,
  knn: 'auto' as KnnMethod,
  exactKnnLimit: 16_384,
  seed: 0,
  sliceMs: 25,
} as const;

/** The paper's epoch schedule: many epochs for small inputs, fewer (each costlier) for large ones. */
export function defaultEpochs(n: number): number {
  return n <= 10_000 ? 500 : Math.max(200, Math.round((500 * 10_000) / n));
}

// ────────────────────────────────────────────────────────────────────────────── random numbers

/** Mulberry32: a 32-bit-state generator; small, fast and good enough for sampling. */
export class Random {
  #s: number;
  constructor(seed: number) {
    // Spread small seeds (0, 1, 2 …) over the state space so nearby seeds give unrelated streams.
    this.#s = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) | 0;
  }
  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

// ────────────────────────────────────────────────────────────────────────────── cooperation

const STAGE_SPAN: Record<UmapStage, readonly [number, number]> = {
  normalise: [0, 0.02],
  knn: [0.02, 0.5],
  graph: [0.5, 0.53],
  init: [0.53, 0.6],
  optimise: [0.6, 1],
};

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The feature map computation was aborted.', 'AbortError');
}

/** Resolves on the next macrotask: setImmediate in Node, a MessageChannel in pages and workers (setTimeout clamps to 4 ms). */
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    if (typeof setImmediate === 'function') {
      setImmediate(resolve);
    } else if (typeof MessageChannel === 'function') {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    } else {
      setTimeout(resolve, 0);
    }
  });
}

/**
 * Paces a long computation: `due()` is a cheap clock check for hot loops; `yield()` reports
 * progress, gives the event loop a turn and throws if the signal was aborted meanwhile.
 */
export class Pacer {
  #last = now();
  readonly #sliceMs: number;
  constructor(
    readonly signal: AbortSignal | undefined,
    readonly onProgress: ((p: UmapProgress) => void) | undefined,
    sliceMs: number = UMAP_DEFAULTS.sliceMs,
  ) {
    this.#sliceMs = sliceMs;
  }
  due(): boolean {
    return now() - this.#last >= this.#sliceMs;
  }
  throwIfAborted(): void {
    if (this.signal?.aborted === true) throw abortError(this.signal);
  }
  report(stage: UmapStage, done: number, total: number): void {
    if (this.onProgress === undefined) return;
    const [lo, hi] = STAGE_SPAN[stage];
    const f = total > 0 ? Math.min(1, done / total) : 1;
    this.onProgress({ stage, done, total, fraction: lo + (hi - lo) * f });
  }
  async yield(stage: UmapStage, done: number, total: number): Promise<void> {
    this.report(stage, done, total);
    this.throwIfAborted();
    await nextTask();
    this.throwIfAborted();
    this.#last = now();
  }
}

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
function cosineDistance(x: Float32Array, d: number, i: number, j: number): number {
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
function heapOffer(indices: Int32Array, distances: Float32Array, base: number, k: number, j: number, dist: number, flags?: Uint8Array): boolean {
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

/** Like heapOffer but skips j when it is already in the heap (NN-descent meets pairs repeatedly). */
function heapOfferUnique(indices: Int32Array, distances: Float32Array, base: number, k: number, j: number, dist: number, flags?: Uint8Array): boolean {
  if (!(dist < (distances[base] ?? -Infinity))) return false;
  for (let s = 0; s < k; s++) if (indices[base + s] === j) return false;
  return heapOffer(indices, distances, base, k, j, dist, flags);
}

/** Turns every row's heap into an ascending list (in place), ties by index. */
function sortRows(g: KnnGraph): void {
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

function emptyKnn(n: number, k: number): KnnGraph {
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

// ────────────────────────────────────────────────────────────────────────────── fuzzy simplicial set

export interface LocalMetric {
  /** ρ_i: distance to the nearest neighbour at positive distance (0 if all are at 0). */
  readonly rho: Float32Array;
  /** σ_i: the bandwidth solving Σ_j exp(−max(0, d_ij − ρ_i)/σ_i) = log2 k. */
  readonly sigma: Float32Array;
}

const SIGMA_ITERATIONS = 64;
const SIGMA_TOLERANCE = 1e-5;
/**
 * Floor for σ_i as a fraction of the mean neighbour distance: when ρ_i's ties already give
 * Σ ≥ log2 k (many duplicates) no σ solves the equation and it would shrink to 0.
 */
const SIGMA_FLOOR = 1e-3;

/** ρ and σ per row (§3.1): ρ makes every point locally connected, σ normalises its neighbourhood. */
export function smoothKnnDistances(g: KnnGraph): LocalMetric {
  const { n, k, distances } = g;
  const target = Math.log2(k);
  const rho = new Float32Array(n);
  const sigma = new Float32Array(n);
  let meanAll = 0;
  for (let e = 0; e < n * k; e++) meanAll += distances[e] ?? 0;
  meanAll /= n * k;
  for (let i = 0; i < n; i++) {
    const base = i * k;
    let r = 0;
    let mean = 0;
    for (let s = 0; s < k; s++) {
      const dist = distances[base + s] ?? 0;
      mean += dist;
      if (r === 0 && dist > 0) r = dist;
    }
    mean /= k;
    rho[i] = r;
    const sum = (sg: number): number => {
      let acc = 0;
      for (let s = 0; s < k; s++) acc += Math.exp(-Math.max(0, (distances[base + s] ?? 0) - r) / sg);
      return acc;
    };
    // Bisection on σ (Σ grows with σ): double until it brackets the target, then halve the bracket.
    let lo = 0;
    let hi = Infinity;
    let sg = 1;
    for (let it = 0; it < SIGMA_ITERATIONS; it++) {
      const v = sum(sg);
      if (Math.abs(v - target) < SIGMA_TOLERANCE) break;
      if (v > target) {
        hi = sg;
        sg = (lo + hi) / 2;
      } else {
        lo = sg;
        sg = hi === Infinity ? sg * 2 : (lo + hi) / 2;
      }
    }
    const floor = SIGMA_FLOOR * (mean > 0 ? mean : meanAll);
    sigma[i] = Math.max(sg, floor);
  }
  return { rho, sigma };
}

/**
 * A symmetric weighted graph as directed COO edges, both directions of every undirected edge,
 * sorted by head then tail.
 */
export interface FuzzyGraph {
  readonly n: number;
  readonly heads: Int32Array;
  readonly tails: Int32Array;
  readonly weights: Float32Array;
}

/**
 * The fuzzy simplicial set (§3.1): directed memberships μ_{i→j} = exp(−max(0, d_ij − ρ_i)/σ_i),
 * combined by the probabilistic t-conorm (fuzzy union) w_ij = μ_{i→j} + μ_{j→i} − μ_{i→j}·μ_{j→i}.
 */
export function fuzzySimplicialSet(g: KnnGraph, metric: LocalMetric): FuzzyGraph {
  const { n, k, indices, distances } = g;
  const mu = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const r = metric.rho[i] ?? 0;
    const sg = metric.sigma[i] ?? 1;
    for (let s = 0; s < k; s++) {
      const e = i * k + s;
      mu[e] = (indices[e] ?? -1) < 0 ? 0 : Math.exp(-Math.max(0, (distances[e] ?? 0) - r) / sg);
    }
  }
  const membership = (i: number, j: number): number => {
    for (let s = 0; s < k; s++) if (indices[i * k + s] === j) return mu[i * k + s] ?? 0;
    return 0;
  };
  // Undirected edges first (at most n·k), then both directions laid out by head with a counting
  // sort, each head's tails in ascending order.
  const uHead = new Int32Array(n * k);
  const uTail = new Int32Array(n * k);
  const uWeight = new Float32Array(n * k);
  const degree = new Int32Array(n + 1);
  let m = 0;
  for (let i = 0; i < n; i++) {
    for (let s = 0; s < k; s++) {
      const j = indices[i * k + s] ?? -1;
      if (j < 0 || j === i) continue;
      const a = mu[i * k + s] ?? 0;
      const b = membership(j, i);
      // Count each undirected edge once: from the smaller index when both lists hold it.
      if (b > 0 && j < i) continue;
      const w = a + b - a * b;
      if (!(w > 0)) continue;
      uHead[m] = i;
      uTail[m] = j;
      uWeight[m] = w;
      m++;
      degree[i + 1] = (degree[i + 1] ?? 0) + 1;
      degree[j + 1] = (degree[j + 1] ?? 0) + 1;
    }
  }
  for (let i = 0; i < n; i++) degree[i + 1] = (degree[i + 1] ?? 0) + (degree[i] ?? 0);
  const fill = degree.slice(0, n);
  const heads = new Int32Array(2 * m);
  const tails = new Int32Array(2 * m);
  const weights = new Float32Array(2 * m);
  const place = (h: number, t: number, w: number): void => {
    const at = fill[h] ?? 0;
    fill[h] = at + 1;
    heads[at] = h;
    tails[at] = t;
    weights[at] = w;
  };
  for (let e = 0; e < m; e++) {
    place(uHead[e] ?? 0, uTail[e] ?? 0, uWeight[e] ?? 0);
    place(uTail[e] ?? 0, uHead[e] ?? 0, uWeight[e] ?? 0);
  }
  for (let i = 0; i < n; i++) {
    // Insertion sort by tail: a head has about k to 2k edges.
    const lo = degree[i] ?? 0;
    const hi = degree[i + 1] ?? 0;
    for (let p = lo + 1; p < hi; p++) {
      const t = tails[p] ?? 0;
      const w = weights[p] ?? 0;
      let q = p - 1;
      for (; q >= lo && (tails[q] ?? 0) > t; q--) {
        tails[q + 1] = tails[q] ?? 0;
        weights[q + 1] = weights[q] ?? 0;
      }
      tails[q + 1] = t;
      weights[q + 1] = w;
    }
  }
  return { n, heads, tails, weights };
}

// ────────────────────────────────────────────────────────────────────────────── initial layout

/**
 * Eigen-decomposition of a small symmetric p × p matrix (row-major) by cyclic Jacobi rotations.
 * Returns eigenvalues descending and the matching eigenvectors as columns of `vectors`.
 */
export function symmetricEigen(matrix: Float64Array, p: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(p * p);
  for (let i = 0; i < p; i++) v[i * p + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < p; i++) for (let j = i + 1; j < p; j++) off += (a[i * p + j] ?? 0) ** 2;
    if (off < 1e-30) break;
    for (let i = 0; i < p; i++) {
      for (let j = i + 1; j < p; j++) {
        const aij = a[i * p + j] ?? 0;
        if (Math.abs(aij) < 1e-300) continue;
        const aii = a[i * p + i] ?? 0;
        const ajj = a[j * p + j] ?? 0;
        // The rotation angle that zeroes a_ij: tan 2θ = 2 a_ij / (a_jj − a_ii).
        const theta = (ajj - aii) / (2 * aij);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let r = 0; r < p; r++) {
          const ari = a[r * p + i] ?? 0;
          const arj = a[r * p + j] ?? 0;
          a[r * p + i] = c * ari - s * arj;
          a[r * p + j] = s * ari + c * arj;
        }
        for (let r = 0; r < p; r++) {
          const air = a[i * p + r] ?? 0;
          const ajr = a[j * p + r] ?? 0;
          a[i * p + r] = c * air - s * ajr;
          a[j * p + r] = s * air + c * ajr;
        }
        for (let r = 0; r < p; r++) {
          const vri = v[r * p + i] ?? 0;
          const vrj = v[r * p + j] ?? 0;
          v[r * p + i] = c * vri - s * vrj;
          v[r * p + j] = s * vri + c * vrj;
        }
      }
    }
  }
  const order = Array.from({ length: p }, (_, i) => i).sort((i, j) => (a[j * p + j] ?? 0) - (a[i * p + i] ?? 0));
  const values = Float64Array.from(order, (i) => a[i * p + i] ?? 0);
  const vectors = new Float64Array(p * p);
  order.forEach((src, dst) => {
    for (let r = 0; r < p; r++) vectors[r * p + dst] = v[r * p + src] ?? 0;
  });
  return { values, vectors };
}

/** Orthonormalises the p columns of the n × p block `q` (column-major) against `fixed` and each other. */
function orthonormalise(q: Float64Array[], fixed: Float64Array | undefined, rng: Random): void {
  for (let c = 0; c < q.length; c++) {
    const col = q[c];
    if (col === undefined) continue;
    // Two passes of modified Gram–Schmidt: one pass loses orthogonality when columns nearly coincide.
    for (let pass = 0; pass < 2; pass++) {
      const against = fixed === undefined ? q.slice(0, c) : [fixed, ...q.slice(0, c)];
      for (const o of against) {
        let dot = 0;
        for (let i = 0; i < col.length; i++) dot += (col[i] ?? 0) * (o[i] ?? 0);
        for (let i = 0; i < col.length; i++) col[i] = (col[i] ?? 0) - dot * (o[i] ?? 0);
      }
    }
    let norm = 0;
    for (let i = 0; i < col.length; i++) norm += (col[i] ?? 0) ** 2;
    norm = Math.sqrt(norm);
    if (norm < 1e-12) {
      // The column collapsed into the others' span: restart it from noise.
      for (let i = 0; i < col.length; i++) col[i] = rng.normal();
      c--;
      continue;
    }
    for (let i = 0; i < col.length; i++) col[i] = (col[i] ?? 0) / norm;
  }
}

/** Result of the spectral layout: coordinates and how far its eigenvectors converged. */
export interface SpectralLayout {
  /** n × 2, row-major. */
  readonly coords: Float32Array;
  /** Ritz values of I − L for the two coordinates (1 − the Laplacian eigenvalues). */
  readonly eigenvalues: readonly [number, number];
  /** Largest ‖A q − θ q‖ of the two Ritz pairs at exit. */
  readonly residual: number;
  readonly iterations: number;
}

/**
 * Spectral layout (§4.1): the eigenvectors of the symmetric normalised Laplacian
 * L = I − D^{-1/2} W D^{-1/2} with the 2nd and 3rd smallest eigenvalues. Computed by subspace
 * iteration on A = (I + D^{-1/2} W D^{-1/2}) / 2 (spectrum in [0, 1], largest first) with the
 * trivial eigenvector D^{1/2}·1 projected out, a block of 2 + 4 oversampling vectors, and a
 * Rayleigh–Ritz step every 10 iterations until both residuals are below `tolerance`.
 * Disconnected graphs have one eigenvalue 1 per component; the block then finds component
 * indicators, which the SGD spreads apart.
 */
export async function spectralLayout(
  graph: FuzzyGraph,
  rng: Random,
  pacer?: Pacer,
  maxIterations = 300,
  tolerance = 1e-4,
): Promise<SpectralLayout> {
  const { n, heads, tails, weights } = graph;
  const degree = new Float64Array(n);
  for (let e = 0; e < heads.length; e++) degree[heads[e] ?? 0] = (degree[heads[e] ?? 0] ?? 0) + (weights[e] ?? 0);
  const invSqrt = Float64Array.from(degree, (v) => (v > 0 ? 1 / Math.sqrt(v) : 0));
  const trivial = Float64Array.from(degree, (v) => Math.sqrt(v));
  let tn = 0;
  for (const v of trivial) tn += v * v;
  tn = Math.sqrt(tn);
  for (let i = 0; i < n; i++) trivial[i] = (trivial[i] ?? 0) / (tn || 1);
  const scaled = Float64Array.from(weights, (w, e) => w * (invSqrt[heads[e] ?? 0] ?? 0) * (invSqrt[tails[e] ?? 0] ?? 0));
  const apply = (src: Float64Array, dst: Float64Array): void => {
    for (let i = 0; i < n; i++) dst[i] = 0.5 * (src[i] ?? 0);
    for (let e = 0; e < heads.length; e++) {
      const h = heads[e] ?? 0;
      dst[h] = (dst[h] ?? 0) + 0.5 * (scaled[e] ?? 0) * (src[tails[e] ?? 0] ?? 0);
    }
  };
  const p = Math.min(6, n - 1);
  let q: Float64Array[] = Array.from({ length: p }, () => Float64Array.from({ length: n }, () => rng.normal()));
  orthonormalise(q, trivial, rng);
  let z: Float64Array[] = q.map(() => new Float64Array(n));
  let values: Float64Array = new Float64Array(p);
  let residual = Infinity;
  let it = 0;
  for (; it < maxIterations; it++) {
    for (let c = 0; c < p; c++) apply(q[c] ?? new Float64Array(n), z[c] ?? new Float64Array(n));
    const ritz = it % 10 === 9 || it === maxIterations - 1;
    if (ritz) {
      // Rayleigh–Ritz: H = Qᵀ A Q, rotate Q onto H's eigenvectors, measure residuals of the top two.
      const h = new Float64Array(p * p);
      for (let r = 0; r < p; r++) {
        for (let c = 0; c < p; c++) {
          let s = 0;
          const qr = q[r] ?? new Float64Array(n);
          const zc = z[c] ?? new Float64Array(n);
          for (let i = 0; i < n; i++) s += (qr[i] ?? 0) * (zc[i] ?? 0);
          h[r * p + c] = s;
        }
      }
      for (let r = 0; r < p; r++) for (let c = r + 1; c < p; c++) h[r * p + c] = h[c * p + r] = 0.5 * ((h[r * p + c] ?? 0) + (h[c * p + r] ?? 0));
      const eig = symmetricEigen(h, p);
      values = eig.values;
      const rotate = (block: Float64Array[]): Float64Array[] =>
        Array.from({ length: p }, (_, c) => {
          const out = new Float64Array(n);
          for (let r = 0; r < p; r++) {
            const coef = eig.vectors[r * p + c] ?? 0;
            const src = block[r] ?? out;
            for (let i = 0; i < n; i++) out[i] = (out[i] ?? 0) + coef * (src[i] ?? 0);
          }
          return out;
        });
      q = rotate(q);
      z = rotate(z);
      residual = 0;
      for (let c = 0; c < Math.min(2, p); c++) {
        let s = 0;
        const th = values[c] ?? 0;
        const qc = q[c] ?? new Float64Array(n);
        const zc = z[c] ?? new Float64Array(n);
        for (let i = 0; i < n; i++) s += ((zc[i] ?? 0) - th * (qc[i] ?? 0)) ** 2;
        residual = Math.max(residual, Math.sqrt(s));
      }
      if (residual < tolerance) break;
    }
    const next = z;
    z = q;
    q = next;
    orthonormalise(q, trivial, rng);
    if (pacer?.due() === true) await pacer.yield('init', it, maxIterations);
  }
  const coords = new Float32Array(n * 2);
  for (let c = 0; c < 2; c++) {
    const col = q[Math.min(c, p - 1)] ?? new Float64Array(n);
    for (let i = 0; i < n; i++) coords[i * 2 + c] = col[i] ?? 0;
  }
  // A's eigenvalue θ maps back to I − L's as 2θ − 1.
  return { coords, eigenvalues: [2 * (values[0] ?? 0) - 1, 2 * (values[1] ?? 0) - 1], residual, iterations: it + 1 };
}

/** The first two principal components of the (unit) rows, by subspace iteration on the covariance. */
export async function pcaLayout(x: Float32Array, n: number, d: number, rng: Random, pacer?: Pacer, iterations = 60): Promise<Float32Array> {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) mean[t] = (mean[t] ?? 0) + (x[i * d + t] ?? 0) / n;
  const p = Math.min(4, d);
  const q = Array.from({ length: p }, () => Float64Array.from({ length: d }, () => rng.normal()));
  const proj = new Float64Array(n);
  const cov = async (v: Float64Array, out: Float64Array): Promise<void> => {
    // C v = Σ_i (x_i − μ)(x_i − μ)ᵀ v / n, without forming the centred matrix.
    let mv = 0;
    for (let t = 0; t < d; t++) mv += (mean[t] ?? 0) * (v[t] ?? 0);
    for (let i = 0; i < n; i++) {
      let s = -mv;
      for (let t = 0, o = i * d; t < d; t++) s += (x[o + t] ?? 0) * (v[t] ?? 0);
      proj[i] = s;
      if ((i & 255) === 0 && pacer?.due() === true) await pacer.yield('init', 0, 1);
    }
    out.fill(0);
    let ps = 0;
    for (let i = 0; i < n; i++) {
      const s = proj[i] ?? 0;
      ps += s;
      for (let t = 0, o = i * d; t < d; t++) out[t] = (out[t] ?? 0) + s * (x[o + t] ?? 0);
    }
    for (let t = 0; t < d; t++) out[t] = ((out[t] ?? 0) - ps * (mean[t] ?? 0)) / n;
  };
  orthonormalise(q, undefined, rng);
  for (let it = 0; it < iterations; it++) {
    for (let c = 0; c < p; c++) {
      const src = q[c] ?? new Float64Array(d);
      const out = new Float64Array(d);
      await cov(src, out);
      q[c] = out;
    }
    orthonormalise(q, undefined, rng);
    pacer?.report('init', it, iterations);
  }
  // Subspace iteration leaves the block spanning the top components; rotate to the components.
  const cq: Float64Array[] = [];
  for (const v of q) {
    const out = new Float64Array(d);
    await cov(v, out);
    cq.push(out);
  }
  const h = new Float64Array(p * p);
  for (let r = 0; r < p; r++) {
    for (let c = 0; c < p; c++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += (q[r]?.[t] ?? 0) * (cq[c]?.[t] ?? 0);
      h[r * p + c] = s;
    }
  }
  const eig = symmetricEigen(h, p);
  const coords = new Float32Array(n * 2);
  for (let c = 0; c < Math.min(2, p); c++) {
    const dir = new Float64Array(d);
    for (let r = 0; r < p; r++) for (let t = 0; t < d; t++) dir[t] = (dir[t] ?? 0) + (eig.vectors[r * p + c] ?? 0) * (q[r]?.[t] ?? 0);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += ((x[i * d + t] ?? 0) - (mean[t] ?? 0)) * (dir[t] ?? 0);
      coords[i * 2 + c] = s;
    }
  }
  return coords;
}

/** Rescales a layout so its largest |coordinate| is `extent` and adds tiny noise (to separate coincident points). */
function prepareInitial(coords: Float32Array, extent: number, rng: Random): void {
  let m = 0;
  for (const v of coords) m = Math.max(m, Math.abs(v));
  const scale = m > 0 && Number.isFinite(m) ? extent / m : 0;
  for (let i = 0; i < coords.length; i++) coords[i] = (coords[i] ?? 0) * scale + 1e-4 * extent * rng.normal();
}

// ────────────────────────────────────────────────────────────────────────────── embedding curve

/**
 * Fits a, b of Φ(d) = 1 / (1 + a·d^{2b}) to the target membership ψ(d) = 1 for d ≤ minDist and
 * exp(−(d − minDist)/spread) beyond (Definition 11), by Levenberg–Marquardt least squares on 300
 * points of [0, 3·spread]. For minDist 0.1, spread 1 this gives a ≈ 1.577, b ≈ 0.895.
 */
export function fitCurveParams(minDist: number, spread: number): { a: number; b: number } {
  const m = 300;
  const xs = Float64Array.from({ length: m }, (_, i) => (3 * spread * i) / (m - 1));
  const ys = Float64Array.from(xs, (x) => (x <= minDist ? 1 : Math.exp(-(x - minDist) / spread)));
  const loss = (a: number, b: number): number => {
    let s = 0;
    for (let i = 0; i < m; i++) s += (1 / (1 + a * (xs[i] ?? 0) ** (2 * b)) - (ys[i] ?? 0)) ** 2;
    return s;
  };
  let a = 1;
  let b = 1;
  let lambda = 1e-3;
  let current = loss(a, b);
  for (let it = 0; it < 500; it++) {
    // Normal equations JᵀJ δ = −Jᵀr for the 2 parameters, damped by λ·diag(JᵀJ).
    let jaa = 0, jab = 0, jbb = 0, ga = 0, gb = 0; // prettier-ignore
    for (let i = 0; i < m; i++) {
      const x = xs[i] ?? 0;
      if (x === 0) continue;
      const u = x ** (2 * b);
      const den = 1 + a * u;
      const r = 1 / den - (ys[i] ?? 0);
      const da = -u / (den * den);
      const db = (-a * u * 2 * Math.log(x)) / (den * den);
      jaa += da * da;
      jab += da * db;
      jbb += db * db;
      ga += da * r;
      gb += db * r;
    }
    let improved = false;
    for (let tries = 0; tries < 30 && !improved; tries++) {
      const haa = jaa * (1 + lambda);
      const hbb = jbb * (1 + lambda);
      const det = haa * hbb - jab * jab;
      const stepA = (-ga * hbb + gb * jab) / det;
      const stepB = (-gb * haa + ga * jab) / det;
      const na = a + stepA;
      const nb = b + stepB;
      const l = na > 0 && nb > 0 ? loss(na, nb) : Infinity;
      if (l < current) {
        const gain = current - l;
        a = na;
        b = nb;
        current = l;
        lambda = Math.max(lambda / 3, 1e-12);
        improved = true;
        if (gain < 1e-14 * Math.max(1, current)) return { a, b };
      } else {
        lambda *= 4;
      }
    }
    if (!improved) break;
  }
  return { a, b };
}

// ────────────────────────────────────────────────────────────────────────────── SGD

export interface OptimiseParameters {
  readonly a: number;
  readonly b: number;
  readonly nEpochs: number;
  readonly negativeSampleRate: number;
  readonly learningRate: number;
  readonly repulsionStrength: number;
}

/** Per-coordinate gradient clip: the paper's safeguard against huge steps from near-coincident points. */
const CLIP = 4;
const clip = (v: number): number => (v > CLIP ? CLIP : v < -CLIP ? -CLIP : v);

/** Pushes point i away from `count` uniformly drawn points (the repulsive half of the loss). */
function repel(y: Float32Array, i: number, n: number, count: number, alpha: number, a: number, b: number, twoGammaB: number, rng: Random): void {
  let yi0 = y[2 * i] ?? 0;
  let yi1 = y[2 * i + 1] ?? 0;
  for (let s = 0; s < count; s++) {
    const c = rng.int(n);
    if (c === i) continue;
    const dx = yi0 - (y[2 * c] ?? 0);
    const dy = yi1 - (y[2 * c + 1] ?? 0);
    const d2 = dx * dx + dy * dy;
    if (!(d2 > 0)) continue;
    // −∂/∂y_i of −γ·log(1 − Φ) = 2γb / (d²(1 + a·d^{2b})) · (y_i − y_c); the 0.001 keeps it finite.
    // exp(b·ln d²) rather than Math.pow: the same value, 1.7× faster in V8 (this is the SGD's hot loop).
    const coef = twoGammaB / ((0.001 + d2) * (1 + a * Math.exp(b * Math.log(d2))));
    yi0 += alpha * clip(coef * dx);
    yi1 += alpha * clip(coef * dy);
  }
  y[2 * i] = yi0;
  y[2 * i + 1] = yi1;
}

/**
 * SGD on the cross entropy between the graph and the embedding (§3.2, Algorithm 5). Each edge
 * {i, j} is sampled with frequency proportional to its weight — deterministically, every w_max/w
 * epochs: the paper's "sample with probability w" without its variance. A sample takes the
 * attractive term's gradient step for both ends (equal and opposite, so the pair's midpoint stays
 * put), then pushes each end away from `negativeSampleRate` uniformly drawn points, which do not
 * move. α decays linearly to 0. `y` is n × 2, updated in place.
 *
 * Moving both ends matters: moving only the head, with both directions as edges, lets a strongly
 * bound pair whose steps overshoot leapfrog each other and drift off the map together.
 */
export async function optimiseLayout(y: Float32Array, graph: FuzzyGraph, params: OptimiseParameters, rng: Random, pacer?: Pacer): Promise<void> {
  const { n, heads, tails, weights } = graph;
  const { a, b, nEpochs, negativeSampleRate, learningRate, repulsionStrength } = params;
  let wMax = 0;
  for (const w of weights) wMax = Math.max(wMax, w);
  // Each undirected edge once (head < tail); edges sampled less than once over the run are dropped.
  const keep: number[] = [];
  for (let e = 0; e < weights.length; e++) if ((heads[e] ?? 0) < (tails[e] ?? 0) && (weights[e] ?? 0) >= wMax / nEpochs) keep.push(e);
  const m = keep.length;
  const head = Int32Array.from(keep, (e) => heads[e] ?? 0);
  const tail = Int32Array.from(keep, (e) => tails[e] ?? 0);
  const period = Float64Array.from(keep, (e) => wMax / (weights[e] ?? wMax));
  const nextSample = Float64Array.from(period);
  const twoAB = 2 * a * b;
  const twoGammaB = 2 * repulsionStrength * b;
  for (let epoch = 0; epoch < nEpochs; epoch++) {
    const alpha = learningRate * (1 - epoch / nEpochs);
    for (let e = 0; e < m; e++) {
      if ((nextSample[e] ?? 0) > epoch + 1) continue;
      nextSample[e] = (nextSample[e] ?? 0) + (period[e] ?? 1);
      const i = head[e] ?? 0;
      const j = tail[e] ?? 0;
      const dx = (y[2 * i] ?? 0) - (y[2 * j] ?? 0);
      const dy = (y[2 * i + 1] ?? 0) - (y[2 * j + 1] ?? 0);
      const d2 = dx * dx + dy * dy;
      if (d2 > 0) {
        // −∂/∂y_i of −log Φ = −2ab·d^{2(b−1)} / (1 + a·d^{2b}) · (y_i − y_j); y_j gets the opposite.
        const pw = Math.exp(b * Math.log(d2));
        const coef = (-twoAB * (pw / d2)) / (1 + a * pw);
        const sx = alpha * clip(coef * dx);
        const sy = alpha * clip(coef * dy);
        y[2 * i] = (y[2 * i] ?? 0) + sx;
        y[2 * i + 1] = (y[2 * i + 1] ?? 0) + sy;
        y[2 * j] = (y[2 * j] ?? 0) - sx;
        y[2 * j + 1] = (y[2 * j + 1] ?? 0) - sy;
      }
      repel(y, i, n, negativeSampleRate, alpha, a, b, twoGammaB, rng);
      repel(y, j, n, negativeSampleRate, alpha, a, b, twoGammaB, rng);
      if ((e & 1023) === 0 && pacer?.due() === true) await pacer.yield('optimise', epoch + e / m, nEpochs);
    }
  }
  pacer?.report('optimise', nEpochs, nEpochs);
}

// ────────────────────────────────────────────────────────────────────────────── pipeline

/** Moves an n × 2 layout into [0, 1]² with one scale for both axes (the map keeps its aspect), centred. */
export function toUnitSquare(y: Float32Array): Float32Array {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity; // prettier-ignore
  for (let i = 0; i + 1 < y.length; i += 2) {
    const px = y[i] ?? 0;
    const py = y[i + 1] ?? 0;
    minX = Math.min(minX, px);
    maxX = Math.max(maxX, px);
    minY = Math.min(minY, py);
    maxY = Math.max(maxY, py);
  }
  const span = Math.max(maxX - minX, maxY - minY);
  const out = new Float32Array(y.length);
  if (!(span > 0) || !Number.isFinite(span)) return out.fill(0.5);
  const offX = (1 - (maxX - minX) / span) / 2;
  const offY = (1 - (maxY - minY) / span) / 2;
  for (let i = 0; i + 1 < y.length; i += 2) {
    // Clamp: float rounding can land a hair outside [0, 1], which the map contract forbids.
    out[i] = Math.min(1, Math.max(0, offX + ((y[i] ?? 0) - minX) / span));
    out[i + 1] = Math.min(1, Math.max(0, offY + ((y[i + 1] ?? 0) - minY) / span));
  }
  return out;
}

function positiveInteger(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) throw new FeatureCatalogError(`${name} must be a positive integer; got ${String(v)}.`);
}

function checkNumber(name: string, v: number, ok: boolean, expected: string): void {
  if (!ok || Number.isNaN(v)) throw new FeatureCatalogError(`UMAP option ${name} must be ${expected}; got ${String(v)}.`);
}

/** All intermediate results of a run (for tests and diagnostics). */
export interface UmapResult {
  /** n × 2 in [0, 1]², row-major. */
  readonly embedding: Float32Array;
  readonly knn: KnnGraph;
  readonly knnMethod: 'exact' | 'nn-descent';
  readonly graph: FuzzyGraph;
  readonly metric: LocalMetric;
  readonly a: number;
  readonly b: number;
  readonly nEpochs: number;
  readonly init: UmapInit;
}

/**
 * UMAP of the rows of `data` (n × d, row-major) under cosine distance into [0, 1]².
 * Throws ShapeMismatchError when data.length ≠ n·d, FeatureCatalogError for a non-finite value
 * or an invalid option, and the signal's reason (an AbortError by default) when aborted.
 */
export async function umap(data: Float32Array, n: number, d: number, options: UmapOptions = {}): Promise<UmapResult> {
  positiveInteger('The number of rows', n);
  positiveInteger('The row length', d);
  if (data.length !== n * d) {
    throw new ShapeMismatchError(`Expected ${n} rows × ${d} = ${n * d} values (row-major), got ${data.length}. Pass W_dec as [dSae, dIn].`);
  }
  const o = { ...UMAP_DEFAULTS, ...options };
  checkNumber('nNeighbors', o.nNeighbors, Number.isInteger(o.nNeighbors) && o.nNeighbors >= 2, 'an integer ≥ 2');
  checkNumber('minDist', o.minDist, o.minDist >= 0 && o.minDist < 3 * o.spread, 'in [0, 3·spread)');
  checkNumber('spread', o.spread, o.spread > 0 && Number.isFinite(o.spread), 'a positive number');
  checkNumber('negativeSampleRate', o.negativeSampleRate, Number.isInteger(o.negativeSampleRate) && o.negativeSampleRate >= 0, 'a non-negative integer');
  checkNumber('learningRate', o.learningRate, o.learningRate > 0 && Number.isFinite(o.learningRate), 'a positive number');
  checkNumber('repulsionStrength', o.repulsionStrength, o.repulsionStrength >= 0 && Number.isFinite(o.repulsionStrength), 'a non-negative number');
  checkNumber('exactKnnLimit', o.exactKnnLimit, o.exactKnnLimit >= 0, 'a non-negative number');
  checkNumber('sliceMs', o.sliceMs, o.sliceMs >= 0, 'a non-negative number');
  if (!['spectral', 'pca', 'random'].includes(o.init)) throw new FeatureCatalogError(`UMAP option init must be 'spectral', 'pca' or 'random'; got ${String(o.init)}.`);
  if (!['auto', 'exact', 'nn-descent'].includes(o.knn)) throw new FeatureCatalogError(`UMAP option knn must be 'auto', 'exact' or 'nn-descent'; got ${String(o.knn)}.`);
  const nEpochs = options.nEpochs ?? defaultEpochs(n);
  checkNumber('nEpochs', nEpochs, Number.isInteger(nEpochs) && nEpochs >= 1, 'a positive integer');
  if (n < 2) throw new FeatureCatalogError(`A map needs at least 2 rows; got ${n}.`);

  const pacer = new Pacer(options.signal, options.onProgress, o.sliceMs);
  pacer.throwIfAborted();
  const rng = new Random(o.seed);
  const k = Math.min(o.nNeighbors, n - 1);

  // Check and normalise in chunks of rows: at 65k × 4096 each pass is ~0.3 s, too long unbroken.
  pacer.report('normalise', 0, n);
  const x = o.normaliseInPlace === true ? data : new Float32Array(data);
  for (let r0 = 0; r0 < n; r0 += 256) {
    const r1 = Math.min(n, r0 + 256);
    for (let i = r0 * d; i < r1 * d; i++) {
      if (!Number.isFinite(x[i] ?? 0)) {
        throw new FeatureCatalogError(`Row ${Math.floor(i / d)} has a non-finite value (${String(x[i])}) at column ${i % d}; the decoder weights are corrupt. Reload or re-export them.`);
      }
    }
    normaliseRows(x.subarray(r0 * d, r1 * d), r1 - r0, d, true);
    if (pacer.due()) await pacer.yield('normalise', r1, n);
  }
  await pacer.yield('knn', 0, 1);

  const knnMethod = o.knn === 'exact' || (o.knn === 'auto' && n <= o.exactKnnLimit) ? 'exact' : 'nn-descent';
  const knn = knnMethod === 'exact' ? await exactKnn(x, n, d, k, pacer) : await nnDescentKnn(x, n, d, k, rng, pacer);

  pacer.report('graph', 0, 1);
  const metric = smoothKnnDistances(knn);
  const graph = fuzzySimplicialSet(knn, metric);
  await pacer.yield('graph', 1, 1);

  // Spectral needs a few more points than its block; tiny inputs start from random positions.
  const init: UmapInit = o.init === 'spectral' && n <= 8 ? 'random' : o.init;
  let y: Float32Array;
  if (init === 'spectral') y = (await spectralLayout(graph, rng, pacer)).coords;
  else if (init === 'pca') y = await pcaLayout(x, n, d, rng, pacer);
  else y = Float32Array.from({ length: 2 * n }, () => rng.next() * 2 - 1);
  let finite = true;
  for (const v of y) finite &&= Number.isFinite(v);
  if (!finite) y = Float32Array.from({ length: 2 * n }, () => rng.next() * 2 - 1);
  prepareInitial(y, 10, rng);
  pacer.report('init', 1, 1);

  const { a, b } = fitCurveParams(o.minDist, o.spread);
  await optimiseLayout(y, graph, { a, b, nEpochs, negativeSampleRate: o.negativeSampleRate, learningRate: o.learningRate, repulsionStrength: o.repulsionStrength }, rng, pacer);
  return { embedding: toUnitSquare(y), knn, knnMethod, graph, metric, a, b, nEpochs, init };
}
