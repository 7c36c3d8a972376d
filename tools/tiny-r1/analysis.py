#!/usr/bin/python3
"""Tiny-R1's analysis stages (6 and 7 of make_tiny_r1.py), runnable alone on a finished build.

    /usr/bin/python3 tools/tiny-r1/analysis.py --out OUT [--smoke] [--threads N] [--merge-only]

6. ``features.py``     labels, Goodfire-schema examples, curated matches -> OUT/examples/
                       (tokens.csv, activations.csv, autointerp.csv, examples.sqlite,
                       features.json, curated.json)
7. ``experiments.py``  × → ÷ steering sweep, prefix effect, over-steering -> OUT/reports/experiments.json

then merges their headline numbers into OUT/figures.json (written by make_tiny_r1.py's stage 5):
``examples``, ``curated_features``, ``steering`` (switch rates by strength and start, prefix
effect, over-steering) and ``headline`` (held-out accuracy, FVU, L0, dead fraction, switch
rates, prefix effect in one place); ``timings_seconds`` and ``sizes_bytes`` are updated.

Sample sizes: full 400 traces / 50 prompts; ``--smoke`` 60 traces / 8 prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable or "/usr/bin/python3"

FULL = {"sequences": 400, "prompts": 50}
SMOKE = {"sequences": 60, "prompts": 8}


def _run(stage: str, args: List[str], timings: Dict[str, float]) -> None:
    print(f"== {stage}: {' '.join(args)}", flush=True)
    t0 = time.time()
    subprocess.run([PY, *args], check=True, cwd=REPO)
    timings[stage] = round(time.time() - t0, 1)


def folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def run_stages(
    out: str,
    smoke: bool = False,
    threads: int = 1,
    run: Optional[Callable[[str, List[str], Dict[str, float]], None]] = None,
    timings: Optional[Dict[str, float]] = None,
) -> Dict[str, object]:
    """Run stages 6 and 7 on the build in ``out`` and merge into its figures.json."""
    run = run or _run
    timings = {} if timings is None else timings
    hp = SMOKE if smoke else FULL
    model_dir, sae_dir = os.path.join(out, "model"), os.path.join(out, "sae")
    examples = os.path.join(out, "examples")
    report = os.path.join(out, "reports", "experiments.json")
    if os.path.isdir(examples):
        shutil.rmtree(examples)
    th = ["--threads", str(threads)]
    run(
        "features",
        [os.path.join(HERE, "features.py"), "--model", model_dir, "--sae", sae_dir, "--out", examples,
         "--sequences", str(hp["sequences"]), *th],
        timings,
    )
    # The same tables as a DuckDB file, the form Goodfire ships examples in (DuckDB-WASM reads it).
    t0 = time.time()
    subprocess.run(["node", os.path.join(HERE, "write_duckdb.mjs"), examples], check=True, cwd=REPO)
    timings["examples_duckdb"] = round(time.time() - t0, 1)
    run(
        "experiments",
        [os.path.join(HERE, "experiments.py"), "--model", model_dir, "--sae", sae_dir,
         "--curated", os.path.join(examples, "curated.json"), "--out", report,
         "--prompts", str(hp["prompts"]), *th],
        timings,
    )
    return merge(out, {k: timings[k] for k in ("features", "experiments") if k in timings})


def _switch_table(rows: Sequence[Dict[str, object]]) -> Dict[str, float]:
    return {f"{float(r['strength']):g}": r["switch_rate"] for r in rows}


def merge(out: str, timings: Optional[Dict[str, float]] = None) -> Dict[str, object]:
    """Merge OUT/examples/{features,curated}.json and OUT/reports/experiments.json into
    OUT/figures.json (in place); returns the merged dict."""
    fig_path = os.path.join(out, "figures.json")
    with open(fig_path, encoding="utf-8") as f:
        figures = json.load(f)
    with open(os.path.join(out, "examples", "features.json"), encoding="utf-8") as f:
        feats = json.load(f)
    with open(os.path.join(out, "examples", "curated.json"), encoding="utf-8") as f:
        cur = json.load(f)
    with open(os.path.join(out, "reports", "experiments.json"), encoding="utf-8") as f:
        exp = json.load(f)

    figures["examples"] = {
        "sequences": feats["sequences"],
        "tokens_encoded": feats["tokens_encoded"],
        "l0_on_sample": feats["l0"],
        "dead_fraction_on_sample": feats["dead_fraction"],
        "mean_label_quality_alive": feats["mean_quality_alive"],
        "labels_with_marker": feats["labels_with_marker"],
        "activation_rows": feats["tables"]["activation_rows"],
        "token_rows": feats["tables"]["token_rows"],
        "sequences_dropped_for_size": feats["tables"]["sequences_dropped_for_size"],
        "bytes": feats["tables"]["bytes"],
    }
    figures["curated_features"] = {
        k: (
            {x: v.get(x) for x in ("feature_id", "score", "matched_on", "precision_activation_mass", "recall", "top20_purity", "label")}
            | {"top_context": (v.get("top_contexts") or [None])[0]}
        )
        for k, v in cur.items()
        if isinstance(v, dict)
    }
    pe = exp["prefix_effect"]
    figures["steering"] = {
        "prompts": exp["prompts"],
        "units": exp["units"],
        "features": {"times": exp["features"]["times"]["feature_id"], "divide": exp["features"]["divide"]["feature_id"]},
        "direction_norm": exp["direction_norm"],
        "residual_norm_mean": exp["residual_norm_mean"],
        "baseline": {k: exp["baseline"][k] for k in ("switch_rate", "original_rate", "well_formed_rate")},
        "operator_switch_rate_by_strength": {mode: _switch_table(rows) for mode, rows in exp["sweep"].items()},
        "well_formed_rate_by_strength": {
            mode: {f"{float(r['strength']):g}": r["well_formed_rate"] for r in rows} for mode, rows in exp["sweep"].items()
        },
        "best_strength": exp["best_strength"],
        "prefix_effect": {
            "strength": pe.get("best_strength"),
            "after_prefix_switch_rate": (pe.get("after_prefix") or {}).get("switch_rate"),
            "first_token_switch_rate": (pe.get("first_token") or {}).get("switch_rate"),
            "difference_after_minus_first": pe.get("switch_rate_difference_after_minus_first"),
            "note": pe.get("note"),
        },
        "over_steering": {
            mode: [
                {k: r[k] for k in ("strength", "well_formed_rate", "switch_rate", "reverted_rate", "other_well_formed_rate", "broken_rate", "repetitive_rate")}
                for r in rows
            ]
            for mode, rows in exp["over_steering"].items()
        },
    }
    m, s = figures.get("model") or {}, figures.get("sae") or {}
    figures["headline"] = {
        "heldout_accuracy": m.get("heldout_accuracy"),
        "heldout_n": m.get("heldout_n"),
        "sae_heldout_fvu": s.get("heldout_fvu"),
        "sae_l0": s.get("l0"),
        "sae_dead_fraction_heldout": s.get("dead_fraction_heldout"),
        "sae_dead_fraction_train": s.get("dead_fraction_train"),
        "steering_switch_rate_by_strength": figures["steering"]["operator_switch_rate_by_strength"],
        "steering_best_strength": exp["best_strength"],
        "prefix_effect": figures["steering"]["prefix_effect"],
    }
    ts = figures.setdefault("timings_seconds", {})
    for k, v in (timings or {}).items():
        ts[k] = v
    if timings and "total" in ts:
        # stages 1-5's total is kept apart, so merging twice does not count stages 6-7 twice
        before = float(ts.setdefault("total_stages_1_5", ts["total"]))
        ts["total"] = round(before + sum(float(ts.get(k, 0.0)) for k in ("features", "experiments")), 1)
    sizes = figures.setdefault("sizes_bytes", {})
    sizes["examples"] = folder_bytes(os.path.join(out, "examples"))
    sizes["total"] = folder_bytes(out)
    with open(fig_path, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(json.dumps(figures["headline"], indent=1, ensure_ascii=False))
    return figures


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="a make_tiny_r1.py output folder (model/, sae/, figures.json)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge-only", action="store_true", help="only merge existing outputs into figures.json")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    if args.merge_only:
        merge(out)
    else:
        run_stages(out, smoke=args.smoke, threads=args.threads)


if __name__ == "__main__":
    main()
