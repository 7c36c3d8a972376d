/**
 * UMAP's plumbing: the seeded generator behind every random choice (one stream per run, so a seed
 * gives the same map every time) and the Pacer that slices long stages into event-loop turns,
 * reports progress and honours an AbortSignal.
 */

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

export type UmapStage = 'normalise' | 'knn' | 'graph' | 'init' | 'optimise';

export interface UmapProgress {
  readonly stage: UmapStage;
  /** Work done and total within the stage (units differ per stage: rows, iterations, epochs). */
  readonly done: number;
  readonly total: number;
  /** Rough overall fraction in [0, 1] (fixed stage weights; good enough for a progress bar). */
  readonly fraction: number;
}

/** Default milliseconds of work between yields to the event loop (UMAP_DEFAULTS.sliceMs). */
export const DEFAULT_SLICE_MS = 25;

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
    sliceMs: number = DEFAULT_SLICE_MS,
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
