/** Timing helpers for the benchmark: warm-up, then the median of repeated runs. */
export interface Timing {
  readonly medianMs: number;
  readonly minMs: number;
  readonly runs: number;
}

export async function time(fn: () => Promise<unknown>, { warmup = 1, runs = 5, budgetMs = 60_000 } = {}): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
    // keep the whole benchmark bounded on slow software adapters: at least 3 samples, then stop at the budget
    if (samples.length >= 3 && performance.now() - start > budgetMs) break;
  }
  samples.sort((a, b) => a - b);
  const mid = samples.length >> 1;
  const medianMs = samples.length % 2 === 1 ? (samples[mid] ?? NaN) : ((samples[mid - 1] ?? NaN) + (samples[mid] ?? NaN)) / 2;
  return { medianMs, minMs: samples[0] ?? NaN, runs: samples.length };
}
