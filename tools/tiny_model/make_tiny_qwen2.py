#!/usr/bin/python3
"""Write tests/fixtures/tiny-qwen2/: a tiny random Qwen2 causal LM with a DeepSeek-R1-style tokenizer.

Run with Debian's own python3 (NOT the pyenv python3 that may come first on PATH):

    /usr/bin/python3 tools/tiny_model/make_tiny_qwen2.py [--out tests/fixtures/tiny-qwen2]

Needs only the standard library and PyTorch (1.13). The outputs are committed; tests never run
this script. It is deterministic (fixed seed, a deterministic BPE trainer, one thread): running it
twice writes byte-identical files.

What it writes (see the README.md it also writes):
  config.json, generation_config.json  Hugging Face Qwen2 configs (+ transformers.js_config)
  model.safetensors                    random float32 weights, HF parameter names
  tokenizer.json                       byte-level BPE: 256 byte tokens + merges learned here
                                       from a small built-in English/maths corpus, Qwen2's
                                       pre-tokenizer, DeepSeek-R1's special tokens
  tokenizer_config.json                tokenizer_class Qwen2Tokenizer, R1-Distill's chat template
  tokenizer-golden.json                ids from the Python tokenizer (loupe_server.tokenizer) for
                                       strings and chat-templated conversations; the node test
                                       tests/node/tiny-tokenizer.test.ts checks transformers.js
                                       produces the same ids
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import unicodedata
from typing import Dict, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "server", "python"))

import torch  # noqa: E402

from loupe_server.models.qwen2 import Qwen2Config, Qwen2ForCausalLM, greedy_decode  # noqa: E402
from loupe_server.safetensors_io import save_file  # noqa: E402
from loupe_server.tokenizer import QWEN2_SPLIT_REGEX, Tokenizer, bytes_to_unicode, qwen2_pre_split  # noqa: E402

SEED = 20250214
VOCAB_SIZE = 512

# DeepSeek-R1's special tokens, in the relative order of their ids in R1-Distill-Qwen
# (151643, 151644, 151645, 151646, 151648, 151649, 151654). <think> and </think> are added but
# not "special" there (so skip_special_tokens keeps them); the same here.
SPECIAL_TOKENS: List[Tuple[str, bool]] = [
    ("<｜end▁of▁sentence｜>", True),
    ("<｜User｜>", True),
    ("<｜Assistant｜>", True),
    ("<｜begin▁of▁sentence｜>", True),
    ("<think>", False),
    ("</think>", False),
    ("<｜▁pad▁｜>", True),
]
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"

# DeepSeek-R1-Distill-Qwen's chat template (tokenizer_config.json of deepseek-ai/
# DeepSeek-R1-Distill-Qwen-1.5B after its 2025 update: assistant turns keep only the text after
# the last </think>, and the generation prompt opens the thinking block). The '\n' inside the
# Jinja string literals are backslash-n escapes, as in the original file.
R1_CHAT_TEMPLATE = (
    r"{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    r"{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    r"{%- for message in messages %}{%- if message['role'] == 'system' %}"
    r"{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    r"{{bos_token}}{{ns.system_prompt}}"
    r"{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    r"{{'<｜User｜>' + message['content']}}{%- endif %}"
    r"{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    r"{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    r"{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    r" + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n'"
    r" + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}"
    r"{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    r" + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n'"
    r" + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}"
    r"{%- endif %}{%- endfor %}{%- endif %}"
    r"{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    r"{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    r"{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
    r"{% set content = content.split('</think>')[-1] %}{% endif %}"
    r"{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    r"{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    r"{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    r"{%- set ns.is_output_first = false %}{%- else %}"
    r"{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    r"{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    r"{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %}"
)

# A small English/maths corpus in the style of a reasoning trace: the BPE merges are learned from
# it, so common words, numbers' neighbours and LaTeX fragments get their own tokens.
CORPUS = r"""
Okay, so I need to figure out how many apples are left. Let me think about this step by step.
First, there are 12 apples in the basket. Then 5 of them are eaten, so 12 - 5 = 7 apples are left.
Wait, but the problem says that 3 more apples are added afterwards. So the total is 7 + 3 = 10.
Let me double-check that. 12 - 5 is 7, and 7 + 3 is 10. Yes, that seems right.
So the answer is 10.

