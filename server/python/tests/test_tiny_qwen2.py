"""Tests of the plain-PyTorch Qwen2, the tokenizer and the safetensors I/O on the tiny fixture.

Run from server/python with Debian's python3 (torch 1.13):

    /usr/bin/python3 -m unittest discover -s tests -v

The fixture is tests/fixtures/tiny-qwen2 (written by tools/tiny_model/make_tiny_qwen2.py).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import struct
import sys
import tempfile
import unicodedata
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402

from loupe_server.models.qwen2 import Qwen2Config, Qwen2ForCausalLM, greedy_decode  # noqa: E402
from loupe_server.safetensors_io import SafetensorsError, load_file, save_file  # noqa: E402
from loupe_server.tokenizer import Tokenizer, qwen2_pre_split  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "tiny-qwen2")

_MODEL = None
_TOKENIZER = None


def tiny_model() -> Qwen2ForCausalLM:
    global _MODEL
    if _MODEL is None:
        _MODEL = Qwen2ForCausalLM.from_pretrained(FIXTURE)
    return _MODEL


def tiny_tokenizer() -> Tokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = Tokenizer.from_folder(FIXTURE)
    return _TOKENIZER


def random_ids(n: int, seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 505, (batch, n), generator=g)


def reference_logits(model: Qwen2ForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """An independent, loop-based Qwen2 forward (float64): per-head attention with an explicit
    kv-head index, RoPE as a rotation of (x[j], x[j + d/2]) pairs by angle pos * theta^(-2j/d)."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    h_n, kv_n, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    eps = cfg.rms_norm_eps

    def rms(x, w):
        return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))

    def rope(x, pos):  # x [d]
        half = d // 2
        out = x.clone()
        for j in range(half):
            ang = pos * cfg.rope_theta ** (-2.0 * j / d)
            c, s = math.cos(ang), math.sin(ang)
            out[j] = x[j] * c - x[j + half] * s
            out[j + half] = x[j + half] * c + x[j] * s
        return out

    b, t = ids.shape
    x = sd["model.embed_tokens.weight"][ids]  # [b, t, hidden]
    for li in range(cfg.num_hidden_layers):
        p = f"model.layers.{li}."
        hn = rms(x, sd[p + "input_layernorm.weight"])
        q = hn @ sd[p + "self_attn.q_proj.weight"].T + sd[p + "self_attn.q_proj.bias"]
        k = hn @ sd[p + "self_attn.k_proj.weight"].T + sd[p + "self_attn.k_proj.bias"]
        v = hn @ sd[p + "self_attn.v_proj.weight"].T + sd[p + "self_attn.v_proj.bias"]
        attn = torch.zeros(b, t, h_n * d, dtype=torch.float64)
        for bi in range(b):
            for head in range(h_n):
                kvh = head // (h_n // kv_n)
                qs = [rope(q[bi, i, head * d : (head + 1) * d], i) for i in range(t)]
                ks = [rope(k[bi, j, kvh * d : (kvh + 1) * d], j) for j in range(t)]
                for i in range(t):
                    scores = torch.stack([qs[i] @ ks[j] / math.sqrt(d) for j in range(i + 1)])
                    w = torch.softmax(scores, 0)
                    attn[bi, i, head * d : (head + 1) * d] = sum(
                        w[j] * v[bi, j, kvh * d : (kvh + 1) * d] for j in range(i + 1)
                    )
        x = x + attn @ sd[p + "self_attn.o_proj.weight"].T
        hn = rms(x, sd[p + "post_attention_layernorm.weight"])
        gate = hn @ sd[p + "mlp.gate_proj.weight"].T
        up = hn @ sd[p + "mlp.up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ sd[p + "mlp.down_proj.weight"].T
    x = rms(x, sd["model.norm.weight"])
    return x @ sd["lm_head.weight"].T


class ConfigAndLoadingTest(unittest.TestCase):
    def test_config_from_json(self):
        cfg = Qwen2Config.from_json(os.path.join(FIXTURE, "config.json"))
        self.assertEqual(
            (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim),
            (64, 4, 4, 2, 16),
        )
        self.assertEqual(cfg.vocab_size, 512)
        self.assertFalse(cfg.tie_word_embeddings)
        self.assertEqual(cfg.extra["transformers.js_config"], {"dtype": "fp32"})
        self.assertEqual(cfg.to_dict()["model_type"], "qwen2")
        self.assertEqual(cfg.eos_token_ids, [cfg.eos_token_id])

    def test_head_dim_defaults_to_hidden_over_heads(self):
        cfg = Qwen2Config(vocab_size=10, hidden_size=32, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4)
        self.assertEqual((cfg.head_dim, cfg.num_key_value_heads), (8, 4))

    def test_unsupported_features_are_refused(self):
        base = dict(vocab_size=10, hidden_size=32, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4)
        with self.assertRaises(NotImplementedError):
            Qwen2Config.from_dict({**base, "use_sliding_window": True})
        with self.assertRaises(NotImplementedError):
            Qwen2Config.from_dict({**base, "rope_scaling": {"type": "yarn", "factor": 4.0}})

    def test_module_and_parameter_names_match_hugging_face(self):
        model = tiny_model()
        names = set(dict(model.named_parameters()))
        for i in range(4):
            p = f"model.layers.{i}."
            for n in ("q_proj", "k_proj", "v_proj"):
                self.assertIn(p + f"self_attn.{n}.weight", names)
                self.assertIn(p + f"self_attn.{n}.bias", names)
            self.assertIn(p + "self_attn.o_proj.weight", names)
            self.assertNotIn(p + "self_attn.o_proj.bias", names)
            for n in ("gate_proj", "up_proj", "down_proj"):
                self.assertIn(p + f"mlp.{n}.weight", names)
            self.assertIn(p + "input_layernorm.weight", names)
            self.assertIn(p + "post_attention_layernorm.weight", names)
        for n in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
            self.assertIn(n, names)
        self.assertEqual(len(names), 3 + 4 * 12)
        self.assertEqual(sum(p.numel() for p in model.parameters()), 214080)
        modules = dict(model.named_modules())
        self.assertIn("model.layers.3.mlp", modules)
        self.assertIn("model.layers.0.self_attn", modules)

    def test_from_pretrained_equals_file_contents(self):
        tensors = load_file(os.path.join(FIXTURE, "model.safetensors"))
        sd = tiny_model().state_dict()
        self.assertEqual(set(tensors), set(sd))
        for k, v in tensors.items():
            self.assertEqual(v.dtype, torch.float32)
            self.assertTrue(torch.equal(v, sd[k]), k)

    def test_missing_tensor_is_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(FIXTURE, "config.json")) as f:
                cfg = f.read()
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write(cfg)
            tensors = load_file(os.path.join(FIXTURE, "model.safetensors"))
            del tensors["model.layers.2.mlp.up_proj.weight"]
            save_file(tensors, os.path.join(d, "model.safetensors"))
            with self.assertRaises(KeyError):
                Qwen2ForCausalLM.from_pretrained(d)

    def test_tied_embeddings(self):
        cfg = Qwen2Config(
            vocab_size=20, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(cfg)
        self.assertIs(model.lm_head.weight, model.model.embed_tokens.weight)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg.to_dict(), f)
            save_file({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, os.path.join(d, "model.safetensors"))
            loaded = Qwen2ForCausalLM.from_pretrained(d)
        self.assertIs(loaded.lm_head.weight, loaded.model.embed_tokens.weight)
        ids = torch.tensor([[1, 2, 3]])
        self.assertTrue(torch.allclose(model(ids)[0], loaded(ids)[0], atol=1e-6))


class ForwardTest(unittest.TestCase):
    def test_matches_independent_reference(self):
        model = tiny_model()
        ids = random_ids(7, seed=1, batch=2)
        with torch.no_grad():
            logits, _ = model(ids)
        ref = reference_logits(model, ids)
        self.assertLess(float((logits.double() - ref).abs().max()), 1e-4)

    def test_gqa_shapes(self):
        model = tiny_model()
        attn = model.model.layers[0].self_attn
        self.assertEqual((attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features), (64, 32, 32))
        self.assertEqual(attn.o_proj.in_features, 64)
        self.assertEqual(attn.num_key_value_groups, 2)
        ids = random_ids(6, seed=2, batch=3)
        with torch.no_grad():
            logits, present = model(ids)
            self.assertEqual(tuple(logits.shape), (3, 6, 512))
            self.assertEqual(logits.dtype, torch.float32)
            self.assertEqual(len(present), 4)
            for k, v in present:
                self.assertEqual(tuple(k.shape), (3, 2, 6, 16))
                self.assertEqual(tuple(v.shape), (3, 2, 6, 16))
            logits2, present2 = model(random_ids(2, seed=3, batch=3), past_key_values=present)
        self.assertEqual(tuple(logits2.shape), (3, 2, 512))
        self.assertEqual(tuple(present2[0][0].shape), (3, 2, 8, 16))

    def test_kv_cache_incremental_equals_full_forward(self):
        model = tiny_model()
        ids = random_ids(20, seed=4, batch=2)
        with torch.no_grad():
            full, full_present = model(ids)
            for chunks in ([5] + [1] * 15, [1] * 20, [3, 7, 1, 9]):
                past = None
                parts = []
                start = 0
                for n in chunks:
                    logits, past = model(ids[:, start : start + n], past_key_values=past)
                    parts.append(logits)
                    start += n
                inc = torch.cat(parts, dim=1)
                self.assertLess(float((inc - full).abs().max()), 1e-5, chunks)
                for (k1, v1), (k2, v2) in zip(past, full_present):
                    self.assertLess(float((k1 - k2).abs().max()), 1e-5)
                    self.assertLess(float((v1 - v2).abs().max()), 1e-5)

    def test_explicit_position_ids_equal_default(self):
        model = tiny_model()
        ids = random_ids(9, seed=5)
        with torch.no_grad():
            a, _ = model(ids)
            b, _ = model(ids, position_ids=torch.arange(9).unsqueeze(0))
        self.assertTrue(torch.equal(a, b))

    def test_left_padded_batch_matches_unpadded(self):
        model = tiny_model()
        short = random_ids(5, seed=6)
        long = random_ids(8, seed=7)
        pad = 511
        batch = torch.cat([torch.cat([torch.full((1, 3), pad), short], dim=1), long])
        mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            padded, past = model(batch, position_ids=positions, attention_mask=mask)
            alone_short, _ = model(short)
            alone_long, _ = model(long)
            self.assertFalse(torch.isnan(padded).any())
            self.assertLess(float((padded[0, 3:] - alone_short[0]).abs().max()), 1e-5)
            self.assertLess(float((padded[1] - alone_long[0]).abs().max()), 1e-5)
            # One more cached step with the mask extended.
            nxt = torch.tensor([[17], [17]])
            step, _ = model(
                nxt, past_key_values=past, position_ids=positions[:, -1:] + 1,
                attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1),
            )
            ref_short, _ = model(torch.cat([short, nxt[:1]], dim=1))
        self.assertLess(float((step[0, -1] - ref_short[0, -1]).abs().max()), 1e-5)

    def test_rope_table_grows_without_changing_old_rows(self):
        model = tiny_model()
        rot = model.model.rotary_emb
        pos = torch.tensor([[0, 1, 2, 2047]])
        cos1, sin1 = rot(pos, torch.float32)
        cos_far, _ = rot(torch.tensor([[10000]]), torch.float32)  # beyond the initial table
        cos2, sin2 = rot(pos, torch.float32)
        self.assertTrue(torch.equal(cos1, cos2) and torch.equal(sin1, sin2))
        inv = 1.0 / (10000.0 ** (torch.arange(0, 16, 2).float() / 16))
        expected = torch.cos(torch.tensor(10000.0) * inv)
        self.assertTrue(torch.equal(cos_far[0, 0, :8], expected))


