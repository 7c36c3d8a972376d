"""Reading and steering ``resid_post`` inside a vLLM worker (see ``docs/serving-r1.md``).

vLLM's decoder layers do not fit :mod:`loupe_server.hooks`, for two reasons:

* A layer is called as ``layer(positions, hidden_states, residual, ...)`` and returns
  ``(hidden_states, residual)`` with the last residual add deferred (it is fused into the next
  layer's RMSNorm, or the final norm). The residual stream after block ``L`` is therefore
  ``out[0] + out[1]``, which is also what vLLM itself uses for auxiliary hidden states.
* Tokens are flattened: ``hidden_states`` is ``[num_tokens, d]`` and ``positions`` gives each
  token's position in its sequence. Prefill may arrive in chunks, decoding one token per call.

:class:`VllmResidualHook` computes ``h = out[0] + out[1]`` in float32, steers it with the same
arithmetic and schedule as the reference server, adds the difference to the returned residual
(so every later layer sees the steered stream), and records ``(position, h)`` rows. A forward
pre-hook on the inner model (``model.model``, called as ``model.model(input_ids, positions,
...)``) feeds generated token ids to the schedule, so ``"after-prefix"`` and ``"answer"`` starts
resolve inside the worker at the exact position, without a round trip to the HTTP process.

It assumes one sequence in the batch (the Loupe server runs one generation at a time):
positions from two requests would be indistinguishable.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch import nn

from .hooks import decoder_layers
from .steering import SteeringSchedule, apply_steering


def vllm_decoder_layer(model: nn.Module, layer: int) -> nn.Module:
    """Block ``layer`` of a vLLM model (``worker.model_runner.model``, e.g.
    ``DeepseekV3ForCausalLM``), whose blocks live at ``model.model.layers``. Under pipeline
    parallelism a rank holds ``PPMissingLayer`` placeholders for blocks it does not run."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise IndexError(f"layer {layer} does not exist; the model has layers 0..{len(layers) - 1}")
    block = layers[layer]
    if type(block).__name__ == "PPMissingLayer":
        raise LookupError(
            f"layer {layer} runs on another pipeline-parallel rank; attach the hook on the rank that owns it"
        )
    return block


class VllmResidualHook:
    """Capture (and steer) the residual stream after one vLLM decoder layer, for one sequence."""

    def __init__(self, model: nn.Module, layer: int, schedule: SteeringSchedule) -> None:
        self._schedule = schedule
        self._next_generated = schedule.prompt_tokens
        self._rows: List[Tuple[int, torch.Tensor, bool]] = []
        inner = getattr(model, "model", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"{type(model).__name__} has no inner 'model' module to observe token ids on")
        self._handles = [
            inner.register_forward_pre_hook(self._observe_tokens),
            vllm_decoder_layer(model, layer).register_forward_hook(self._on_layer_output),
        ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def drain(self) -> List[Tuple[int, torch.Tensor, bool]]:
        """``(position, float32 activation on the CPU, steered)`` rows captured since the last
        call, in position order. A gap in positions means vLLM skipped computing them (prefix
        caching must be off)."""
        rows, self._rows = sorted(self._rows, key=lambda row: row[0]), []
        return rows

    def _observe_tokens(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        if len(args) < 2 or not isinstance(args[0], torch.Tensor):
            raise RuntimeError(
                "expected the inner model to be called as model(input_ids, positions, ...) with input ids; "
                "Loupe's vLLM hook needs the token ids to place 'after-prefix' and 'answer' starts"
            )
        input_ids, positions = args[0].reshape(-1).tolist(), args[1].reshape(-1).tolist()
        for position, token in sorted(zip(positions, input_ids)):
            if position == self._next_generated:
                self._schedule.observe_generated(int(token))
                self._next_generated += 1

    def _on_layer_output(self, module: nn.Module, args: Tuple[Any, ...], output: Any) -> Any:
        positions = args[0].reshape(-1).tolist()
        hidden, residual = output
        stream = hidden.float() + residual.float()
        steered = [False] * len(positions)
        replaced = None
        if self._schedule:
            active = self._schedule.active(positions, stream.device)
            steered = active.any(dim=1).tolist()
            if any(steered):
                vectors = self._schedule.vectors_on(stream.device)
                new_stream = apply_steering(stream, vectors, self._schedule.specs, active)
                replaced = (hidden, residual + (new_stream - stream).to(residual.dtype))
                stream = hidden.float() + replaced[1].float()
        rows = stream.detach().cpu()
        self._rows.extend(zip(positions, rows, steered))
        return replaced
