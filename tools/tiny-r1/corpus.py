#!/usr/bin/python3
"""Tiny-R1's training corpus: deterministic, seeded R1-style reasoning traces.

Run with Debian's own python3 (standard library only here):

    /usr/bin/python3 tools/tiny-r1/corpus.py [--n 5] [--split train|heldout] [--seed 1] [--stats 2000]

prints a few rendered examples (or, with ``--stats N``, statistics over N of them).

Every example is one user question and one assistant turn, rendered exactly as DeepSeek-R1's
chat template renders a prompt with ``add_generation_prompt=True`` followed by what R1 generates::

    <｜begin▁of▁sentence｜><｜User｜>What is (7 + 5) × 3?<｜Assistant｜><think>
    Okay, so the user asked what (7 + 5) × 3 is. Let me work through it step by step.
    Step 1: 7 + 5 = 12.
    Step 2: 12 × 3 = 36.
    So the result is 36.
    </think>

    The answer is 36.<｜end▁of▁sentence｜>

Three kinds of problem (weights 0.5 / 0.3 / 0.2):

* ``arith``: one to three operations with +, -, ×, ÷ on small integers, evaluated left to right
  (parentheses are written wherever precedence would otherwise differ). Ranges are kept inside
  what a 1M-parameter model can learn: × only when both operands are ≤ 12 (the times tables),
  ÷ only when exact with divisor and quotient ≤ 12, + and - add or subtract 1..12, and every
  intermediate result stays in 0..144. Steps are numbered ("Step 2: 56 - 5 = 51.") or prose
  ("First, ... Then ..."), sometimes refer back ("Using the result from before, ..."), and
  sometimes end with a check that refers back ("As computed earlier, ...").
* ``boxes``: two to four numbered boxes with 1..9 items each, one to three events (items put
  in, taken out, moved between boxes), then "how many ... are in box 3 now?" or "... in all
  now?". The trace tracks each box ("box 3 now has 5 + 2 = 7 apples").
* ``compare``: "Which is larger, 6 × 7 or 5 × 9?" (or smaller): both values are computed, the
  comparison refers back to them, the answer is the expression ("The answer is 5 × 9.").

About 20% of traces (``MISTAKE_RATE``) make one arithmetic slip and backtrack on the next line:
"Wait, that's not right. 7 × 8 is 56, not 54." The wrong number is marked as not trained on (see
:class:`Example`): the model learns to notice and repair a slip, never to make one.

Train / held-out split: by problem. Each problem has a canonical ``key`` (its question with the
numbers, independent of wording); a key is held out iff ``sha256(key)`` falls in the lowest
``HELDOUT_PERCENT`` percent. Generating for one split rejects problems of the other, so
held-out problems never appear in training, whatever the seeds.

Public API: :func:`examples` (N examples of a split), :func:`heldout_problems` (distinct
held-out problems with their answers, for evaluation), :func:`extract_answer`,
:func:`operator_swap_problems` (problems with a × whose ÷ variant is also valid: the steering
experiment), :func:`render_prompt`, and the constants below.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

# Special tokens and the rendered chat template (DeepSeek-R1-Distill-Qwen's; see
# tools/tiny_model/make_tiny_qwen2.py and loupe_server.tokenizer.Tokenizer.apply_chat_template).
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"
# What add_generation_prompt appends; R1 then writes its thinking.
GENERATION_PROMPT = ASSISTANT + THINK + "\n"
# The first words of every trace (the "Okay, so the user ..." prefix R1 treats like the prompt).
PREFIX = "Okay, so the user asked"
ANSWER_LEAD = "The answer is "

MISTAKE_RATE = 0.2
HELDOUT_PERCENT = 10
KIND_WEIGHTS = (("arith", 0.5), ("boxes", 0.3), ("compare", 0.2))

TIMES = "×"
DIVIDE = "÷"
OPS = ("+", "-", TIMES, DIVIDE)
MAX_VALUE = 144
SMALL = 12
ITEMS = (("apple", "apples"), ("pen", "pens"), ("coin", "coins"), ("book", "books"), ("card", "cards"), ("stone", "stones"))


@dataclass(frozen=True)
class Problem:
    kind: str  # "arith" | "boxes" | "compare"
    key: str  # canonical description: identical problems share it, whatever the wording
    question: str  # the user's message
    answer: str  # the text after "The answer is " (without the final period)
    data: Tuple = ()  # kind-specific structure (see the generators)

    @property
    def split(self) -> str:
        return split_of(self.key)


@dataclass
class Example:
    """One rendered training example.

    ``segments`` concatenate to :attr:`text`; each is ``(text, trainable)``. The prompt
    (BOS ... ``<think>\\n``) is not trainable; the assistant's output is, except the wrong
    numbers of a backtracking slip.
    """

    problem: Problem
    segments: List[Tuple[str, bool]] = field(default_factory=list)
    has_mistake: bool = False

    @property
    def text(self) -> str:
        return "".join(s for s, _ in self.segments)

    @property
    def prompt(self) -> str:
        return render_prompt(self.problem.question)

    @property
    def completion(self) -> str:
        return self.text[len(self.prompt) :]

    def char_mask(self) -> List[bool]:
        """Per character of :attr:`text`: trained on or not."""
        out: List[bool] = []
        for s, t in self.segments:
            out.extend([t] * len(s))
        return out


def render_prompt(question: str) -> str:
    """The chat template's rendering of one user message with ``add_generation_prompt=True``."""
    return BOS + USER + question + GENERATION_PROMPT


