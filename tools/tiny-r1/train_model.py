#!/usr/bin/python3
"""Train Tiny-R1: the tiny Qwen2 architecture on the Tiny-R1 corpus, on the CPU.

    /usr/bin/python3 tools/tiny-r1/train_model.py --out DIR [--tokenizer TOKDIR] [--smoke]
                                                  [--report FILE] [--steps N] ...

Writes a Hugging Face / transformers.js model folder to ``--out``: ``config.json``,
``generation_config.json``, ``model.safetensors`` (Hugging Face parameter names, float32, through
``loupe_server.safetensors_io``), ``tokenizer.json`` and ``tokenizer_config.json`` (copied from
``--tokenizer``, or trained by ``tokenizer.py`` into ``--out`` when absent). The report (JSON:
configuration, loss curve, throughput, held-out evaluation, sample generations) goes to
``--report`` (default ``DIR/../train_model.json``).

Training: ``loupe_server.models.qwen2.Qwen2ForCausalLM`` (the module the reference server runs),
next-token cross-entropy on the assistant's tokens only (everything after ``<think>\\n``, minus
the deliberately wrong numbers of backtracking traces), AdamW with linear warm-up and a cosine
decay to 10%, gradient clipping at 1, batches of traces of similar length (right-padded; the
padding is masked out of the loss and, being after every real token, never attended to).
Seeded and single-process with ``torch.set_num_threads(--threads)``: the same command gives the
same weights on the same machine and library build.

Evaluation: greedy decoding (batched, left-padded, KV cache) of distinct held-out problems; the
answer is read after ``</think>`` ("The answer is X.") and compared with the true one. Also
reported: how many traces start with R1's prefix "Okay, so the user asked", close ``</think>``,
and backtrack ("Wait").

``--smoke`` trains about a minute (small corpus, few steps, short evaluation) for tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "server", "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "tiny_model"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import corpus  # noqa: E402
import fastcpu  # noqa: E402
from make_tiny_qwen2 import model_config, write_json  # noqa: E402

from loupe_server.models.qwen2 import Qwen2Config, Qwen2ForCausalLM, greedy_decode  # noqa: E402
from loupe_server.safetensors_io import save_file  # noqa: E402
from loupe_server.tokenizer import Tokenizer  # noqa: E402

# Architecture (the tiny Qwen2 of tests/fixtures/tiny-qwen2, twice as wide, three times the MLP).
HIDDEN = 128
LAYERS = 4
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 384
MAX_POSITIONS = 1024

# Full-run defaults (see the report of a smoke run for the measured throughput).
FULL = dict(n_train=40000, steps=2500, batch_size=32, lr=3e-3, warmup=150, eval_n=300, seed=1234)
SMOKE = dict(n_train=3000, steps=240, batch_size=16, lr=3e-3, warmup=20, eval_n=16, seed=1234)
MAX_NEW_TOKENS = 384
MAX_SEQ = 400  # longer traces (none with the default corpus) are dropped


# ------------------------------------------------------------------------------------------ data


def encode_example(tok: Tokenizer, ex: "corpus.Example") -> Tuple[List[int], List[bool]]:
    """Token ids of the example and, per token, whether it is trained on (the mask of its first
    byte). Checks that the prompt's own tokenization is a prefix (what generation sees)."""
    text = ex.text
    ids = tok.encode(text)
    byte_mask: List[bool] = []
    for ch, m in zip(text, ex.char_mask()):
        byte_mask.extend([m] * len(ch.encode("utf-8")))
    mask: List[bool] = []
    pos = 0
    for i in ids:
        mask.append(byte_mask[pos])
        pos += len(tok.token_bytes(i))
    assert pos == len(byte_mask), "token bytes do not add up to the text"
    prompt_ids = tok.encode(ex.prompt)
    assert ids[: len(prompt_ids)] == prompt_ids, "prompt tokenization is not a prefix of the trace's"
    assert not any(mask[: len(prompt_ids)]) and mask[len(prompt_ids)], "loss mask does not start after the prompt"
    return ids, mask


