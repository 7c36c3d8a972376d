/**
 * UMAP for the feature map (src/features/umap.ts), each stage against a reference computed here
 * from its definition: the kNN graph against an O(n²) float64 search, ρ/σ against their equation,
 * the fuzzy union against a + b − ab, the spectral layout against the path graph's known spectrum,
 * a/b against the values published for min_dist 0.1, and the whole map by trustworthiness
 * (Venna & Kaski 2001) and 2-D k-NN classification — on separated clusters and on Tiny-R1's W_dec.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FeatureCatalogError, ShapeMismatchError } from '../../src/errors.js';
import {
  exactKnn,
  fitCurveParams,
  fuzzySimplicialSet,
  nnDescentKnn,
  normaliseRows,
  Random,
  smoothKnnDistances,
  spectralLayout,
  umap,
  type FuzzyGraph,
  type UmapProgress,
} from '../../src/features/umap.js';
import { readSafetensors } from '../../src/formats/safetensors.js';

const SAE_DIR = new URL('../../demo/public/models/tiny-r1/sae/', import.meta.url);

function tinyR1Decoder(): { rows: Float32Array; dSae: number; dIn: number } {
  const st = readSafetensors(readFileSync(new URL('sae_weights.safetensors', SAE_DIR)));
  const w = st.tensors['W_dec']!;
  const cfg = JSON.parse(readFileSync(new URL('cfg.json', SAE_DIR), 'utf8')) as { d_sae: number; d_in: number };
  expect(w.shape).toEqual([cfg.d_sae, cfg.d_in]);
  return { rows: w.data as Float32Array, dSae: cfg.d_sae, dIn: cfg.d_in };
}

/** Deterministic normal samples for fixtures (independent of the module's generator). */
function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const u = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** `clusters` groups of directions in d dimensions: a random centre each, plus isotropic noise. */
function clusteredDirections(clusters: number, perCluster: number, d: number, noise: number, seed: number): { rows: Float32Array; labels: Int32Array } {
  const g = gaussian(seed);
  const centres = Array.from({ length: clusters }, () => {
    const c = Array.from({ length: d }, g);
    const norm = Math.hypot(...c);
    return c.map((v) => v / norm);
  });
  const n = clusters * perCluster;
  const rows = new Float32Array(n * d);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % clusters;
    labels[i] = c;
    // Random scale too: decoder rows are not unit length, and the map must not depend on it.
    const scale = 0.5 + 2 * Math.abs(g());
    for (let t = 0; t < d; t++) rows[i * d + t] = scale * (centres[c]![t]! + noise * g());
  }
  return { rows, labels };
}

/** Cosine distances from row i to all rows, in float64, straight from the definition. */
function cosineRow(rows: Float32Array, n: number, d: number, i: number): Float64Array {
  const out = new Float64Array(n);
  let ni = 0;
  for (let t = 0; t < d; t++) ni += rows[i * d + t]! ** 2;
  for (let j = 0; j < n; j++) {
    let dot = 0;
    let nj = 0;
    for (let t = 0; t < d; t++) {
      dot += rows[i * d + t]! * rows[j * d + t]!;
      nj += rows[j * d + t]! ** 2;
    }
    out[j] = 1 - dot / Math.sqrt(ni * nj);
  }
  return out;
}

/** The k nearest other rows of each row, by sorting all n cosine distances. */
function naiveKnn(rows: Float32Array, n: number, d: number, k: number): { indices: number[][]; distances: number[][] } {
  const indices: number[][] = [];
  const distances: number[][] = [];
  for (let i = 0; i < n; i++) {
    const dist = cosineRow(rows, n, d, i);
    const order = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .sort((p, q) => dist[p]! - dist[q]! || p - q);
    indices.push(order.slice(0, k));
    distances.push(order.slice(0, k).map((j) => dist[j]!));
  }
  return { indices, distances };
}

/**
 * Trustworthiness at k: 1 − 2/(nk(2n − 3k − 1)) Σ_i Σ_{j ∈ U_i} (r(i, j) − k), where U_i are the
 * layout's k nearest neighbours of i that are not among its k nearest in the input, and r(i, j) is
 * j's rank among i's input-space neighbours (1 = nearest).
 */
