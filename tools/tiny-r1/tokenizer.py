#!/usr/bin/python3
"""Tiny-R1's tokenizer: a small byte-level BPE learned from the corpus, written as
transformers.js-compatible ``tokenizer.json`` + ``tokenizer_config.json``.

    /usr/bin/python3 tools/tiny-r1/tokenizer.py --out DIR [--vocab-size N] [--examples 4000]

Layout, pre-tokenizer, special tokens, post-processor and chat template are exactly those of
``tests/fixtures/tiny-qwen2`` (whose writer, ``tools/tiny_model/make_tiny_qwen2.py``, is imported:
``train_bpe`` and ``tokenizer_files``): Qwen2's split regex, so every digit is its own
pre-token and numbers are always written one digit per token; 256 byte tokens, then the learned
merges, then DeepSeek-R1's seven added tokens (``<｜end▁of▁sentence｜>`` first). Only the merges
differ: they are learned from Tiny-R1's own traces (special tokens removed), so the frequent
words of the small, regular vocabulary become single tokens.

Deterministic: the corpus is seeded and the BPE trainer breaks ties lexicographically.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import unicodedata
from typing import List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "server", "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "tiny_model"))

import corpus  # noqa: E402
from make_tiny_qwen2 import SPECIAL_TOKENS, tokenizer_files, train_bpe, write_json  # noqa: E402

from loupe_server.tokenizer import Tokenizer, qwen2_pre_split  # noqa: E402

# Total vocabulary, added tokens included. None: every merge the corpus supports (training stops
# when each pre-token of the corpus is a single token; about 541 = 256 bytes + 278 merges + 7
# added tokens for the default corpus), i.e. the corpus's words are whole tokens and the byte
# tokens remain for anything typed outside it.
VOCAB_SIZE: Optional[int] = None
TOKENIZER_EXAMPLES = 4000
TOKENIZER_SEED = 7001


def training_text(n: int, seed: int) -> str:
    """The text the merges are learned from: ``n`` training-split traces, special tokens removed."""
    specials = [c for c, _ in SPECIAL_TOKENS]
    parts: List[str] = []
    for ex in corpus.examples(n, "train", seed):
        t = ex.text
        for s in specials:
            t = t.replace(s, "\n")
        parts.append(t)
    return "\n".join(parts)


def learn_merges(text: str, n_merges: Optional[int]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``make_tiny_qwen2.train_bpe``; with ``n_merges`` None, as many merges as the text supports
    (the trainer reports where it ran out; training again with that count is deterministic)."""
    if n_merges is not None:
        return train_bpe(text, n_merges)
    try:
        return train_bpe(text, 100000)
    except RuntimeError as exc:
        m = re.search(r"(?:exhausted after|only) (\d+) merges", str(exc))
        if not m:
            raise
        return train_bpe(text, int(m.group(1)))


def build(
    out: str,
    vocab_size: Optional[int] = VOCAB_SIZE,
    n_examples: int = TOKENIZER_EXAMPLES,
    seed: int = TOKENIZER_SEED,
) -> Tokenizer:
    n_merges = None if vocab_size is None else vocab_size - 256 - len(SPECIAL_TOKENS)
    text = training_text(n_examples, seed)
    vocab, merges = learn_merges(text, n_merges)
    vocab_size = len(vocab) + len(SPECIAL_TOKENS)
    tok_json, tok_config = tokenizer_files(vocab, merges)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "tokenizer.json"), tok_json)
    write_json(os.path.join(out, "tokenizer_config.json"), tok_config)
    tok = Tokenizer.from_folder(out)
    assert tok.vocab_size == vocab_size, (tok.vocab_size, vocab_size)
    return tok


def check(tok: Tokenizer, n: int = 200, seed: int = 99) -> dict:
    """Round-trip traces of both splits, check the chat template and digit tokenization."""
    n_tokens = 0
    for split in ("train", "heldout"):
        for ex in corpus.examples(n, split, seed):
            ids = tok.encode(ex.text)
            assert tok.decode(ids) == unicodedata.normalize("NFC", ex.text), ex.text
            n_tokens += len(ids)
            assert ex.prompt == tok.apply_chat_template([{"role": "user", "content": ex.problem.question}])
    # Every digit is its own token.
    for s in ("1234567890", "7 × 8 = 56", "box 12 has 144 apples"):
        for i in tok.encode(s):
            b = tok.token_bytes(i)
            assert not (any(c in b"0123456789" for c in b) and len(b) > 1), (s, b)
    assert [tok.id_to_token(i) for i in tok.encode("<think>\n")][0] == "<think>"
    return {"roundtrip_examples": 2 * n, "mean_tokens": n_tokens / (2 * n)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help="total (default: all merges the corpus supports)")
    ap.add_argument("--examples", type=int, default=TOKENIZER_EXAMPLES)
    ap.add_argument("--seed", type=int, default=TOKENIZER_SEED)
    args = ap.parse_args(argv)
    t0 = time.time()
    tok = build(args.out, args.vocab_size, args.examples, args.seed)
    info = check(tok)
    pieces = len(set(qwen2_pre_split(training_text(200, args.seed))))
    print(f"tokenizer: vocab {tok.vocab_size}, {pieces} distinct pre-tokens in 200 traces, "
          f"{info['mean_tokens']:.1f} tokens per trace, {time.time() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
