// Sparse compaction, step 3 of 3: one workgroup per token writes the token's kept
// (index, value) pairs at its CSR offset, in index order. Each thread owns a contiguous chunk
// of the token's values, so one exclusive scan of per-thread (greater, equal) counts over
// threads gives both the output slot of every kept value and the rank of every tie candidate
// in index order; a tie at the threshold key is kept when its rank within the token is below
// the budget compact_scan.wgsl granted, so the lowest indices win (as in topk_select.wgsl).
// (Staging tiles in workgroup memory for coalesced reads was tried: on lavapipe its per-tile
// barriers cost far more than the uncoalesced chunk reads saved.)
// Keep rules: classify() in lib/select_keys.wgsl, shared with compact_count.wgsl, whose counts
// the scan used.
// The host sorts each token's list by value afterwards (value descending, index ascending).
// Needs lib/select_keys.wgsl and lib/compact_io.wgsl prepended.

const WG: u32 = 256u;

@group(0) @binding(4) var<storage, read> offsets: array<u32>;              // [T + 1]
@group(0) @binding(5) var<storage, read> budgets: array<u32>;              // [T]
@group(0) @binding(6) var<storage, read_write> out_indices: array<u32>;    // [nnz]
@group(0) @binding(7) var<storage, read_write> out_values: array<f32>;     // [nnz]

var<workgroup> scan: array<vec2<u32>, WG>;

// Exclusive scan of (greater, equal) pairs over the workgroup; uniform control flow only.
fn exclusive_scan2(v: vec2<u32>, lid: u32) -> vec2<u32> {
  scan[lid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var add = vec2<u32>(0u);
    if (lid >= off) {
      add = scan[lid - off];
    }
    workgroupBarrier();
    scan[lid] += add;
    workgroupBarrier();
  }
  let r = scan[lid] - v;
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let n = select(P.d_sae, 0u, transform[t].z > 0.0);
  let thr = state[select(0u, t, P.per_token == 1u)].key;
  let budget = budgets[t];
  let base = t * P.d_sae;
  let chunk = (n + WG - 1u) / WG;
  let begin = min(lid * chunk, n);
  let end = min(begin + chunk, n);
  var c = vec2<u32>(0u);
  for (var i = begin; i < end; i++) {
    c += classify(pre[base + i], thr, P.mode);
  }
  // One scan gives both the output slot and the tie rank: the ties kept before this thread are
  // the first `budget` tie candidates in index order, so kept-before = greater-before +
  // min(equal-before, budget).
  let before = exclusive_scan2(c, lid);
  var rank = before.y;
  let my_ties = min(c.y, budget - min(budget, rank));
  if (c.x + my_ties == 0u) {
    return; // nothing to write (no barrier follows)
  }
  var out = offsets[t] + before.x + min(rank, budget);
  for (var i = begin; i < end; i++) {
    let v = pre[base + i];
    let cls = classify(v, thr, P.mode);
    var keep = cls.x == 1u;
    if (cls.y == 1u) {
      keep = rank < budget;
      rank++;
    }
    if (keep) {
      out_indices[out] = i;
      out_values[out] = v;
      out++;
    }
  }
}
