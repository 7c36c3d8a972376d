// Parameters and inputs shared by compact_count.wgsl and compact_write.wgsl, which must walk
// each token's values with the same keep rule so that the counts, the scan and the writes agree.

struct Params {
  d_sae: u32,
  tokens: u32,
  mode: u32,      // keep rule of classify(): 0 rank, 1 ReLU, 2 nonzero
  per_token: u32, // 1: one selection per token; 0: one selection over the whole batch
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;                  // [T][dSae]
@group(0) @binding(2) var<storage, read> transform: array<vec4<f32>>;      // [T]
@group(0) @binding(3) var<storage, read> state: array<SelectState>;        // [selections]
