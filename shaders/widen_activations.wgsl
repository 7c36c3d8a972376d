// Activations from a remote stream sit in a GPU ring buffer in their wire dtype (f32, f16 or
// bf16, as the server sent them). This widens `count` consecutive slots (wrapping around the
// ring) into f32 rows [count][d_in] that the SAE kernels take as input. bf16 needs no float
// unit: its bits are the upper half of an f32.

override WG: u32 = 64;
// 0: f32, 1: f16, 2: bf16
override DTYPE: u32 = 2;

struct Params {
  d_in: u32,
  first_slot: u32,
  count: u32,
  slots: u32,
  stride_words: u32,   // u32 words per ring slot
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ring: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let t = gid.y;
  if (i >= p.d_in || t >= p.count) { return; }
  let base = ((p.first_slot + t) % p.slots) * p.stride_words;
  var v: f32;
  if (DTYPE == 0u) {
    v = bitcast<f32>(ring[base + i]);
  } else {
    let word = ring[base + (i >> 1u)];
    let high = (i & 1u) == 1u;
    if (DTYPE == 1u) {
      let pair = unpack2x16float(word);
      v = select(pair.x, pair.y, high);
    } else {
      v = bitcast<f32>(select(word << 16u, word & 0xffff0000u, high));
    }
  }
  out[t * p.d_in + i] = v;
}
