"""One generation: prompt → hooked prefill → incremental decoding, one record per position.

The order of work is what makes the stream and ``resume`` exact:

1. The prompt (plus, when resuming, the generated ids the client already has) runs through the
   model in one teacher-forced pass with the hook attached; positions from ``resume_from`` on
   are yielded.
2. Then, per new token: sample it from the last logits, tell the steering schedule about it,
   run it through the model (KV cache) so the hook sees its activation, yield its record.
   Stop after an end-of-sequence token, ``</think>`` when asked, or ``max_tokens``.

Sampling draws exactly one uniform number per generated token from a ``torch.Generator``
seeded with ``seed`` (none when greedy), and a resumed run draws one per teacher-forced token
first, so a resumed or repeated request continues with the same tokens as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import torch

from .backend import LoadedModel
from .hooks import attach_hook
from .protocol import (
    END_CANCELLED,
    END_EOS,
    END_MAX_TOKENS,
    PHASE_ANSWER,
    PHASE_PROMPT,
    PHASE_THINKING,
    GenerateRequest,
    RequestError,
    messages_as_dicts,
)
from .steering import SteeringSchedule


@dataclass
class TokenRecord:
    """Everything one TOKEN frame carries, before wire encoding."""

    position: int
    token_id: int
    phase: int
    steered: bool
    text: bytes
    activation: torch.Tensor  # float32 [d_in], CPU, after steering


def prompt_ids(lm: LoadedModel, request: GenerateRequest) -> List[int]:
    """Tokenise the request's prompt or chat messages."""
    if request.prompt is not None:
        return lm.tokenizer.encode_prompt(request.prompt)
    assert request.messages is not None
    return lm.tokenizer.encode_chat(messages_as_dicts(request.messages))


