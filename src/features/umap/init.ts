/**
 * UMAP stage 4 (§4.1): the initial layout — spectral (normalised graph Laplacian) or PCA, both by
 * subspace iteration — and its rescaling before the SGD.
 */
import type { FuzzyGraph } from './fuzzy-graph.js';
import type { Pacer, Random } from './random.js';

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
export function prepareInitial(coords: Float32Array, extent: number, rng: Random): void {
  let m = 0;
  for (const v of coords) m = Math.max(m, Math.abs(v));
  const scale = m > 0 && Number.isFinite(m) ? extent / m : 0;
  for (let i = 0; i < coords.length; i++) coords[i] = (coords[i] ?? 0) * scale + 1e-4 * extent * rng.normal();
}