def split_of(key: str) -> str:
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "heldout" if h % 100 < HELDOUT_PERCENT else "train"


def apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == TIMES:
        return a * b
    if op == DIVIDE:
        assert b and a % b == 0, (a, op, b)
        return a // b
    raise ValueError(op)


def valid_step(a: int, op: str, b: int) -> bool:
    """Whether ``a op b`` lies inside the corpus's ranges (see the module docstring)."""
    if not (0 <= a <= MAX_VALUE and 1 <= b <= SMALL):
        return False
    if op == "+":
        return a + b <= MAX_VALUE
    if op == "-":
        return a - b >= 0
    if op == TIMES:
        return 2 <= a <= SMALL and b >= 2
    if op == DIVIDE:
        return b >= 2 and a % b == 0 and 1 <= a // b <= SMALL
    raise ValueError(op)


def _prec(op: str) -> int:
    return 2 if op in (TIMES, DIVIDE) else 1


def render_expr(start: int, steps: Sequence[Tuple[str, int]]) -> str:
    """``start op1 b1 op2 b2 ...`` evaluated left to right, with parentheses where needed."""
    expr = str(start)
    prec = 3
    for op, b in steps:
        p = _prec(op)
        if prec < p:
            expr = f"({expr})"
        expr = f"{expr} {op} {b}"
        prec = p
    return expr


def _plural(n: int, item: Tuple[str, str]) -> str:
    return f"{n} {item[0] if n == 1 else item[1]}"


# ---------------------------------------------------------------------------------------- problems


def _gen_arith(rng: random.Random) -> Problem:
    n_ops = rng.choices((1, 2, 3), weights=(0.15, 0.5, 0.35))[0]
    a, op, b = _random_single(rng, 30)
    steps = [(op, b)]
    value = apply(a, op, b)
    while len(steps) < n_ops:
        options = []
        for op in OPS:
            for b in range(1, SMALL + 1):
                if valid_step(value, op, b):
                    options.append((op, b))
        # Prefer × and ÷ as often as they are possible, so they are not drowned by + and -.
        by_op: Dict[str, List[Tuple[str, int]]] = {}
        for o in options:
            by_op.setdefault(o[0], []).append(o)
        op = rng.choice(sorted(by_op))
        step = rng.choice(by_op[op])
        steps.append(step)
        value = apply(value, *step)
    expr = render_expr(a, steps)
    form = rng.choice(("What is {}?", "Compute {}.", "Calculate {}."))
    return Problem("arith", f"arith:{expr}", form.format(expr), str(value), (a, tuple(steps)))


