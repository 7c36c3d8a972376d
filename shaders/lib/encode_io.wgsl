// Shared interface of the encode kernels (encode_gemv, encode_gemv_subgroup, encode_gemm):
// one dispatch per weight shard writes pre-activations [T][dSae] for the shard's rows.

// 0: write pre-activations as they are (top-k and ReLU select later);
// 1: JumpReLU, write relu(pre) · (pre > threshold) so zeros drop out at compaction.
override ACT: u32 = 0u;

struct Params {
  groups_per_row: u32, // dInPad / 8
  row_start: u32,      // global feature index of this shard's first row
  rows: u32,           // rows in this shard
  d_sae: u32,
  tokens: u32,
  grid_x: u32,         // workgroups along x; the grid is 2-D past 65,535 workgroups
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
// binding 1: the weight shard, declared by the weights_*.wgsl helper
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;        // sae_in [T][dInPad]
@group(0) @binding(3) var<storage, read> b_enc: array<f32>;          // [dSae]
@group(0) @binding(4) var<storage, read> threshold: array<f32>;      // [dSae] (JumpReLU) or unused
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;      // [T][dSae]

fn activation(v: f32, row: u32) -> f32 {
  if (ACT == 1u) {
    // SAELens JumpReLU: relu(pre) · (pre > threshold)
    return select(0.0, v, v > threshold[row] && v > 0.0);
  }
  return v;
}