function trustworthiness(rows: Float32Array, n: number, d: number, xy: Float32Array, k: number): number {
  let penalty = 0;
  for (let i = 0; i < n; i++) {
    const input = cosineRow(rows, n, d, i);
    const byInput = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .sort((p, q) => input[p]! - input[q]!);
    const rank = new Map(byInput.map((j, r) => [j, r + 1]));
    const layout = (j: number): number => (xy[2 * i]! - xy[2 * j]!) ** 2 + (xy[2 * i + 1]! - xy[2 * j + 1]!) ** 2;
    const byLayout = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .sort((p, q) => layout(p) - layout(q))
      .slice(0, k);
    for (const j of byLayout) penalty += Math.max(0, rank.get(j)! - k);
  }
  return 1 - (2 / (n * k * (2 * n - 3 * k - 1))) * penalty;
}

/** Leave-one-out k-NN classification accuracy of the labels in the 2-D layout. */
function knnAccuracy(xy: Float32Array, labels: Int32Array, k: number): number {
  const n = labels.length;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const near = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .sort((p, q) => (xy[2 * i]! - xy[2 * p]!) ** 2 + (xy[2 * i + 1]! - xy[2 * p + 1]!) ** 2 - ((xy[2 * i]! - xy[2 * q]!) ** 2 + (xy[2 * i + 1]! - xy[2 * q + 1]!) ** 2))
      .slice(0, k);
    const votes = new Map<number, number>();
    for (const j of near) votes.set(labels[j]!, (votes.get(labels[j]!) ?? 0) + 1);
    const best = [...votes.entries()].sort((p, q) => q[1] - p[1])[0]![0];
    if (best === labels[i]) correct++;
  }
  return correct / n;
}

function randomLayout(n: number, seed: number): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: 2 * n }, () => r.next());
}

describe('kNN graph', () => {
  // A power-of-two and a ragged size: the blocked kernel's 4 × 4 tiles and 64-row blocks both have remainders.
  it.each([
    [256, 64, 10],
    [301, 37, 15],
  ])('exact kNN of %i rows × %i matches an O(n²) float64 search (k = %i)', async (n, d, k) => {
    const g = gaussian(n);
    const rows = Float32Array.from({ length: n * d }, g);
    const ref = naiveKnn(rows, n, d, k);
    const got = await exactKnn(normaliseRows(rows, n, d), n, d, k);
    for (let i = 0; i < n; i++) {
      expect(Array.from(got.indices.subarray(i * k, (i + 1) * k))).toEqual(ref.indices[i]);
      for (let s = 0; s < k; s++) expect(Math.abs(got.distances[i * k + s]! - ref.distances[i]![s]!)).toBeLessThan(2e-6);
    }
  });

  it("NN-descent finds ≥ 90 % of Tiny-R1's exact neighbours", async () => {
    const { rows, dSae, dIn } = tinyR1Decoder();
    const k = 15;
    const ref = naiveKnn(rows, dSae, dIn, k);
    const got = await nnDescentKnn(normaliseRows(rows, dSae, dIn), dSae, dIn, k, new Random(1));
    let hits = 0;
    for (let i = 0; i < dSae; i++) {
      const truth = new Set(ref.indices[i]);
      for (let s = 0; s < k; s++) if (truth.has(got.indices[i * k + s]!)) hits++;
      // Whatever it returns, the distances it reports are the true ones, ascending.
      const dist = cosineRow(rows, dSae, dIn, i);
      for (let s = 0; s < k; s++) {
        const j = got.indices[i * k + s]!;
        expect(j).not.toBe(i);
        expect(Math.abs(got.distances[i * k + s]! - dist[j]!)).toBeLessThan(2e-6);
        if (s > 0) expect(got.distances[i * k + s]!).toBeGreaterThanOrEqual(got.distances[i * k + s - 1]!);
      }
    }
    const recall = hits / (dSae * k);
    console.log(`NN-descent recall on Tiny-R1 W_dec (k = 15): ${recall.toFixed(4)}`);
    expect(recall).toBeGreaterThanOrEqual(0.9);
  });
});