def _gen_boxes(rng: random.Random) -> Problem:
    n_boxes = rng.randint(2, 4)
    item = rng.choice(ITEMS)
    counts = [rng.randint(1, 9) for _ in range(n_boxes)]
    n_events = rng.choices((1, 2, 3), weights=(0.3, 0.45, 0.25))[0]
    events: List[Tuple[str, int, int, int]] = []  # (kind, k, box_from, box_to) boxes 1-based
    cur = list(counts)
    for _ in range(n_events):
        kind = rng.choice(("put", "take", "move"))
        if kind == "put":
            i = rng.randint(1, n_boxes)
            k = rng.randint(1, 5)
            if cur[i - 1] + k > 20:
                kind, k = "take", min(k, cur[i - 1])
            events.append((kind, k, i, 0) if kind == "take" else (kind, k, 0, i))
        elif kind == "take":
            i = rng.randint(1, n_boxes)
            if cur[i - 1] == 0:
                k = rng.randint(1, 5)
                events.append(("put", k, 0, i))
            else:
                k = rng.randint(1, min(5, cur[i - 1]))
                events.append(("take", k, i, 0))
        else:
            i, j = rng.sample(range(1, n_boxes + 1), 2)
            if cur[i - 1] == 0 or cur[j - 1] + 1 > 20:
                k = rng.randint(1, 5)
                events.append(("put", k, 0, i))
            else:
                k = rng.randint(1, min(5, cur[i - 1], 20 - cur[j - 1]))
                events.append(("move", k, i, j))
        kind, k, i, j = events[-1]
        if i:
            cur[i - 1] -= k
        if j:
            cur[j - 1] += k
    if rng.random() < 0.25:
        target = 0  # all boxes
        answer = sum(cur)
    else:
        touched = sorted({e[2] for e in events if e[2]} | {e[3] for e in events if e[3]})
        target = rng.choice(touched) if rng.random() < 0.85 else rng.randint(1, n_boxes)
        answer = cur[target - 1]
    names = [f"box {b + 1} has {_plural(c, item)}" for b, c in enumerate(counts)]
    setup = ", ".join(names[:-1]) + (", and " if n_boxes > 2 else " and ") + names[-1]
    setup = setup[0].upper() + setup[1:] + "."
    sentences = [setup]
    for kind, k, i, j in events:
        verb = "is" if k == 1 else "are"
        if kind == "put":
            sentences.append(f"Then {_plural(k, item)} {verb} put into box {j}.")
        elif kind == "take":
            sentences.append(f"Then {_plural(k, item)} {verb} taken out of box {i}.")
        else:
            sentences.append(f"Then {_plural(k, item)} {verb} moved from box {i} to box {j}.")
    if target:
        sentences.append(f"How many {item[1]} are in box {target} now?")
    else:
        sentences.append(f"How many {item[1]} are there in all now?")
    question = " ".join(sentences)
    key = f"boxes:{item[1]}:{counts}:{events}:{target}"
    return Problem("boxes", key, question, str(answer), (item, tuple(counts), tuple(events), target))


def _random_single(rng: random.Random, a_max: int = 60) -> Tuple[int, str, int]:
    """One valid step ``a op b``; sums and differences start from at most ``a_max``."""
    while True:
        op = rng.choice(OPS)
        if op == TIMES:
            a, b = rng.randint(2, SMALL), rng.randint(2, SMALL)
        elif op == DIVIDE:
            b, q = rng.randint(2, SMALL), rng.randint(1, SMALL)
            a = b * q
        elif op == "+":
            a, b = rng.randint(1, a_max), rng.randint(1, SMALL)
        else:
            b = rng.randint(1, SMALL)
            a = rng.randint(b, a_max)
        if valid_step(a, op, b):
            return a, op, b


def _gen_compare(rng: random.Random) -> Problem:
    while True:
        e1, e2 = _random_single(rng), _random_single(rng)
        v1, v2 = apply(*e1), apply(*e2)
        if v1 != v2 and e1 != e2:
            break
    larger = rng.random() < 0.6
    s1, s2 = f"{e1[0]} {e1[1]} {e1[2]}", f"{e2[0]} {e2[1]} {e2[2]}"
    word = "larger" if larger else "smaller"
    win = s1 if (v1 > v2) == larger else s2
    question = f"Which is {word}, {s1} or {s2}?"
    # The key ignores the order of the two expressions: "A or B" and "B or A" are one problem.
    key = f"compare:{word}:{':'.join(sorted((s1, s2)))}"
    return Problem("compare", key, question, win, (e1, e2, larger))


_GENERATORS = {"arith": _gen_arith, "boxes": _gen_boxes, "compare": _gen_compare}


