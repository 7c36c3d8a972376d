// Weight access, f16 storage with the `shader-f16` feature: native vec4<f16> loads, widened to
// f32 for accumulation (f16 arithmetic is rarely faster in WGSL; the win is halved traffic).
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

@group(0) @binding(1) var<storage, read> W: array<vec4<f16>>;

fn load_w8(row: u32, g: u32, groups_per_row: u32) -> W8 {
  let i = (row * groups_per_row + g) * 2u;
  return W8(vec4<f32>(W[i]), vec4<f32>(W[i + 1u]));
}
