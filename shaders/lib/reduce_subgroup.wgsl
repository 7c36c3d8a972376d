// Workgroup sum of a vec4 with subgroupAdd: one partial per subgroup in workgroup memory, then
// a short serial sum. The subgroup size is read with subgroupAdd(1u) so the function needs no
// entry-point builtins; 1-D workgroups are split into consecutive subgroups on every driver we
// target, so lid / size names the subgroup. Must be called from uniform control flow.
var<workgroup> red: array<vec4<f32>, WG>;

fn workgroup_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
  let s = subgroupAdd(v);
  let size = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  if (lane == 0u) {
    red[lid / size] = s;
  }
  workgroupBarrier();
  var total = vec4<f32>(0.0);
  let groups = (WG + size - 1u) / size;
  for (var i = 0u; i < groups; i++) {
    total += red[i];
  }
  workgroupBarrier();
  return total;
}
