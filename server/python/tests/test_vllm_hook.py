"""The vLLM adapter on a stand-in module tree that follows vLLM's conventions.

The stand-in mirrors what vllm/model_executor/models/deepseek_v2.py does (read, not run, here):
``DeepseekV3ForCausalLM.model.layers[i]`` called as ``layer(positions, hidden_states, residual)``
returning ``(hidden_states, residual)`` with the residual add deferred to the next layer's
fused add-and-norm; tokens flattened to ``[num_tokens, d]``; ``PPMissingLayer`` placeholders on
pipeline ranks that do not own a layer. Its ``reference_stream`` runs the same weights the
plain way (``x = x + block(x)``) so the test does not trust the fused arithmetic it checks.
"""

import unittest

import numpy as np
import torch
from torch import nn

from loupe_server.protocol import SteeringSpec
from loupe_server.steering import AFTER_PREFIX_FALLBACK_TOKENS, SteeringSchedule
from loupe_server.vllm_hook import VllmResidualHook, vllm_decoder_layer

D = 8


class PPMissingLayer(nn.Identity):
    """Same class name as vLLM's placeholder for layers on another pipeline rank."""


def rms_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class FakeDecoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(D, D)
        self.mlp = nn.Linear(D, D)

    def block(self, x, positions):
        """The block's contribution for stream ``x`` [T, D]: a causal running mean (token
        mixing, so steering changes later positions) then a per-token MLP."""
        counts = (positions - positions.min() + 1).to(x.dtype)[:, None]
        mixed = torch.cumsum(self.mix(rms_norm(x)), dim=0) / counts
        return torch.tanh(self.mlp(rms_norm(x + mixed)))

    def forward(self, positions, hidden_states, residual):
        if residual is None:
            residual = hidden_states
        else:
            residual = hidden_states + residual  # the deferred add, as vLLM's fused RMSNorm does
        return self.block(residual, positions), residual


class FakeInnerModel(nn.Module):
    def __init__(self, layers, vocab=32):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, D)
        self.layers = nn.ModuleList(layers)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None):
        hidden, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual)
        return hidden + residual


class FakeVllmForCausalLM(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.model = FakeInnerModel(layers)

    def forward(self, input_ids, positions):
        return self.model(input_ids, positions, None, None)

    def reference_stream(self, input_ids, positions, steer_layer=None, steer=None):
        """Residual stream after every block, unfused; ``steer(x)`` edits block ``steer_layer``'s output."""
        x = self.model.embed_tokens(input_ids)
        out = []
        for i, layer in enumerate(self.model.layers):
            x = x + layer.block(x, positions)
            if i == steer_layer:
                x = steer(x)
            out.append(x)
        return out


def schedule_for(specs, prompt_tokens, pieces=None):
    token_bytes = (lambda t: pieces[t]) if pieces else (lambda t: b"")
    return SteeringSchedule(specs, prompt_tokens, token_bytes, None)


class VllmHookTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.lm = FakeVllmForCausalLM([FakeDecoderLayer() for _ in range(3)])
        self.ids = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
        self.positions = torch.arange(8)
        self.vector = np.random.default_rng(0).standard_normal(D).astype(np.float32)

    def test_captures_hidden_plus_residual(self):
        hook = VllmResidualHook(self.lm, 1, schedule_for([], 8))
        with torch.no_grad():
            self.lm(self.ids, self.positions)
            reference = self.lm.reference_stream(self.ids, self.positions)[1]
        rows = hook.drain()
        hook.remove()
        self.assertEqual([p for p, _, _ in rows], list(range(8)))
        torch.testing.assert_close(torch.stack([a for _, a, _ in rows]), reference)

    def test_add_steering_reaches_later_layers(self):
        spec = SteeringSpec(self.vector, 2.0, 5, "add")
        hook = VllmResidualHook(self.lm, 0, schedule_for([spec], 8))
        v = torch.from_numpy(self.vector)
        mask = (self.positions >= 5).float()[:, None]
        with torch.no_grad():
            final = self.lm(self.ids, self.positions)
            base = self.lm.reference_stream(self.ids, self.positions)[0]
            steered_ref = self.lm.reference_stream(self.ids, self.positions, 0, lambda x: x + mask * 2.0 * v)
        rows = hook.drain()
        hook.remove()
        got = torch.stack([a for _, a, _ in rows])
        torch.testing.assert_close(got, base + mask * 2.0 * v)
        self.assertEqual([s for _, _, s in rows], [p >= 5 for p in range(8)])
        torch.testing.assert_close(final, steered_ref[-1])

    def test_clamp_and_incremental_decoding_with_after_prefix_fallback(self):
        prompt = 3
        spec = SteeringSpec(self.vector, 1.0, "after-prefix", "clamp-projection", target=0.75)
        hook = VllmResidualHook(self.lm, 2, schedule_for([spec], prompt, pieces={t: b"x" for t in range(32)}))
        unit = torch.from_numpy(self.vector / np.linalg.norm(self.vector))
        total = prompt + AFTER_PREFIX_FALLBACK_TOKENS + 2
        ids = torch.randint(0, 32, (total,))
        with torch.no_grad():
            # chunked prefill of the prompt, then one token per call (positions carry the offsets;
            # the stand-in's token mixing only sees the current call, which is fine for a hook test)
            self.lm(ids[:2], torch.arange(0, 2))
            self.lm(ids[2:prompt], torch.arange(2, prompt))
            for position in range(prompt, total):
                self.lm(ids[position : position + 1], torch.tensor([position]))
        rows = hook.drain()
        hook.remove()
        self.assertEqual([p for p, _, _ in rows], list(range(total)))
        first = prompt + AFTER_PREFIX_FALLBACK_TOKENS
        self.assertEqual([s for _, _, s in rows], [p >= first for p in range(total)])
        for position, activation, steered in rows:
            if steered:
                self.assertAlmostEqual(float(activation @ unit), 0.75, places=5)

    def test_pipeline_placeholder_and_bad_layer(self):
        lm = FakeVllmForCausalLM([FakeDecoderLayer(), PPMissingLayer()])
        with self.assertRaisesRegex(LookupError, "pipeline-parallel rank"):
            vllm_decoder_layer(lm, 1)
        with self.assertRaisesRegex(IndexError, "0..1"):
            vllm_decoder_layer(lm, 2)
        self.assertIs(vllm_decoder_layer(lm, 0), lm.model.layers[0])


if __name__ == "__main__":
    unittest.main()
