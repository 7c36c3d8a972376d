// Encode for many tokens (tiled GEMM): a 256-thread workgroup computes a tile of BM = 16·TM
// tokens × BN features, staging 32-wide slices of sae_in and W_enc in workgroup memory; each
// thread owns TM tokens × BN/16 features, so every staged weight serves BM tokens and is
// fetched from memory once per token tile. TM = 2 (32 tokens) avoids wasting half a tile on
// 9–32 tokens; TM = 4 (64 tokens) with BN = 64 uses exactly the 16 KiB of workgroup memory
// WebGPU guarantees, and BN = 128 (24 KiB, where the device grants it) halves the staged reads
// per multiply-add (R1 at T = 64 on lavapipe: 5.2 s → 3.8 s). The weight tile is stored
// [slice][feature], so the 16 feature lanes of a step read 16 consecutive vec4s (no bank
// conflicts on GPUs; ~7% faster on lavapipe than [feature][slice]).
// Needs lib/encode_io.wgsl and a weights_*.wgsl (load_w8) prepended.

override TM: u32 = 2u;  // token rows per thread: 2 or 4

override BN: u32 = 64u; // features per tile: 64, or 128 where the device allows 24 KiB of workgroup memory
const BKV: u32 = 8u;   // vec4s per row slice (32 floats)
override BM: u32 = 16u * TM; // tokens per tile

var<workgroup> xs: array<vec4<f32>, BM * BKV>; // [BM][BKV]
var<workgroup> ws: array<vec4<f32>, BKV * BN>;  // [BKV][BN]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = wg.x * BN;       // first local row of the tile
  let tok0 = wg.y * BM;       // first token of the tile
  let gpr = P.groups_per_row;
  let vpr = gpr * 2u;         // vec4 per token row of X
  let tx = lid % 16u;         // feature lane: features tx + 16c + 64h, c < 4, h < BN/64
  let ty = lid / 16u;         // token lane: tokens ty + 16i, i < TM
  let nh = BN / 64u;
  // acc[2i + h] holds token ty + 16i, features tx + 16c + 64h in component c
  var acc = array<vec4<f32>, 8>();
  let n_slices = (gpr + 3u) / 4u; // 4 groups of 8 = 32 floats per slice
  for (var s = 0u; s < n_slices; s++) {
    // Stage W: BN rows × 4 groups, BN/64 load_w8 per thread; stored [slice][feature] so the
    // 16 feature lanes of a step read 16 consecutive vec4s (no bank conflicts on GPUs).
    for (var e = lid; e < BN * 4u; e += 256u) {
      let wr = e / 4u;
      let wgp = s * 4u + e % 4u;
      var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
      if (row0 + wr < P.rows && wgp < gpr) {
        w = load_w8(row0 + wr, wgp, gpr);
      }
      ws[((e % 4u) * 2u) * BN + wr] = w.lo;
      ws[((e % 4u) * 2u + 1u) * BN + wr] = w.hi;
    }
    // Stage X: BM tokens × 8 vec4.
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
      var xa = array<vec4<f32>, 4>();
      for (var i = 0u; i < TM; i++) {
        xa[i] = xs[(ty + 16u * i) * BKV + kk];
      }
      for (var h = 0u; h < nh; h++) {
        let wb = kk * BN + 64u * h + tx;
        let w0 = ws[wb];
        let w1 = ws[wb + 16u];
        let w2 = ws[wb + 32u];
        let w3 = ws[wb + 48u];
        for (var i = 0u; i < TM; i++) {
          acc[2u * i + h] += vec4<f32>(dot(xa[i], w0), dot(xa[i], w1), dot(xa[i], w2), dot(xa[i], w3));
        }
      }
    }
    workgroupBarrier();
  }
  for (var h = 0u; h < nh; h++) {
    for (var c = 0u; c < 4u; c++) {
      let r = row0 + tx + 16u * c + 64u * h;
      if (r < P.rows) {
        let row = P.row_start + r;
        for (var i = 0u; i < TM; i++) {
          let t = tok0 + ty + 16u * i;
          if (t < P.tokens) {
            pre[t * P.d_sae + row] = activation(acc[2u * i + h][c] + b_enc[row], row);
          }
        }
      }
    }
  }
}
