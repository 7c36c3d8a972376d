/**
 * Sparse feature codes in CSR form: token t's features are
 * indices[offsets[t] .. offsets[t+1]) with the matching values, sorted by value descending,
 * ties by index ascending. Exact zeros are never stored.
 */
export interface SparseCodes {
  /** Number of tokens T. */
  readonly tokens: number;
  /** Row pointers, length T + 1. */
  readonly offsets: Uint32Array;
  /** Feature ids (topIndices), concatenated per token. */
  readonly indices: Uint32Array;
  /** Feature activations (topActs), aligned with `indices`. */
  readonly values: Float32Array;
  /**
   * Tokens whose input held a NaN or ±Inf. They have no features (their decode is b_dec) and are
   * excluded from batch top-k; listed here so a caller can report them instead of guessing.
   */
  readonly nonFiniteTokens: Uint32Array;
  /**
   * Per-token inverse of the run-time input normalisation (constant-norm-rescale, layer-norm,
   * inputScale): decode returns x̂ · outScale[t] + outShift[t]. Set by encode when the SAE
   * normalises its input; absent means outScale = 1/inputScale and outShift = 0.
   */
  readonly inputTransform?: { readonly outScale: Float32Array; readonly outShift: Float32Array };
}

/** Token t's slice of the codes. */
export function tokenCodes(codes: SparseCodes, t: number): { indices: Uint32Array; values: Float32Array } {
  const begin = codes.offsets[t] ?? 0;
  const end = codes.offsets[t + 1] ?? begin;
  return { indices: codes.indices.subarray(begin, end), values: codes.values.subarray(begin, end) };
}

/** Orders (value, index) pairs: value descending, then index ascending. */
export function codeOrder(va: number, ia: number, vb: number, ib: number): number {
  if (va !== vb) return va > vb ? -1 : 1;
  return ia - ib;
}

/** Builds CSR codes from per-token lists, sorting each by value descending, ties by index ascending. */
export function codesFromLists(
  lists: ReadonlyArray<{ indices: ArrayLike<number>; values: ArrayLike<number> }>,
  nonFiniteTokens: ArrayLike<number> = [],
): SparseCodes {
  const tokens = lists.length;
  const offsets = new Uint32Array(tokens + 1);
  let total = 0;
  for (let t = 0; t < tokens; t++) {
    total += lists[t]?.indices.length ?? 0;
    offsets[t + 1] = total;
  }
  const indices = new Uint32Array(total);
  const values = new Float32Array(total);
  for (let t = 0; t < tokens; t++) {
    const list = lists[t];
    if (list === undefined) continue;
    const n = list.indices.length;
    const order = Array.from({ length: n }, (_, j) => j);
    const vals = Float32Array.from(list.values);
    order.sort((a, b) => codeOrder(vals[a] ?? 0, list.indices[a] ?? 0, vals[b] ?? 0, list.indices[b] ?? 0));
    const base = offsets[t] ?? 0;
    for (let j = 0; j < n; j++) {
      const src = order[j] ?? 0;
      indices[base + j] = list.indices[src] ?? 0;
      values[base + j] = vals[src] ?? 0;
    }
  }
  return { tokens, offsets, indices, values, nonFiniteTokens: Uint32Array.from(nonFiniteTokens) };
}
