"""Steering: the arithmetic applied to the residual stream, and when each entry starts.

Two modes (``docs/protocol.md``):

* ``add``: ``h + strength * v``;
* ``clamp-projection``: with ``u = v / |v|``, ``h + (target - h . u) u``, which sets the
  component of ``h`` along ``u`` to ``target`` and leaves the orthogonal part alone.

Entries apply in request order, each to the result of the previous one. The arithmetic runs in
float32 whatever the model's dtype, so a bf16 model and the float32 reference agree on what
was asked for; the caller casts the result back to the model's dtype.

Starts are positions over prompt + generated tokens. ``"after-prefix"`` and ``"answer"`` are
resolved from the generated tokens as they become known (:class:`SteeringSchedule`): a
position's steering depends only on tokens up to and including that position, so a resumed
(teacher-forced) run steers exactly the positions an uninterrupted run steered.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .protocol import SteeringSpec

# R1 opens its reasoning with "Okay, so the user ..."; steering only bites once that first
# sentence is complete (runtime-notes.md, Goodfire 2025). Matched against the generated text.
AFTER_PREFIX_PATTERN = re.compile(r"^\s*(<think>\s*)?Okay, so [^.!?\n]*[.!?\n]")
# When the prefix never matches, "after-prefix" steering starts after this many generated
# tokens, i.e. at generated index 48 (position prompt_tokens + 48).
AFTER_PREFIX_FALLBACK_TOKENS = 48


def apply_steering(
    hidden: torch.Tensor,
    vectors: Sequence[torch.Tensor],
    specs: Sequence[SteeringSpec],
    active: torch.Tensor,
) -> torch.Tensor:
    """Steered copy of ``hidden`` [T, d] (float32); ``active`` [T, E] bool says which entry
    applies at which row. ``vectors[e]`` is entry ``e``'s direction as float32 on ``hidden``'s
    device. Rows where nothing is active come back unchanged (bit for bit)."""
    out = hidden
    for e, (spec, vector) in enumerate(zip(specs, vectors)):
        rows = active[:, e]
        if not bool(rows.any()):
            continue
        if spec.mode == "add":
            steered = out + spec.strength * vector
        else:
            unit = vector / torch.linalg.vector_norm(vector)
            steered = out + (spec.target - out @ unit).unsqueeze(1) * unit
        out = torch.where(rows.unsqueeze(1), steered, out)
    return out


class SteeringSchedule:
    """Which steering entries apply at which positions of one generation.

    Feed every generated token, in order, to :meth:`observe_generated` before the forward pass
    that processes it; then :meth:`active` answers for any position up to that token.
    """

    def __init__(
        self,
        specs: Sequence[SteeringSpec],
        prompt_tokens: int,
        token_bytes: Callable[[int], bytes],
        think_end_id: Optional[int],
    ) -> None:
        self.specs = tuple(specs)
        self.prompt_tokens = prompt_tokens
        self._token_bytes = token_bytes
        self._think_end_id = think_end_id
        self._directions = [torch.from_numpy(spec.vector.copy()) for spec in specs]
        self._directions_on: Dict[torch.device, List[torch.Tensor]] = {}
        self._generated = 0
        self._text = b""
        # Without a </think> token every generated token is answer, so "answer" starts at once.
        self._answer_start: Optional[int] = prompt_tokens if think_end_id is None else None
        self._after_prefix_start: Optional[int] = None

    def __bool__(self) -> bool:
        return bool(self.specs)

    def vectors_on(self, device: torch.device) -> List[torch.Tensor]:
        """The entries' directions as float32 on ``device`` (a model spread over several GPUs
        runs the hooked layer on a different device from its embeddings)."""
        if device not in self._directions_on:
            self._directions_on[device] = [direction.to(device) for direction in self._directions]
        return self._directions_on[device]

    def observe_generated(self, token_id: int) -> None:
        """Record the next generated token (generated index ``self._generated``)."""
        index = self._generated
        self._generated += 1
        if self._answer_start is None and token_id == self._think_end_id:
            self._answer_start = self.prompt_tokens + index + 1
        if self._after_prefix_start is None and any(spec.start == "after-prefix" for spec in self.specs):
            self._text += self._token_bytes(token_id)
            if AFTER_PREFIX_PATTERN.match(self._text.decode("utf-8", errors="replace")):
                self._after_prefix_start = self.prompt_tokens + index + 1
            elif self._generated >= AFTER_PREFIX_FALLBACK_TOKENS:
                self._after_prefix_start = self.prompt_tokens + AFTER_PREFIX_FALLBACK_TOKENS

    def start_of(self, spec: SteeringSpec) -> Optional[int]:
        """The first steered position of ``spec``, or None while it is not yet known."""
        if isinstance(spec.start, int):
            return spec.start
        if spec.start == "answer":
            return self._answer_start
        return self._after_prefix_start

    def active(self, positions: Sequence[int], device: torch.device) -> torch.Tensor:
        """[len(positions), E] bool: entry ``e`` applies at ``positions[t]``."""
        starts: List[Optional[int]] = [self.start_of(spec) for spec in self.specs]
        rows = [[start is not None and position >= start for start in starts] for position in positions]
        return torch.tensor(rows, dtype=torch.bool, device=device).reshape(len(positions), len(self.specs))
