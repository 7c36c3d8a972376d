/**
 * UMAP stages 5–6: the embedding curve Φ(d) = 1 / (1 + a·d^{2b}) fitted to min_dist/spread
 * (Definition 11), SGD on the fuzzy-set cross entropy (§3.2), and the final rescale into [0, 1]².
 */
import type { FuzzyGraph } from './fuzzy-graph.js';
import type { Pacer, Random } from './random.js';

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

// ────────────────────────────────────────────────────────────────────────────── unit square

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
