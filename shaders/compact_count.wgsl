// Sparse compaction, step 1 of 3: per token, how many values pass the keep rule, so that
// compact_scan.wgsl can place every token's codes in a CSR layout before anything is written.
// One workgroup per token writes (greater, equal):
//   mode 0 (rank: batch or per-token top-k): greater = keys above the threshold key that the
//          radix select left in the state buffer; equal = keys equal to it (tie candidates —
//          how many of them a token takes depends on the tokens before it, decided by the scan);
//   mode 1 (ReLU): greater = values > 0;
//   mode 2 (nonzero: JumpReLU, whose encode already wrote pre·(pre > threshold)): greater =
//          finite values != 0.
// Tokens whose transform record has .z > 0 (non-finite input) count nothing.
// Needs lib/select_keys.wgsl prepended.

const WG: u32 = 256u;

struct Params {
  d_sae: u32,
  tokens: u32,
  mode: u32,
  per_token: u32,
}

struct SelectState {
  threshold: u32,
  ties_needed: u32,
  flag: u32,
  round: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;                  // [T][dSae]
@group(0) @binding(2) var<storage, read> transform: array<vec4<f32>>;      // [T]
@group(0) @binding(3) var<storage, read> state: array<SelectState>;        // [selections]
@group(0) @binding(4) var<storage, read_write> counts: array<vec2<u32>>;   // [T] (greater, equal)

var<workgroup> red: array<vec2<u32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let n = select(P.d_sae, 0u, transform[t].z > 0.0);
  let thr = state[select(0u, t, P.per_token == 1u)].threshold;
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
