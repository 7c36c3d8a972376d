/**
 * Partial selection: the n best of many candidates without sorting them all. A min-heap of size
 * n holds the best seen so far with the worst at its root, so each candidate costs O(log n) and
 * a call over m candidates O(m log n) — for "top 20 of 65,536 features" about 20× less work
 * than a full sort, and no array of m entries to allocate.
 *
 * Order: score descending, ties by feature id ascending (the order of `SparseCodes`).
 */

/** Whether (sa, ia) ranks below (sb, ib). */
function worse(sa: number, ia: number, sb: number, ib: number): boolean {
  return sa < sb || (sa === sb && ia > ib);
}

/**
 * The ids of the `n` best of `ids[0 .. count)` by `score(id)`, best first. Candidates whose
 * score is NaN are skipped.
 */
export function selectBest(ids: ArrayLike<number>, count: number, score: (id: number) => number, n: number): number[] {
  const size = Math.max(0, Math.min(n, count));
  if (size === 0) return [];
  const heapIds = new Int32Array(size);
  const heapScores = new Float64Array(size);
  let filled = 0;
  const siftDown = (at: number): void => {
    let i = at;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < filled && worse(heapScores[l] ?? 0, heapIds[l] ?? 0, heapScores[w] ?? 0, heapIds[w] ?? 0)) w = l;
      if (r < filled && worse(heapScores[r] ?? 0, heapIds[r] ?? 0, heapScores[w] ?? 0, heapIds[w] ?? 0)) w = r;
      if (w === i) return;
      const ts = heapScores[i] ?? 0;
      const ti = heapIds[i] ?? 0;
      heapScores[i] = heapScores[w] ?? 0;
      heapIds[i] = heapIds[w] ?? 0;
      heapScores[w] = ts;
      heapIds[w] = ti;
      i = w;
    }
  };
  const siftUp = (at: number): void => {
    let i = at;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!worse(heapScores[i] ?? 0, heapIds[i] ?? 0, heapScores[p] ?? 0, heapIds[p] ?? 0)) return;
      const ts = heapScores[i] ?? 0;
      const ti = heapIds[i] ?? 0;
      heapScores[i] = heapScores[p] ?? 0;
      heapIds[i] = heapIds[p] ?? 0;
      heapScores[p] = ts;
      heapIds[p] = ti;
      i = p;
    }
  };
  // The root (worst kept) is cached: most candidates lose to it and cost one comparison.
  let rootScore = -Infinity;
  let rootId = -1;
  for (let c = 0; c < count; c++) {
    const id = ids[c] ?? 0;
    const s = score(id);
    if (Number.isNaN(s)) continue;
    if (filled < size) {
      heapScores[filled] = s;
      heapIds[filled] = id;
      siftUp(filled++);
    } else {
      if (s < rootScore || (s === rootScore && id > rootId)) continue;
      heapScores[0] = s;
      heapIds[0] = id;
      siftDown(0);
    }
    rootScore = heapScores[0] ?? 0;
    rootId = heapIds[0] ?? 0;
  }
  // Pop the worst repeatedly: the result fills from the back, best first.
  const out = new Array<number>(filled);
  for (let k = filled - 1; k >= 0; k--) {
    out[k] = heapIds[0] ?? 0;
    filled--;
    heapScores[0] = heapScores[filled] ?? 0;
    heapIds[0] = heapIds[filled] ?? 0;
    siftDown(0);
  }
  return out;
}
