// Encode GEMV, one subgroup per feature row (needs `subgroups`): the lanes of a subgroup stride
// over the row's 8-weight groups (adjacent 16-byte loads) and one subgroupAdd finishes the dot
// product — no workgroup memory and no barriers. That matters twice: on GPUs a row needs no
// cross-subgroup step, and on CPU adapters (lavapipe, SwiftShader) every workgroup barrier is a
// coroutine switch, which made the barrier-reduced encode_gemv.wgsl 5× slower than memory allows.
// A workgroup owns ROWS_PER_WG consecutive rows (set from the adapter's smallest subgroup size);
// its subgroups take them in turn, so any real subgroup size works. Tokens go in blocks of TB
// (1, 2, 4 or 8, a pipeline constant, so the token loop unrolls); a row is re-read from cache
// per block. sae_in must hold a multiple of TB rows (padding rows are read, never written out).
// Needs lib/encode_io.wgsl and a weights_*.wgsl (load_w8) prepended.
diagnostic(off, subgroup_uniformity);

override WG: u32 = 64u;
override ROWS_PER_WG: u32 = 8u;
override TB: u32 = 1u;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  let n_sg = max(WG / sg_size, 1u);
  let sg_id = lid / sg_size;
  let row_begin = (wg.y * P.grid_x + wg.x) * ROWS_PER_WG;
  let gpr = P.groups_per_row;
  for (var r = sg_id; r < ROWS_PER_WG; r += n_sg) {
    let local_row = row_begin + r;
    if (local_row >= P.rows) {
      break;
    }
    let row = P.row_start + local_row;
    for (var t0 = 0u; t0 < P.tokens; t0 += TB) {
      var a0 = vec4<f32>(0.0); // tokens t0 .. t0+3
      var a1 = vec4<f32>(0.0); // tokens t0+4 .. t0+7
      let vpr = gpr * 2u; // vec4 per token row of sae_in
      for (var g = lane; g < gpr; g += sg_size) {
        let w = load_w8(local_row, g, gpr);
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
      // Reduce only the lanes the token block uses (TB is constant: the rest compiles away);
      // with short rows (dIn 1536) the reduction is a visible share of a row's work.
      var s0 = vec4<f32>(0.0);
      var s1 = vec4<f32>(0.0);
      if (TB == 1u) {
        s0.x = subgroupAdd(a0.x);
      } else if (TB == 2u) {
        s0 = vec4<f32>(subgroupAdd(a0.xy), 0.0, 0.0);
      } else {
        s0 = subgroupAdd(a0);
      }
      if (TB > 4u) {
        s1 = subgroupAdd(a1);
      }
      if (lane == 0u) {
        for (var j = 0u; j < TB; j++) {
          let t = t0 + j;
          if (t < P.tokens) {
            let v = select(s1[j % 4u], s0[j % 4u], j < 4u);
            pre[t * P.d_sae + row] = activation(v + b_enc[row], row);
          }
        }
      }
    }
  }
}
