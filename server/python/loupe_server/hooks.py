"""A forward hook on one decoder layer that reads (and steers) the residual stream after it.

``model.model.layers[L]`` is where Hugging Face causal LMs (Llama, Qwen2, DeepSeek-V3, ...) and
this package's Qwen2 keep their blocks. A block's output is the residual stream after it
(``resid_post``, Hugging Face ``hidden_states[L + 1]``). Depending on the ``transformers``
version a decoder layer returns that tensor itself or a tuple whose element 0 is it; the hook
accepts both and returns the same shape of thing, so the layers after ``L`` continue from the
steered stream and the activation sent to the client is exactly what they saw.

vLLM's layers have a different contract (``(hidden_states, residual)``); see ``vllm_hook.py``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .steering import SteeringSchedule, apply_steering


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """``model.model.layers`` of a causal LM, with an error that says what was expected."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, (nn.ModuleList, list, tuple)):
        raise TypeError(
            f"{type(model).__name__} has no 'model.layers' list of decoder layers; Loupe hooks "
            "Hugging Face-style causal LMs (model.model.layers[i])"
        )
    return layers  # type: ignore[return-value]


class ResidualStreamHook:
    """Captures the output of one decoder layer per position and applies steering to it.

    Before each forward pass call :meth:`expect` with the positions of its tokens (batch 1);
    after it, :meth:`take` returns the float32 activations [T, d] (after steering) and which
    rows were steered. Use as a context manager so the hook is always removed.
    """

    def __init__(self, layer: nn.Module, schedule: Optional[SteeringSchedule] = None) -> None:
        self._schedule = schedule
        self._positions: Optional[Sequence[int]] = None
        self._captured: Optional[torch.Tensor] = None
        self._steered: List[bool] = []
        self._handle = layer.register_forward_hook(self._hook)

    def __enter__(self) -> "ResidualStreamHook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        self._handle.remove()

    def expect(self, positions: Sequence[int]) -> None:
        """The absolute positions of the tokens in the next forward pass."""
        self._positions = positions
        self._captured = None
        self._steered = []

    def take(self) -> Tuple[torch.Tensor, List[bool]]:
        """(activations [T, d] float32 on the CPU, steered flag per row) of the last forward."""
        if self._captured is None:
            raise RuntimeError("the hooked layer did not run during the last forward pass")
        captured, steered = self._captured, self._steered
        self._captured, self._steered, self._positions = None, [], None
        return captured, steered

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[0] != 1:
            raise RuntimeError(
                "expected the decoder layer to return hidden states [1, T, d] (or a tuple starting "
                f"with them); got {type(hidden).__name__} {tuple(getattr(hidden, 'shape', ()))}"
            )
        positions = self._positions
        if positions is None or len(positions) != hidden.shape[1]:
            raise RuntimeError(
                f"the hook expected {None if positions is None else len(positions)} positions, "
                f"the layer produced {hidden.shape[1]}"
            )
        rows = hidden[0]
        replaced = None
        steered = [False] * len(positions)
        if self._schedule:
            active = self._schedule.active(positions, rows.device)
            steered = active.any(dim=1).tolist()
            if any(steered):
                vectors = self._schedule.vectors_on(rows.device)
                rows = apply_steering(rows.float(), vectors, self._schedule.specs, active).to(hidden.dtype)
                replaced = rows.unsqueeze(0)
        self._captured = rows.detach().float().cpu()
        self._steered = steered
        if replaced is None:
            return None  # output unchanged
        if isinstance(output, tuple):
            return (replaced,) + tuple(output[1:])
        return replaced


def attach_hook(model: nn.Module, layer: int, schedule: Optional[SteeringSchedule] = None) -> ResidualStreamHook:
    """Hook ``model.model.layers[layer]``."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise IndexError(f"layer {layer} does not exist; the model has layers 0..{len(layers) - 1}")
    return ResidualStreamHook(layers[layer], schedule)
