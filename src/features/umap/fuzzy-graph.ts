/**
 * UMAP stages 2–3 (§3.1): per-point ρ and σ smoothing of the kNN distances, and the fuzzy
 * simplicial set — directed memberships combined by fuzzy union into a symmetric weighted graph.
 */
import type { KnnGraph } from './knn.js';

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
