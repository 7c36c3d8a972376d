// Workgroup sum of a vec4 (one lane per token) through workgroup memory: a tree reduction, the
// path for adapters without `subgroups`. Must be called from uniform control flow.
var<workgroup> red: array<vec4<f32>, WG>;

fn workgroup_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
    }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}
