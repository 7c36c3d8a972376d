"""Model loading and tokenizer adapters.

``transformers`` is not installed here, so the Hugging Face adapter is checked against a
stand-in with the same methods (``convert_ids_to_tokens``, ``apply_chat_template`` ...); what
the real library returns for DeepSeek-R1 is not tested here.
"""

import importlib.util
import json
import os
import tempfile
import unittest

from loupe_server.backend import HfTokenizerAdapter, _dtype_keyword, load_model

from support import HAVE_TINY_QWEN2, tiny_lm


class FakeHfTokenizer:
    """Byte-level BPE vocabulary in the style of GPT-2/Qwen2/DeepSeek-R1 ("Ġ" = space byte)."""

    name_or_path = "fake/r1"
    unk_token_id = None
    eos_token_id = 1
    all_special_ids = [0, 1]
    chat_template = "{{ bos_token }}{% for m in messages %}...{% endfor %}"

    def __init__(self):
        self.pieces = {
            0: "<｜begin▁of▁sentence｜>", 1: "<｜end▁of▁sentence｜>", 2: "<think>", 3: "</think>",
            4: "Ġhello", 5: "Ã©", 6: "Ã", 7: "Ċ",
        }
        self.added_tokens_decoder = {0: object(), 1: object(), 2: object(), 3: object()}
        self.calls = []

    def get_vocab(self):
        vocab = {piece: i for i, piece in self.pieces.items()}
        vocab["Ġ"] = 8
        return vocab

    def convert_tokens_to_ids(self, token):
        return {piece: i for i, piece in self.pieces.items()}.get(token, self.unk_token_id)

    def convert_ids_to_tokens(self, token_id):
        return self.pieces.get(token_id)

    def encode(self, text, add_special_tokens=True):
        self.calls.append(("encode", text, add_special_tokens))
        return [4, 7]

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        self.calls.append(("template", messages, add_generation_prompt, tokenize))
        return "<rendered>"


class HfTokenizerAdapterTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeHfTokenizer()
        self.adapter = HfTokenizerAdapter(self.fake, [1], "fake/r1")

    def test_token_bytes(self):
        self.assertEqual(self.adapter.token_bytes(4), b" hello")
        self.assertEqual(self.adapter.token_bytes(5), "é".encode())
        self.assertEqual(self.adapter.token_bytes(6), b"\xc3", "a piece may end inside a UTF-8 character")
        self.assertEqual(self.adapter.token_bytes(7), b"\n")
        self.assertEqual(self.adapter.token_bytes(3), b"</think>")
        self.assertEqual(self.adapter.token_bytes(0), "<｜begin▁of▁sentence｜>".encode())

    def test_special_ids_and_header(self):
        self.assertEqual((self.adapter.think_start_id, self.adapter.think_end_id), (2, 3))
        self.assertEqual(
            self.adapter.header(),
            {"name": "fake/r1", "eos_token_ids": [1], "think_start_token_id": 2, "think_end_token_id": 3},
        )
        self.assertEqual(self.adapter.chat_template, FakeHfTokenizer.chat_template)

    def test_encoding_adds_no_special_tokens(self):
        messages = [{"role": "user", "content": "hi"}]
        self.assertEqual(self.adapter.encode_chat(messages), [4, 7])
        self.assertEqual(self.fake.calls[0], ("template", messages, True, False))
        self.assertEqual(self.fake.calls[1], ("encode", "<rendered>", False))
        self.adapter.encode_prompt("raw")
        self.assertEqual(self.fake.calls[2], ("encode", "raw", False))


class LoadModelTest(unittest.TestCase):
    def test_dtype_keyword_follows_the_transformers_version(self):
        self.assertEqual(_dtype_keyword("4.55.4"), "torch_dtype")
        self.assertEqual(_dtype_keyword("4.56.0"), "dtype")
        self.assertEqual(_dtype_keyword("5.0.0rc1"), "dtype")

    @unittest.skipUnless(HAVE_TINY_QWEN2, "tests/fixtures/tiny-qwen2 is missing")
    def test_tiny_qwen2_loads_without_hugging_face(self):
        lm = tiny_lm()
        self.assertEqual((lm.name, lm.num_layers, lm.d_in, lm.vocab_size, lm.max_positions),
                         ("tiny-qwen2", 4, 64, 512, 2048))
        self.assertEqual(type(lm.model).__module__, "loupe_server.models.qwen2")
        tok = lm.tokenizer
        self.assertEqual((tok.think_start_id, tok.think_end_id, tok.eos_token_ids), (509, 510, (505,)))
        ids = tok.encode_prompt("naïve 7 * 8 = 56\n")
        self.assertEqual(b"".join(tok.token_bytes(i) for i in ids).decode("utf-8"), "naïve 7 * 8 = 56\n")

    @unittest.skipIf(importlib.util.find_spec("transformers") is not None, "transformers is installed")
    def test_other_models_need_transformers(self):
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump({"model_type": "deepseek_v3"}, f)
            with self.assertRaisesRegex(RuntimeError, "transformers is not installed"):
                load_model(folder)


if __name__ == "__main__":
    unittest.main()
