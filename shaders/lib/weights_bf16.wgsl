// Weight access, bf16 storage packed two per u32 (element 2j in the low half, little-endian).
// WGSL has no bf16 type: a bf16 is the upper half of an f32, so widening is a shift (low half)
// or a mask (high half) — exact, no rounding.
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;

fn bf16x2(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn load_w8(row: u32, g: u32, groups_per_row: u32) -> W8 {
  let w = W[row * groups_per_row + g];
  return W8(vec4<f32>(bf16x2(w.x), bf16x2(w.y)), vec4<f32>(bf16x2(w.z), bf16x2(w.w)));
}
