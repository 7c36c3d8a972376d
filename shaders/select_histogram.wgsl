// One round of a multi-workgroup radix select: a 256-bin histogram of the current 8-bit digit
// of every key that still matches the prefix chosen in earlier rounds. Batch top-k ranks all
// T×dSae values of the finite tokens together, so the histogram cannot live in one
// workgroup's memory as in topk_select: each workgroup counts one chunk of one token in
// workgroup memory and adds its non-zero bins to a global histogram (one atomicAdd per bin per
// workgroup instead of one per value). In per-token mode (`per_token` = 1, top-k with k > 256)
// every token has its own histogram and state slot; in batch mode all tokens share slot 0.
// The round (which digit) and the prefix come from the state buffer that select_bin.wgsl
// updates, so the 4 rounds run as 8 dispatches in one pass with no uniform rewrites between.
// Keys: positive floats order like their bit patterns; ≤ 0 and NaN map to 0 and never count.
// Tokens whose transform record has .z > 0 (non-finite input, prepare_input.wgsl) are skipped.
// Needs lib/select_keys.wgsl prepended.

override WG: u32 = 256u;

struct Params {
  d_sae: u32,
  tokens: u32,
  per_token: u32, // 1: one selection per token; 0: one selection over the whole batch
  chunk: u32,     // values per workgroup along dSae
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;                  // [T][dSae]
@group(0) @binding(2) var<storage, read> transform: array<vec4<f32>>;      // [T]
@group(0) @binding(3) var<storage, read> state: array<SelectState>;        // [selections]
@group(0) @binding(4) var<storage, read_write> hist: array<atomic<u32>>;   // [selections][256]

var<workgroup> local_hist: array<atomic<u32>, 256>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.y;
  let s = select(0u, t, P.per_token == 1u);
  for (var b = lid; b < 256u; b += WG) {
    atomicStore(&local_hist[b], 0u);
  }
  workgroupBarrier();
  let st = state[s];
  // flag != 0: the selection is already decided (see select_bin.wgsl): skip the pass.
  let counting = t < P.tokens && st.flag == 0u && st.round < 4u && transform[t].z <= 0.0;
  if (counting) {
    let shift = 24u - 8u * st.round;
    // Digits above the current one must equal the prefix; in round 0 nothing is fixed yet
    // (mask 0). Written as a right shift so no shift amount reaches 32.
    let mask = ~(0xffffffffu >> (8u * st.round));
    let begin = min(wg.x * P.chunk, P.d_sae);
    let end = min(begin + P.chunk, P.d_sae);
    let base = t * P.d_sae;
    // Strided by thread so neighbouring threads read neighbouring values.
    for (var i = begin + lid; i < end; i += WG) {
      let key = key_of(pre[base + i]);
      if (key != 0u && (key & mask) == st.key) {
        atomicAdd(&local_hist[(key >> shift) & 0xffu], 1u);
      }
    }
  }
  workgroupBarrier();
  for (var b = lid; b < 256u; b += WG) {
    let c = atomicLoad(&local_hist[b]);
    if (c != 0u) {
      atomicAdd(&hist[s * 256u + b], c);
    }
  }
}
