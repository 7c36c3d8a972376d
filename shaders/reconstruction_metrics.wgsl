// Per-token reconstruction metrics, one workgroup per token (CPU reference:
// reconstructionMetrics in src/sae/reference/decode.ts): MSE = mean (x − x̂)²,
// FVU = Σ(x − x̂)² / Σ(x − mean(x))², cosine = x·x̂ / (‖x‖‖x̂‖).
// Needs a reduce_*.wgsl (workgroup_sum4) prepended.

override WG: u32 = 256u;

struct Params {
  d_in: u32,
  tokens: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;                 // [T][dIn]
@group(0) @binding(2) var<storage, read> x_hat: array<f32>;             // [T][dIn]
@group(0) @binding(3) var<storage, read_write> metrics: array<vec4<f32>>; // [T] (mse, fvu, cosine, _)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let base = t * P.d_in;
  var a = vec4<f32>(0.0); // (Σ(x−x̂)², Σx, x·x̂, ‖x̂‖²)
  var xx = 0.0;
  for (var i = lid; i < P.d_in; i += WG) {
    let xv = x[base + i];
    let hv = x_hat[base + i];
    let d = xv - hv;
    a += vec4<f32>(d * d, xv, xv * hv, hv * hv);
    xx += xv * xv;
  }
  let s = workgroup_sum4(a, lid);
  let n = f32(P.d_in);
  let mean = s.y / n;
  // Second pass for the variance: Σ(x − mean)² directly, not Σx² − n·mean² (cancellation).
  var v = vec4<f32>(0.0, xx, 0.0, 0.0);
  for (var i = lid; i < P.d_in; i += WG) {
    let d = x[base + i] - mean;
    v.x += d * d;
  }
  let s2 = workgroup_sum4(v, lid);
  if (lid == 0u) {
    metrics[t] = vec4<f32>(s.x / n, s.x / s2.x, s.z / sqrt(s2.y * s.w), 0.0);
  }
}