describe('fuzzy simplicial set', () => {
  it('ρ is the nearest positive distance and σ solves Σ exp(−max(0, d − ρ)/σ) = log2 k', async () => {
    const { rows, dSae, dIn } = tinyR1Decoder();
    const k = 15;
    const knn = await exactKnn(normaliseRows(rows, dSae, dIn), dSae, dIn, k);
    const { rho, sigma } = smoothKnnDistances(knn);
    for (let i = 0; i < dSae; i++) {
      const dist = Array.from(knn.distances.subarray(i * k, (i + 1) * k));
      expect(rho[i]).toBe(dist.find((v) => v > 0) ?? 0);
      const sum = dist.reduce((acc, v) => acc + Math.exp(-Math.max(0, v - rho[i]!) / sigma[i]!), 0);
      expect(Math.abs(sum - Math.log2(k))).toBeLessThan(1e-4);
    }
  });

  it('σ stays positive when duplicates make the equation unsolvable', async () => {
    // 6 copies of one direction + others: for a copy, 5 neighbours sit at distance 0 = ρ, so
    // Σ ≥ 5 > log2(8) = 3 for every σ, and σ would otherwise collapse to 0.
    const d = 8;
    const g = gaussian(7);
    const base = Array.from({ length: d }, g);
    const rows = new Float32Array(20 * d);
    for (let i = 0; i < 20; i++) for (let t = 0; t < d; t++) rows[i * d + t] = i < 6 ? base[t]! : g();
    const knn = await exactKnn(normaliseRows(rows, 20, d), 20, d, 8);
    const { sigma } = smoothKnnDistances(knn);
    for (const s of sigma) {
      expect(s).toBeGreaterThan(0);
      expect(Number.isFinite(s)).toBe(true);
    }
  });

  it('the graph is the fuzzy union μ_ij + μ_ji − μ_ij·μ_ji, both directions, no self loops', async () => {
    const n = 120;
    const d = 12;
    const k = 10;
    const rows = Float32Array.from({ length: n * d }, gaussian(3));
    const knn = await exactKnn(normaliseRows(rows, n, d), n, d, k);
    const metric = smoothKnnDistances(knn);
    const graph = fuzzySimplicialSet(knn, metric);
    const ref = naiveKnn(rows, n, d, k);
    const mu = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      ref.indices[i]!.forEach((j, s) => mu.set(`${i},${j}`, Math.exp(-Math.max(0, ref.distances[i]![s]! - metric.rho[i]!) / metric.sigma[i]!)));
    }
    const expected = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      for (const j of ref.indices[i]!) {
        const a = mu.get(`${i},${j}`) ?? 0;
        const b = mu.get(`${j},${i}`) ?? 0;
        expected.set(`${i},${j}`, a + b - a * b);
        expected.set(`${j},${i}`, a + b - a * b);
      }
    }
    expect(graph.heads.length).toBe(expected.size);
    for (let e = 0; e < graph.heads.length; e++) {
      const key = `${graph.heads[e]},${graph.tails[e]}`;
      expect(graph.heads[e]).not.toBe(graph.tails[e]);
      expect(expected.has(key)).toBe(true);
      expect(Math.abs(graph.weights[e]! - expected.get(key)!)).toBeLessThan(1e-5);
    }
  });
});

