"""Generation on the tiny Qwen2 fixture: activations, steering, sampling, resume, stops."""

import dataclasses
import json
import unittest

import numpy as np
import torch

from loupe_server.generate import Generation, check_lengths, prompt_ids
from loupe_server.protocol import PHASE_ANSWER, PHASE_PROMPT, PHASE_THINKING, RequestError, parse_generate_request

from support import HAVE_TINY_QWEN2, reference_greedy, tiny_lm, vector_b64

CHAT = [{"role": "user", "content": "What is 7 * 8?"}]
ATOL = 1e-4  # KV-cache decoding vs a full re-run differ by float32 rounding only


def make_request(lm, **fields):
    fields.setdefault("messages", CHAT)
    return parse_generate_request(json.dumps(fields).encode(), lm.limits(lm.num_layers // 2))


def run(lm, **fields):
    request = make_request(lm, **fields)
    prompt = prompt_ids(lm, request)
    check_lengths(lm, request, prompt)
    generation = Generation(lm, request, prompt)
    records = list(generation.records())
    return generation, records, prompt


def random_vector(lm, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(lm.d_in) * scale).astype(np.float32)


@unittest.skipUnless(HAVE_TINY_QWEN2, "tests/fixtures/tiny-qwen2 is missing (run tools/tiny_model/make_tiny_qwen2.py)")
class GenerationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lm = tiny_lm()
        cls.model = cls.lm.model

    def hidden(self, ids, layer):
        """Unsteered block output at ``layer`` for a whole sequence, computed independently."""
        return self.model.hidden_states(torch.tensor([list(ids)]))[layer + 1][0]

    def test_prompt_frames_are_the_block_output(self):
        generation, records, prompt = run(self.lm, max_tokens=0, hook={"layer": 1})
        self.assertEqual(generation.reason, "max_tokens")
        self.assertEqual([r.token_id for r in records], prompt)
        self.assertEqual([r.position for r in records], list(range(len(prompt))))
        self.assertTrue(all(r.phase == PHASE_PROMPT and not r.steered for r in records))
        expected = self.hidden(prompt, 1)
        torch.testing.assert_close(torch.stack([r.activation for r in records]), expected, rtol=0, atol=1e-6)
        text = b"".join(r.text for r in records).decode("utf-8")
        self.assertEqual(text, "<｜begin▁of▁sentence｜><｜User｜>What is 7 * 8?<｜Assistant｜><think>\n")

    def test_add_steering_equals_base_plus_vector_from_start(self):
        vector = random_vector(self.lm, 1)
        layer, strength = 2, 3.0
        generation, records, prompt = run(
            self.lm,
            max_tokens=12,
            hook={"layer": layer},
            steering=[{"vector": vector_b64(vector), "strength": strength, "start": 9, "mode": "add"}],
        )
        ids = [r.token_id for r in records]
        base = self.hidden(ids, layer)  # unsteered model, same tokens
        got = torch.stack([r.activation for r in records])
        torch.testing.assert_close(got[:9], base[:9], rtol=0, atol=ATOL)
        torch.testing.assert_close(got[9:], base[9:] + strength * torch.from_numpy(vector), rtol=0, atol=ATOL)
        self.assertEqual([r.steered for r in records], [p >= 9 for p in range(len(records))])

    def test_clamp_projection_sets_the_projection(self):
        vector = random_vector(self.lm, 2, scale=3.0)
        layer, target = 1, -2.5
        generation, records, prompt = run(
            self.lm,
            max_tokens=10,
            hook={"layer": layer},
            steering=[{"vector": vector_b64(vector), "start": len(CHAT[0]["content"]), "mode": "clamp-projection",
                       "target": target}],
        )
        start = len(CHAT[0]["content"])
        unit = torch.from_numpy(vector / np.linalg.norm(vector))
        got = torch.stack([r.activation for r in records])
        base = self.hidden([r.token_id for r in records], layer)
        torch.testing.assert_close(got[start:] @ unit, torch.full((len(records) - start,), target), rtol=0, atol=ATOL)
        orthogonal = lambda x: x - (x @ unit)[:, None] * unit
        torch.testing.assert_close(orthogonal(got), orthogonal(base), rtol=0, atol=ATOL)
        torch.testing.assert_close(got[:start], base[:start], rtol=0, atol=ATOL)

    def test_steered_generation_equals_independent_reference_loop(self):
        vector = torch.from_numpy(random_vector(self.lm, 3, scale=2.0))
        layer, strength, max_tokens = 2, 4.0, 24
        request_fields = dict(
            max_tokens=max_tokens,
            hook={"layer": layer},
            steering=[{"vector": vector_b64(vector.numpy()), "strength": strength, "start": 12, "mode": "add"}],
        )
        generation, records, prompt = run(self.lm, **request_fields)
        expected_tokens, expected_hidden = reference_greedy(
            self.model, prompt, max_tokens, self.lm.tokenizer.eos_token_ids, layer, steer=(12, vector, strength)
        )
        self.assertEqual([r.token_id for r in records[len(prompt):]], expected_tokens)
        unsteered_tokens, _ = reference_greedy(self.model, prompt, max_tokens, self.lm.tokenizer.eos_token_ids, layer)
        self.assertNotEqual(expected_tokens, unsteered_tokens, "the steering should change this continuation")
        torch.testing.assert_close(torch.stack([r.activation for r in records]), expected_hidden, rtol=0, atol=ATOL)

    def test_resume_equals_uninterrupted(self):
        steering = [
            {"vector": vector_b64(random_vector(self.lm, 4)), "strength": 2.0, "start": "after-prefix", "mode": "add"},
            {"vector": vector_b64(random_vector(self.lm, 5)), "start": "answer", "mode": "clamp-projection",
             "target": 1.0},
        ]
        for sampling in ({"temperature": 0}, {"temperature": 0.9, "top_p": 0.9, "seed": 7}):
            fields = dict(max_tokens=70, hook={"layer": 2}, steering=steering, **sampling)
            full_generation, full, prompt = run(self.lm, **fields)
            n = len(prompt)
            self.assertTrue(any(r.steered for r in full), "after-prefix fallback should steer within 70 tokens")
            for cut in (n, n + 5, n + 50):
                generated = [r.token_id for r in full[n:cut]]
                generation, resumed, _ = run(self.lm, resume={"position": cut, "generated": generated}, **fields)
                self.assertEqual(generation.resume_from, cut)
                self.assertEqual([r.position for r in resumed], [r.position for r in full[cut:]])
                self.assertEqual([r.token_id for r in resumed], [r.token_id for r in full[cut:]], (sampling, cut))
                self.assertEqual([(r.phase, r.steered, r.text) for r in resumed],
                                 [(r.phase, r.steered, r.text) for r in full[cut:]])
                torch.testing.assert_close(
                    torch.stack([r.activation for r in resumed]),
                    torch.stack([r.activation for r in full[cut:]]),
                    rtol=0,
                    atol=ATOL,
                )
                self.assertEqual((generation.reason, generation.generated_tokens),
                                 (full_generation.reason, full_generation.generated_tokens))

    def test_sampling_is_seeded(self):
        fields = dict(max_tokens=30, temperature=1.0, top_p=0.95)
        tokens = lambda seed: [r.token_id for r in run(self.lm, seed=seed, **fields)[1]]
        self.assertEqual(tokens(11), tokens(11))
        self.assertNotEqual(tokens(11), tokens(12))
        greedy = [r.token_id for r in run(self.lm, max_tokens=30)[1]]
        tiny_top_p = [r.token_id for r in run(self.lm, seed=11, max_tokens=30, temperature=1.0, top_p=1e-6)[1]]
        self.assertEqual(tiny_top_p, greedy, "top_p near 0 keeps only the most likely token")

    def scripted(self, tokens):
        """The tiny model with its next-token choice forced to ``tokens`` (activations stay real)."""
        n = len(prompt_ids(self.lm, make_request(self.lm)))

        def step(input_ids, past, position_ids):
            logits, past = self.lm.step(input_ids, past, position_ids)
            index = int(position_ids[0, -1]) + 1 - n  # generated index these logits choose
            if 0 <= index < len(tokens):
                logits = logits.clone()
                logits[0, -1] = -1e9
                logits[0, -1, tokens[index]] = 1e9
            return logits, past

        return dataclasses.replace(self.lm, step=step), n

    def test_phases_answer_steering_and_stop_at_think_end(self):
        tok = self.lm.tokenizer
        script = [300, 301, tok.think_end_id, 302, 303]
        lm, n = self.scripted(script)
        vector = vector_b64(random_vector(self.lm, 6))
        steering = [{"vector": vector, "strength": 1.0, "start": "answer", "mode": "add"}]
        generation, records, _ = run(lm, max_tokens=5, steering=steering)
        generated = records[n:]
        self.assertEqual([r.token_id for r in generated], script)
        self.assertEqual([r.phase for r in generated], [PHASE_THINKING] * 3 + [PHASE_ANSWER] * 2)
        self.assertEqual([r.steered for r in generated], [False, False, False, True, True])
        self.assertEqual(generation.reason, "max_tokens")

        generation, records, _ = run(lm, max_tokens=50, stop_at_think_end=True)
        self.assertEqual((generation.reason, generation.generated_tokens, records[-1].token_id),
                         ("eos", 3, tok.think_end_id))

        # Resumed after </think>: the answer-phase start is known from the teacher-forced ids.
        generation, records, _ = run(lm, max_tokens=5, steering=steering,
                                     resume={"position": n + 4, "generated": script[:4]})
        self.assertEqual([(r.position, r.phase, r.steered) for r in records], [(n + 4, PHASE_ANSWER, True)])

    def test_after_prefix_starts_after_the_first_sentence(self):
        tok = self.lm.tokenizer
        script = tok.encode_prompt("Okay, so the user asks for 7 * 8. That is 56")
        lm, n = self.scripted(script)
        pieces = [tok.token_bytes(t) for t in script]
        period = next(k for k in range(len(pieces)) if b"." in b"".join(pieces[: k + 1]))
        steering = [{"vector": vector_b64(random_vector(self.lm, 7)), "start": "after-prefix", "mode": "add"}]
        generation, records, _ = run(lm, max_tokens=len(script), steering=steering)
        self.assertEqual([r.token_id for r in records[n:]], script)
        self.assertEqual([r.steered for r in records[n:]], [k > period for k in range(len(script))])

    def test_eos_ends_the_stream_and_cancel_stops_it(self):
        eos = self.lm.tokenizer.eos_token_ids[0]
        lm, n = self.scripted([300, eos, 301])
        generation, records, _ = run(lm, max_tokens=50)
        self.assertEqual((generation.reason, len(records) - n, records[-1].token_id), ("eos", 2, eos))

        request = make_request(self.lm, max_tokens=50)
        generation = Generation(self.lm, request, prompt_ids(self.lm, request))
        asked = []
        records = list(generation.records(should_stop=lambda: asked.append(1) or len(asked) > 4))
        self.assertEqual(generation.reason, "cancelled")
        self.assertEqual(generation.generated_tokens, 3)
        self.assertEqual(len(records), n + 3)

    def test_lengths_and_resume_are_checked(self):
        lm = self.lm
        request = make_request(lm, max_tokens=lm.max_positions)
        with self.assertRaises(RequestError) as ctx:
            check_lengths(lm, request, prompt_ids(lm, request))
        self.assertEqual(ctx.exception.code, "prompt_too_long")
        n = len(prompt_ids(lm, make_request(lm)))
        eos = lm.tokenizer.eos_token_ids[0]
        for resume, fragment in (
            ({"position": n + 2, "generated": [1]}, "1 generated ids"),
            ({"position": n - 1, "generated": [1]}, "0 ids here"),
            ({"position": n + 2, "generated": [eos, 3]}, "past a stop token"),
        ):
            request = make_request(lm, max_tokens=10, resume=resume)
            with self.assertRaises(RequestError) as ctx:
                check_lengths(lm, request, prompt_ids(lm, request))
            self.assertEqual(ctx.exception.code, "bad_resume")
            self.assertIn(fragment, ctx.exception.message)
        request = make_request(lm, max_tokens=1, resume={"position": n + 2, "generated": [1, 2]})
        with self.assertRaises(RequestError):
            check_lengths(lm, request, prompt_ids(lm, request))


if __name__ == "__main__":
    unittest.main()