class HookTest(unittest.TestCase):
    def test_layer_hooks_see_hidden_states(self):
        model = tiny_model()
        ids = random_ids(10, seed=8, batch=2)
        seen = {}
        handles = []
        for i, layer in enumerate(model.model.layers):
            def hook(_module, _inputs, output, i=i):
                self.assertIsInstance(output, tuple)
                seen[i] = output[0].detach().clone()
            handles.append(layer.register_forward_hook(hook))
        try:
            with torch.no_grad():
                model(ids)
        finally:
            for h in handles:
                h.remove()
        hs = model.hidden_states(ids)
        self.assertEqual(len(hs), 5)
        self.assertTrue(torch.equal(hs[0], model.model.embed_tokens(ids)))
        for i in range(4):
            self.assertTrue(torch.equal(seen[i], hs[i + 1]), i)
        hf_style = model.hidden_states(ids, final_norm=True)
        self.assertTrue(torch.equal(hf_style[-1], model.model.norm(hs[-1])))
        self.assertTrue(torch.equal(hf_style[2], hs[2]))

    def test_hook_can_replace_the_block_output(self):
        model = tiny_model()
        ids = random_ids(6, seed=9)
        direction = torch.randn(64, generator=torch.Generator().manual_seed(10))

        def steer(_module, _inputs, output):
            return (output[0] + 4.0 * direction,) + tuple(output[1:])

        with torch.no_grad():
            base_logits, _ = model(ids)
            base_hs = model.hidden_states(ids)
            handle = model.model.layers[1].register_forward_hook(steer)
            try:
                steered_logits, _ = model(ids)
                steered_hs = model.hidden_states(ids)
            finally:
                handle.remove()
        self.assertTrue(torch.equal(steered_hs[1], base_hs[1]))
        self.assertTrue(torch.allclose(steered_hs[2], base_hs[2] + 4.0 * direction, atol=1e-6))
        self.assertGreater(float((steered_logits - base_logits).abs().max()), 1e-2)


