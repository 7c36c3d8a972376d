// Sparse compaction, step 2 of 3: one workgroup turns the per-token (greater, equal) counts of
// compact_count.wgsl into CSR row offsets (T + 1 entries) and per-token tie budgets.
// Ties at the threshold key are taken in flattened order (token-major, index ascending), the
// batch top-k tie rule: in batch mode token t takes
//   budget[t] = clamp(ties_needed − (equal counts of tokens before t), 0, equal[t]);
// in per-token mode each token has its own ties_needed; ReLU / nonzero have no ties.
// kept[t] = greater[t] + budget[t], and offsets are the exclusive scan of kept. Tokens are
// scanned in blocks of WG with a running carry, so T is not limited by the workgroup size.
// Needs lib/select_keys.wgsl (SelectState) prepended.

const WG: u32 = 256u;

struct Params {
  tokens: u32,
  mode: u32,
  per_token: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> counts: array<vec2<u32>>;          // [T] (greater, equal)
@group(0) @binding(2) var<storage, read> state: array<SelectState>;         // [selections]
@group(0) @binding(3) var<storage, read_write> offsets: array<u32>;         // [T + 1]
@group(0) @binding(4) var<storage, read_write> budgets: array<u32>;         // [T]

var<workgroup> scan: array<u32, WG>;
var<workgroup> carry: vec2<u32>; // (kept, equal) of all earlier blocks

// Inclusive Hillis–Steele scan of `v` over the workgroup; uniform control flow only.
fn inclusive_scan(v: u32, lid: u32) -> u32 {
  scan[lid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var add = 0u;
    if (lid >= off) {
      add = scan[lid - off];
    }
    workgroupBarrier();
    scan[lid] += add;
    workgroupBarrier();
  }
  let r = scan[lid];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    carry = vec2<u32>(0u);
  }
  workgroupBarrier();
  let blocks = (P.tokens + WG - 1u) / WG;
  for (var blk = 0u; blk < blocks; blk++) {
    let t = blk * WG + lid;
    var c = vec2<u32>(0u);
    if (t < P.tokens) {
      c = counts[t];
    }
    let base = carry;
    let eq_before = base.y + inclusive_scan(c.y, lid) - c.y;
    var budget = 0u;
    if (P.mode == 0u && t < P.tokens) {
      if (P.per_token == 1u) {
        budget = min(c.y, state[t].rank);
      } else {
        let need = state[0].rank;
        budget = min(c.y, need - min(need, eq_before));
      }
    }
    let kept = c.x + budget;
    let kept_incl = inclusive_scan(kept, lid);
    if (t < P.tokens) {
      offsets[t] = base.x + kept_incl - kept;
      budgets[t] = budget;
    }
    // The last thread's inclusive values are the block totals; every thread read `carry`
    // before the scans' barriers, so it can be advanced now.
    if (lid == WG - 1u) {
      carry = vec2<u32>(base.x + kept_incl, eq_before + c.y);
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    offsets[P.tokens] = carry.x;
  }
}
