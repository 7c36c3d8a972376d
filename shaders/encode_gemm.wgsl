// Encode for many tokens (tiled GEMM): a 256-thread workgroup computes a tile of 32 tokens ×
// 64 features, staging 32-wide slices of sae_in and W_enc in workgroup memory; each thread owns
// 2 tokens × 4 features (8 accumulators), so every staged weight is reused by 32 tokens.
// Rows of the weight tile are padded to 9 vec4 so threads reading different rows hit
// different banks. Needs a weights_*.wgsl (load_w8) prepended.

override ACT: u32 = 0u; // as in encode_gemv.wgsl

const BM: u32 = 32u;   // tokens per tile
const BN: u32 = 64u;   // features per tile
const BKV: u32 = 8u;   // vec4s per row slice (32 floats)
const WS: u32 = 9u;    // padded row stride of the weight tile, in vec4

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

var<workgroup> xs: array<vec4<f32>, 256>;      // [BM][BKV]
var<workgroup> ws: array<vec4<f32>, 576>;      // [BN][WS]

fn activation(v: f32, row: u32) -> f32 {
  if (ACT == 1u) {
    // SAELens JumpReLU: relu(pre) · (pre > threshold)
    return select(0.0, v, v > threshold[row] && v > 0.0);
  }
  return v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = wg.x * BN;       // first local row of the tile
  let tok0 = wg.y * BM;       // first token of the tile
  let gpr = P.groups_per_row;
  let vpr = gpr * 2u;         // vec4 per token row of X
  let tx = lid % 16u;         // feature lane: rows tx, tx+16, tx+32, tx+48
  let ty = lid / 16u;         // token lane: tokens ty, ty+16
  var acc0 = vec4<f32>(0.0);  // token ty,      features tx + 16c in component c
  var acc1 = vec4<f32>(0.0);  // token ty + 16
  let n_slices = (gpr + 3u) / 4u; // 4 groups of 8 = 32 floats per slice
  for (var s = 0u; s < n_slices; s++) {
    // Stage W: 64 rows × 4 groups, one load_w8 per thread.
    let wr = lid / 4u;
    let wgp = s * 4u + lid % 4u;
    var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
    if (row0 + wr < P.rows && wgp < gpr) {
      w = load_w8(row0 + wr, wgp, gpr);
    }
    ws[wr * WS + (lid % 4u) * 2u] = w.lo;
    ws[wr * WS + (lid % 4u) * 2u + 1u] = w.hi;
    // Stage X: 32 tokens × 8 vec4, one vec4 per thread.
    let xt = lid / 8u;
    let xv = s * BKV + lid % 8u;
    var xval = vec4<f32>(0.0);
    if (tok0 + xt < P.tokens && xv < vpr) {
      xval = X[(tok0 + xt) * vpr + xv];
    }
    xs[lid] = xval;
    workgroupBarrier();
    for (var kk = 0u; kk < BKV; kk++) {
      let xa = xs[ty * BKV + kk];
      let xb = xs[(ty + 16u) * BKV + kk];
      let w0 = ws[tx * WS + kk];
      let w1 = ws[(tx + 16u) * WS + kk];
      let w2 = ws[(tx + 32u) * WS + kk];
      let w3 = ws[(tx + 48u) * WS + kk];
      acc0 += vec4<f32>(dot(xa, w0), dot(xa, w1), dot(xa, w2), dot(xa, w3));
      acc1 += vec4<f32>(dot(xb, w0), dot(xb, w1), dot(xb, w2), dot(xb, w3));
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < 4u; c++) {
    let r = row0 + tx + 16u * c;
    if (r < P.rows) {
      let row = P.row_start + r;
      let ta = tok0 + ty;
      let tb = tok0 + ty + 16u;
      if (ta < P.tokens) {
        pre[ta * P.d_sae + row] = activation(acc0[c] + b_enc[row], row);
      }
      if (tb < P.tokens) {
        pre[tb * P.d_sae + row] = activation(acc1[c] + b_enc[row], row);
      }
    }
  }
}