Okay, let me try to solve the equation 2x + 3 = 11. I need to find the value of x.
Subtract 3 from both sides: 2x = 8. Then divide both sides by 2: x = 4.
Let me verify: 2 * 4 + 3 = 8 + 3 = 11. That checks out, so x = 4.

Hmm, what is the sum of the first 10 positive integers? I remember there is a formula for this.
The sum of the first n integers is n(n + 1)/2. So for n = 10, the sum is 10 * 11 / 2 = 55.
Alternatively, I could pair the numbers: 1 + 10 = 11, 2 + 9 = 11, and so on, which gives 5 pairs of 11.
Therefore the sum is 55.

The question asks for the area of a circle with radius 3. The area of a circle is \pi r^2.
So the area is \pi \cdot 3^2 = 9\pi. If we approximate \pi as 3.14, the area is about 28.26.
So the final answer is \boxed{9\pi}.

Let me think about whether the number 91 is prime. A prime number has no divisors other than 1 and itself.
Is 91 divisible by 7? 7 * 13 = 91. So 91 is not prime; it is the product of 7 and 13.
Wait, I should check smaller primes first. 91 is odd, so it is not divisible by 2.
The digits add up to 9 + 1 = 10, which is not a multiple of 3, so it is not divisible by 3.
It does not end in 0 or 5, so it is not divisible by 5. But it is divisible by 7.
So the answer is no, 91 is not a prime number.

Now, the probability of rolling a sum of 7 with two dice. There are 6 * 6 = 36 possible outcomes.
The pairs that sum to 7 are (1, 6), (2, 5), (3, 4), (4, 3), (5, 2), and (6, 1). That is 6 outcomes.
So the probability is 6/36 = 1/6. Let me make sure I did not miss any pairs. No, that is all of them.
The probability is \frac{1}{6}.

I think the key idea here is to find the derivative of f(x) = x^2 + 3x. The derivative is f'(x) = 2x + 3.
Setting the derivative equal to zero gives 2x + 3 = 0, so x = -3/2.
Since the second derivative is 2, which is positive, this is a minimum.
The minimum value is f(-3/2) = 9/4 - 9/2 = -9/4.

But wait, maybe I should reconsider the problem. The train travels 120 miles in 2 hours.
Its speed is 120 / 2 = 60 miles per hour. At that speed, how long does it take to travel 300 miles?
Time is distance divided by speed, so 300 / 60 = 5 hours. That makes sense.

Alright, so the answer should be the number of ways to choose 2 items from 5.
That is the binomial coefficient \binom{5}{2} = \frac{5!}{2! \cdot 3!} = \frac{120}{2 \cdot 6} = 10.
Let me count them directly to be sure: there are 10 pairs. So there are 10 ways.

The user is asking what the capital of France is. The capital of France is Paris.
The user wants to know why the sky is blue. Sunlight is scattered by the air, and blue light is
scattered more than red light because it has a shorter wavelength. That is why the sky looks blue.

Let me write this more carefully. We have a right triangle with legs 3 and 4.
By the Pythagorean theorem, the hypotenuse is \sqrt{3^2 + 4^2} = \sqrt{9 + 16} = \sqrt{25} = 5.
So the hypotenuse is 5, and the perimeter is 3 + 4 + 5 = 12.

Hmm, I think I made a mistake earlier. Let me go back and check each step again.
The problem states that the ratio of boys to girls is 3 to 2, and there are 30 students in total.
So the boys are 3/5 of the class: 3/5 * 30 = 18 boys, and the girls are 2/5 * 30 = 12 girls.
Check: 18 + 12 = 30. Good. So there are 18 boys and 12 girls in the class.

