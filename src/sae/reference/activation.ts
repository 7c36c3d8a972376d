/**
 * CPU reference: from pre-activations to sparse codes, for every architecture. The semantics of
 * record: the GPU kernels and the golden fixtures are checked against these.
 */
import type { SaeConfig } from '../config.js';
import { codeOrder, codesFromLists, type SparseCodes } from '../codes.js';

type Candidate = { index: number; value: number };

/**
 * The `count` best (value desc, index asc) of `values[begin..end)` that pass `keep`, via a
 * bounded min-heap: O(n log count), no full sort (a JS sort of 65k values costs ~44 ms).
 */
export function selectTop(
  values: Float32Array,
  begin: number,
  end: number,
  count: number,
  keep: (v: number) => boolean,
): Candidate[] {
  const heap: Candidate[] = [];
  // heap[0] is the worst kept candidate; "worse" = later in code order.
  const worse = (a: Candidate, b: Candidate): boolean => codeOrder(a.value, a.index, b.value, b.index) > 0;
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && worse(heap[l] as Candidate, heap[m] as Candidate)) m = l;
      if (r < heap.length && worse(heap[r] as Candidate, heap[m] as Candidate)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m] as Candidate, heap[i] as Candidate];
      i = m;
    }
  };
  if (count <= 0) return heap;
  for (let j = begin; j < end; j++) {
    const v = values[j] ?? NaN;
    if (!keep(v)) continue;
    const c = { index: j - begin, value: v };
    if (heap.length < count) {
      heap.push(c);
      for (let i = heap.length - 1; i > 0; ) {
        const p = (i - 1) >> 1;
        if (!worse(heap[i] as Candidate, heap[p] as Candidate)) break;
        [heap[i], heap[p]] = [heap[p] as Candidate, heap[i] as Candidate];
        i = p;
      }
    } else if (worse(heap[0] as Candidate, c)) {
      heap[0] = c;
      siftDown(0);
    }
  }
  return heap;
}

const isPositive = (v: number): boolean => v > 0;
const isFinite = (v: number): boolean => Number.isFinite(v);

function listOf(cands: Candidate[]): { indices: number[]; values: number[] } {
  return { indices: cands.map((c) => c.index), values: cands.map((c) => c.value) };
}

/** Per-token top-k, in either order of ReLU and top-k (see `ActivationOrder`). */
function topkCodes(config: SaeConfig, pre: Float32Array, tokens: number, nonFinite: Uint8Array): SparseCodes {
  const { dSae } = config;
  const k = config.k ?? 0;
  const lists = [];
  for (let t = 0; t < tokens; t++) {
    if (nonFinite[t] === 1) {
      lists.push({ indices: [], values: [] });
      continue;
    }
    const begin = t * dSae;
    if (config.activationOrder === 'topk-then-relu') {
      // SAELens TopK: top k of the raw pre-activations, then ReLU; zeros are not stored.
      const top = selectTop(pre, begin, begin + dSae, k, isFinite).filter((c) => c.value > 0);
      lists.push(listOf(top));
    } else {
      // sparsify: ReLU first, then top k; the zeros ReLU made are not stored.
      lists.push(listOf(selectTop(pre, begin, begin + dSae, k, isPositive)));
    }
  }
  return codesFromLists(lists, finiteListOf(nonFinite));
}

/**
 * Goodfire's batch top-k: ReLU, then the k·T' largest values of the flattened [T', dSae] batch of
 * the T' finite tokens (ties by flattened index ascending), zero the rest.
 */
function batchTopkCodes(config: SaeConfig, pre: Float32Array, tokens: number, nonFinite: Uint8Array): SparseCodes {
  const { dSae } = config;
  const finiteRows: number[] = [];
  for (let t = 0; t < tokens; t++) if (nonFinite[t] !== 1) finiteRows.push(t);
  const flat = new Float32Array(finiteRows.length * dSae);
  finiteRows.forEach((t, r) => flat.set(pre.subarray(t * dSae, (t + 1) * dSae), r * dSae));
  const keepCount = (config.k ?? 0) * finiteRows.length;
  const top = selectTop(flat, 0, flat.length, keepCount, isPositive);
  const lists = Array.from({ length: tokens }, () => ({ indices: [] as number[], values: [] as number[] }));
  for (const c of top) {
    const row = finiteRows[Math.floor(c.index / dSae)] ?? 0;
    const list = lists[row];
    list?.indices.push(c.index % dSae);
    list?.values.push(c.value);
  }
  return codesFromLists(lists, finiteListOf(nonFinite));
}

/** ReLU (every positive pre-activation) or JumpReLU (relu(pre) · (pre > threshold)). */
function thresholdCodes(
  config: SaeConfig,
  pre: Float32Array,
  tokens: number,
  nonFinite: Uint8Array,
  threshold: Float32Array | undefined,
): SparseCodes {
  const { dSae } = config;
  const lists = [];
  for (let t = 0; t < tokens; t++) {
    const indices: number[] = [];
    const values: number[] = [];
    if (nonFinite[t] !== 1) {
      for (let f = 0; f < dSae; f++) {
        const v = pre[t * dSae + f] ?? NaN;
        const theta = threshold === undefined ? 0 : (threshold[f] ?? 0);
        // JumpReLU as SAELens computes it: relu(pre) · (pre > threshold)
        if (v > theta && v > 0) {
          indices.push(f);
          values.push(v);
        }
      }
    }
    lists.push({ indices, values });
  }
  return codesFromLists(lists, finiteListOf(nonFinite));
}

function finiteListOf(nonFinite: Uint8Array): number[] {
  const out: number[] = [];
  nonFinite.forEach((flag, t) => {
    if (flag === 1) out.push(t);
  });
  return out;
}

/** Sparse codes from pre-activations [T][dSae], per the config's architecture. */
export function activate(
  config: SaeConfig,
  weights: { readonly threshold?: Float32Array | undefined },
  pre: Float32Array,
  tokens: number,
  nonFinite: Uint8Array,
): SparseCodes {
  switch (config.architecture) {
    case 'topk':
      return topkCodes(config, pre, tokens, nonFinite);
    case 'batchtopk':
      return batchTopkCodes(config, pre, tokens, nonFinite);
    case 'relu':
      return thresholdCodes(config, pre, tokens, nonFinite, undefined);
    case 'jumprelu':
      return thresholdCodes(config, pre, tokens, nonFinite, weights.threshold);
  }
}
