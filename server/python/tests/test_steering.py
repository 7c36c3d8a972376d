"""Steering arithmetic, start resolution, and the layer hook on stand-in module trees."""

import unittest

import numpy as np
import torch
from torch import nn

from loupe_server.hooks import attach_hook, decoder_layers
from loupe_server.protocol import SteeringSpec
from loupe_server.steering import AFTER_PREFIX_FALLBACK_TOKENS, SteeringSchedule, apply_steering


def spec(vector, mode="add", strength=1.0, start=0, target=None):
    return SteeringSpec(np.asarray(vector, dtype=np.float32), strength, start, mode, target)


class ApplySteeringTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.h = torch.randn(6, 5)
        self.v = torch.randn(5)

    def test_add(self):
        active = torch.tensor([[False], [False], [True], [True], [True], [True]])
        out = apply_steering(self.h, [self.v], [spec(self.v.numpy(), strength=2.5)], active)
        torch.testing.assert_close(out[2:], self.h[2:] + 2.5 * self.v)
        self.assertTrue(torch.equal(out[:2], self.h[:2]), "inactive rows unchanged bit for bit")

    def test_clamp_projection_sets_component_and_keeps_the_rest(self):
        active = torch.ones(6, 1, dtype=torch.bool)
        out = apply_steering(self.h, [self.v], [spec(self.v.numpy(), "clamp-projection", 99.0, 0, -1.25)], active)
        unit = self.v / self.v.norm()
        torch.testing.assert_close(out @ unit, torch.full((6,), -1.25))
        orthogonal = lambda x: x - (x @ unit)[:, None] * unit
        torch.testing.assert_close(orthogonal(out), orthogonal(self.h))

    def test_entries_apply_in_order(self):
        w = torch.randn(5)
        active = torch.ones(6, 2, dtype=torch.bool)
        specs = [spec(self.v.numpy(), strength=3.0), spec(w.numpy(), "clamp-projection", target=0.5)]
        out = apply_steering(self.h, [self.v, w], specs, active)
        unit = w / w.norm()
        added = self.h + 3.0 * self.v
        expected = added + (0.5 - added @ unit)[:, None] * unit
        torch.testing.assert_close(out, expected)


def byte_tokens(pieces):
    """Token id i has text pieces[i]."""
    return lambda token: pieces[token]


class ScheduleTest(unittest.TestCase):
    def schedule(self, starts, pieces, think_end=None, prompt=10):
        specs = [spec(np.ones(3), start=s) for s in starts]
        return SteeringSchedule(specs, prompt, byte_tokens(pieces), think_end)

    def test_integer_start_applies_from_position(self):
        s = self.schedule([12], [b""])
        self.assertEqual(s.active(range(10, 15), torch.device("cpu"))[:, 0].tolist(), [False, False, True, True, True])

    def test_after_prefix_starts_after_the_first_sentence(self):
        pieces = [b"<think>", b"\n", b"Okay", b", so", b" the user", b" asks", b".", b" Hmm", b" ok"]
        s = self.schedule(["after-prefix"], pieces)
        for token in range(len(pieces)):
            s.observe_generated(token)
            if token < 6:
                self.assertIsNone(s.start_of(s.specs[0]), f"not resolved after token {token}")
        # "." is generated index 6 → steering from generated index 7 = position 10 + 7.
        self.assertEqual(s.start_of(s.specs[0]), 17)

    def test_after_prefix_falls_back_after_48_tokens(self):
        s = self.schedule(["after-prefix"], [b"Well"])
        for _ in range(AFTER_PREFIX_FALLBACK_TOKENS - 1):
            s.observe_generated(0)
        self.assertIsNone(s.start_of(s.specs[0]))
        s.observe_generated(0)
        self.assertEqual(s.start_of(s.specs[0]), 10 + AFTER_PREFIX_FALLBACK_TOKENS)

    def test_answer_starts_after_think_end(self):
        s = self.schedule(["answer"], [b"a", b"</think>"], think_end=1)
        s.observe_generated(0)
        s.observe_generated(1)
        self.assertEqual(s.start_of(s.specs[0]), 12)
        self.assertEqual(s.active([11, 12], torch.device("cpu"))[:, 0].tolist(), [False, True])

    def test_answer_without_think_token_starts_at_first_generated(self):
        s = self.schedule(["answer"], [b"a"], think_end=None)
        self.assertEqual(s.start_of(s.specs[0]), 10)


# ---- stand-in module trees ----------------------------------------------------------------------


class TensorBlock(nn.Module):
    """Returns the hidden states as a bare tensor (recent transformers decoder layers)."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(d, d)

    def forward(self, x):
        return x + torch.tanh(self.linear(x))


class TupleBlock(TensorBlock):
    """Returns a tuple whose element 0 is the hidden states (older transformers, Loupe's Qwen2)."""

    def forward(self, x):
        return (super().forward(x), "extra")


def block_output(block, x):
    out = block(x)
    return out[0] if isinstance(out, tuple) else out


class StandInLM(nn.Module):
    def __init__(self, block, d=6, layers=3):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([block(d) for _ in range(layers)])

    def forward(self, x):
        outputs = []
        for layer in self.model.layers:
            x = block_output(layer, x)
            outputs.append(x)
        return outputs


class HookTest(unittest.TestCase):
    def run_case(self, block):
        torch.manual_seed(1)
        lm = StandInLM(block)
        x = torch.randn(1, 7, 6)
        base = lm(x)
        vector = np.random.default_rng(2).standard_normal(6).astype(np.float32)
        schedule = SteeringSchedule([spec(vector, strength=1.5, start=3)], 7, lambda t: b"", None)
        with attach_hook(lm, 1, schedule) as hook:
            hook.expect(range(7))
            steered = lm(x)
            captured, flags = hook.take()
        v = torch.from_numpy(vector)
        self.assertEqual(flags, [False] * 3 + [True] * 4)
        torch.testing.assert_close(captured[:3], base[1][0, :3], rtol=0, atol=0)
        torch.testing.assert_close(captured[3:], base[1][0, 3:] + 1.5 * v)
        # The next block continued from the steered stream.
        torch.testing.assert_close(steered[2], block_output(lm.model.layers[2], captured.unsqueeze(0)))
        # The hook is gone after the with-block.
        after = lm(x)
        torch.testing.assert_close(after[2], base[2], rtol=0, atol=0)

    def test_layer_returning_tensor(self):
        self.run_case(TensorBlock)

    def test_layer_returning_tuple(self):
        self.run_case(TupleBlock)

    def test_capture_without_steering(self):
        lm = StandInLM(TensorBlock)
        x = torch.randn(1, 4, 6)
        with attach_hook(lm, 0) as hook:
            hook.expect(range(4))
            out = lm(x)
            captured, flags = hook.take()
        torch.testing.assert_close(captured, out[0][0], rtol=0, atol=0)
        self.assertEqual(flags, [False] * 4)

    def test_errors_say_what_was_expected(self):
        with self.assertRaisesRegex(TypeError, "model.layers"):
            decoder_layers(nn.Linear(2, 2))
        with self.assertRaisesRegex(IndexError, "0..2"):
            attach_hook(StandInLM(TensorBlock), 3)
        lm = StandInLM(TensorBlock)
        with attach_hook(lm, 0) as hook:
            hook.expect(range(2))
            with self.assertRaisesRegex(RuntimeError, "expected 2 positions"):
                lm(torch.randn(1, 4, 6))


if __name__ == "__main__":
    unittest.main()