In summary, the answer is 42. I am confident that this is correct because every step was checked.
Therefore, the final answer is \boxed{42}.
"""


def train_bpe(corpus: str, n_merges: int) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Byte-level BPE training, deterministic: most frequent pair first, ties broken by the
    lexicographically smallest (left, right) pair. Returns (vocab tokens in id order, merges)."""
    enc = bytes_to_unicode()
    byte_tokens = [enc[b] for b in range(256)]
    words: Dict[Tuple[str, ...], int] = collections.Counter()
    for piece in qwen2_pre_split(unicodedata.normalize("NFC", corpus)):
        words[tuple(enc[b] for b in piece.encode("utf-8"))] += 1
    vocab = list(byte_tokens)
    known = set(vocab)
    merges: List[Tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Dict[Tuple[str, str], int] = collections.Counter()
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += f
        if not pairs:
            raise RuntimeError(f"corpus exhausted after {len(merges)} merges")
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            raise RuntimeError(f"corpus too small: only {len(merges)} merges with a count of 2 or more")
        merged = best[0] + best[1]
        if merged in known:  # same string reached by another split: keep the vocab unique
            raise RuntimeError(f"merge {best} recreates existing token {merged!r}")
        merges.append(best)
        vocab.append(merged)
        known.add(merged)
        new_words: Dict[Tuple[str, ...], int] = collections.Counter()
        for w, f in words.items():
            out: List[str] = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += f
        words = new_words
    return vocab, merges


def tokenizer_files(vocab: Sequence[str], merges: Sequence[Tuple[str, str]]) -> Tuple[dict, dict]:
    first_added = len(vocab)
    added = [
        {
            "id": first_added + k,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for k, (content, special) in enumerate(SPECIAL_TOKENS)
    ]
    bos_id = first_added + [c for c, _ in SPECIAL_TOKENS].index(BOS)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT_REGEX}, "behavior": "Isolated", "invert": False},
                byte_level,
            ],
        },
        # As in DeepSeek-R1-Distill-Qwen: encoding with special tokens prepends BOS.
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": BOS, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}},
        },
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(vocab)},
            "merges": [list(m) for m in merges],
        },
    }
    tokenizer_config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added
        },
        "bos_token": BOS,
        "chat_template": R1_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "legacy": True,
        "model_max_length": 2048,
        "pad_token": PAD,
        "sp_model_kwargs": {},
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    return tokenizer_json, tokenizer_config


def model_config(bos_id: int, eos_id: int) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 2048,
        "max_window_layers": 4,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB_SIZE,
        "transformers.js_config": {"dtype": "fp32"},
    }


