// Sparse compaction, step 1 of 3: per token, how many values pass the keep rule, so that
// compact_scan.wgsl can place every token's codes in a CSR layout before anything is written.
// One workgroup per token writes (greater, equal):
//   mode 0 (rank: batch or per-token top-k): greater = keys above the threshold key that the
//          radix select left in the state buffer; equal = keys equal to it (tie candidates —
//          how many of them a token takes depends on the tokens before it, decided by the scan);
//   mode 1 (ReLU): greater = values > 0;
//   mode 2 (nonzero): greater = finite values != 0, either sign. (JumpReLU uses mode 1: its
//          encode writes relu(pre)·(pre > threshold), never negative.)
// Tokens whose transform record has .z > 0 (non-finite input) count nothing.
// Needs lib/select_keys.wgsl and lib/compact_io.wgsl prepended.

const WG: u32 = 256u;

@group(0) @binding(4) var<storage, read_write> counts: array<vec2<u32>>;   // [T] (greater, equal)

var<workgroup> red: array<vec2<u32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let n = select(P.d_sae, 0u, transform[t].z > 0.0);
  let thr = state[select(0u, t, P.per_token == 1u)].key;
  let base = t * P.d_sae;
  var c = vec2<u32>(0u);
  for (var i = lid; i < n; i += WG) {
    c += classify(pre[base + i], thr, P.mode);
  }
  red[lid] = c;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    counts[t] = red[0];
  }
}
