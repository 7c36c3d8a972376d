// Encode for few tokens (GEMV): pre[t][row] = sae_in[t] · W_enc[row] + b_enc[row].
// One workgroup per feature row: WG threads stride over the row's 8-weight groups (coalesced
// 16-byte loads), each thread keeps four token accumulators in one vec4 so a weight is read once
// for up to four tokens, then the workgroup sums. T = 1 streaming reads every weight exactly
// once: the kernel is bound by memory bandwidth (performance.md).
// Needs: a weights_*.wgsl (load_w8) and a reduce_*.wgsl (workgroup_sum4) prepended.

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let local_row = wg.y * P.grid_x + wg.x;
  if (local_row >= P.rows) {
    return; // uniform: the whole workgroup leaves together
  }
  let row = P.row_start + local_row;
  let gpr = P.groups_per_row;
  for (var t0 = 0u; t0 < P.tokens; t0 += 4u) {
    var acc = vec4<f32>(0.0);
    for (var g = lid; g < gpr; g += WG) {
      let w = load_w8(local_row, g, gpr);
      for (var j = 0u; j < 4u; j++) {
        let t = t0 + j;
        if (t < P.tokens) {
          let xi = (t * gpr + g) * 2u;
          acc[j] += dot(w.lo, X[xi]) + dot(w.hi, X[xi + 1u]);
        }
      }
    }
    let total = workgroup_sum4(acc, lid);
    if (lid < 4u && t0 + lid < P.tokens) {
      let t = t0 + lid;
      pre[t * P.d_sae + row] = activation(total[lid] + b_enc[row], row);
    }
  }
}
