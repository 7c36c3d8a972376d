// Weight access, f32 storage. Rows are padded to a multiple of 8 elements (dInPad), so one
// "group" g of row r is 8 consecutive weights = two vec4<f32> loads (16-byte aligned).
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

@group(0) @binding(1) var<storage, read> W: array<vec4<f32>>;

fn load_w8(row: u32, g: u32, groups_per_row: u32) -> W8 {
  let i = (row * groups_per_row + g) * 2u;
  return W8(W[i], W[i + 1u]);
}
