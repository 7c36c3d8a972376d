// Keys, keep rules and the radix-select state shared by the selection kernels (topk_select,
// select_histogram, select_bin, compact_*) and the finiteness test of prepare_input.

// One radix selection's state (select_bin writes it, the other passes read it). During the
// four rounds `key` is the key prefix chosen so far and `rank` the rank still to place inside
// it; after round 4, `key` is the threshold key and `rank` the number of ties at it to keep.
// flag: 0 selecting, 1 fewer positives than k (keep all), 2 k = 0 (keep none), 3 stopped early.
struct SelectState {
  key: u32,
  rank: u32,
  flag: u32,
  round: u32,
}


// Order-preserving key of an activation: positive floats (denormals and +Inf included) order like
// their bit patterns; ≤ 0 and NaN map to 0, which is how ReLU and NaN drop out of every
// selection. A bit test, not `v > 0.0`: GPUs that flush denormals would drop values the CPU keeps.
fn key_of(v: f32) -> u32 {
  let u = bitcast<u32>(v);
  return select(0u, u, u - 1u < 0x7f800000u);
}

// Exponent all ones = Inf or NaN; a bit test survives fast-math compilers that fold v != v.
fn is_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// (greater, equal) contribution of one value under a keep rule:
// mode 0 = rank (key above the threshold key; ties counted apart), 1 = ReLU (v > 0),
// 2 = nonzero (any sign, not ±0, finite).
fn classify(v: f32, thr: u32, mode: u32) -> vec2<u32> {
  if (mode == 0u) {
    let key = key_of(v);
    return vec2<u32>(select(0u, 1u, key > thr), select(0u, 1u, key == thr && key != 0u));
  }
  if (mode == 1u) {
    return vec2<u32>(select(0u, 1u, key_of(v) != 0u), 0u);
  }
  return vec2<u32>(select(0u, 1u, (bitcast<u32>(v) & 0x7fffffffu) != 0u && is_finite(v)), 0u);
}