def check_lengths(lm: LoadedModel, request: GenerateRequest, prompt: Sequence[int]) -> None:
    """Refuse (HTTP 400) what cannot run: an empty prompt, a sequence past the model's context,
    or a ``resume`` inconsistent with the prompt and the stream it claims to continue."""
    if not prompt:
        raise RequestError("bad_request", "the prompt tokenised to zero tokens; send some text")
    if len(prompt) + request.max_tokens > lm.max_positions:
        raise RequestError(
            "prompt_too_long",
            f"prompt ({len(prompt)} tokens) + max_tokens ({request.max_tokens}) exceeds this model's "
            f"context of {lm.max_positions} positions; shorten the prompt or lower max_tokens",
        )
    resume = request.resume
    if resume is None:
        return
    generated = resume.generated
    expected = max(0, resume.position - len(prompt))
    if resume.position > len(prompt) + len(generated) or len(generated) != expected:
        raise RequestError(
            "bad_resume",
            f"resume.position {resume.position} with {len(generated)} generated ids does not fit a prompt of "
            f"{len(prompt)} tokens: 'generated' must hold the ids of positions {len(prompt)}..position-1 "
            f"({expected} ids here)",
        )
    if len(generated) > request.max_tokens:
        raise RequestError(
            "bad_resume", f"resume.generated has {len(generated)} ids, more than max_tokens ({request.max_tokens})"
        )
    stops = set(lm.tokenizer.eos_token_ids)
    if request.stop_at_think_end and lm.tokenizer.think_end_id is not None:
        stops.add(lm.tokenizer.think_end_id)
    if any(token in stops for token in generated[:-1]):
        raise RequestError(
            "bad_resume", "resume.generated continues past a stop token; the original stream had ended there"
        )


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Greedy (``temperature == 0``: first maximal logit) or nucleus sampling.

    Nucleus: softmax of ``logits / temperature`` in float64, tokens sorted by probability
    (stable, so ties keep id order), keep the smallest prefix whose mass reaches ``top_p``, then
    invert its cumulative distribution at one uniform draw.
    """
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.double().cpu() / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True, stable=True)
    keep = (torch.cumsum(sorted_probs, dim=0) - sorted_probs) < top_p
    kept = sorted_probs[keep]
    cumulative = torch.cumsum(kept, dim=0)
    u = draw_uniform(generator) * float(cumulative[-1])
    index = int(torch.searchsorted(cumulative, torch.tensor([u], dtype=torch.float64), right=True))
    return int(order[keep][min(index, len(kept) - 1)])


def draw_uniform(generator: torch.Generator) -> float:
    """The one random number a sampled token consumes."""
    return float(torch.rand(1, generator=generator, dtype=torch.float64))


class Generation:
    """One request's run. Iterate :meth:`records`; afterwards ``reason`` and
    ``generated_tokens`` (all generated tokens, including resumed ones) describe how it ended."""

    def __init__(self, lm: LoadedModel, request: GenerateRequest, prompt: Sequence[int]) -> None:
        self.lm = lm
        self.request = request
        self.prompt = list(prompt)
        self.resume_from = request.resume.position if request.resume else 0
        self.reason: Optional[str] = None
        self.generated_tokens = 0

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)

    def records(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[TokenRecord]:
        """Yield a record per position from ``resume_from``. ``should_stop`` is asked before every
        forward pass; when it says yes the run ends with reason ``cancelled``."""
        return self._run(should_stop)

    # On a generator function, no_grad applies while the generator runs and is lifted at every
    # yield, so the consumer's grad mode is never touched.
    @torch.no_grad()
    def _run(self, should_stop: Callable[[], bool]) -> Iterator[TokenRecord]:
        lm, request = self.lm, self.request
        tokenizer = lm.tokenizer
        n = len(self.prompt)
        generated: List[int] = list(request.resume.generated) if request.resume else []
        schedule = SteeringSchedule(request.steering, n, tokenizer.token_bytes, tokenizer.think_end_id)
        for token in generated:
            schedule.observe_generated(token)
        phases = _PhaseTracker(tokenizer.think_end_id)
        generator = torch.Generator().manual_seed(request.seed)
        if request.temperature > 0:
            for _ in generated:
                draw_uniform(generator)
        stops = set(tokenizer.eos_token_ids)
        if request.stop_at_think_end and tokenizer.think_end_id is not None:
            stops.add(tokenizer.think_end_id)

        if should_stop():
            self.reason = END_CANCELLED
            return
        with attach_hook(lm.model, request.layer, schedule) as hook:
            ids = self.prompt + generated
            positions = range(len(ids))
            hook.expect(positions)
            logits, past = lm.step(self._tensor(ids), None, self._tensor(list(positions)))
            activations, steered = hook.take()
            self.generated_tokens = len(generated)
            for position, token in enumerate(ids):
                phase = PHASE_PROMPT if position < n else phases.next(token)
                if position >= self.resume_from:
                    yield TokenRecord(
                        position, token, phase, steered[position], tokenizer.token_bytes(token), activations[position]
                    )
            last_logits = logits[0, -1]
            while True:
                if generated and generated[-1] in stops:
                    self.reason = END_EOS
                    return
                if len(generated) >= request.max_tokens:
                    self.reason = END_MAX_TOKENS
                    return
                if should_stop():
                    self.reason = END_CANCELLED
                    return
                token = sample_token(last_logits, request.temperature, request.top_p, generator)
                generated.append(token)
                schedule.observe_generated(token)
                position = n + len(generated) - 1
                hook.expect(range(position, position + 1))
                logits, past = lm.step(self._tensor([token]), past, self._tensor([position]))
                activations, steered = hook.take()
                self.generated_tokens = len(generated)
                yield TokenRecord(
                    position, token, phases.next(token), steered[0], tokenizer.token_bytes(token), activations[0]
                )
                last_logits = logits[0, -1]

    def _tensor(self, values: List[int]) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.long, device=self.lm.input_device)


class _PhaseTracker:
    """Generated tokens are thinking up to and including ``</think>``, answer after it; a model
    without a ``</think>`` token only answers."""

    def __init__(self, think_end_id: Optional[int]) -> None:
        self._think_end_id = think_end_id
        self._answering = think_end_id is None

    def next(self, token: int) -> int:
        if self._answering:
            return PHASE_ANSWER
        if token == self._think_end_id:
            self._answering = True
        return PHASE_THINKING