class GenerationTest(unittest.TestCase):
    def test_greedy_generation_is_deterministic_and_matches_uncached_argmax(self):
        model = tiny_model()
        tok = tiny_tokenizer()
        prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}]))
        out1, margin = greedy_decode(model, prompt, 24, tok.eos_token_ids)
        out2, _ = greedy_decode(model, prompt, 24, tok.eos_token_ids)
        self.assertEqual(out1, out2)
        self.assertGreater(margin, 1e-3)
        ids = list(prompt)
        with torch.no_grad():
            for expected in out1:
                logits, _ = model(torch.tensor([ids]))
                self.assertEqual(int(logits[0, -1].argmax()), expected)
                ids.append(expected)
        # A fresh load of the same files decodes the same tokens.
        fresh = Qwen2ForCausalLM.from_pretrained(FIXTURE)
        self.assertEqual(greedy_decode(fresh, prompt, 24, tok.eos_token_ids)[0], out1)

    def test_greedy_stops_at_eos(self):
        model = tiny_model()
        tok = tiny_tokenizer()
        prompt = tok.encode("Let me think")
        out, _ = greedy_decode(model, prompt, 8)
        stop = out[2]
        cut, _ = greedy_decode(model, prompt, 8, [stop])
        self.assertEqual(cut, out[: out.index(stop) + 1])


