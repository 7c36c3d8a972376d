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
import { fuzzySimplicialSet, smoothKnnDistances, type FuzzyGraph, type LocalMetric } from './umap/fuzzy-graph.js';
import { pcaLayout, prepareInitial, spectralLayout } from './umap/init.js';
import { exactKnn, normaliseRows, type KnnGraph } from './umap/knn.js';
import { nnDescentKnn } from './umap/nn-descent.js';
import { fitCurveParams, optimiseLayout, toUnitSquare } from './umap/optimise.js';
import { DEFAULT_SLICE_MS, Pacer, Random, type UmapProgress } from './umap/random.js';

// The stages live in ./umap/: random.ts (generator, pacing, progress), knn.ts and nn-descent.ts
// (stage 1), fuzzy-graph.ts (2–3), init.ts (4), optimise.ts (5–6). Re-exported here unchanged.
export { fuzzySimplicialSet, smoothKnnDistances, type FuzzyGraph, type LocalMetric } from './umap/fuzzy-graph.js';
export { pcaLayout, spectralLayout, symmetricEigen, type SpectralLayout } from './umap/init.js';
export { exactKnn, normaliseRows, type KnnGraph } from './umap/knn.js';
export { nnDescentKnn } from './umap/nn-descent.js';
export { fitCurveParams, optimiseLayout, toUnitSquare, type OptimiseParameters } from './umap/optimise.js';
export { Pacer, Random, type UmapProgress, type UmapStage } from './umap/random.js';

// ────────────────────────────────────────────────────────────────────────────── options

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
  sliceMs: DEFAULT_SLICE_MS,
} as const;

/** The paper's epoch schedule: many epochs for small inputs, fewer (each costlier) for large ones. */
export function defaultEpochs(n: number): number {
  return n <= 10_000 ? 500 : Math.max(200, Math.round((500 * 10_000) / n));
}

// ────────────────────────────────────────────────────────────────────────────── pipeline

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
