#!/usr/bin/python3
"""Tiny-R1 steering experiments: × → ÷ along SAE decoder directions, start positions, over-steering.

    /usr/bin/python3 tools/tiny-r1/experiments.py --model MODELDIR --sae SAEDIR --out FILE.json
                     [--curated CURATED.json] [--prompts 50] [--max-new 160] [--threads 1]

Direction: ``d = W_dec[÷ feature] - W_dec[× feature]`` (the features ``curated.json`` of
features.py picked as ``operator_divide`` / ``operator_times``; default: ``SAEDIR/../examples/
curated.json``; without one, features.py's matching is run here on 100 held-out traces).
Decoder rows have unit norm, so **strength s is in SAE activation units**: adding ``s · d``
raises the ÷ feature's contribution by s and lowers the × feature's by s. The report also gives
``|d|``, the mean residual norm at the layer, and the typical activations of both features, so s
converts to a share of the residual norm (``relative_to_residual``).

Steering: a PyTorch forward hook on ``model.model.layers[L]`` (L from the SAE's ``hook_name``)
replaces ``output[0]`` by ``h + s · d`` at every position ≥ the start (the reference server's
``add`` mode, ``loupe_server.steering``); positions count prompt + generated tokens. Starts:

* ``first-token``: the first generated position (the position of the first generated token, so
  that token itself is predicted unsteered and everything after it is steered);
* ``after-prefix``: the first generated position after R1's response prefix, as
  ``src/steer/prefix.ts`` and the server detect it — the generated text matches
  ``^\\s*(<think>\\s*)?Okay, so [^.!?\\n]*[.!?\\n]`` (for Tiny-R1: "Okay, so the user asked what
  12 × 4 - 2 is."), or generated index 48 if it never does. This is Loupe's default.

Prompts: ``corpus.operator_swap_problems(N, split="heldout")`` — ``a × b [± c [± d]]`` whose ÷
variant ``a ÷ b [± c [± d]]`` is valid and has a different value. Greedy decoding (batched,
left-padded, KV cache) up to ``--max-new`` tokens (the corpus's own traces for these prompts are
44–148 tokens; 160 truncates none of them).

Scored per output: ``well_formed`` (closes ``</think>``, "The answer is N." and EOS, N a
number); ``switched`` (N equals the ÷ variant's answer); ``original`` (N equals the × answer);
``reverted`` (N equals this prompt's unsteered answer); ``trace_divides`` (the thinking contains
÷ and no ×); ``repetitive`` (no EOS and at most 6 distinct tokens among the last 24).

Experiments (all written to ``--out``):

* (b) the sweep: s ∈ {0, 2, 4, 8, 16, 32}, both starts;
* (c) prefix effect: switch rates of the two starts at the best strength (the sweep strength
  with the highest after-prefix switch rate, ties to the smaller, and above the unsteered run's
  chance rate; first-token's best when after-prefix never beats it; first-token's own best is
  reported too);
* (b') direction variants (``--variant-strengths``, default 8, 16, 32; both starts): the same
  with other × / ÷ pairs from curated.json's ``by_variant`` — the best feature for the operator
  token, for the operand after it, for the position that predicts it, and the operator token's
  strong features (score ≥ 0.9) summed (SAEs split a context over several features; s then
  moves each of them by s);
* (d) over-steering: the sweep's strengths above the best and s = best × {4, 8, 16, 32} (only
  64, 128, 256, 512 when nothing switched), both starts: shares that stay well-formed, switch, revert to the unsteered answer, give another
  well-formed answer, or break down (no well-formed answer; the repetitive ones counted apart).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "server", "python"))

import torch  # noqa: E402

import corpus  # noqa: E402
import features  # noqa: E402

STRENGTHS = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)
OVER_FACTORS = (4, 8, 16, 32)
OVER_FALLBACK = (64.0, 128.0, 256.0, 512.0)
VARIANT_STRENGTHS = (8.0, 16.0, 32.0)
MODES = ("after-prefix", "first-token")
PREFIX_FALLBACK_TOKENS = 48
MAX_NEW = 160
BIG = 1 << 40


class SteeringHook:
    """Forward hook on one decoder layer: ``h + delta`` at positions ≥ the row's start."""

    def __init__(self, model, layer: int) -> None:
        self.delta: Optional[torch.Tensor] = None
        self.pos: Optional[torch.Tensor] = None  # [B, T] positions of the current forward
        self.start: Optional[torch.Tensor] = None  # [B]
        self.norm_sum = 0.0
        self.norm_n = 0
        self.record = False
        self.handle = model.model.layers[layer].register_forward_hook(self)

    def __call__(self, _module, _inp, out):
        h = out[0]
        assert self.pos is not None and self.start is not None
        active = self.pos >= self.start[:, None]
        if self.record and bool(active.any()):
            n = h[active].norm(dim=-1)
            self.norm_sum += float(n.sum())
            self.norm_n += int(n.numel())
        if self.delta is None or not bool(active.any()):
            return None
        return (torch.where(active.unsqueeze(-1), h + self.delta, h),) + tuple(out[1:])

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def generate(
    model, tok, hook: SteeringHook, prompts: Sequence[Sequence[int]], delta: Optional[torch.Tensor],
    mode: str, max_new: int,
) -> Tuple[List[List[int]], List[Optional[int]]]:
    """Greedy batched decoding with steering; returns the generated ids (EOS included) and, per
    row, the generated index steering started at (None if it never did)."""
    b = len(prompts)
    n = max(len(p) for p in prompts)
    ids = torch.full((b, n), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, n - len(p):] = torch.tensor(list(p))
        mask[r, n - len(p):] = 1
    plen = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    start = plen.clone() if mode == "first-token" else torch.full((b,), BIG, dtype=torch.long)
    hook.delta, hook.start, hook.pos = delta, start, pos
    logits, past = model(ids, position_ids=pos, attention_mask=mask)
    next_pos = pos[:, -1:] + 1
    out: List[List[int]] = [[] for _ in range(b)]
    texts = [""] * b
    done = torch.zeros(b, dtype=torch.bool)
    for step in range(max_new):
        nxt = logits[:, -1].argmax(-1)
        for r in range(b):
            if done[r]:
                continue
            out[r].append(int(nxt[r]))
            if mode == "after-prefix" and int(start[r]) == BIG:
                texts[r] += tok.decode([int(nxt[r])])
                if features.AFTER_PREFIX_PATTERN.match(texts[r]):
                    start[r] = int(plen[r]) + step + 1
                elif len(out[r]) >= PREFIX_FALLBACK_TOKENS:
                    start[r] = int(plen[r]) + PREFIX_FALLBACK_TOKENS
        done |= nxt == tok.eos_token_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long)], dim=1)
        hook.pos = next_pos
        logits, past = model(nxt[:, None], past_key_values=past, position_ids=next_pos, attention_mask=mask)
        next_pos = next_pos + 1
    hook.delta = None
    starts = [None if int(start[r]) == BIG else int(start[r]) - int(plen[r]) for r in range(b)]
    return out, starts