def _ascii_reference_split(text: str):
    """Python ``re`` version of the Qwen2 split regex, exact for ASCII text only."""
    letter, number, space = "A-Za-z", "0-9", r" \t\n\x0b\x0c\r"
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
        rf"|[^\r\n{letter}{number}]?[{letter}]+"
        rf"|[{number}]"
        rf"| ?[^{space}{letter}{number}]+[\r\n]*"
        rf"|[{space}]*[\r\n]+"
        rf"|[{space}]+(?![^{space}])"
        rf"|[{space}]+"
    )
    return re.findall(pattern, text)


class TokenizerTest(unittest.TestCase):
    def test_pre_split_matches_regex_on_ascii(self):
        rng = random.Random(11)
        alphabet = "aZ09 '\n\r\t.,!-sStTrReEvVmMlLdD"
        for _ in range(3000):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
            self.assertEqual(qwen2_pre_split(s), _ascii_reference_split(s), repr(s))

    def test_pre_split_unicode_classes(self):
        self.assertEqual(qwen2_pre_split("é 你好 🙂"), ["é", " 你好", " 🙂"])
        self.assertEqual(qwen2_pre_split("a\u3000\u3000b"), ["a", "\u3000", "\u3000b"])
        self.assertEqual(qwen2_pre_split("x\u0085y"), ["x", "\u0085y"])  # NEL is White_Space
        self.assertEqual(qwen2_pre_split("x\ufeffy"), ["x", "\ufeffy"])  # BOM is not
        self.assertEqual(qwen2_pre_split("Ⅻ½²"), ["Ⅻ", "½", "²"])  # \p{N} beyond Nd
        # (?i:) folds ASCII only, as in transformers.js ("'Sa" is a contraction, "'ſa" is not).
        self.assertEqual(qwen2_pre_split("'Sa"), ["'S", "a"])
        self.assertEqual(qwen2_pre_split("'ſa"), ["'ſa"])

    def test_golden_ids_are_reproduced(self):
        tok = tiny_tokenizer()
        with open(os.path.join(FIXTURE, "tokenizer-golden.json"), encoding="utf-8") as f:
            golden = json.load(f)
        for s in golden["strings"]:
            self.assertEqual(tok.encode(s["text"]), s["ids"], s["text"])
            self.assertEqual(tok.encode(s["text"], add_special_tokens=True), s["ids_with_special_tokens"])
        for c in golden["chats"]:
            text = tok.apply_chat_template(c["messages"], add_generation_prompt=c["add_generation_prompt"])
            self.assertEqual(text, c["text"])
            self.assertEqual(tok.encode(text), c["ids"])

    def test_round_trip(self):
        tok = tiny_tokenizer()
        samples = [
            "Okay, so I need to figure out 2x + 3 = 11.\n\nLet me check: x = 4.",
            "  spaces  and\ttabs\r\nand CRLF ",
            "Cafe\u0301 → Café, 中文, 🙂👍🏽, \\frac{1}{2}",
            "<think>\nhmm\n</think>\n\nanswer<｜end▁of▁sentence｜>",
        ]
        for s in samples:
            ids = tok.encode(s)
            self.assertEqual(tok.decode(ids), unicodedata.normalize("NFC", s))
            joined = b"".join(tok.token_bytes(i) for i in ids)
            self.assertEqual(joined, unicodedata.normalize("NFC", s).encode("utf-8"))
        rng = random.Random(12)
        for _ in range(200):
            s = "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(160, 0x2FFF), 10, 0x1F642])) for _ in range(30))
            self.assertEqual(tok.decode(tok.encode(s)), unicodedata.normalize("NFC", s))

    def test_special_tokens(self):
        tok = tiny_tokenizer()
        self.assertEqual(tok.vocab_size, 512)
        self.assertEqual(tok.encode("<think>"), [tok.think_start_id])
        self.assertEqual(tok.encode("</think>"), [tok.think_end_id])
        self.assertEqual(tok.eos_token_ids, [tok.token_to_id("<｜end▁of▁sentence｜>")])
        self.assertEqual(tok.bos_token_id, tok.token_to_id("<｜begin▁of▁sentence｜>"))
        self.assertEqual(tok.pad_token_id, tok.token_to_id("<｜▁pad▁｜>"))
        self.assertEqual(tok.token_bytes(tok.think_end_id), b"</think>")
        self.assertEqual(tok.encode("hi", add_special_tokens=True)[0], tok.bos_token_id)
        ids = tok.encode("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\nok</think>")
        self.assertEqual(tok.decode(ids, skip_special_tokens=True), "hi<think>\nok</think>")  # <think> is not special
        self.assertTrue(tok.is_special(tok.eos_token_ids[0]))
        self.assertFalse(tok.is_special(tok.think_start_id))
        self.assertEqual(tok.token_bytes(10_000), b"")
        # Longest match wins; near misses are ordinary text.
        self.assertNotIn(tok.think_start_id, tok.encode("<thin k>"))

    def test_partial_utf8_decodes_with_replacement(self):
        tok = tiny_tokenizer()
        ids = tok.encode("🙂")
        self.assertEqual(b"".join(tok.token_bytes(i) for i in ids), "🙂".encode("utf-8"))
        self.assertEqual(tok.decode(ids[:1]), "\ufffd")

    def test_chat_template(self):
        tok = tiny_tokenizer()
        bos = "<｜begin▁of▁sentence｜>"
        self.assertEqual(
            tok.apply_chat_template([{"role": "user", "content": "Hi"}]),
            bos + "<｜User｜>Hi<｜Assistant｜><think>\n",
        )
        self.assertEqual(
            tok.apply_chat_template(
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Q1"},
                    {"role": "assistant", "content": "<think>\nreasoning\n</think>\n\nA1"},
                    {"role": "user", "content": "Q2"},
                ]
            ),
            bos + "Be brief.<｜User｜>Q1<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜><think>\n",
        )
        self.assertEqual(
            tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=False),
            bos + "<｜User｜>Hi",
        )
        self.assertIn("{{'<｜Assistant｜><think>\\n'}}", tok.chat_template or "")


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_dtypes_and_alignment(self):
        tensors = {
            "b_f32": torch.randn(3, 5),
            "a_bf16": torch.randn(7).to(torch.bfloat16),
            "c_f16": torch.randn(2, 3).to(torch.float16),
            "d_i64": torch.arange(5),
            "e_bool": torch.tensor([True, False, True]),
            "f_empty": torch.zeros(0, 4),
        }
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.safetensors")
            save_file(tensors, path, metadata={"format": "pt"})
            loaded, meta = load_file(path, with_metadata=True)
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
        self.assertEqual(n % 8, 0)
        self.assertEqual(meta, {"format": "pt"})
        for k, v in tensors.items():
            self.assertEqual(loaded[k].dtype, v.dtype, k)
            self.assertTrue(torch.equal(loaded[k], v), k)
            size = torch.tensor([], dtype=v.dtype).element_size()
            self.assertEqual(header[k]["data_offsets"][0] % size, 0, k)
        self.assertEqual(header["a_bf16"]["dtype"], "BF16")

    def _write_raw(self, d, header, data=b"", length=None):
        blob = json.dumps(header).encode()
        path = os.path.join(d, "bad.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(blob) if length is None else length) + blob + data)
        return path

    def test_rejects_malformed_files(self):
        with tempfile.TemporaryDirectory() as d:
            cases = [
                ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None),  # truncated
                ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None),  # size mismatch
                ({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0", None),  # unknown dtype
                (
                    {
                        "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                    },
                    b"\0" * 12,
                    None,
                ),  # overlap
                ({}, b"", 1 << 40),  # header length past the end / over the bound
            ]
            for header, data, length in cases:
                path = self._write_raw(d, header, data, length)
                with self.assertRaises(SafetensorsError, msg=str(header)):
                    load_file(path)


if __name__ == "__main__":
    unittest.main()
