/**
 * `ReadoutStore`: every token's readout of one run and running per-feature statistics, for the
 * components. Statistics live in typed arrays sized dSae (overall and per phase), updated in
 * O(k) per token from the token's ≤ k codes; nothing else is allocated per token. Queries touch
 * only features that have fired (`topOverall`) or the codes of the last few tokens
 * (`topRecent`), with a partial selection (select.ts) instead of a sort, so they stay cheap at
 * dSae = 65,536 and 100k tokens.
 */
import { ShapeMismatchError } from '../errors.js';
import type { FeatureStats, Phase, Readouts, TokenReadout } from './types.js';
import { selectBest } from './select.js';

export const PHASES: readonly Phase[] = ['prompt', 'thinking', 'answer'];
const PHASE_INDEX: Readonly<Record<Phase, number>> = { prompt: 0, thinking: 1, answer: 2 };

export class ReadoutStore implements Readouts {
  #dSae = 0;
  #tokens: TokenReadout[] = [];
  /** Overall: tokens active, sum, max and the position of the max. */
  #count = new Uint32Array(0);
  #sum = new Float64Array(0);
  #max = new Float32Array(0);
  #maxPosition = new Int32Array(0);
  /** Per phase, phase-major: [phase * dSae + feature]. */
  #phaseCount = new Uint32Array(0);
  #phaseSum = new Float64Array(0);
  #phaseMax = new Float32Array(0);
  /** Features active at least once, in order of first activation (what `reset` and `topOverall` walk). */
  #active = new Uint32Array(0);
  #activeCount = 0;
  /** topRecent's accumulator, the features it touched and their stamps (allocated on first use). */
  #scratch: Float64Array | undefined;
  #touched: Uint32Array | undefined;
  #mark: Uint32Array | undefined;
  #epoch = 0;

  constructor(dSae = 0) {
    this.#allocate(dSae);
  }

  get dSae(): number {
    return this.#dSae;
  }

  get tokens(): readonly TokenReadout[] {
    return this.#tokens;
  }

  /** Features active at least once so far. */
  get activeFeatures(): number {
    return this.#activeCount;
  }

