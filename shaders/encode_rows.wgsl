// Encode, one feature row per invocation — the kernel for CPU adapters (lavapipe, SwiftShader).
// There, the invocations of a workgroup are the SIMD lanes of one core: when each lane owns a
// row, the sae_in loads have the same address in every lane (a broadcast) and only the weight
// load differs per lane, where the subgroup-per-row GEMV gathers both (measured on lavapipe:
// see bench/results). Tokens go in blocks of TB (1, 2, 4 or 8), so each weight fetched serves
// TB tokens. On GPUs with real memory coalescing, encode_gemv_subgroup.wgsl and
// encode_gemm.wgsl are the right choices; the runtime picks per adapter.
// Needs a weights_*.wgsl (load_w8) prepended.

override WG: u32 = 64u;
override TB: u32 = 1u;
override ACT: u32 = 0u; // as in encode_gemv.wgsl

struct Params {
  groups_per_row: u32,
  row_start: u32,
  rows: u32,
  d_sae: u32,
  tokens: u32,
  grid_x: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b_enc: array<f32>;
@group(0) @binding(4) var<storage, read> threshold: array<f32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;

fn activation(v: f32, row: u32) -> f32 {
  if (ACT == 1u) {
    // SAELens JumpReLU: relu(pre) · (pre > threshold)
    return select(0.0, v, v > threshold[row] && v > 0.0);
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let local_row = (wg.y * P.grid_x + wg.x) * WG + lid;
  // Clamp instead of returning early: the lanes stay together, so sae_in loads stay uniform.
  let valid = local_row < P.rows;
  let r = min(local_row, P.rows - 1u);
  let row = P.row_start + r;
  let gpr = P.groups_per_row;
  for (var t0 = 0u; t0 < P.tokens; t0 += TB) {
    var a0 = vec4<f32>(0.0); // tokens t0 .. t0+3
    var a1 = vec4<f32>(0.0); // tokens t0+4 .. t0+7
    let vpr = gpr * 2u; // vec4 per token row of sae_in
    for (var g = 0u; g < gpr; g++) {
      let w = load_w8(r, g, gpr);
      let xb = t0 * vpr + g * 2u;
      // TB is a pipeline constant: the untaken branches vanish, no dynamic vector indexing
      a0.x += dot(w.lo, X[xb]) + dot(w.hi, X[xb + 1u]);
      if (TB > 1u) {
        a0.y += dot(w.lo, X[xb + vpr]) + dot(w.hi, X[xb + vpr + 1u]);
      }
      if (TB > 2u) {
        a0.z += dot(w.lo, X[xb + 2u * vpr]) + dot(w.hi, X[xb + 2u * vpr + 1u]);
        a0.w += dot(w.lo, X[xb + 3u * vpr]) + dot(w.hi, X[xb + 3u * vpr + 1u]);
      }
      if (TB > 4u) {
        a1.x += dot(w.lo, X[xb + 4u * vpr]) + dot(w.hi, X[xb + 4u * vpr + 1u]);
        a1.y += dot(w.lo, X[xb + 5u * vpr]) + dot(w.hi, X[xb + 5u * vpr + 1u]);
        a1.z += dot(w.lo, X[xb + 6u * vpr]) + dot(w.hi, X[xb + 6u * vpr + 1u]);
        a1.w += dot(w.lo, X[xb + 7u * vpr]) + dot(w.hi, X[xb + 7u * vpr + 1u]);
      }
    }
    if (valid) {
      for (var j = 0u; j < TB; j++) {
        let t = t0 + j;
        if (t < P.tokens) {
          let v = select(a1[j % 4u], a0[j % 4u], j < 4u);
          pre[t * P.d_sae + row] = activation(v + b_enc[row], row);
        }
      }
    }
  }
}
