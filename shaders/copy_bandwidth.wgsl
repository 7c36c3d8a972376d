// Plain vec4 copy: the memory-bandwidth roofline the benchmark measures on each adapter
// (bytes read + written per second), against which encode's effective GB/s is judged.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * WG + gid.x;
  if (i < arrayLength(&src)) {
    dst[i] = src[i];
  }
}
