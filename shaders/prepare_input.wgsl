// Input processing before the encoder, one workgroup per token (CPU reference:
// src/sae/reference/input.ts). In order: a fixed input scale, the run-time normalisation
// (constant-norm-rescale or layer-norm, SAELens), the b_dec subtraction; writes sae_in with the
// row padded to dInPad, and the per-token inverse transform that decode applies. A row holding
// a NaN or ±Inf is flagged in `transform` (selection then gives it no features) and written as
// zeros, so no NaN reaches kernels that compilers may build with fast-math.
// Needs lib/select_keys.wgsl (is_finite) and a reduce_*.wgsl (workgroup_sum4) prepended.

override WG: u32 = 256u;
override NORM: u32 = 0u;       // 0: none, 1: constant-norm-rescale, 2: layer-norm
override SUB_B_DEC: u32 = 0u;  // 1: sae_in = x - b_dec

const LAYER_NORM_EPS: f32 = 1e-5;

struct Params {
  d_in: u32,
  d_in_pad: u32,
  tokens: u32,
  input_scale: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;               // [T][dIn]
@group(0) @binding(2) var<storage, read> b_dec: array<f32>;           // [dIn]
@group(0) @binding(3) var<storage, read_write> sae_in: array<f32>;    // [T][dInPad]
// Per token: (outScale, outShift, nonFinite flag, unused): decode returns x̂·outScale + outShift.
@group(0) @binding(4) var<storage, read_write> transform: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let base = t * P.d_in;
  var part = vec4<f32>(0.0); // (Σx, Σx², non-finite count, 0) of the scaled input
  for (var i = lid; i < P.d_in; i += WG) {
    let v = x[base + i];
    if (is_finite(v)) {
      let s = v * P.input_scale;
      part += vec4<f32>(s, s * s, 0.0, 0.0);
    } else {
      part.z += 1.0;
    }
  }
  let sums = workgroup_sum4(part, lid);
  let n = f32(P.d_in);
  let bad = sums.z > 0.0;
  var scale = P.input_scale;
  var shift = 0.0;
  var out_scale = 1.0 / P.input_scale;
  var out_shift = 0.0;
  if (NORM == 1u) {
    let norm = sqrt(sums.y);
    if (norm > 0.0) {
      scale = P.input_scale * sqrt(n) / norm;
    }
    out_scale = 1.0 / scale;
  } else if (NORM == 2u) {
    let mean = sums.x / n;
    // Second pass for Σ(s − mean)²: the one-pass Σs² − n·mean² loses digits in f32.
    var dev = vec4<f32>(0.0);
    for (var i = lid; i < P.d_in; i += WG) {
      let d = x[base + i] * P.input_scale - mean;
      dev.x += d * d;
    }
    let ss = workgroup_sum4(dev, lid).x;
    // unbiased std, as torch.std
    let sd = sqrt(ss / max(n - 1.0, 1.0));
    let div = sd + LAYER_NORM_EPS;
    scale = P.input_scale / div;
    shift = -mean / div;
    // SAELens undoes layer_norm with std, not std + eps (so decode is not an exact inverse)
    out_scale = sd / P.input_scale;
    out_shift = mean / P.input_scale;
  }
  let out_base = t * P.d_in_pad;
  for (var i = lid; i < P.d_in_pad; i += WG) {
    var v = 0.0;
    if (!bad && i < P.d_in) {
      v = x[base + i] * scale + shift;
      if (SUB_B_DEC == 1u) {
        v -= b_dec[i];
      }
    }
    sae_in[out_base + i] = v;
  }
  if (lid == 0u) {
    transform[t] = vec4<f32>(out_scale, out_shift, select(0.0, 1.0, bad), 0.0);
  }
}