describe('layout pieces', () => {
  it('a, b for min_dist 0.1, spread 1 are the published 1.577, 0.8951', () => {
    const { a, b } = fitCurveParams(0.1, 1);
    expect(a).toBeCloseTo(1.5769, 3);
    expect(b).toBeCloseTo(0.8951, 3);
  });

  it('a, b are a least-squares optimum of the min_dist curve (no nearby pair fits better)', () => {
    const minDist = 0.5;
    const spread = 1.5;
    const { a, b } = fitCurveParams(minDist, spread);
    const xs = Array.from({ length: 300 }, (_, i) => (3 * spread * i) / 299);
    const loss = (pa: number, pb: number): number =>
      xs.reduce((s, x) => s + (1 / (1 + pa * x ** (2 * pb)) - (x <= minDist ? 1 : Math.exp(-(x - minDist) / spread))) ** 2, 0);
    const best = loss(a, b);
    for (const [da, db] of [[1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3], [1e-3, 1e-3], [-1e-3, -1e-3]]) {
      expect(loss(a + da!, b + db!)).toBeGreaterThanOrEqual(best);
    }
  });

  it("spectral layout recovers the path graph's eigenvectors: eigenvalues cos(π/(n−1)), cos(2π/(n−1))", async () => {
    // The normalised Laplacian of the path P_n has eigenvalues 1 − cos(πj/(n−1)), j = 0 … n−1.
    const n = 20;
    const heads: number[] = [];
    const tails: number[] = [];
    for (let i = 0; i < n; i++) {
      for (const j of [i - 1, i + 1]) {
        if (j < 0 || j >= n) continue;
        heads.push(i);
        tails.push(j);
      }
    }
    const graph: FuzzyGraph = { n, heads: Int32Array.from(heads), tails: Int32Array.from(tails), weights: new Float32Array(heads.length).fill(1) };
    const layout = await spectralLayout(graph, new Random(1));
    expect(layout.eigenvalues[0]).toBeCloseTo(Math.cos(Math.PI / (n - 1)), 5);
    expect(layout.eigenvalues[1]).toBeCloseTo(Math.cos((2 * Math.PI) / (n - 1)), 5);
    // Each column v satisfies D^{-1/2} W D^{-1/2} v = λ v, checked with the matrix built here.
    const deg = Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 1 : 2));
    for (let c = 0; c < 2; c++) {
      const v = Array.from({ length: n }, (_, i) => layout.coords[2 * i + c]!);
      const lambda = layout.eigenvalues[c]!;
      for (let i = 0; i < n; i++) {
        let mv = 0;
        for (const j of [i - 1, i + 1]) if (j >= 0 && j < n) mv += v[j]! / Math.sqrt(deg[i]! * deg[j]!);
        expect(Math.abs(mv - lambda * v[i]!)).toBeLessThan(1e-4);
      }
    }
  });
});

describe('umap', () => {
  it('is deterministic per seed and differs between seeds', async () => {
    const { rows } = clusteredDirections(4, 40, 16, 0.3, 11);
    const a = await umap(rows, 160, 16, { seed: 5, nEpochs: 100 });
    const b = await umap(rows, 160, 16, { seed: 5, nEpochs: 100 });
    const c = await umap(rows, 160, 16, { seed: 6, nEpochs: 100 });
    expect(Array.from(a.embedding)).toEqual(Array.from(b.embedding));
    expect(Array.from(a.embedding)).not.toEqual(Array.from(c.embedding));
    for (const v of a.embedding) expect(v >= 0 && v <= 1).toBe(true);
  });

  it('keeps 6 separated clusters of directions apart: 2-D 5-NN accuracy ≥ 0.95, trustworthiness@10 ≥ 0.9', async () => {
    const clusters = 6;
    const per = 70;
    const d = 32;
    const n = clusters * per;
    const { rows, labels } = clusteredDirections(clusters, per, d, 0.08, 2024);
    const r = await umap(rows, n, d, { seed: 0 });
    expect(r.knnMethod).toBe('exact');
    const accuracy = knnAccuracy(r.embedding, labels, 5);
    const trust = trustworthiness(rows, n, d, r.embedding, 10);
    const baseline = trustworthiness(rows, n, d, randomLayout(n, 1), 10);
    console.log(`clusters: 5-NN accuracy ${accuracy.toFixed(3)}, T@10 ${trust.toFixed(4)} (random layout ${baseline.toFixed(4)})`);
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
    expect(trust).toBeGreaterThanOrEqual(0.9);
    expect(baseline).toBeLessThan(0.6);
    // The approximate path gives the same picture.
    const approx = await umap(rows, n, d, { seed: 0, knn: 'nn-descent' });
    expect(approx.knnMethod).toBe('nn-descent');
    expect(knnAccuracy(approx.embedding, labels, 5)).toBeGreaterThanOrEqual(0.95);
  });

  it("maps Tiny-R1's decoder with trustworthiness@10 above a measured bound, far above a random layout", async () => {
    const { rows, dSae, dIn } = tinyR1Decoder();
    const r = await umap(rows, dSae, dIn, { seed: 0 });
    const trust = trustworthiness(rows, dSae, dIn, r.embedding, 10);
    const baseline = trustworthiness(rows, dSae, dIn, randomLayout(dSae, 2), 10);
    console.log(`Tiny-R1 W_dec (${dSae} × ${dIn}): T@10 = ${trust.toFixed(4)} (random layout ${baseline.toFixed(4)})`);
    // Measured 0.775–0.785 over seeds 0–2 (PCA's 2-D projection: 0.650; random: 0.50).
    expect(trust).toBeGreaterThanOrEqual(0.74);
    expect(baseline).toBeLessThan(0.55);
  });

  it('the shipped Tiny-R1 map was computed from the shipped W_dec and keeps its trustworthiness', () => {
    const { rows, dSae, dIn } = tinyR1Decoder();
    const file = JSON.parse(readFileSync(new URL('feature_map.json', SAE_DIR), 'utf8')) as {
      xy: number[];
      provenance: { w_dec_sha256: string; trustworthiness_10: number };
    };
    const sha = createHash('sha256').update(new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength)).digest('hex');
    expect(sha, 'feature_map.json is stale: the SAE changed. Rerun `node --import tsx tools/tiny-r1/feature_map.ts`.').toBe(file.provenance.w_dec_sha256);
    const trust = trustworthiness(rows, dSae, dIn, Float32Array.from(file.xy), 10);
    expect(trust).toBeGreaterThanOrEqual(0.74);
    expect(Math.abs(trust - file.provenance.trustworthiness_10)).toBeLessThan(1e-3);
  });
});