def repetitive(ids: Sequence[int], eos: int) -> bool:
    return eos not in ids and len(ids) >= 24 and len(set(ids[-24:])) <= 6


def score(tok, outs: Sequence[Sequence[int]], probs: Sequence["corpus.SwapProblem"], base: Optional[Sequence[Optional[str]]]) -> List[Dict[str, object]]:
    rows = []
    for k, (o, sp) in enumerate(zip(outs, probs)):
        text = tok.decode(o)
        ans = corpus.extract_answer(text)
        wf = ans is not None and re.fullmatch(r"\d+", ans) is not None and text.endswith(corpus.EOS)
        think = text.split(corpus.END_THINK)[0]
        rows.append(
            {
                "answer": ans,
                "well_formed": wf,
                "switched": wf and ans == sp.swapped.answer,
                "original": wf and ans == sp.problem.answer,
                "reverted": wf and base is not None and base[k] is not None and ans == base[k],
                "trace_divides": corpus.DIVIDE in think and corpus.TIMES not in think,
                "repetitive": repetitive(o, tok.eos_token_id),
                "tokens": len(o),
                "text": text,
            }
        )
    return rows


def rates(rows: Sequence[Dict[str, object]]) -> Dict[str, float]:
    n = max(1, len(rows))
    wf = [r for r in rows if r["well_formed"]]
    return {
        "n": len(rows),
        "switch_rate": round(sum(bool(r["switched"]) for r in rows) / n, 4),
        "trace_divides_rate": round(sum(bool(r["trace_divides"]) for r in rows) / n, 4),
        "well_formed_rate": round(len(wf) / n, 4),
        "original_rate": round(sum(bool(r["original"]) for r in rows) / n, 4),
        "reverted_rate": round(sum(bool(r["reverted"]) for r in rows) / n, 4),
        "other_well_formed_rate": round(sum(1 for r in wf if not r["switched"] and not r["reverted"]) / n, 4),
        "broken_rate": round(1 - len(wf) / n, 4),
        "repetitive_rate": round(sum(bool(r["repetitive"]) for r in rows) / n, 4),
        "mean_tokens": round(sum(int(r["tokens"]) for r in rows) / n, 1),
    }


