#!/usr/bin/python3
"""Tiny-R1's feature labels and max-activating examples, in Goodfire's schema.

    /usr/bin/python3 tools/tiny-r1/features.py --model MODELDIR --sae SAEDIR --out DIR
                                               [--sequences 400] [--seed 2024] [--threads 1]

Runs the model over ``--sequences`` held-out corpus traces (``corpus.examples(N, "heldout",
seed)``, teacher-forced: the corpus text, not the model's generations), taps the residual
stream at the SAE's hook (``cfg.json`` ``metadata.hook_name`` = ``model.layers.{L}``: a forward
hook on ``model.model.layers[L]``, ``output[0]``) and encodes every position except BOS exactly
as ``train_sae.py`` trains the SAE (``relu((x - b_dec) @ W_enc + b_enc)``, keep the top ``k``).

Writes to ``--out``:

* ``tokens.csv``      ``sequence_id, token_idx, token, decoded_token`` (every token of every
  sequence some feature keeps; ``token`` is the id, ``decoded_token`` its text);
* ``activations.csv`` ``feature_id, sequence_id, token_idx, strength`` (COO, nonzero only): for
  each feature, its top ``TOP_SEQUENCES`` (20) sequences by maximum strength, and every nonzero
  activation of the feature in those sequences;
* ``autointerp.csv``  ``feature_id, label, quality, interestingness, model_name, prompt_version``
  (every feature; never-active ones labelled ``dead feature``; model_name ``tiny-r1-heuristic``,
  prompt_version ``v1``);
* ``examples.sqlite`` the same three tables in one SQLite file (column names as Goodfire's
  databases; types INTEGER / TEXT / REAL), so one reader serves Tiny-R1 and Goodfire;
* ``features.json``   per feature: label, quality, interestingness, frequency (share of the
  sample's non-BOS tokens where it is active), mean_activation (over those), max_activation,
  top_contexts (3 strings, the max token marked ``<<like this>>``);
* ``curated.json``    the features that best match the seed's curated R1 features (below).

Labelling heuristic (``prompt_version`` v1). For a feature, take its top-20 sequences by max
strength and the position of the max in each ("max positions"). Every position of the sample
carries: its token, the preceding token, a phase (``prompt``; ``prefix`` = the "Okay, so the
user asked …" first sentence, as src/steer/prefix.ts detects it; ``thinking``; ``answer`` =
after ``</think>``) and corpus markers (:data:`MARKERS`: backtracking "Wait" / a repair line /
"not" in it, "earlier"/"before" and the token after them, "box" / the N of "box N", the token
before a result after "=", "=" itself, the digit before "=", an operator token, the operand
after an operator, the token before an operator). The label is built from what the max
positions share:

* the dominant token (if ≥ 50% of max positions have it; else "mixed tokens (top: …)"),
* the dominant preceding token (if ≥ 50%),
* the marker with the highest share (≥ 50%) among those at least twice as frequent there as in
  the whole sample (ties: higher lift),
* the dominant phase (if ≥ 80%),

e.g. ``"Wait" after ".\\n" — backtracking: "Wait" [thinking]``. ``quality`` (purity) = the share
of max positions that satisfy every part of the label (token, preceding token, marker, phase),
over at least 5 slots (a feature active in fewer than 5 sequences counts the missing ones as
non-matching; with no shared part at all, the share of the most common token);
``interestingness`` (specificity) = quality × log(1/b) / log(T), where b is the share of all T
non-BOS sample positions that satisfy the label's conjunction (a label that describes rare
contexts precisely scores high; one true of most tokens scores ~0). Both are in [0, 1], as in
Goodfire's autointerp table.

Curated-feature matching (``curated.json``): each of the seed's curated features is one or more
position predicates (variants) over the sample: backtracking ("Wait"; the repair line "Wait …
not"; its "not"), self-reference ("earlier"/"before"; the token after them), entity tracking
("box"; the N of "box N"), the token before a multi-step calculation's result (the position
that predicts the result's first digit after "=" in a 2- or 3-operation arithmetic trace; any
such position; "=" itself), and operator × / ÷ (the operator token; the operand after it; the
position that predicts it). A feature's match to a predicate: precision = share of its total
activation mass (sum of strengths over the sample) on positions satisfying the predicate;
recall = share of those positions where it is active; score = F-beta with beta 0.5
(precision counts twice as much as recall: a curated feature should mean its context, and a
feature that fires on every operator has recall 1 on "×" but means "operator"). Per target the best (feature, variant) is reported with precision,
recall, the share of its top-20 max positions satisfying the predicate, its heuristic label,
its top contexts, and the two runners-up; ``by_variant`` gives each variant's best feature and
its "strong" features (score ≥ 0.9: an SAE often splits one context over several features). The
× and ÷ picks must be different features (the steering direction of experiments.py is their
decoder difference).

Size: the activation table is bounded by 20 sequences per feature; ``--max-bytes`` (default
5 MB for the whole folder) lowers the per-feature sequence count (one sequence at a time, from
the feature with the most activation rows) until the folder's estimated size is 3% under it;
the real sizes are reported in ``features.json`` (``tables``).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import os
import re
import sqlite3
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "server", "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "tiny_model"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import corpus  # noqa: E402
import fastcpu  # noqa: E402
from train_sae import TopKSAE, collect  # noqa: E402

from loupe_server.models.qwen2 import Qwen2ForCausalLM  # noqa: E402
from loupe_server.safetensors_io import load_file  # noqa: E402
from loupe_server.tokenizer import Tokenizer  # noqa: E402

MODEL_NAME = "tiny-r1-heuristic"
PROMPT_VERSION = "v1"
DEAD_LABEL = "dead feature"
TOP_SEQUENCES = 20
CONTEXT_BEFORE = 12
CONTEXT_AFTER = 4
DEFAULT_SEED = 2024
# Curated matching weighs precision over recall (F-beta, beta 0.5): a curated feature should mean
# its context; one that fires on every operator has recall 1 on "×" but means "operator".
CURATED_BETA = 0.5
# Label purity counts at least this many top sequences (missing ones as non-matching), so a
# feature seen once does not get quality 1.
MIN_SLOTS = 5
MAX_BYTES = 5_000_000
# Bytes per row of the output folder (CSV + SQLite together; per feature also its features.json
# entry), measured on Tiny-R1's tables: the --max-bytes budget is enforced on this estimate, and
# the real sizes are reported.
BYTES_PER_ACTIVATION = 40
BYTES_PER_TOKEN = 35
BYTES_PER_FEATURE = 560
BYTES_FIXED = 30_000
SIZE_MARGIN = 0.97  # the estimate is within ~1%; aim 3% under the budget
# src/steer/prefix.ts and loupe_server.steering: the end of R1's first sentence.
AFTER_PREFIX_PATTERN = re.compile(r"^\s*(<think>\s*)?Okay, so [^.!?\n]*[.!?\n]")
PHASES = ("prompt", "prefix", "thinking", "answer")
OPERATORS = (corpus.TIMES, corpus.DIVIDE, "+", "-")

# Marker predicates used by the labels: name -> description in a label.
MARKERS: Dict[str, str] = {
    "wait": 'backtracking: "Wait"',
    "repair_line": 'backtracking: a "Wait … not" repair line',
    "not_in_repair": 'backtracking: "not" of a repair',
    "selfref": 'self-reference: "earlier"/"before"',
    "after_selfref": 'self-reference: after "earlier"/"before"',
    "box_word": 'entity: "box"',
    "box_number": 'entity: the N of "box N"',
    "pre_result": 'the token before a result after "="',
    "eq": '"="',
    "digit_before_eq": 'the digit before "="',
    **{f"op:{o}": f'operator "{o}"' for o in OPERATORS},
    **{f"in_op:{o}": f'the operand after "{o}"' for o in OPERATORS},
    **{f"before_op:{o}": f'the token before "{o}"' for o in OPERATORS},
}

# Curated targets: name -> (description, [(variant name, predicate name)]).
CURATED: Dict[str, Tuple[str, List[Tuple[str, str]]]] = {
    "backtracking": ('backtracking ("Wait … not")', [
        ("the 'Wait' token", "wait"),
        ("every token of a 'Wait …, not N.' repair line", "repair_line"),
        ("'not' in a repair line", "not_in_repair"),
    ]),
    "self_reference": ('self-reference ("earlier", "from before")', [
        ("the 'earlier' / 'before' token", "selfref"),
        ("the token after 'earlier' / 'before'", "after_selfref"),
    ]),
    "entity_tracking": ('entity tracking ("box N")', [
        ("the N of 'box N'", "box_number"),
        ("the 'box' token", "box_word"),
    ]),
    "pre_result": ('the token before a multi-step calculation\'s result', [
        ("the position predicting the result's first digit after '=' (2- or 3-operation arithmetic)", "pre_result_multi"),
        ("the position predicting a result's first digit after '=' (any calculation)", "pre_result"),
        ("the '=' token", "eq"),
    ]),
    "operator_times": ('operator × (steering source)', [
        ("the '×' token", f"op:{corpus.TIMES}"),
        ("the operand after '×'", f"in_op:{corpus.TIMES}"),
        ("the position predicting '×'", f"before_op:{corpus.TIMES}"),
    ]),
    "operator_divide": ('operator ÷ (steering target)', [
        ("the '÷' token", f"op:{corpus.DIVIDE}"),
        ("the operand after '÷'", f"in_op:{corpus.DIVIDE}"),
        ("the position predicting '÷'", f"before_op:{corpus.DIVIDE}"),
    ]),
}


# ------------------------------------------------------------------------------------- loading


def load_sae(sae_dir: str) -> Tuple[TopKSAE, dict, int]:
    """The SAE of ``sae_dir`` (SAELens layout written by train_sae.py), its cfg and layer."""
    with open(os.path.join(sae_dir, "cfg.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    m = re.fullmatch(r"model\.layers\.(\d+)", str(hook))
    if not m:
        raise ValueError(f"{sae_dir}: hook_name {hook!r} is not model.layers.{{L}}")
    if cfg.get("architecture") != "topk":
        raise ValueError(f"{sae_dir}: architecture {cfg.get('architecture')!r}, expected topk")
    w = load_file(os.path.join(sae_dir, "sae_weights.safetensors"))
    sae = TopKSAE(int(cfg["d_in"]), int(cfg["d_sae"]), int(cfg["k"]), seed=0)
    sae.load_state_dict({k: w[k].float() for k in ("W_enc", "W_dec", "b_enc", "b_dec")})
    sae.eval()
    return sae, cfg, int(m.group(1))


def load_model(model_dir: str) -> Tuple[Qwen2ForCausalLM, Tokenizer]:
    model = fastcpu.patch(Qwen2ForCausalLM.from_pretrained(model_dir))
    model.eval()
    return model, Tokenizer.from_folder(model_dir)


@torch.no_grad()
def encode_topk(sae: TopKSAE, acts: torch.Tensor, chunk: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
    """TopK codes as in training: ``(values [N, k] float32, indices [N, k] int64)``; values may
    be 0 (ReLU before top-k), callers drop those."""
    vals, idx = [], []
    for s in range(0, acts.shape[0], chunk):
        _, v, i = sae.encode(acts[s : s + chunk])
        vals.append(v)
        idx.append(i)
    return torch.cat(vals).numpy(), torch.cat(idx).numpy()


# ---------------------------------------------------------------------------------- annotation


def _is_digit(s: str) -> bool:
    return len(s) == 1 and s.isdigit()


class Sample:
    """Held-out traces, their tokens, and per-position annotations (flattened over non-BOS
    positions, in the order ``train_sae.collect`` returns them)."""

    def __init__(self, tok: Tokenizer, exs: Sequence["corpus.Example"]) -> None:
        self.exs = list(exs)
        self.ids: List[List[int]] = [tok.encode(e.text) for e in self.exs]
        self.pieces: List[List[str]] = [[tok.decode([i]) for i in s] for s in self.ids]
        self.prompt_len = [len(tok.encode(e.prompt)) for e in self.exs]
        self.phase: List[List[str]] = []
        self.preds: List[List[set]] = []
        for si in range(len(self.exs)):
            ph, pr = self._annotate(si)
            self.phase.append(ph)
            self.preds.append(pr)

    def _annotate(self, si: int) -> Tuple[List[str], List[set]]:
        p = self.pieces[si]
        n = len(p)
        pl = self.prompt_len[si]
        ex = self.exs[si]
        multi = ex.problem.kind == "arith" and len(ex.problem.data[1]) >= 2
        # Phases.
        phase = ["prompt"] * n
        text = ""
        prefix_end = None
        for t in range(pl, n):
            text += p[t]
            if prefix_end is None and AFTER_PREFIX_PATTERN.match(text):
                prefix_end = t
        in_answer = False
        for t in range(pl, n):
            if in_answer:
                phase[t] = "answer"
            elif prefix_end is not None and t <= prefix_end:
                phase[t] = "prefix"
            else:
                phase[t] = "thinking"
            if p[t] == corpus.END_THINK:
                in_answer = True
        # Markers.
        preds: List[set] = [set() for _ in range(n)]
        line_has_wait = False
        for t in range(n):
            s = p[t]
            prev = p[t - 1] if t else ""
            m = preds[t]
            if s == "Wait":
                line_has_wait = True
                m.add("wait")
            if line_has_wait:
                m.add("repair_line")
                if s == " not":
                    m.add("not_in_repair")
            if s in (" earlier", " before"):
                m.add("selfref")
            if prev in (" earlier", " before"):
                m.add("after_selfref")
            if s.strip().lower() == "box":
                m.add("box_word")
            if _is_digit(s) and t >= 2 and p[t - 1] == " " and p[t - 2].strip().lower() == "box":
                m.add("box_number")
            if s == " =":
                m.add("eq")
            if t + 1 < n and _is_digit(s) and p[t + 1] == " =":
                m.add("digit_before_eq")
            if s == " " and prev == " =" and t + 1 < n and _is_digit(p[t + 1]):
                m.add("pre_result")
                if multi and phase[t] == "thinking":
                    m.add("pre_result_multi")
            st = s.strip()
            if st in OPERATORS and s.startswith(" "):
                m.add(f"op:{st}")
                # the position that predicts this operator
                if t >= 1:
                    preds[t - 1].add(f"before_op:{st}")
            # operand after an operator: scan back over " " and digits
            j = t - 1
            if s == " " or _is_digit(s):
                while j >= 0 and j >= t - 4 and (p[j] == " " or _is_digit(p[j])):
                    j -= 1
                if j >= 0 and j < t and p[j].strip() in OPERATORS and p[j].startswith(" "):
                    m.add(f"in_op:{p[j].strip()}")
            if "\n" in s:
                line_has_wait = False
        return phase, preds

    def flat(self, where: Sequence[Tuple[int, int]]) -> None:
        """Flatten annotations in the order of ``where`` (``(sequence, position)`` per row)."""
        self.where = np.array(where, dtype=np.int64).reshape(-1, 2)
        self.row_of: Dict[Tuple[int, int], int] = {(int(a), int(b)): r for r, (a, b) in enumerate(self.where)}
        self.tok_id = np.array([self.ids[s][t] for s, t in where], dtype=np.int64)
        self.prev_id = np.array([self.ids[s][t - 1] for s, t in where], dtype=np.int64)
        self.phase_id = np.array([PHASES.index(self.phase[s][t]) for s, t in where], dtype=np.int64)
        names = sorted({k for pr in self.preds for m in pr for k in m})
        self.pred = {k: np.zeros(len(where), dtype=bool) for k in names}
        for r, (s, t) in enumerate(where):
            for k in self.preds[s][t]:
                self.pred[k][r] = True

    def predicate(self, name: str) -> np.ndarray:
        return self.pred.get(name, np.zeros(len(self.where), dtype=bool))

    def context(self, s: int, t: int) -> str:
        p = self.pieces[s]
        a, b = max(0, t - CONTEXT_BEFORE), min(len(p), t + 1 + CONTEXT_AFTER)
        return "".join(p[a:t]) + "<<" + p[t] + ">>" + "".join(p[t + 1 : b])


# ------------------------------------------------------------------------------------ features


def _show(piece: str) -> str:
    return json.dumps(piece, ensure_ascii=False)


class Analysis:
    """Per-feature statistics over a sample's sparse codes."""

    def __init__(self, sample: Sample, vals: np.ndarray, idx: np.ndarray, d_sae: int) -> None:
        self.sample = sample
        self.d_sae = d_sae
        n_rows = vals.shape[0]
        keep = vals > 0
        self.row = np.repeat(np.arange(n_rows), vals.shape[1])[keep.ravel()]
        self.feat = idx.ravel()[keep.ravel()]
        self.val = vals.ravel()[keep.ravel()].astype(np.float32)
        self.n_rows = n_rows
        self.count = np.bincount(self.feat, minlength=d_sae)
        self.mass = np.bincount(self.feat, weights=self.val, minlength=d_sae)
        self.maxval = np.zeros(d_sae, dtype=np.float32)
        np.maximum.at(self.maxval, self.feat, self.val)
        # Entries sorted by feature, then sequence, then strength descending.
        seq = sample.where[self.row, 0]
        order = np.lexsort((-self.val, seq, self.feat))
        self.o_feat, self.o_seq, self.o_row, self.o_val = self.feat[order], seq[order], self.row[order], self.val[order]
        self.f_start = np.searchsorted(self.o_feat, np.arange(d_sae + 1))

    def top_sequences(self, f: int, n: int = TOP_SEQUENCES) -> List[Tuple[int, int, float]]:
        """``[(sequence, position of the max, max strength)]`` by max strength, at most n."""
        a, b = self.f_start[f], self.f_start[f + 1]
        if a == b:
            return []
        seq = self.o_seq[a:b]
        first = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])  # first entry of each sequence = its max
        rows, vals = self.o_row[a:b][first], self.o_val[a:b][first]
        top = np.argsort(-vals, kind="stable")[:n]
        return [(int(self.sample.where[rows[i], 0]), int(self.sample.where[rows[i], 1]), float(vals[i])) for i in top]

    def max_rows(self, tops: Sequence[Tuple[int, int, float]]) -> np.ndarray:
        return np.array([self.sample.row_of[(s, t)] for s, t, _ in tops], dtype=np.int64)

    def entries_in(self, f: int, seqs: Sequence[int]) -> List[Tuple[int, int, float]]:
        """Every nonzero ``(sequence, position, strength)`` of feature f in ``seqs``."""
        a, b = self.f_start[f], self.f_start[f + 1]
        want = np.isin(self.o_seq[a:b], np.array(list(seqs), dtype=np.int64))
        rows, vals = self.o_row[a:b][want], self.o_val[a:b][want]
        out = [(int(self.sample.where[r, 0]), int(self.sample.where[r, 1]), float(v)) for r, v in zip(rows, vals)]
        out.sort()
        return out

    def predicate_match(self, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per feature: (activation-mass precision, recall) against a position predicate."""
        on = mask[self.row]
        mass_on = np.bincount(self.feat[on], weights=self.val[on], minlength=self.d_sae)
        cnt_on = np.bincount(self.feat[on], minlength=self.d_sae)
        precision = np.divide(mass_on, self.mass, out=np.zeros(self.d_sae), where=self.mass > 0)
        recall = cnt_on / max(1, int(mask.sum()))
        return precision, recall


def label_feature(an: Analysis, f: int) -> Dict[str, object]:
    """The v1 heuristic label of feature f (see the module docstring)."""
    s = an.sample
    tops = an.top_sequences(f)
    if not tops:
        return {"label": DEAD_LABEL, "quality": 0.0, "interestingness": 0.0, "tops": []}
    rows = an.max_rows(tops)
    n = len(rows)
    total = len(s.where)
    conj = np.ones(total, dtype=bool)
    parts: List[str] = []
    tok_c = Counter(s.tok_id[rows].tolist()).most_common(1)[0]
    # token texts by id, from the max positions
    piece_of = {int(s.tok_id[r]): s.pieces[st][pt] for r, (st, pt, _) in zip(rows, tops)}
    prev_of = {int(s.prev_id[r]): s.pieces[st][pt - 1] for r, (st, pt, _) in zip(rows, tops)}
    if tok_c[1] / n >= 0.5:
        tok_piece = piece_of[tok_c[0]]
        parts.append(_show(tok_piece))
        conj &= s.tok_id == tok_c[0]
    else:
        parts.append(f"mixed tokens (top: {_show(piece_of[tok_c[0]])} {tok_c[1]}/{n})")
    prev_c = Counter(s.prev_id[rows].tolist()).most_common(1)[0]
    if prev_c[1] / n >= 0.5:
        parts.append(f"after {_show(prev_of[prev_c[0]])}")
        conj &= s.prev_id == prev_c[0]
    best = None
    for name, desc in MARKERS.items():
        mask = s.predicate(name)
        share = float(mask[rows].mean())
        base = float(mask.mean())
        if share < 0.5 or base <= 0 or share / base < 2.0:
            continue
        key = (share, share / base)
        if best is None or key > best[0]:
            best = (key, name, desc)
    if best is not None:
        parts.append("— " + best[2])
        conj &= s.predicate(best[1])
    ph_c = Counter(s.phase_id[rows].tolist()).most_common(1)[0]
    if ph_c[1] / n >= 0.8:
        parts.append(f"[{PHASES[ph_c[0]]}]")
        conj &= s.phase_id == ph_c[0]
    label = " ".join(parts)
    slots = max(n, MIN_SLOTS)
    hits = int(conj[rows].sum())
    if hits == 0:  # nothing shared: purity of the most common token
        hits = tok_c[1]
        b = float((s.tok_id == tok_c[0]).mean())
    else:
        b = float(conj.mean())
    quality = hits / slots
    spec = math.log(1.0 / max(b, 1.0 / total)) / math.log(total) if total > 1 else 0.0
    return {
        "label": label,
        "quality": round(quality, 3),
        "interestingness": round(quality * spec, 3),
        "tops": tops,
    }


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float = CURATED_BETA) -> np.ndarray:
    b2 = beta * beta
    den = b2 * precision + recall
    return np.divide((1 + b2) * precision * recall, den, out=np.zeros_like(precision), where=den > 0)


def curated_matches(an: Analysis, labels: Dict[int, Dict[str, object]]) -> Dict[str, object]:
    s = an.sample
    out: Dict[str, object] = {}
    chosen: Dict[str, int] = {}
    for target, (desc, variants) in CURATED.items():
        cands = []
        by_variant: Dict[str, object] = {}
        for vname, pred in variants:
            mask = s.predicate(pred)
            if not mask.any():
                continue
            prec, rec = an.predicate_match(mask)
            score = f_beta(prec, rec)
            order = np.argsort(-score, kind="stable")
            if score[order[0]] > 0:
                f0 = int(order[0])
                by_variant[pred] = {
                    "variant": vname,
                    "feature_id": f0,
                    "score": round(float(score[f0]), 4),
                    "precision_activation_mass": round(float(prec[f0]), 4),
                    "recall": round(float(rec[f0]), 4),
                    # features that match nearly as well (SAE feature splitting): score >= 0.9
                    "strong_features": [int(f) for f in order[:8] if score[f] >= 0.9],
                }
            for f in order[:5]:
                if score[f] <= 0:
                    break
                cands.append((float(score[f]), int(f), vname, pred, float(prec[f]), float(rec[f]), int(mask.sum())))
        cands.sort(key=lambda c: (-c[0], c[1]))
        if target == "operator_divide" and "operator_times" in chosen:
            cands = [c for c in cands if c[1] != chosen["operator_times"]]
        # one entry per feature (its best variant)
        seen = set()
        uniq = []
        for c in cands:
            if c[1] not in seen:
                seen.add(c[1])
                uniq.append(c)
        if not uniq:
            out[target] = {"description": desc, "feature_id": None, "note": "no feature is active on any matching position"}
            continue
        rows = []
        for score, f, vname, pred, prec, rec, npos in uniq[:3]:
            tops = labels[f]["tops"]
            mr = an.max_rows(tops)
            rows.append(
                {
                    "feature_id": f,
                    "score": round(score, 4),
                    "matched_on": vname,
                    "predicate": pred,
                    "precision_activation_mass": round(prec, 4),
                    "recall": round(rec, 4),
                    "matching_positions": npos,
                    "top20_purity": round(float(s.predicate(pred)[mr].mean()) if len(mr) else 0.0, 3),
                    "label": labels[f]["label"],
                    "quality": labels[f]["quality"],
                    "frequency": round(float(an.count[f]) / an.n_rows, 6),
                    "mean_activation": round(float(an.mass[f] / max(1, an.count[f])), 4),
                    "top_contexts": [s.context(st, pt) for st, pt, _ in tops[:5]],
                    "top_strengths": [round(v, 4) for _, _, v in tops[:5]],
                }
            )
        best = rows[0]
        chosen[target] = best["feature_id"]
        out[target] = {"description": desc, **best, "runners_up": rows[1:], "by_variant": by_variant}
    out["how_matched"] = (
        "For each curated target, position predicates (variants) over the held-out sample; per feature, "
        "precision = share of its activation mass on matching positions, recall = share of matching "
        "positions where it is active, score = F-beta (beta 0.5, precision weighted); best (feature, variant) reported, with two "
        "runners-up. top20_purity = share of the feature's top-20 max positions that match. The ÷ pick "
        "excludes the × pick."
    )
    return out


# --------------------------------------------------------------------------------------- output


def _fmt(v: float) -> str:
    return f"{v:.5g}"


def write_tables(
    out: str, an: Analysis, labels: Dict[int, Dict[str, object]], tok: Tokenizer, max_bytes: int
) -> Dict[str, object]:
    s = an.sample
    per_feat_seqs: Dict[int, List[int]] = {f: [t[0] for t in labels[f]["tops"]] for f in range(an.d_sae)}
    entries: Dict[int, List[Tuple[int, int, float]]] = {f: an.entries_in(f, per_feat_seqs[f]) for f in range(an.d_sae)}

    # Size estimate (bytes per row, CSV + SQLite together, measured on Tiny-R1's tables).
    refs = Counter(q for f in per_feat_seqs for q in per_feat_seqs[f])
    n_act = sum(len(v) for v in entries.values())
    n_tok = sum(len(s.ids[q]) for q in refs)

    def estimate() -> int:
        return BYTES_PER_ACTIVATION * n_act + BYTES_PER_TOKEN * n_tok + BYTES_PER_FEATURE * an.d_sae + BYTES_FIXED

    shrunk = 0
    heap = [(-len(entries[f]), f) for f in range(an.d_sae) if len(per_feat_seqs[f]) > 1]
    heapq.heapify(heap)
    while estimate() > SIZE_MARGIN * max_bytes and heap:
        # drop the last kept sequence of the feature with the most activation rows
        _, f = heapq.heappop(heap)
        q = per_feat_seqs[f].pop()
        before = len(entries[f])
        entries[f] = [e for e in entries[f] if e[0] != q]
        n_act -= before - len(entries[f])
        refs[q] -= 1
        if refs[q] == 0:
            del refs[q]
            n_tok -= len(s.ids[q])
        shrunk += 1
        if len(per_feat_seqs[f]) > 1:
            heapq.heappush(heap, (-len(entries[f]), f))
    seqs = sorted({q for f in per_feat_seqs for q in per_feat_seqs[f]})
    os.makedirs(out, exist_ok=True)
    tok_rows = [(q, t, int(tid), s.pieces[q][t]) for q in seqs for t, tid in enumerate(s.ids[q])]
    act_rows = [(f, q, t, v) for f in range(an.d_sae) for q, t, v in entries[f]]
    auto_rows = [
        (f, str(labels[f]["label"]), float(labels[f]["quality"]), float(labels[f]["interestingness"]), MODEL_NAME, PROMPT_VERSION)
        for f in range(an.d_sae)
    ]
    with open(os.path.join(out, "tokens.csv"), "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("sequence_id", "token_idx", "token", "decoded_token"))
        w.writerows(tok_rows)
    with open(os.path.join(out, "activations.csv"), "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("feature_id", "sequence_id", "token_idx", "strength"))
        w.writerows((f, q, t, _fmt(v)) for f, q, t, v in act_rows)
    with open(os.path.join(out, "autointerp.csv"), "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("feature_id", "label", "quality", "interestingness", "model_name", "prompt_version"))
        w.writerows(auto_rows)
    db = os.path.join(out, "examples.sqlite")
    if os.path.exists(db):
        os.remove(db)
    con = sqlite3.connect(db)
    con.executescript(
        """
        CREATE TABLE tokens (sequence_id INTEGER, token_idx INTEGER, token INTEGER, decoded_token TEXT);
        CREATE TABLE activations (feature_id INTEGER, sequence_id INTEGER, token_idx INTEGER, strength REAL);
        CREATE TABLE autointerp (feature_id INTEGER, label TEXT, quality REAL, interestingness REAL,
                                 model_name TEXT, prompt_version TEXT);
        """
    )
    con.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?)", tok_rows)
    # strengths as stored in the CSV (5 significant digits), so both files hold the same numbers
    con.executemany("INSERT INTO activations VALUES (?, ?, ?, ?)", ((f, q, t, float(_fmt(v))) for f, q, t, v in act_rows))
    con.executemany("INSERT INTO autointerp VALUES (?, ?, ?, ?, ?, ?)", auto_rows)
    con.commit()
    con.execute("VACUUM")
    con.close()
    sizes = {n: os.path.getsize(os.path.join(out, n)) for n in ("tokens.csv", "activations.csv", "autointerp.csv", "examples.sqlite")}
    return {
        "sequences_stored": len(seqs),
        "token_rows": len(tok_rows),
        "activation_rows": len(act_rows),
        "sequences_dropped_for_size": shrunk,
        "bytes": sizes,
    }


# ------------------------------------------------------------------------------------------ main


def analyse(
    model_dir: str, sae_dir: str, n_sequences: int, seed: int = DEFAULT_SEED
) -> Tuple[Analysis, Dict[int, Dict[str, object]], Tokenizer, dict, int, Dict[str, float]]:
    """Run the model and SAE over the sample and label every feature."""
    timings: Dict[str, float] = {}
    t0 = time.time()
    model, tok = load_model(model_dir)
    sae, cfg, layer = load_sae(sae_dir)
    exs = corpus.examples(n_sequences, "heldout", seed)
    sample = Sample(tok, exs)
    timings["annotate"] = round(time.time() - t0, 2)
    t0 = time.time()
    acts, where = collect(model, tok, [e.text for e in exs], layer)
    vals, idx = encode_topk(sae, acts)
    sample.flat(where)
    timings["activations"] = round(time.time() - t0, 2)
    t0 = time.time()
    an = Analysis(sample, vals, idx, int(cfg["d_sae"]))
    labels = {f: label_feature(an, f) for f in range(an.d_sae)}
    timings["labels"] = round(time.time() - t0, 2)
    return an, labels, tok, cfg, layer, timings


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--out", required=True, help="folder for the tables, features.json, curated.json")
    ap.add_argument("--sequences", type=int, default=400)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="held-out sample seed")
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="size budget of the output folder (estimated)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    an, labels, tok, cfg, layer, timings = analyse(args.model, args.sae, args.sequences, args.seed)
    t0 = time.time()
    curated = curated_matches(an, labels)
    timings["curated"] = round(time.time() - t0, 2)
    t0 = time.time()
    info = write_tables(args.out, an, labels, tok, args.max_bytes)
    timings["tables"] = round(time.time() - t0, 2)
    s = an.sample
    feats = []
    for f in range(an.d_sae):
        lab = labels[f]
        feats.append(
            {
                "feature_id": f,
                "label": lab["label"],
                "quality": lab["quality"],
                "interestingness": lab["interestingness"],
                "frequency": round(float(an.count[f]) / an.n_rows, 6),
                "mean_activation": round(float(an.mass[f] / an.count[f]), 4) if an.count[f] else 0.0,
                "max_activation": round(float(an.maxval[f]), 4),
                "top_contexts": [s.context(st, pt) for st, pt, _ in lab["tops"][:3]],
            }
        )
    n_dead = sum(1 for f in feats if f["label"] == DEAD_LABEL)
    summary = {
        "generator": "tools/tiny-r1/features.py",
        "model": os.path.abspath(args.model),
        "sae": os.path.abspath(args.sae),
        "hook_name": f"model.layers.{layer}",
        "d_sae": an.d_sae,
        "k": int(cfg["k"]),
        "sequences": len(s.exs),
        "seed": args.seed,
        "tokens_encoded": an.n_rows,
        "l0": round(len(an.val) / max(1, an.n_rows), 3),
        "dead_features": n_dead,
        "dead_fraction": round(n_dead / an.d_sae, 4),
        "mean_quality_alive": round(float(np.mean([f["quality"] for f in feats if f["label"] != DEAD_LABEL] or [0])), 4),
        "labels_with_marker": sum(1 for f in feats if "— " in str(f["label"])),
        "tables": info,
        "timings_seconds": {**timings, "total": round(time.time() - t_start, 2)},
    }
    with open(os.path.join(args.out, "features.json"), "w", encoding="utf-8") as fh:
        json.dump({**summary, "features": feats}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    with open(os.path.join(args.out, "curated.json"), "w", encoding="utf-8") as fh:
        json.dump({"generator": summary["generator"], "sequences": len(s.exs), "seed": args.seed, **curated}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    brief = {k: (v["feature_id"], v.get("score"), v.get("matched_on")) for k, v in curated.items() if isinstance(v, dict)}
    print(json.dumps({k: summary[k] for k in ("tokens_encoded", "l0", "dead_fraction", "mean_quality_alive", "labels_with_marker", "tables", "timings_seconds")}, ensure_ascii=False))
    print("curated:", json.dumps(brief, ensure_ascii=False))
    print(f"wrote {args.out} in {time.time() - t_start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