describe('abort and bad input', () => {
  it('an already-aborted signal rejects before any work', async () => {
    const { rows } = clusteredDirections(3, 20, 8, 0.2, 1);
    const progress: UmapProgress[] = [];
    const c = new AbortController();
    c.abort();
    await expect(umap(rows, 60, 8, { signal: c.signal, onProgress: (p) => progress.push(p) })).rejects.toMatchObject({ name: 'AbortError' });
    expect(progress).toEqual([]);
  });

  it.each(['knn', 'optimise'] as const)('aborting during %s rejects within one slice with the signal’s reason', async (stage) => {
    const n = 2400;
    const d = 48;
    const rows = Float32Array.from({ length: n * d }, gaussian(9));
    const c = new AbortController();
    const reason = new Error('user closed the map');
    let abortedAt = 0;
    let stagesAfterAbort = 0;
    const started = performance.now();
    const run = umap(rows, n, d, {
      signal: c.signal,
      sliceMs: 10,
      onProgress: (p) => {
        if (abortedAt > 0) stagesAfterAbort++;
        if (p.stage === stage && abortedAt === 0) {
          abortedAt = performance.now();
          setTimeout(() => c.abort(reason), 0);
        }
      },
    });
    await expect(run).rejects.toBe(reason);
    const settled = performance.now();
    expect(abortedAt).toBeGreaterThan(started);
    expect(settled - abortedAt).toBeLessThan(1000);
    expect(stagesAfterAbort).toBeLessThan(5);
  });

  it('refuses a wrong length, non-finite weights and bad options with named errors', async () => {
    const rows = Float32Array.from({ length: 40 * 4 }, gaussian(4));
    await expect(umap(rows, 40, 5)).rejects.toBeInstanceOf(ShapeMismatchError);
    const nan = Float32Array.from(rows);
    nan[4 * 7 + 2] = Number.NaN;
    await expect(umap(nan, 40, 4)).rejects.toThrow(/Row 7 has a non-finite value/);
    await expect(umap(nan, 40, 4)).rejects.toBeInstanceOf(FeatureCatalogError);
    await expect(umap(rows.subarray(0, 4), 1, 4)).rejects.toBeInstanceOf(FeatureCatalogError);
    await expect(umap(rows, 40, 4, { nNeighbors: 1 })).rejects.toBeInstanceOf(FeatureCatalogError);
    await expect(umap(rows, 40, 4, { minDist: -1 })).rejects.toBeInstanceOf(FeatureCatalogError);
    await expect(umap(rows, 40, 4, { nEpochs: 0 })).rejects.toBeInstanceOf(FeatureCatalogError);
  });

  it('handles tiny inputs (n ≤ k) and all-zero rows', async () => {
    const rows = new Float32Array(5 * 3);
    rows.set([1, 0, 0, 0, 1, 0, 0, 0, 1], 0); // rows 3, 4 stay zero
    const r = await umap(rows, 5, 3, { seed: 1, nEpochs: 50 });
    expect(r.knn.k).toBe(4);
    expect(r.embedding.length).toBe(10);
    for (const v of r.embedding) expect(v >= 0 && v <= 1).toBe(true);
  });
});