def random_problem(rng: random.Random, kind: Optional[str] = None) -> Problem:
    if kind is None:
        kind = rng.choices([k for k, _ in KIND_WEIGHTS], weights=[w for _, w in KIND_WEIGHTS])[0]
    return _GENERATORS[kind](rng)


# ---------------------------------------------------------------------------------------- traces


def _wrong_value(rng: random.Random, a: int, op: str, b: int, right: int) -> int:
    """A plausible slip: off by one or two, or (for ×) one row of the table off."""
    cands = {right + 1, right - 1, right + 2, right - 2}
    if op == TIMES:
        cands |= {right + a, right - a, right + b, right - b}
    if op == "+" or op == "-":
        cands |= {right + 10, right - 10}
    cands = sorted(c for c in cands if c >= 0 and c != right)
    return rng.choice(cands)


class _Writer:
    def __init__(self) -> None:
        self.segments: List[Tuple[str, bool]] = []

    def add(self, text: str, trainable: bool = True) -> None:
        if not text:
            return
        if self.segments and self.segments[-1][1] == trainable:
            self.segments[-1] = (self.segments[-1][0] + text, trainable)
        else:
            self.segments.append((text, trainable))

    def calc(self, rng: random.Random, a: int, op: str, b: int, slip: bool, tail: str = ".\n") -> int:
        """Write ``a op b = r`` + ``tail``; with ``slip``, a wrong r first and the repair line.

        Returns the correct result."""
        r = apply(a, op, b)
        if not slip:
            self.add(f"{a} {op} {b} = {r}{tail}")
            return r
        w = _wrong_value(rng, a, op, b, r)
        self.add(f"{a} {op} {b} = ")
        self.add(str(w), trainable=False)
        self.add(tail)
        lead = rng.choice(("Wait, that's not right.", "Wait, no.", "Wait, I made a mistake."))
        self.add(f"{lead} {a} {op} {b} is {r}, not {w}.\n")
        return r


def _trace_arith(p: Problem, rng: random.Random, w: _Writer, slip_at: Optional[int]) -> None:
    a, steps = p.data
    expr = render_expr(a, steps)
    w.add(f"{PREFIX} what {expr} is. ")
    if len(steps) == 1:
        w.add("This is a single step.\n")
    else:
        w.add(rng.choice(("Let me work through it step by step.\n", "I will do one step at a time.\n")))
    numbered = len(steps) > 1 and rng.random() < 0.5
    value = a
    results = []
    for idx, (op, b) in enumerate(steps):
        if numbered:
            w.add(f"Step {idx + 1}: ")
        elif idx == 0:
            w.add("First, " if len(steps) > 1 else "")
        else:
            w.add(rng.choice(("Then ", "Next, ", "Using the result from before, ")))
        value = w.calc(rng, value, op, b, slip_at == idx)
        results.append(value)
    if len(steps) > 1 and rng.random() < 0.3:
        parts = []
        v = a
        for (op, b), r in zip(steps, results):
            parts.append(f"{v} {op} {b} = {r}")
            v = r
        w.add("Let me check. As computed earlier, " + ", and ".join(parts) + ". Yes, that is right.\n")
    w.add(f"So the result is {value}.\n")