def random_weights(model: Qwen2ForCausalLM, seed: int) -> None:
    """Deterministic weights scaled so activations stay O(1) through the blocks.

    The head is scaled up from the usual 0.02 init to std 0.25 (logit std ~2, |logits| < ~12):
    greedy argmax margins are then ~1e-3 or more while float32 differences between
    implementations (cached vs uncached, torch vs ONNX Runtime) stay ~1e-6 absolute. A larger
    head would not help: margins and rounding errors both scale with the logits, and |logits|
    must stay small for absolute comparisons at 1e-5."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:  # projections: unit-gain init, output projections halved to keep the residual tame
                scale = p.shape[1] ** -0.5
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    scale *= 0.5
                p.copy_(scale * torch.randn(p.shape, generator=g))


GOLDEN_STRINGS = [
    "Hello world",
    "Okay, so I need to figure out how many apples are left.",
    "Let me think step by step: 2x + 3 = 11, so x = 4.",
    "I'm sure it's right, but DON'T trust it'LL work; they've we'd you're",
    "12345 + 678 = 13023",
    "  leading spaces, trailing spaces   ",
    "line one\nline two\n\n\nline five\r\nwindows\r\n",
    "tabs\tand\t\tmore\t tabs",
    "The area is \\pi r^2, so \\boxed{9\\pi}. Also \\frac{1}{6} and \\sqrt{25} = 5.",
    "...!!! ??? --- *** ### (a, b) [c] {d} <e> 'quoted' \"double\"",
    "Réponds en français : déjà vu, naïve, Ångström, Straße.",
    "Cafe\u0301 (combining accent, NFC folds it)",
    "中文测试：你好，世界！ 日本語のテキスト",
    "Emoji 🙂👍🏽 and symbols ∑∫√∞ ≤ ≥ ≠ → ←",
    "Greek αβγ Δ, Cyrillic привет, Arabic مرحبا",
    "<think>\nOkay, let me see.\n</think>\n\nThe answer is 5.",
    "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 2?<｜Assistant｜><think>\n",
    "partial <thin k> and </think > and <｜User and User｜>",
    "nested <think><think></think>",
    "nbsp\u00a0here, nel\u0085there, ideographic\u3000space, bom\ufeffhere",
    "mixed 3rd 21st 1.5e-3 0x1F 1,000,000",
    "x",
    " ",
    "\n",
    "",
]

GOLDEN_CHATS = [
    {"messages": [{"role": "user", "content": "What is 2 + 3?"}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Is 91 a prime number?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Solve 2x + 3 = 11."},
            {"role": "assistant", "content": "<think>\nSubtract 3, then divide by 2.\n</think>\n\nx = 4."},
            {"role": "user", "content": "Now check it."},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "Add 2 and 3 with the tool."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}],
            },
            {"role": "tool", "content": "5"},
            {"role": "tool", "content": "ok"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Réponds : combien font 7 × 6 ?\n\nMerci 🙂"},
        ],
        "add_generation_prompt": True,
    },
]


def write_json(path: str, obj: object, ascii_only: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=ascii_only, indent=1 if ascii_only else None, separators=None if ascii_only else (",", ":"))
        f.write("\n")


README = """# tiny-qwen2: a tiny random Qwen2 with a DeepSeek-R1-style tokenizer

Generated by `tools/tiny_model/make_tiny_qwen2.py` (run with Debian's `/usr/bin/python3`: standard
library + PyTorch only). Deterministic: re-running it writes byte-identical files. Do not edit by
hand; change the script and regenerate.

## What it is

- `config.json`: a Hugging Face Qwen2 config (`model_type: qwen2`, `Qwen2ForCausalLM`): hidden
  size 64, 4 layers, 4 attention heads, 2 key/value heads (grouped-query attention), head_dim 16,
  MLP 128 (SiLU-gated), RMSNorm eps 1e-6, RoPE theta 10000, 2048 positions, vocabulary {vocab},
  untied `lm_head`. `"transformers.js_config": {{"dtype": "fp32"}}` makes transformers.js ask for
  the fp32 ONNX file.
