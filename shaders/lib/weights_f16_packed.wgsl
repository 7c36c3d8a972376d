// Weight access, f16 storage read as packed u32 pairs and widened with unpack2x16float: core
// WGSL, so this path works on adapters without `shader-f16` (SwiftShader in Chromium).
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;

fn load_w8(row: u32, g: u32, groups_per_row: u32) -> W8 {
  let w = W[row * groups_per_row + g];
  return W8(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
            vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
}