def _trace_boxes(p: Problem, rng: random.Random, w: _Writer, slip_at: Optional[int]) -> None:
    item, counts, events, target = p.data
    if target:
        w.add(f"{PREFIX} how many {item[1]} are in box {target} at the end. ")
    else:
        w.add(f"{PREFIX} how many {item[1]} there are in all at the end. ")
    w.add("Let me keep track of each box.\n")
    names = [f"box {b + 1} has {_plural(c, item)}" for b, c in enumerate(counts)]
    w.add("At the start, " + ", ".join(names[:-1]) + (", and " if len(names) > 2 else " and ") + names[-1] + ".\n")
    cur = list(counts)
    calc_idx = 0

    def update(box: int, op: str, k: int) -> None:
        nonlocal calc_idx
        w.add(f"box {box} now has ")
        before = cur[box - 1]
        r = apply(before, op, k)
        slip = slip_at == calc_idx
        calc_idx += 1
        if slip:
            wrong = _wrong_value(rng, before, op, k, r)
            w.add(f"{before} {op} {k} = ")
            w.add(str(wrong), trainable=False)
            w.add(f" {item[0] if wrong == 1 else item[1]}.\n")
            w.add(f"Wait, that's not right. {before} {op} {k} is {r}, not {wrong}. So box {box} now has {_plural(r, item)}.\n")
        else:
            w.add(f"{before} {op} {k} = {_plural(r, item)}.\n")
        cur[box - 1] = r

    for kind, k, i, j in events:
        if kind == "put":
            w.add(f"{_plural(k, item)} go into box {j}, so ")
            update(j, "+", k)
        elif kind == "take":
            w.add(f"{_plural(k, item)} come out of box {i}, so ")
            update(i, "-", k)
        else:
            w.add(f"{_plural(k, item)} leave box {i}, so ")
            update(i, "-", k)
            w.add(f"They go into box {j}, so ")
            update(j, "+", k)
    touched = {e[2] for e in events} | {e[3] for e in events}
    if target:
        if target not in touched:
            w.add(f"Box {target} did not change, so it still has {_plural(cur[target - 1], item)}, as noted earlier.\n")
        w.add(f"So box {target} has {_plural(cur[target - 1], item)}.\n")
    else:
        w.add("Now I add up the boxes from before: ")
        total = cur[0]
        parts = []
        for c in cur[1:]:
            parts.append(f"{total} + {c} = {total + c}")
            total += c
        w.add(", and ".join(parts) + ".\n")
        w.add(f"So there are {_plural(total, item)} in all.\n")


def _trace_compare(p: Problem, rng: random.Random, w: _Writer, slip_at: Optional[int]) -> None:
    e1, e2, larger = p.data
    word = "larger" if larger else "smaller"
    s1, s2 = f"{e1[0]} {e1[1]} {e1[2]}", f"{e2[0]} {e2[1]} {e2[2]}"
    w.add(f"{PREFIX} which is {word}, {s1} or {s2}. I need to work out both values.\n")
    w.add("First, ")
    v1 = w.calc(rng, *e1, slip=slip_at == 0)
    w.add("Next, ")
    v2 = w.calc(rng, *e2, slip=slip_at == 1)
    big, small = (v1, v2) if v1 > v2 else (v2, v1)
    w.add("Now I compare the two results from before: ")
    if larger:
        w.add(f"{big} is larger than {small}.\n")
    else:
        w.add(f"{small} is smaller than {big}.\n")
    w.add(f"So {p.answer} is {word}.\n")


def _n_calcs(p: Problem) -> int:
    if p.kind == "arith":
        return len(p.data[1])
    if p.kind == "compare":
        return 2
    return sum(2 if e[0] == "move" else 1 for e in p.data[2])


def render_example(p: Problem, rng: random.Random, mistake: Optional[bool] = None) -> Example:
    """Render one trace of ``p``; ``mistake`` None draws a slip with probability MISTAKE_RATE."""
    if mistake is None:
        mistake = rng.random() < MISTAKE_RATE
    slip_at = rng.randrange(_n_calcs(p)) if mistake else None
    w = _Writer()
    w.add(render_prompt(p.question), trainable=False)
    {"arith": _trace_arith, "boxes": _trace_boxes, "compare": _trace_compare}[p.kind](p, rng, w, slip_at)
    w.add(f"{END_THINK}\n\n{ANSWER_LEAD}{p.answer}.{EOS}")
    return Example(p, w.segments, has_mistake=mistake)


# ---------------------------------------------------------------------------------------- API


def iter_problems(split: str, seed: int, kind: Optional[str] = None) -> Iterator[Problem]:
    """Endless stream of problems of ``split`` ("train" or "heldout"), deterministic in ``seed``."""
    if split not in ("train", "heldout"):
        raise ValueError(split)
    rng = random.Random(f"tiny-r1:problems:{split}:{seed}:{kind}")
    while True:
        p = random_problem(rng, kind)
        if p.split == split:
            yield p


def examples(n: int, split: str = "train", seed: int = 0, kind: Optional[str] = None) -> List[Example]:
    """``n`` rendered examples of ``split`` (problems may repeat, wordings differ)."""
    rng = random.Random(f"tiny-r1:render:{split}:{seed}:{kind}")
    out = []
    for p in iter_problems(split, seed, kind):
        if len(out) == n:
            break
        out.append(render_example(p, rng))
    return out


