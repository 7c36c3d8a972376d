// Sparse decode: x̂[t] = Σ_j values_j · W_dec[indices_j] + b_dec, gathering only the token's k
// decoder rows (a dense decode would read all dSae rows). Each thread owns 8 consecutive output
// dims (one load_w8 group) and loops over the token's codes, accumulating in f32. Weights are
// sharded by feature range: one dispatch per shard, each adding the codes that fall in its
// range; the first initialises with b_dec, the last applies the per-token inverse input
// transform. Needs a weights_*.wgsl (load_w8) prepended.

override WG: u32 = 64u;

struct Params {
  groups_per_row: u32, // dInPad / 8
  row_start: u32,      // first feature of this shard
  rows: u32,           // features in this shard
  d_in: u32,
  tokens: u32,
  first: u32,          // 1: start from b_dec (else accumulate onto x_hat)
  last: u32,           // 1: apply outScale / outShift
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;          // [T + 1]
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read> values: array<f32>;
@group(0) @binding(5) var<storage, read> b_dec: array<f32>;            // [dIn]
@group(0) @binding(6) var<storage, read> transform: array<vec4<f32>>;  // [T] (outScale, outShift, _, _)
@group(0) @binding(7) var<storage, read_write> x_hat: array<f32>;      // [T][dIn]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let g = gid.x;            // group of 8 output dims
  let t = gid.y;
  if (g >= P.groups_per_row || t >= P.tokens) {
    return;
  }
  var lo = vec4<f32>(0.0);
  var hi = vec4<f32>(0.0);
  let d0 = g * 8u;
  let out0 = t * P.d_in;
  if (P.first == 1u) {
    for (var c = 0u; c < 4u; c++) {
      if (d0 + c < P.d_in) { lo[c] = b_dec[d0 + c]; }
      if (d0 + 4u + c < P.d_in) { hi[c] = b_dec[d0 + 4u + c]; }
    }
  } else {
    for (var c = 0u; c < 4u; c++) {
      if (d0 + c < P.d_in) { lo[c] = x_hat[out0 + d0 + c]; }
      if (d0 + 4u + c < P.d_in) { hi[c] = x_hat[out0 + d0 + 4u + c]; }
    }
  }
  let end = offsets[t + 1u];
  for (var j = offsets[t]; j < end; j++) {
    let f = indices[j];
    if (f >= P.row_start && f < P.row_start + P.rows) {
      let v = values[j];
      let w = load_w8(f - P.row_start, g, P.groups_per_row);
      lo += v * w.lo;
      hi += v * w.hi;
    }
  }
  if (P.last == 1u) {
    let tr = transform[t];
    lo = lo * tr.x + tr.y;
    hi = hi * tr.x + tr.y;
  }
  for (var c = 0u; c < 4u; c++) {
    if (d0 + c < P.d_in) { x_hat[out0 + d0 + c] = lo[c]; }
    if (d0 + 4u + c < P.d_in) { x_hat[out0 + d0 + 4u + c] = hi[c]; }
  }
}