  #allocate(dSae: number): void {
    if (!Number.isInteger(dSae) || dSae < 0) throw new ShapeMismatchError(`dSae must be a non-negative integer, got ${String(dSae)}.`);
    this.#dSae = dSae;
    this.#count = new Uint32Array(dSae);
    this.#sum = new Float64Array(dSae);
    this.#max = new Float32Array(dSae).fill(-Infinity);
    this.#maxPosition = new Int32Array(dSae).fill(-1);
    this.#phaseCount = new Uint32Array(3 * dSae);
    this.#phaseSum = new Float64Array(3 * dSae);
    this.#phaseMax = new Float32Array(3 * dSae).fill(-Infinity);
    this.#active = new Uint32Array(dSae);
    this.#activeCount = 0;
    this.#scratch = undefined;
    this.#touched = undefined;
    this.#mark = undefined;
    this.#epoch = 0;
  }

  /**
   * Forgets every token. With a different `dSae` the arrays are reallocated; otherwise only
   * the features that fired are cleared (O(active), not O(dSae)).
   */
  reset(dSae: number = this.#dSae): void {
    this.#tokens = [];
    if (dSae !== this.#dSae) {
      this.#allocate(dSae);
      return;
    }
    const d = this.#dSae;
    for (let a = 0; a < this.#activeCount; a++) {
      const f = this.#active[a] ?? 0;
      this.#count[f] = 0;
      this.#sum[f] = 0;
      this.#max[f] = -Infinity;
      this.#maxPosition[f] = -1;
      for (let p = 0; p < 3; p++) {
        this.#phaseCount[p * d + f] = 0;
        this.#phaseSum[p * d + f] = 0;
        this.#phaseMax[p * d + f] = -Infinity;
      }
    }
    this.#activeCount = 0;
  }

  /** Adds the next token. Its features must be < dSae and its values finite. */
  append(readout: TokenReadout): void {
    const { indices, values } = readout;
    const n = indices.length;
    if (values.length !== n) throw new ShapeMismatchError(`A readout has ${n} feature indices but ${values.length} values.`);
    const d = this.#dSae;
    // Checked before any update, so a bad readout leaves the statistics as they were.
    for (let j = 0; j < n; j++) {
      const f = indices[j] ?? 0;
      if (f >= d) throw new ShapeMismatchError(`The readout at position ${readout.position} names feature ${f}, but the SAE has dSae = ${d}.`);
      if (!Number.isFinite(values[j] ?? NaN)) throw new ShapeMismatchError(`The readout at position ${readout.position} has a non-finite value for feature ${f}.`);
    }
    const phase = PHASE_INDEX[readout.phase];
    if (phase === undefined) throw new ShapeMismatchError(`The readout at position ${readout.position} has phase ${JSON.stringify(readout.phase)}; expected prompt, thinking or answer.`);
    const base = phase * d;
    for (let j = 0; j < n; j++) {
      const f = indices[j] ?? 0;
      const v = values[j] ?? 0;
      if (this.#count[f] === 0) this.#active[this.#activeCount++] = f;
      this.#count[f] = (this.#count[f] ?? 0) + 1;
      this.#sum[f] = (this.#sum[f] ?? 0) + v;
      if (v > (this.#max[f] ?? -Infinity)) {
        this.#max[f] = v;
        this.#maxPosition[f] = readout.position;
      }
      this.#phaseCount[base + f] = (this.#phaseCount[base + f] ?? 0) + 1;
      this.#phaseSum[base + f] = (this.#phaseSum[base + f] ?? 0) + v;
      if (v > (this.#phaseMax[base + f] ?? -Infinity)) this.#phaseMax[base + f] = v;
    }
    this.#tokens.push(readout);
  }

  /** Activation of `featureId` at token index `i` (0 when inactive or out of range): a scan of ≤ k codes. */
  activation(i: number, featureId: number): number {
    const t = this.#tokens[i];
    if (t === undefined) return 0;
    const { indices, values } = t;
    for (let j = 0; j < indices.length; j++) if (indices[j] === featureId) return values[j] ?? 0;
    return 0;
  }

  stats(featureId: number): FeatureStats {
    const d = this.#dSae;
    const f = featureId;
    const inRange = Number.isInteger(f) && f >= 0 && f < d;
    const count = inRange ? (this.#count[f] ?? 0) : 0;
    const phase = (p: number): { count: number; sum: number; max: number } => {
      const c = inRange ? (this.#phaseCount[p * d + f] ?? 0) : 0;
      return { count: c, sum: c > 0 ? (this.#phaseSum[p * d + f] ?? 0) : 0, max: c > 0 ? (this.#phaseMax[p * d + f] ?? 0) : 0 };
    };
    return {
      featureId,
      count,
      sum: count > 0 ? (this.#sum[f] ?? 0) : 0,
      max: count > 0 ? (this.#max[f] ?? 0) : 0,
      maxPosition: count > 0 ? (this.#maxPosition[f] ?? -1) : -1,
      byPhase: { prompt: phase(0), thinking: phase(1), answer: phase(2) },
    };
  }

  /**
   * The `n` features with the highest mean activation over the last `window` tokens (fewer
   * when fewer tokens exist), strongest first, ties by id. Only features active in the window
   * are candidates. O(window · k + touched · log n).
   */
  topRecent(n: number, window = 1): FeatureStats[] {
    const d = this.#dSae;
    const T = this.#tokens.length;
    const w = Math.min(Math.max(1, Math.floor(window)), T);
    if (w === 0 || n <= 0 || d === 0) return [];
    this.#scratch ??= new Float64Array(d);
    this.#touched ??= new Uint32Array(d);
    this.#mark ??= new Uint32Array(d);
    const scratch = this.#scratch;
    const touched = this.#touched;
    const mark = this.#mark;
    // A fresh stamp per call marks the features touched by this call without clearing `mark`.
    if (++this.#epoch === 0xffffffff) {
      mark.fill(0);
      this.#epoch = 1;
    }
    const epoch = this.#epoch;
    let m = 0;
    for (let t = T - w; t < T; t++) {
      const r = this.#tokens[t];
      if (r === undefined) continue;
      for (let j = 0; j < r.indices.length; j++) {
        const f = r.indices[j] ?? 0;
        if (mark[f] !== epoch) {
          mark[f] = epoch;
          scratch[f] = 0;
          touched[m++] = f;
        }
        scratch[f] = (scratch[f] ?? 0) + (r.values[j] ?? 0);
      }
    }
    return selectBest(touched, m, (f) => (scratch[f] ?? 0) / w, n).map((f) => this.stats(f));
  }

  /**
   * The `n` features with the highest summed activation over the run (or one phase), strongest
   * first, ties by id; only features active (in that phase) are candidates. O(active · log n).
   */
  topOverall(n: number, phase?: Phase): FeatureStats[] {
    if (n <= 0) return [];
    const d = this.#dSae;
    let score: (f: number) => number;
    if (phase === undefined) score = (f) => this.#sum[f] ?? 0;
    else {
      const p = PHASE_INDEX[phase];
      if (p === undefined) throw new ShapeMismatchError(`Unknown phase ${JSON.stringify(phase)}; expected prompt, thinking or answer.`);
      const base = p * d;
      score = (f) => ((this.#phaseCount[base + f] ?? 0) > 0 ? (this.#phaseSum[base + f] ?? 0) : NaN);
    }
    return selectBest(this.#active, this.#activeCount, score, n).map((f) => this.stats(f));
  }

  /** Activation of `featureId` over the last min(length, tokens) tokens, oldest first. */
  series(featureId: number, length: number): Float32Array {
    const T = this.#tokens.length;
    const n = Math.max(0, Math.min(Math.floor(length), T));
    const out = new Float32Array(n);
    for (let j = 0; j < n; j++) out[j] = this.activation(T - n + j, featureId);
    return out;
  }
}