def pick_features(sae_dir: str, model_dir: str, curated_path: Optional[str]) -> Tuple[Dict[str, object], Dict[str, object], str]:
    path = curated_path or os.path.join(os.path.dirname(os.path.abspath(sae_dir)), "examples", "curated.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            cur = json.load(f)
        source = os.path.abspath(path)
    else:
        an, labels, _, _, _, _ = features.analyse(model_dir, sae_dir, 100)
        cur = features.curated_matches(an, labels)
        source = "features.py matching on 100 held-out traces (no curated.json found)"
    t, d = cur.get("operator_times") or {}, cur.get("operator_divide") or {}
    if t.get("feature_id") is None or d.get("feature_id") is None or t["feature_id"] == d["feature_id"]:
        raise SystemExit(f"no distinct × / ÷ features in {source}")
    keep = ("feature_id", "label", "matched_on", "score", "precision_activation_mass", "recall", "mean_activation", "top_contexts", "by_variant")
    return {k: t.get(k) for k in keep}, {k: d.get(k) for k in keep}, source


def direction_variants(ft: Dict[str, object], fd: Dict[str, object]) -> List[Tuple[str, List[int], List[int]]]:
    """(b') other × / ÷ feature pairs from curated.json's ``by_variant``: the best feature of each
    variant (operator token, operand after it, position predicting it), and the operator token's
    strong features (score ≥ 0.9) summed."""
    bt = ft.get("by_variant") or {}
    bd = fd.get("by_variant") or {}
    out: List[Tuple[str, List[int], List[int]]] = []
    for kind, name in (("op", "operator token"), ("in_op", "operand after the operator"), ("before_op", "position predicting the operator")):
        vt, vd = bt.get(f"{kind}:{corpus.TIMES}"), bd.get(f"{kind}:{corpus.DIVIDE}")
        if vt and vd and vt["feature_id"] != vd["feature_id"]:
            out.append((f"{name}: best feature", [int(vt["feature_id"])], [int(vd["feature_id"])]))
    vt, vd = bt.get(f"op:{corpus.TIMES}"), bd.get(f"op:{corpus.DIVIDE}")
    if vt and vd:
        gt, gd = [int(x) for x in vt.get("strong_features") or []], [int(x) for x in vd.get("strong_features") or []]
        if gt and gd and not set(gt) & set(gd) and (len(gt) > 1 or len(gd) > 1):
            out.append(("operator token: all strong features (score >= 0.9), summed", gt, gd))
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--out", required=True, help="JSON report")
    ap.add_argument("--curated", default=None, help="curated.json of features.py (default SAEDIR/../examples/curated.json)")
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--split", default="heldout", choices=("heldout", "train", "any"))
    ap.add_argument("--max-new", type=int, default=MAX_NEW)
    ap.add_argument("--strengths", default=",".join(f"{s:g}" for s in STRENGTHS))
    ap.add_argument("--variant-strengths", default=",".join(f"{x:g}" for x in VARIANT_STRENGTHS),
                    help="strengths of the (b') direction variants; empty to skip them")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    model, tok = features.load_model(args.model)
    sae, cfg, layer = features.load_sae(args.sae)
    ft, fd, source = pick_features(args.sae, args.model, args.curated)
    with torch.no_grad():
        direction = (sae.W_dec[int(fd["feature_id"])] - sae.W_dec[int(ft["feature_id"])]).detach().clone()
    dnorm = float(direction.norm())
    probs = corpus.operator_swap_problems(args.prompts, split=None if args.split == "any" else args.split)
    prompts = [tok.encode(corpus.render_prompt(sp.problem.question)) for sp in probs]
    hook = SteeringHook(model, layer)
    strengths = [float(x) for x in args.strengths.split(",")]
    if 0.0 not in strengths:
        strengths = [0.0] + strengths
    cache: Dict[Tuple[str, float], Tuple[List[Dict[str, object]], List[Optional[int]]]] = {}
    run_seconds: Dict[str, float] = {}

    def run(mode: str, s: float) -> List[Dict[str, object]]:
        key = ("none", 0.0) if s == 0 else (mode, s)
        if key not in cache:
            t0 = time.time()
            hook.record = s == 0
            outs, starts = generate(model, tok, hook, prompts, None if s == 0 else s * direction, mode if s else "first-token", args.max_new)
            hook.record = False
            base = None if s == 0 else [r["answer"] for r in cache[("none", 0.0)][0]]
            cache[key] = (score(tok, outs, probs, base), starts)
            run_seconds[f"{key[0]}@{key[1]:g}"] = round(time.time() - t0, 2)
        return cache[key][0]

    base_rows = run("first-token", 0.0)
    for r in base_rows:
        r["reverted"] = bool(r["well_formed"])  # the unsteered run is its own reference
    resid_norm = hook.norm_sum / max(1, hook.norm_n)

    # (b) sweep, both starts.
    sweep: Dict[str, List[Dict[str, object]]] = {}
    for mode in MODES:
        sweep[mode] = []
        for s in strengths:
            sweep[mode].append({"strength": s, "relative_to_residual": round(s * dnorm / resid_norm, 4), **rates(run(mode, s))})

    base_switch = rates(base_rows)["switch_rate"]  # unsteered answers equal to the ÷ value by chance

    def best_of(mode: str) -> float:
        rows = [r for r in sweep[mode] if r["strength"] > 0]
        top = max(r["switch_rate"] for r in rows)
        return min(r["strength"] for r in rows if r["switch_rate"] == top) if top > base_switch else 0.0

    best = best_of("after-prefix")
    best_first = best_of("first-token")
    ref = best if best > 0 else best_first

    # (c) prefix effect at the best strength (after-prefix's; first-token's own best too).
    def at(mode: str, s: float) -> Dict[str, object]:
        return {"strength": s, **rates(run(mode, s))}

    prefix_effect: Dict[str, object] = {"best_strength": ref, "best_strength_after_prefix": best, "best_strength_first_token": best_first}
    if ref > 0:
        a, f = at("after-prefix", ref), at("first-token", ref)
        prefix_effect.update(
            {
                "after_prefix": a,
                "first_token": f,
                "switch_rate_difference_after_minus_first": round(float(a["switch_rate"]) - float(f["switch_rate"]), 4),
            }
        )
        if best_first > 0 and best_first != ref:
            prefix_effect["at_first_token_best"] = {"after_prefix": at("after-prefix", best_first), "first_token": at("first-token", best_first)}
        starts = cache[("after-prefix", ref)][1]
        got = [x for x in starts if x is not None]
        prefix_effect["after_prefix_start_generated_index"] = {
            "mean": round(sum(got) / max(1, len(got)), 2),
            "min": min(got) if got else None,
            "max": max(got) if got else None,
            "fallback_48": sum(1 for x in got if x == PREFIX_FALLBACK_TOKENS),
        }
    else:
        prefix_effect["note"] = "no strength of the sweep switched more answers than the unsteered run, in either mode"

    # (d) over-steering.
    over_s = [ref * k for k in OVER_FACTORS] if ref > 0 else list(OVER_FALLBACK)
    over: Dict[str, List[Dict[str, object]]] = {}
    for mode in MODES:
        over[mode] = []
        for s in sorted(set([x for x in strengths if ref > 0 and x > ref] + over_s)):
            over[mode].append({"strength": s, "relative_to_residual": round(s * dnorm / resid_norm, 4), **rates(run(mode, s))})

    # (b') other feature pairs for the direction (after the main experiments; same prompts).
    variants = []
    v_strengths = [float(x) for x in args.variant_strengths.split(",") if x.strip()]
    for name, ts, ds in direction_variants(ft, fd) if v_strengths else []:
        with torch.no_grad():
            dv = (sae.W_dec[ds].sum(0) - sae.W_dec[ts].sum(0)).detach().clone()
        for mode in MODES:
            for s in v_strengths:
                t0 = time.time()
                outs, _ = generate(model, tok, hook, prompts, s * dv, mode, args.max_new)
                base = [r["answer"] for r in cache[("none", 0.0)][0]]
                rt = rates(score(tok, outs, probs, base))
                run_seconds[f"variant:{name}:{mode}@{s:g}"] = round(time.time() - t0, 2)
                variants.append({"direction": name, "times_features": ts, "divide_features": ds,
                                 "direction_norm": round(float(dv.norm()), 4), "mode": mode, "strength": s,
                                 **{k: rt[k] for k in ("switch_rate", "trace_divides_rate", "well_formed_rate", "original_rate", "reverted_rate", "broken_rate", "repetitive_rate")}})

    # A few sample texts.
    samples = []
    for mode, s in [("none", 0.0), ("after-prefix", ref), ("first-token", ref), ("after-prefix", over_s[-1]), ("first-token", over_s[-1])]:
        key = ("none", 0.0) if s == 0 else (mode, s)
        if key in cache:
            for k in range(min(3, len(probs))):
                r = cache[key][0][k]
                samples.append({"mode": key[0], "strength": key[1], "question": probs[k].problem.question,
                                "answer_times": probs[k].problem.answer, "answer_divide": probs[k].swapped.answer,
                                "generated_answer": r["answer"], "text": r["text"]})

    report = {
        "generator": "tools/tiny-r1/experiments.py",
        "model": os.path.abspath(args.model),
        "sae": os.path.abspath(args.sae),
        "hook_name": f"model.layers.{layer}",
        "prompts": len(probs),
        "split": args.split,
        "max_new_tokens": args.max_new,
        "features": {"times": ft, "divide": fd, "source": source},
        "units": "strength s adds s * (W_dec[divide] - W_dec[times]) to the residual stream; decoder rows are unit norm, so s is in SAE activation units",
        "direction_norm": round(dnorm, 4),
        "residual_norm_mean": round(resid_norm, 4),
        "baseline": rates(base_rows),
        "sweep": sweep,
        "best_strength": ref,
        "prefix_effect": prefix_effect,
        "over_steering": over,
        "direction_variants": variants,
        "samples": samples,
        "timings_seconds": {"runs": run_seconds, "total": round(time.time() - t_start, 1)},
    }
    hook.remove()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for mode in MODES:
        print(mode, "switch by strength:", {r["strength"]: r["switch_rate"] for r in sweep[mode]},
              "well-formed:", {r["strength"]: r["well_formed_rate"] for r in sweep[mode]})
    print("prefix effect:", json.dumps({k: v for k, v in prefix_effect.items() if not isinstance(v, dict)}))
    for mode in MODES:
        print("over-steering", mode, [(r["strength"], r["well_formed_rate"], r["switch_rate"], r["reverted_rate"], r["broken_rate"], r["repetitive_rate"]) for r in over[mode]])
    for v in variants:
        print("variant", v["direction"], v["mode"], v["strength"], "switch", v["switch_rate"], "trace ÷", v["trace_divides_rate"],
              "well-formed", v["well_formed_rate"], "original", v["original_rate"])
    print(f"wrote {args.out} in {time.time() - t_start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