def make_batches(
    data: Sequence[Tuple[List[int], List[bool]]], batch_size: int, rng: random.Random
) -> List[List[int]]:
    """One epoch of batches (lists of indices): shuffled, then grouped by length within windows
    of 64 batches so that padding stays small; batch order shuffled again."""
    order = list(range(len(data)))
    rng.shuffle(order)
    window = batch_size * 64
    batches: List[List[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: len(data[i][0]))
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(data, idx: Sequence[int], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    n = max(len(data[i][0]) for i in idx)
    ids = torch.full((len(idx), n), pad_id, dtype=torch.long)
    weight = torch.zeros((len(idx), n), dtype=torch.float32)
    for r, i in enumerate(idx):
        t, m = data[i]
        ids[r, : len(t)] = torch.tensor(t)
        weight[r, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, weight


# ----------------------------------------------------------------------------------------- model


def make_config(tok: Tokenizer) -> dict:
    cfg = model_config(tok.bos_token_id, tok.eos_token_id)
    cfg.update(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        max_window_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HIDDEN // HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS,
        vocab_size=tok.vocab_size,
    )
    return cfg


def init_weights(model: Qwen2ForCausalLM, seed: int) -> None:
    """GPT-2 / Hugging Face style: N(0, 0.02) weights, zero biases, unit norms; the projections
    that write into the residual stream scaled by 1/sqrt(2 * layers)."""
    g = torch.Generator().manual_seed(seed)
    n_layers = model.config.num_hidden_layers
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                std = 0.02
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    std /= math.sqrt(2 * n_layers)
                p.copy_(torch.randn(p.shape, generator=g) * std)


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ------------------------------------------------------------------------------------ generation


@torch.no_grad()
def generate_batch(
    model: Qwen2ForCausalLM, prompts: Sequence[Sequence[int]], max_new: int, eos_id: int, pad_id: int
) -> List[List[int]]:
    """Greedy decoding of several prompts at once (left padding, attention mask, KV cache).
    Each output stops after EOS (included)."""
    b = len(prompts)
    n = max(len(p) for p in prompts)
    ids = torch.full((b, n), pad_id, dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, n - len(p) :] = torch.tensor(list(p))
        mask[r, n - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits, past = model(ids, position_ids=pos, attention_mask=mask)
    next_pos = pos[:, -1:] + 1
    out: List[List[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for _ in range(max_new):
        nxt = logits[:, -1].argmax(-1)
        for r in range(b):
            if not done[r]:
                out[r].append(int(nxt[r]))
        done |= nxt == eos_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long)], dim=1)
        logits, past = model(nxt[:, None], past_key_values=past, position_ids=next_pos, attention_mask=mask)
        next_pos = next_pos + 1
    return out


def evaluate(
    model: Qwen2ForCausalLM, tok: Tokenizer, problems: Sequence["corpus.Problem"], batch: int = 32
) -> Dict[str, object]:
    model.eval()
    rows = []
    t0 = time.time()
    n_tokens = 0
    for s in range(0, len(problems), batch):
        chunk = problems[s : s + batch]
        prompts = [tok.encode(corpus.render_prompt(p.question)) for p in chunk]
        outs = generate_batch(model, prompts, MAX_NEW_TOKENS, tok.eos_token_id, tok.pad_token_id)
        for p, o in zip(chunk, outs):
            n_tokens += len(o)
            text = tok.decode(o)
            got = corpus.extract_answer(text)
            rows.append(
                {
                    "kind": p.kind,
                    "question": p.question,
                    "answer": p.answer,
                    "generated_answer": got,
                    "correct": got == p.answer,
                    "prefix": text.startswith(corpus.PREFIX),
                    "closed": corpus.END_THINK in text and text.endswith(corpus.EOS),
                    "backtracked": "Wait" in text.split(corpus.END_THINK)[0],
                    "text": text,
                }
            )
    by_kind: Dict[str, Dict[str, float]] = {}
    for k in sorted({r["kind"] for r in rows}):
        rs = [r for r in rows if r["kind"] == k]
        by_kind[k] = {"n": len(rs), "accuracy": sum(r["correct"] for r in rs) / len(rs)}
    n = max(1, len(rows))
    return {
        "n": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / n,
        "by_kind": by_kind,
        "prefix_rate": sum(r["prefix"] for r in rows) / n,
        "closed_rate": sum(r["closed"] for r in rows) / n,
        "backtrack_rate": sum(r["backtracked"] for r in rows) / n,
        "generated_tokens": n_tokens,
        "seconds": round(time.time() - t0, 2),
        "samples": rows[:6],
        "wrong": [r for r in rows if not r["correct"]][:6],
    }


# ------------------------------------------------------------------------------------------ main


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--tokenizer", default=None, help="folder with tokenizer.json (default: train one into --out)")
    ap.add_argument("--report", default=None, help="JSON report (default: OUT/../train_model.json)")
    ap.add_argument("--smoke", action="store_true", help="about a minute: small corpus, few steps")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"full default {v}, smoke {SMOKE[k]}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=None)
    ap.add_argument(
        "--max-seconds", type=float, default=None,
        help="stop training after this long even if steps remain (default: none; smoke: 60). "
        "Makes the result depend on the machine's speed: never for the committed artifacts.",
    )
    args = ap.parse_args(argv)
    hp = dict(SMOKE if args.smoke else FULL)
    for k in hp:
        v = getattr(args, k)
        if v is not None:
            hp[k] = v
    max_seconds = args.max_seconds if args.max_seconds is not None else (60.0 if args.smoke else None)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(hp["seed"])
    os.makedirs(args.out, exist_ok=True)
    report_path = args.report or os.path.join(os.path.dirname(os.path.abspath(args.out)), "train_model.json")

    if args.tokenizer is None:
        import tokenizer as tokenizer_tool

        tokenizer_tool.build(args.out)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            src, dst = os.path.join(args.tokenizer, name), os.path.join(args.out, name)
            if os.path.abspath(src) != os.path.abspath(dst):
                shutil.copyfile(src, dst)
    tok = Tokenizer.from_folder(args.out)

    # Data.
    t0 = time.time()
    exs = corpus.examples(hp["n_train"], "train", hp["seed"])
    data = [encode_example(tok, e) for e in exs]
    data = [d for d in data if len(d[0]) <= MAX_SEQ]
    n_tok = sum(len(d[0]) for d in data)
    n_train_tok = sum(sum(d[1]) for d in data)
    t_data = time.time() - t0
    print(f"data: {len(data)} traces, {n_tok} tokens ({n_train_tok} trained on), {t_data:.1f}s", flush=True)

    # Model.
    cfg = make_config(tok)
    model = Qwen2ForCausalLM(Qwen2Config.from_dict(cfg))
    init_weights(model, hp["seed"])
    fastcpu.patch(model)  # oneDNN convolutions instead of the reference BLAS (see fastcpu.py)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"],
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    print(f"model: {n_params} parameters, vocab {cfg['vocab_size']}", flush=True)

    rng = random.Random(hp["seed"])
    batches: List[List[int]] = []
    curve = []
    log_every = args.log_every or max(1, hp["steps"] // 30)
    model.train()
    t0 = time.time()
    seen_tokens = 0
    padded_tokens = 0
    window_loss = 0.0
    window_n = 0
    steps_done = 0
    for step in range(hp["steps"]):
        if max_seconds is not None and time.time() - t0 > max_seconds:
            print(f"stopping after {step} steps: --max-seconds {max_seconds:g} reached", flush=True)
            break
        if not batches:
            batches = make_batches(data, hp["batch_size"], rng)
        idx = batches.pop()
        ids, weight = collate(data, idx, tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, hp["steps"], hp["lr"], hp["warmup"])
        logits, _ = model(ids)
        w = weight[:, 1:]
        losses = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss = (losses * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen_tokens += int((ids != tok.pad_token_id).sum())
        padded_tokens += ids.numel()
        window_loss += float(loss)
        window_n += 1
        steps_done = step + 1
        if (step + 1) % log_every == 0 or step + 1 == hp["steps"]:
            el = time.time() - t0
            curve.append({"step": step + 1, "loss": round(window_loss / window_n, 4), "seconds": round(el, 1)})
            print(
                f"step {step + 1}/{hp['steps']} loss {window_loss / window_n:.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e} {seen_tokens / el:.0f} tok/s ({el:.0f}s)",
                flush=True,
            )
            window_loss, window_n = 0.0, 0
    t_train = time.time() - t0
    model.eval()

    # Save.
    write_json(os.path.join(args.out, "config.json"), cfg)
    write_json(
        os.path.join(args.out, "generation_config.json"),
        {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "do_sample": False},
    )
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, os.path.join(args.out, "model.safetensors"))
    loaded = Qwen2ForCausalLM.from_pretrained(args.out)

    # Evaluate the saved model.
    # The evaluation problems stay fixed whatever --seed is, so that runs with different training
    # seeds (make_tiny_r1.py --seed-offset) differ only in what training did.
    problems = corpus.heldout_problems(hp["eval_n"], seed=FULL["seed"])
    ev = evaluate(fastcpu.patch(Qwen2ForCausalLM.from_pretrained(args.out)), tok, problems)
    # Batched decoding (oneDNN linears) should agree with the reference server's batch-1 greedy
    # decoding (plain nn.Linear); float32 rounding differs, so near-ties may flip: reported only.
    agree = 0
    checks = problems[:4]
    for p, row in zip(checks, ev["samples"]):
        ids1, _ = greedy_decode(loaded, tok.encode(corpus.render_prompt(p.question)), MAX_NEW_TOKENS, [tok.eos_token_id])
        agree += tok.decode(ids1) == row["text"]
    print(
        f"held-out: accuracy {ev['accuracy']:.3f} over {ev['n']} ({ev['by_kind']}); prefix {ev['prefix_rate']:.2f}, "
        f"closed {ev['closed_rate']:.2f}, backtrack {ev['backtrack_rate']:.2f}; batch-1 agreement {agree}/{len(checks)} "
        f"({ev['seconds']}s)",
        flush=True,
    )
    report = {
        "generator": "tools/tiny-r1/train_model.py",
        "smoke": args.smoke,
        "hyperparameters": hp,
        "threads": args.threads,
        "architecture": {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size")},
        "parameters": n_params,
        "data": {"traces": len(data), "tokens": n_tok, "trained_tokens": n_train_tok, "seconds": round(t_data, 1)},
        "train": {
            "seconds": round(t_train, 1),
            "steps_done": steps_done,
            "stopped_early": steps_done < hp["steps"],
            "tokens_seen": seen_tokens,
            "tokens_per_second": round(seen_tokens / t_train, 1),
            "padded_tokens_per_second": round(padded_tokens / t_train, 1),
            "epochs": round(seen_tokens / max(1, n_tok), 3),
            "final_loss": curve[-1]["loss"] if curve else (round(window_loss / window_n, 4) if window_n else None),
            "curve": curve,
        },
        "heldout": ev,
        "batch1_agreement": f"{agree}/{len(checks)}",
        "total_seconds": round(time.time() - t_start, 1),
    }
    os.makedirs(os.path.dirname(report_path) or ".", exist_ok=True)
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out} and {report_path} in {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
