// Per-token top-k (k ≤ 256) over dSae pre-activations without a full sort: one 256-thread
// workgroup per token runs a radix select on order-preserving keys (4 passes of 8 bits, a
// 256-bin histogram in workgroup memory), which yields the exact k-th largest key; a final pass
// gathers everything above it plus the lowest-index ties, and a bitonic sort of ≤ 256 entries
// orders them by value descending, index ascending (the SparseCodes order).
// ReLU is part of the selection: only positive values get a non-zero key (key_of), so NaN,
// zeros and negatives are never selected and a token with fewer than k positives yields fewer
// codes. Needs lib/select_keys.wgsl prepended.

const WG: u32 = 256u;
const KMAX: u32 = 256u;

struct Params {
  d_sae: u32,
  k: u32,
  tokens: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;                // [T][dSae]
@group(0) @binding(2) var<storage, read_write> top_indices: array<u32>;  // [T][k]
@group(0) @binding(3) var<storage, read_write> top_acts: array<f32>;     // [T][k]
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;       // [T]
// prepare_input's per-token record; z > 0 marks an input with NaN/Inf: no features.
@group(0) @binding(5) var<storage, read> transform: array<vec4<f32>>;    // [T]

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan_gt: array<u32, WG>;
var<workgroup> scan_eq: array<u32, WG>;
var<workgroup> cand_key: array<u32, KMAX>;
var<workgroup> cand_idx: array<u32, KMAX>;
var<workgroup> sel: vec3<u32>; // (prefix, remaining, fewer-than-k flag)

// true when (ka, ia) comes before (kb, ib): value descending, index ascending
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= P.tokens) {
    return;
  }
  let base = t * P.d_sae;
  // A non-finite input token scans nothing, so it selects nothing.
  let n = select(P.d_sae, 0u, transform[t].z > 0.0);
  if (lid == 0u) {
    sel = vec3<u32>(0u, P.k, 0u);
  }
  var mask = 0u;
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    let prefix = sel.x;
    for (var i = lid; i < n; i += WG) {
      let key = key_of(pre[base + i]);
      if (key != 0u && (key & mask) == prefix) {
        atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
      }
    }
    workgroupBarrier();
    if (lid == 0u && sel.z == 0u) {
      var remaining = sel.y;
      var cum = 0u;
      var chosen = 256u;
      for (var b = 255i; b >= 0i; b--) {
        let c = atomicLoad(&hist[u32(b)]);
        if (cum + c >= remaining) {
          chosen = u32(b);
          remaining -= cum;
          break;
        }
        cum += c;
      }
      if (chosen == 256u) {
        // fewer than k positive values (only possible in round 0): keep every positive one
        sel = vec3<u32>(0u, 0u, 1u);
      } else {
        sel = vec3<u32>(prefix | (chosen << shift), remaining, 0u);
      }
    }
    workgroupBarrier();
    mask |= 0xffu << shift;
  }
  // Threshold key: take all keys above it; of the keys equal to it, the `need` lowest indices.
  let all_positive = sel.z == 1u;
  let thr = select(sel.x, 0u, all_positive);
  let need = select(sel.y, 0u, all_positive);
  let chunk = (n + WG - 1u) / WG;
  let begin = min(lid * chunk, n);
  let end = min(begin + chunk, n);
  var gt = 0u;
  var eq = 0u;
  for (var i = begin; i < end; i++) {
    let key = key_of(pre[base + i]);
    if (key > thr) {
      gt++;
    } else if (key == thr && key != 0u) {
      eq++;
    }
  }
  // Exclusive scans over threads (Hillis–Steele) keep the gathered order = index order.
  scan_gt[lid] = gt;
  scan_eq[lid] = eq;
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var a = 0u;
    var b = 0u;
    if (lid >= off) {
      a = scan_gt[lid - off];
      b = scan_eq[lid - off];
    }
    workgroupBarrier();
    scan_gt[lid] += a;
    scan_eq[lid] += b;
    workgroupBarrier();
  }
  let total_gt = scan_gt[WG - 1u];
  var out_gt = scan_gt[lid] - gt;
  var out_eq = scan_eq[lid] - eq;
  let count = total_gt + min(need, scan_eq[WG - 1u]);
  // Sentinels sort last.
  cand_key[lid] = 0u;
  cand_idx[lid] = 0xffffffffu;
  workgroupBarrier();
  for (var i = begin; i < end; i++) {
    let key = key_of(pre[base + i]);
    if (key > thr) {
      cand_key[out_gt] = key;
      cand_idx[out_gt] = i;
      out_gt++;
    } else if (key == thr && key != 0u) {
      if (out_eq < need) {
        cand_key[total_gt + out_eq] = key;
        cand_idx[total_gt + out_eq] = i;
      }
      out_eq++;
    }
  }
  workgroupBarrier();
  // Bitonic sort of the KMAX slots, one compare-exchange per thread per step.
  for (var size = 2u; size <= KMAX; size = size << 1u) {
    for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
      let partner = lid ^ stride;
      if (partner > lid) {
        let ascending_block = (lid & size) == 0u;
        let ka = cand_key[lid];
        let ia = cand_idx[lid];
        let kb = cand_key[partner];
        let ib = cand_idx[partner];
        // In an "ascending" block the earlier slot must hold the entry that comes first.
        let swap = select(before(ka, ia, kb, ib), before(kb, ib, ka, ia), ascending_block);
        if (swap) {
          cand_key[lid] = kb;
          cand_idx[lid] = ib;
          cand_key[partner] = ka;
          cand_idx[partner] = ia;
        }
      }
      workgroupBarrier();
    }
  }
  let out_base = t * P.k;
  for (var j = lid; j < P.k; j += WG) {
    if (j < count) {
      top_indices[out_base + j] = cand_idx[j];
      top_acts[out_base + j] = bitcast<f32>(cand_key[j]);
    } else {
      top_indices[out_base + j] = 0xffffffffu;
      top_acts[out_base + j] = 0.0;
    }
  }
  if (lid == 0u) {
    counts[t] = count;
  }
}
