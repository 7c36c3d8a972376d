// Encode for many tokens (tiled GEMM): a 256-thread workgroup computes a tile of BM = 16·TM
// tokens × 64 features, staging 32-wide slices of sae_in and W_enc in workgroup memory; each
// thread owns TM tokens × 4 features, so every staged weight serves BM tokens and is fetched
// from memory once per token tile. TM = 4 (64 tokens) uses exactly the 16 KiB of workgroup
// memory WebGPU guarantees; TM = 2 avoids wasting half the tile on 9–32 tokens. The weight
// tile is stored [slice][feature], so the 16 feature lanes of a step read 16 consecutive vec4s
// (no bank conflicts on GPUs; ~7% faster on lavapipe than the [feature][slice] layout).
// Needs lib/encode_io.wgsl and a weights_*.wgsl (load_w8) prepended.

override TM: u32 = 2u;  // token rows per thread: 2 or 4

const BN: u32 = 64u;   // features per tile
const BKV: u32 = 8u;   // vec4s per row slice (32 floats)
override BM: u32 = 16u * TM; // tokens per tile

var<workgroup> xs: array<vec4<f32>, BM * BKV>; // [BM][BKV]
var<workgroup> ws: array<vec4<f32>, 512>;       // [BKV][BN]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = wg.x * BN;       // first local row of the tile
  let tok0 = wg.y * BM;       // first token of the tile
  let gpr = P.groups_per_row;
  let vpr = gpr * 2u;         // vec4 per token row of X
  let tx = lid % 16u;         // feature lane: rows tx, tx+16, tx+32, tx+48
  let ty = lid / 16u;         // token lane: tokens ty + 16·i, i < TM
  // acc[i] holds token ty + 16i, features tx + 16c in component c
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  let n_slices = (gpr + 3u) / 4u; // 4 groups of 8 = 32 floats per slice
  for (var s = 0u; s < n_slices; s++) {
    // Stage W: 64 rows × 4 groups, one load_w8 per thread.
    let wr = lid / 4u;
    let wgp = s * 4u + lid % 4u;
    var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
    if (row0 + wr < P.rows && wgp < gpr) {
      w = load_w8(row0 + wr, wgp, gpr);
    }
    // [BKV][BN]: the 16 feature lanes of a step read 16 consecutive vec4s
    ws[((lid % 4u) * 2u) * BN + wr] = w.lo;
    ws[((lid % 4u) * 2u + 1u) * BN + wr] = w.hi;
    // Stage X: BM tokens × 8 vec4, TM/2 vec4 per thread.
    for (var e = lid; e < BM * BKV; e += 256u) {
      let xt = e / BKV;
      let xv = s * BKV + e % BKV;
      var xval = vec4<f32>(0.0);
      if (tok0 + xt < P.tokens && xv < vpr) {
        xval = X[(tok0 + xt) * vpr + xv];
      }
      xs[e] = xval;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BKV; kk++) {
      let w0 = ws[kk * BN + tx];
      let w1 = ws[kk * BN + tx + 16u];
      let w2 = ws[kk * BN + tx + 32u];
      let w3 = ws[kk * BN + tx + 48u];
      for (var i = 0u; i < TM; i++) {
        let xa = xs[(ty + 16u * i) * BKV + kk];
        acc[i] += vec4<f32>(dot(xa, w0), dot(xa, w1), dot(xa, w2), dot(xa, w3));
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < 4u; c++) {
    let r = row0 + tx + 16u * c;
    if (r < P.rows) {
      let row = P.row_start + r;
      for (var i = 0u; i < TM; i++) {
        let t = tok0 + ty + 16u * i;
        if (t < P.tokens) {
          pre[t * P.d_sae + row] = activation(acc[i][c] + b_enc[row], row);
        }
      }
    }
  }
}