- `model.safetensors`: random float32 weights (seed {seed}) under Hugging Face's parameter names
  (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight` ... `lm_head.weight`).
  The weights mean nothing; the head is scaled (std 0.25, logit std ~2, |logits| < ~12) so greedy
  argmax margins (~1e-3 and up) are far above float32 noise (~1e-6) and two correct
  implementations pick the same tokens.
- `tokenizer.json`: byte-level BPE in the Qwen2 / DeepSeek-R1-Distill-Qwen layout (NFC normalizer,
  Qwen2's split regex with `ByteLevel(use_regex: false)`, merges as pairs, a TemplateProcessing
  post-processor that prepends BOS when special tokens are requested). Vocabulary: 256 byte
  tokens, {merges} merges learned by the script from a small built-in English/maths corpus, and
  DeepSeek-R1's added tokens {specials}.
- `tokenizer_config.json`: `tokenizer_class: Qwen2Tokenizer`, BOS/EOS/PAD, and DeepSeek-R1-Distill's
  Jinja chat template verbatim (generation prompt `<｜Assistant｜><think>\\n`).
- `generation_config.json`: BOS/EOS ids, greedy by default (`do_sample: false`).
- `tokenizer-golden.json`: token ids from the Python tokenizer (`server/python/loupe_server/tokenizer.py`)
  for a set of strings (with and without the BOS post-processor) and for chat-templated
  conversations (rendered text and ids). `tests/node/tiny-tokenizer.test.ts` checks that
  transformers.js, loading this folder, renders and tokenizes identically.

## What it is for

- Now: tests of the remote Python reference server (`server/python/loupe_server`), which runs this
  model with `loupe_server.models.qwen2.Qwen2ForCausalLM` and tokenizes with
  `loupe_server.tokenizer.Tokenizer`; `server/python/tests/test_tiny_qwen2.py` checks the model
  (KV cache vs full forward, GQA shapes, hooks vs hidden states, deterministic greedy decoding)
  and the tokenizer.
- Later: the same module exports this model to ONNX for the in-browser runtime (transformers.js
  loads Qwen2 from local files: see docs and the runtime notes), and a distilled "Tiny-R1" reuses
  the architecture, tokenizer and chat template.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "tiny-qwen2"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)

    n_merges = VOCAB_SIZE - 256 - len(SPECIAL_TOKENS)
    vocab, merges = train_bpe(CORPUS, n_merges)
    tok_json, tok_config = tokenizer_files(vocab, merges)
    write_json(os.path.join(args.out, "tokenizer.json"), tok_json)
    write_json(os.path.join(args.out, "tokenizer_config.json"), tok_config)

    names = [c for c, _ in SPECIAL_TOKENS]
    bos_id = len(vocab) + names.index(BOS)
    eos_id = len(vocab) + names.index(EOS)
    cfg = model_config(bos_id, eos_id)
    write_json(os.path.join(args.out, "config.json"), cfg)
    write_json(
        os.path.join(args.out, "generation_config.json"),
        {"bos_token_id": bos_id, "eos_token_id": eos_id, "do_sample": False},
    )

    model = Qwen2ForCausalLM(Qwen2Config.from_dict(cfg))
    random_weights(model, SEED)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(args.out, "model.safetensors"))

    tok = Tokenizer.from_folder(args.out)
    assert tok.vocab_size == VOCAB_SIZE, tok.vocab_size
    strings = []
    for s in GOLDEN_STRINGS:
        ids = tok.encode(s)
        assert tok.decode(ids) == unicodedata.normalize("NFC", s), s
        strings.append({"text": s, "ids": ids, "ids_with_special_tokens": tok.encode(s, add_special_tokens=True)})
    chats = []
    for c in GOLDEN_CHATS:
        text = tok.apply_chat_template(c["messages"], add_generation_prompt=c["add_generation_prompt"])
        chats.append({**c, "text": text, "ids": tok.encode(text)})
    write_json(
        os.path.join(args.out, "tokenizer-golden.json"),
        {
            "generator": "tools/tiny_model/make_tiny_qwen2.py (loupe_server.tokenizer.Tokenizer)",
            "vocab_size": VOCAB_SIZE,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "strings": strings,
            "chats": chats,
        },
        ascii_only=True,
    )
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(
            README.format(
                vocab=VOCAB_SIZE,
                seed=SEED,
                merges=len(merges),
                specials=", ".join(f"`{n}`" for n in names),
            )
        )

    # Self-check: reload from disk, decode greedily, report the smallest argmax margin.
    loaded = Qwen2ForCausalLM.from_pretrained(args.out)
    margins = []
    for chat in GOLDEN_CHATS[:3]:
        ids = tok.encode(tok.apply_chat_template(chat["messages"]))
        out, margin = greedy_decode(loaded, ids, 32, tok.eos_token_ids)
        margins.append(margin)
        print(f"greedy: {tok.decode(out)!r} (min top-2 margin {margin:.4f})")
    # |logits| < ~12; float32 / ONNX Runtime differences are ~1e-6 there, so 1e-3 is a wide margin.
    assert min(margins) > 1e-3, margins
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    params = sum(p.numel() for p in loaded.parameters())
    print(f"wrote {args.out}: {params} parameters, vocab {VOCAB_SIZE} ({len(merges)} merges), {total} bytes")


if __name__ == "__main__":
    main()
