// Scatters a chunk of an input-major weight matrix — rows i0 .. i0+rows of W[dIn][dSae], as
// files like Goodfire's W or SAELens' W_enc store it — into one feature-major shard
// [shardRows][dInPad] while the file streams in, so the transposed matrix is never built on
// the host. Bits are moved, not values: f32 words as is; 16-bit weights (f16/bf16, packed two
// per u32) are re-paired so each thread owns one whole destination word and no atomics are
// needed (i0 is even and dInPad a multiple of 8, so pairs never straddle a word).

override WG: u32 = 64;
// 1: 16-bit weights packed two per u32; 0: 32-bit weights.
override HALF: u32 = 0;

struct Params {
  d_sae: u32,
  rows: u32,        // input rows in this chunk
  i0: u32,          // first input row (even when HALF)
  d_in_pad: u32,
  row_start: u32,   // first feature of the shard
  shard_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn half_at(e: u32) -> u32 {
  return (src[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let f = gid.x;            // feature within the shard
  let r = gid.y;            // input row (32-bit) or row pair (16-bit) within the chunk
  if (f >= p.shard_rows) { return; }
  let col = p.row_start + f;
  if (HALF == 0u) {
    if (r >= p.rows) { return; }
    dst[f * p.d_in_pad + p.i0 + r] = src[r * p.d_sae + col];
    return;
  }
  let r0 = 2u * r;
  if (r0 >= p.rows) { return; }
  let lo = half_at(r0 * p.d_sae + col);
  var hi = 0u;
  if (r0 + 1u < p.rows) { hi = half_at((r0 + 1u) * p.d_sae + col); }
  dst[(f * p.d_in_pad + p.i0 + r0) >> 1u] = lo | (hi << 16u);
}
