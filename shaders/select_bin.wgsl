// One round of the multi-workgroup radix select, second half: from the 256-bin histogram that
// select_histogram.wgsl filled, find the bin holding the K-th largest key, fix that digit in
// the prefix, subtract the keys in higher bins from the rank still to find, and clear the
// histogram for the next round. One workgroup per selection (1 in batch mode, T in per-token
// mode), one thread per bin: a suffix scan over the bins gives each bin's "keys above" count in
// 8 barrier steps. After 4 rounds `key` is the exact threshold key and `rank` the
// number of keys equal to it to take (ties, taken in flattened index order by the compaction).
// K is computed here in round 0 so the host needs no readback: batch mode keeps k per finite
// token (k × T'), per-token mode keeps k. Decided early:
//   flag 1: fewer than K positive keys — keep every positive value (threshold key 0);
//   flag 2: K = 0 (every token non-finite) — keep nothing (threshold key 0xffffffff);
//   flag 3: the chosen bin holds exactly the keys still needed, so every key ≥ the bin's
//           lowest possible key is kept and no tie is partial: the later rounds (each a full
//           pass over the values) are skipped. With continuous data this is common by round 2.
// After round 4 the state holds (threshold key, ties needed) for every flag: keep keys above
// the threshold key, plus the first `ties needed` keys equal to it in flattened index order.
// Needs lib/select_keys.wgsl (SelectState) prepended.

const WG: u32 = 256u;

struct Params {
  k: u32,
  tokens: u32,
  per_token: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> transform: array<vec4<f32>>;      // [T]
@group(0) @binding(2) var<storage, read_write> hist: array<u32>;           // [selections][256]
@group(0) @binding(3) var<storage, read_write> state: array<SelectState>;  // [selections]

var<workgroup> suffix: array<u32, WG>;
var<workgroup> finite_tokens: atomic<u32>;
var<workgroup> chosen: vec3<u32>; // (bin, keys in higher bins, keys in the bin); bin 256 = none

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.x;
  if (lid == 0u) {
    atomicStore(&finite_tokens, 0u);
    chosen = vec3<u32>(256u, 0u, 0u);
  }
  workgroupBarrier();
  let st = state[s];
  // K for round 0: count the finite tokens this selection ranks.
  if (st.round == 0u) {
    if (P.per_token == 1u) {
      if (lid == 0u && s < P.tokens && transform[s].z <= 0.0) {
        atomicStore(&finite_tokens, 1u);
      }
    } else {
      var mine = 0u;
      for (var t = lid; t < P.tokens; t += WG) {
        mine += select(0u, 1u, transform[t].z <= 0.0);
      }
      atomicAdd(&finite_tokens, mine);
    }
  }
  // Thread j holds bin 255 - j, so an inclusive prefix scan over threads is a suffix scan over
  // bins: suffix[j] = keys in bins ≥ 255 - j.
  let bin = 255u - lid;
  let h = hist[s * 256u + bin];
  hist[s * 256u + bin] = 0u;
  suffix[lid] = h;
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var add = 0u;
    if (lid >= off) {
      add = suffix[lid - off];
    }
    workgroupBarrier();
    suffix[lid] += add;
    workgroupBarrier();
  }
  let total = suffix[WG - 1u];
  let k_total = P.k * atomicLoad(&finite_tokens);
  let remaining = select(st.rank, k_total, st.round == 0u);
  let above = suffix[lid] - h;
  // Exactly one bin satisfies this when 1 ≤ remaining ≤ total.
  if (st.flag == 0u && remaining > 0u && above < remaining && suffix[lid] >= remaining) {
    chosen = vec3<u32>(bin, above, h);
  }
  workgroupBarrier();
  if (lid == 0u && st.round < 4u) {
    var next = st;
    next.round = st.round + 1u;
    if (st.flag == 0u) {
      if (remaining == 0u) {
        next.flag = 2u;
      } else if (total < remaining) {
        // only possible in round 0: later rounds count a bin that held ≥ remaining keys
        next.flag = 1u;
      } else {
        let shift = 24u - 8u * st.round;
        next.key = st.key | (chosen.x << shift);
        next.rank = remaining - chosen.y;
        if (chosen.z == next.rank && st.round < 3u) {
          // Keys ≥ prefix (lower digits 0) are exactly the K largest: threshold = prefix − 1
          // (kept: key > threshold). A prefix of 0 (denormal keys) means every positive key.
          next.flag = 3u;
          next.key = max(next.key, 1u) - 1u;
          next.rank = 0u;
        }
      }
    }
    if (next.round == 4u) {
      // Final form read by the compaction kernels: (threshold key, ties needed).
      if (next.flag == 1u) {
        next.key = 0u;
        next.rank = 0u;
      } else if (next.flag == 2u) {
        next.key = 0xffffffffu;
        next.rank = 0u;
      }
    }
    state[s] = next;
  }
}