def heldout_problems(n: int, seed: int = 0, kind: Optional[str] = None) -> List[Problem]:
    """``n`` distinct held-out problems (with ``question`` and the correct ``answer``)."""
    seen = set()
    out: List[Problem] = []
    for p in iter_problems("heldout", seed, kind):
        if p.key in seen:
            continue
        seen.add(p.key)
        out.append(p)
        if len(out) == n:
            break
    return out


def extract_answer(generated: str) -> Optional[str]:
    """The answer in a generated completion: the text after the last ``</think>``, after
    "The answer is ", up to the final period / EOS. None when the format is not followed."""
    if END_THINK not in generated:
        return None
    tail = generated.split(END_THINK)[-1]
    tail = tail.split(EOS)[0].strip()
    if not tail.startswith(ANSWER_LEAD):
        return None
    ans = tail[len(ANSWER_LEAD) :].strip()
    if ans.endswith("."):
        ans = ans[:-1]
    return ans.strip()


@dataclass(frozen=True)
class SwapProblem:
    """A problem with at least one ×, and its variant with every × replaced by ÷ (also valid)."""

    problem: Problem
    swapped: Problem


def _arith_problem(a: int, steps: Sequence[Tuple[str, int]], form: str = "What is {}?") -> Problem:
    value = a
    for op, b in steps:
        value = apply(value, op, b)
    expr = render_expr(a, steps)
    return Problem("arith", f"arith:{expr}", form.format(expr), str(value), (a, tuple(steps)))


def operator_swap_problems(n: int, split: Optional[str] = None, seed: int = 0) -> List[SwapProblem]:
    """Distinct arithmetic problems ``a × b [± c [± d]]`` whose ÷ variant ``a ÷ b [± c [± d]]`` is
    also inside the corpus's ranges and has a different value: the × → ÷ steering prompts (a
    steered answer can be scored as "switched" when it equals ``swapped.answer``). ``split``:
    "train", "heldout" or None (any; the pool is ~12 × 601 problems, ~10% of them held out)."""
    rng = random.Random(f"tiny-r1:swap:{split}:{seed}")
    out: List[SwapProblem] = []
    seen = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200000:
            raise RuntimeError(f"only {len(out)} swap problems found")
        n_ops = rng.choices((1, 2, 3), weights=(0.2, 0.4, 0.4))[0]
        b = rng.randint(2, 6)
        a = b * rng.randint(2, SMALL // b)
        steps = [(TIMES, b)]
        while len(steps) < n_ops:
            steps.append((rng.choice(("+", "-")), rng.randint(1, SMALL)))
        swapped_steps = [(DIVIDE if o == TIMES else o, x) for o, x in steps]

        def ok(st: Sequence[Tuple[str, int]]) -> bool:
            v = a
            for o, x in st:
                if not valid_step(v, o, x):
                    return False
                v = apply(v, o, x)
            return True

        if not (ok(steps) and ok(swapped_steps)):
            continue
        p, q = _arith_problem(a, steps), _arith_problem(a, swapped_steps)
        if p.answer == q.answer or p.key in seen or (split is not None and p.split != split):
            continue
        seen.add(p.key)
        out.append(SwapProblem(p, q))
    return out


def stats(exs: Sequence[Example]) -> Dict[str, object]:
    kinds: Dict[str, int] = {}
    for e in exs:
        kinds[e.problem.kind] = kinds.get(e.problem.kind, 0) + 1
    lens = [len(e.text) for e in exs]
    return {
        "examples": len(exs),
        "kinds": kinds,
        "with_mistake": sum(e.has_mistake for e in exs),
        "distinct_problems": len({e.problem.key for e in exs}),
        "chars_mean": statistics.mean(lens) if lens else 0,
        "chars_max": max(lens) if lens else 0,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--split", default="train", choices=("train", "heldout"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", default=None, choices=("arith", "boxes", "compare"))
    ap.add_argument("--stats", type=int, default=0, help="print statistics over this many examples instead")
    args = ap.parse_args(argv)
    if args.stats:
        print(stats(examples(args.stats, args.split, args.seed, args.kind)))
        return
    for e in examples(args.n, args.split, args.seed, args.kind):
        sys.stdout.write(e.text + "\n" + "-" * 60 + "\n")


if __name__ == "__main__":
    main()
