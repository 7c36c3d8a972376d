#!/usr/bin/python3
"""Rebuild every Tiny-R1 artifact from scratch: the one command.

    /usr/bin/python3 tools/tiny-r1/make_tiny_r1.py [--out demo/public/models/tiny-r1] [--smoke]
    sh tools/tiny-r1/build_all.sh [same options]

Stages (each also runs alone; see its own --help):

  1. tokenizer.py     BPE merges learned from the corpus      -> OUT/model/tokenizer*.json
  2. train_model.py   tiny Qwen2 trained on the corpus        -> OUT/model/{config,generation_config}.json,
                                                                  model.safetensors; OUT/reports/train_model.json
  3. onnx             transformers.js graph (imports tools/tiny_model/export_onnx.py)
                                                              -> OUT/model/onnx/model.onnx, sites.json
  4. train_sae.py     TopK SAE on the middle residual stream  -> OUT/sae/{cfg.json,sae_weights.safetensors};
                                                                  OUT/reports/train_sae.json
     feature_map.ts   UMAP of the decoder rows (Node + tsx)   -> OUT/sae/feature_map.json
  5. figures          the recorded numbers                    -> OUT/figures.json
  6. features.py      labels + Goodfire-schema examples       -> OUT/examples/ (tokens/activations/autointerp
                                                                  .csv, examples.sqlite, examples.duckdb (write_duckdb.mjs),
                                                                  features.json, curated.json)
  7. experiments.py   × → ÷ steering, prefix effect, over-steering -> OUT/reports/experiments.json,
                                                                  merged into OUT/figures.json (analysis.py)

``--smoke`` runs every stage with its tiny settings (a few minutes in all); write smoke output
somewhere temporary, never over the committed artifacts. ``--onnx no|auto|yes`` (default: yes
for a full run, auto for smoke: skipped with a warning if the exporter is missing or fails).
Stages 6-7 also run alone on a finished build: ``tools/tiny-r1/analysis.py --out OUT``.
Stage 8 (``golden.py --root OUT``) writes OUT/golden.json for the artifact test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable or "/usr/bin/python3"


def run(stage: str, args: List[str], timings: Dict[str, float]) -> None:
    print(f"== {stage}: {' '.join(args)}", flush=True)
    t0 = time.time()
    subprocess.run([PY, *args], check=True, cwd=REPO)
    timings[stage] = round(time.time() - t0, 1)


def export_onnx(model_dir: str) -> Dict[str, object]:
    """ONNX export in the layout of tests/fixtures/tiny-qwen2-onnx (single file, weights inside),
    reusing the tiny model's exporter."""
    sys.path.insert(0, os.path.join(REPO, "tools", "tiny_model"))
    sys.path.insert(0, os.path.join(REPO, "server", "python"))
    import torch

    from export_onnx import check_io, export_bytes, find_sites  # type: ignore

    from loupe_server.models.qwen2 import Qwen2ForCausalLM

    torch.set_num_threads(1)
    lm = Qwen2ForCausalLM.from_pretrained(model_dir)
    cfg = lm.config
    model = export_bytes(lm)
    check_io(model, cfg.num_hidden_layers, int(cfg.num_key_value_heads or 0), int(cfg.head_dim or 0), cfg.vocab_size)
    sites = find_sites(model, cfg.num_hidden_layers)
    os.makedirs(os.path.join(model_dir, "onnx"), exist_ok=True)
    with open(os.path.join(model_dir, "onnx", "model.onnx"), "wb") as f:
        f.write(model)
    with open(os.path.join(model_dir, "onnx", "sites.json"), "w", encoding="utf-8") as f:
        json.dump({"layers": sites}, f, indent=1)
        f.write("\n")
    return {"bytes": len(model)}


def folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "demo", "public", "models", "tiny-r1"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--onnx", choices=("no", "auto", "yes"), default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--seed-offset", type=int, default=0,
        help="added to the model's and the SAE's training seeds (init, data sample, batch order); 0 "
        "rebuilds the committed artifacts, others measure the seed-to-seed spread",
    )
    ap.add_argument(
        "--reuse-model", action="store_true",
        help="keep OUT/model (tokenizer, trained model, ONNX) from an earlier run and redo the SAE and "
        "later stages only",
    )
    args = ap.parse_args(argv)
    onnx_mode = args.onnx or ("auto" if args.smoke else "yes")
    out = os.path.abspath(args.out)
    model_dir = os.path.join(out, "model")
    sae_dir = os.path.join(out, "sae")
    reports = os.path.join(out, "reports")
    for d in (sae_dir,) if args.reuse_model else (model_dir, sae_dir):
        if os.path.isdir(d):
            shutil.rmtree(d)
    os.makedirs(reports, exist_ok=True)
    smoke = ["--smoke"] if args.smoke else []
    threads = ["--threads", str(args.threads)]
    model_seed = ["--seed", str(1234 + args.seed_offset)] if args.seed_offset else []
    sae_seed = ["--seed", str(4321 + args.seed_offset)] if args.seed_offset else []
    timings: Dict[str, float] = {}
    t_all = time.time()

    if not args.reuse_model:
        run("tokenizer", [os.path.join(HERE, "tokenizer.py"), "--out", model_dir], timings)
    run_model = (lambda *a: None) if args.reuse_model else run
    run_model(
        "train_model",
        [os.path.join(HERE, "train_model.py"), "--out", model_dir, "--tokenizer", model_dir,
         "--report", os.path.join(reports, "train_model.json"), *threads, *smoke, *model_seed],
        timings,
    )
    onnx_info: Optional[Dict[str, object]] = None
    if onnx_mode != "no" and not args.reuse_model:
        t0 = time.time()
        try:
            onnx_info = export_onnx(model_dir)
        except Exception as exc:  # noqa: BLE001 - reported, fatal unless auto
            if onnx_mode == "yes":
                raise
            print(f"== onnx: skipped ({type(exc).__name__}: {exc})", flush=True)
        timings["onnx"] = round(time.time() - t0, 1)
    run(
        "train_sae",
        [os.path.join(HERE, "train_sae.py"), "--model", model_dir, "--out", sae_dir,
         "--report", os.path.join(reports, "train_sae.json"), *threads, *smoke, *sae_seed],
        timings,
    )

    # The SAE's feature map (UMAP of decoder rows, src/features/umap.ts), shipped with the SAE.
    t0 = time.time()
    subprocess.run(
        ["node", "--import", "tsx", os.path.join(HERE, "feature_map.ts"), "--sae", sae_dir],
        check=True, cwd=REPO,
    )
    timings["feature_map"] = round(time.time() - t0, 1)

    with open(os.path.join(reports, "train_model.json"), encoding="utf-8") as f:
        rm = json.load(f)
    with open(os.path.join(reports, "train_sae.json"), encoding="utf-8") as f:
        rs = json.load(f)
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    figures = {
        "generator": "tools/tiny-r1/make_tiny_r1.py" + (" --smoke" if args.smoke else "")
        + (f" --seed-offset {args.seed_offset}" if args.seed_offset else ""),
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch_threads": args.threads},
        "timings_seconds": {**timings, "total": round(time.time() - t_all, 1)},
        "corpus": {
            "train_traces": rm["data"]["traces"],
            "train_tokens": rm["data"]["tokens"],
            "trained_tokens": rm["data"]["trained_tokens"],
        },
        "tokenizer": {"vocab_size": len(tj["model"]["vocab"]) + len(tj["added_tokens"]), "merges": len(tj["model"]["merges"])},
        "model": {
            "parameters": rm["parameters"],
            "architecture": rm["architecture"],
            "train_seconds": rm["train"]["seconds"],
            "tokens_per_second": rm["train"]["tokens_per_second"],
            "final_loss": rm["train"]["final_loss"],
            "heldout_accuracy": rm["heldout"]["accuracy"],
            "heldout_n": rm["heldout"]["n"],
            "heldout_by_kind": rm["heldout"]["by_kind"],
            "prefix_rate": rm["heldout"]["prefix_rate"],
            "closed_rate": rm["heldout"]["closed_rate"],
            "backtrack_rate": rm["heldout"]["backtrack_rate"],
        },
        "sae": {
            "hook_name": rs["hook_name"],
            "d_sae": rs["hyperparameters"]["d_sae"],
            "k": rs["hyperparameters"]["k"],
            "heldout_fvu": rs["heldout"]["fvu"],
            "l0": rs["heldout"]["l0"],
            "dead_fraction_heldout": rs["heldout"]["dead_fraction_heldout"],
            "dead_fraction_train": rs["dead_fraction_train"],
        },
        "onnx": onnx_info,
        # Produced by the experiment stage (not written yet); see docs/tiny-r1.md.
        "steering": {"operator_switch_rate_by_strength": None, "prefix_effect": None, "over_steering": None},
        "sizes_bytes": {"model": folder_bytes(model_dir), "sae": folder_bytes(sae_dir), "total": folder_bytes(out)},
    }
    with open(os.path.join(out, "figures.json"), "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)
        f.write("\n")
    print(json.dumps({k: figures[k] for k in ("timings_seconds", "model", "sae", "sizes_bytes")}, indent=1))
    print(f"wrote {out} in {time.time() - t_all:.0f}s")

    # Stages 6-7: labels / examples database and the steering experiments, merged into figures.json.
    sys.path.insert(0, HERE)
    import analysis

    analysis.run_stages(out, smoke=args.smoke, threads=args.threads, run=run, timings=timings)

    # Stage 8: the golden outputs tests/node/tiny-r1-artifacts.test.ts checks the three load paths against.
    run("golden", [os.path.join(HERE, "golden.py"), "--root", out], timings)
    print(f"wrote {out} (with examples, experiments and golden outputs) in {time.time() - t_all:.0f}s")


if __name__ == "__main__":
    main()
