"""Shared test helpers: fixture paths, an independent stream parser, reference computations.

The parser and dtype decoders here are written from docs/protocol.md without importing
``loupe_server.protocol``, so a layout mistake there cannot hide itself in the tests.
"""

from __future__ import annotations

import base64
import functools
import os
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_ROOT = os.path.dirname(HERE)  # server/python
REPO_ROOT = os.path.dirname(os.path.dirname(SERVER_ROOT))
TINY_QWEN2 = os.path.join(REPO_ROOT, "tests", "fixtures", "tiny-qwen2")
HAVE_TINY_QWEN2 = os.path.exists(os.path.join(TINY_QWEN2, "model.safetensors")) and os.path.exists(
    os.path.join(TINY_QWEN2, "tokenizer.json")
)
PYTHON = "/usr/bin/python3"


@functools.lru_cache(maxsize=1)
def tiny_lm() -> Any:
    """The tiny Qwen2 loaded the way the server loads it (one copy per test process)."""
    from loupe_server.backend import load_model

    return load_model(TINY_QWEN2, device="cpu")


def vector_b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


# ---- independent stream parsing ----------------------------------------------------------------

DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2}


def decode_values(data: bytes, dtype: str) -> np.ndarray:
    if dtype == "f32":
        return np.array(struct.unpack("<%df" % (len(data) // 4), data), dtype=np.float32)
    if dtype == "f16":
        return np.array(struct.unpack("<%de" % (len(data) // 2), data), dtype=np.float32)
    if dtype == "bf16":
        halves = struct.unpack("<%dH" % (len(data) // 2), data)
        return np.array([struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves], dtype=np.float32)
    raise AssertionError(dtype)


class Stream:
    """A parsed response body."""

    def __init__(self) -> None:
        self.header: Optional[Dict[str, Any]] = None
        self.tokens: List[Dict[str, Any]] = []
        self.end: Optional[Dict[str, Any]] = None
        self.error: Optional[Dict[str, Any]] = None
        self.heartbeats = 0
        self.order: List[int] = []  # frame types in arrival order


def parse_frame(frame_type: int, payload: bytes, stream: Stream) -> None:
    import json

    stream.order.append(frame_type)
    if frame_type == 1:
        assert stream.header is None, "second HEADER"
        stream.header = json.loads(payload.decode("utf-8"))
    elif frame_type == 2:
        assert stream.header is not None, "TOKEN before HEADER"
        position, token_id, phase, flags, text_len, d_in = struct.unpack_from("<IIBBHI", payload, 0)
        assert d_in == stream.header["d_in"], "TOKEN d_in differs from the header's"
        padded = (text_len + 3) // 4 * 4
        size = DTYPE_BYTES[stream.header["dtype"]]
        assert len(payload) == 16 + padded + d_in * size, "TOKEN sizes disagree"
        assert payload[16 + text_len : 16 + padded] == b"\x00" * (padded - text_len), "non-zero padding"
        stream.tokens.append(
            {
                "position": position,
                "token_id": token_id,
                "phase": phase,
                "flags": flags,
                "text": payload[16 : 16 + text_len],
                "activation": decode_values(payload[16 + padded :], stream.header["dtype"]),
            }
        )
    elif frame_type == 3:
        stream.error = json.loads(payload.decode("utf-8"))
    elif frame_type == 4:
        assert payload == b"", "HEARTBEAT with a payload"
        stream.heartbeats += 1
    elif frame_type == 5:
        stream.end = json.loads(payload.decode("utf-8"))


def parse_body(body: bytes) -> Stream:
    assert body[:8] == b"LOUPE\x01\x00\x00", f"bad preamble {body[:8]!r}"
    stream = Stream()
    offset = 8
    while offset < len(body):
        (length,) = struct.unpack_from("<I", body, offset)
        frame_type = body[offset + 4]
        parse_frame(frame_type, body[offset + 5 : offset + 4 + length], stream)
        offset += 4 + length
    assert offset == len(body), "truncated frame at the end of the body"
    return stream


class FrameReader:
    """Reads frames one at a time from a file-like response (for streaming tests)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        preamble = self._read(8)
        assert preamble == b"LOUPE\x01\x00\x00", preamble
        self.stream = Stream()

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.response.read(n - len(data))
            if not chunk:
                raise EOFError("stream ended mid-frame")
            data += chunk
        return data

    def next(self) -> int:
        (length,) = struct.unpack("<I", self._read(4))
        payload = self._read(length)
        parse_frame(payload[0], payload[1:], self.stream)
        return payload[0]


# ---- reference computations ----------------------------------------------------------------------


def steering_hook(layer: int, start: int, vector: torch.Tensor, strength: float, model: Any) -> Any:
    """A test-owned forward hook: adds strength * vector to block ``layer``'s output at absolute
    positions >= start (the hook is told the offset of each call through ``offset[0]``)."""
    offset = [0]

    def hook(module: Any, inputs: Any, output: Any) -> Any:
        hidden = output[0]
        positions = torch.arange(hidden.shape[1]) + offset[0]
        mask = (positions >= start).to(hidden.dtype)[None, :, None]
        return (hidden + mask * strength * vector,) + tuple(output[1:])

    handle = model.model.layers[layer].register_forward_hook(hook)
    return handle, offset


@torch.no_grad()
def reference_greedy(
    model: Any,
    prompt: Sequence[int],
    max_tokens: int,
    eos: Sequence[int],
    layer: int,
    steer: Optional[Tuple[int, torch.Tensor, float]] = None,
) -> Tuple[List[int], torch.Tensor]:
    """Greedy decoding without a KV cache (the whole sequence re-run every step), with an
    optional additive steering hook; returns (generated ids, layer output [T_total, d] of the
    final sequence as the steered model computes it)."""
    handle = None
    if steer is not None:
        start, vector, strength = steer
        handle, _ = steering_hook(layer, start, vector, strength, model)
    captured: Dict[str, torch.Tensor] = {}
    capture = model.model.layers[layer].register_forward_hook(
        lambda m, i, o: captured.__setitem__("h", o[0][0].clone())
    )
    try:
        ids = list(prompt)
        generated: List[int] = []
        while len(generated) < max_tokens:
            logits, _ = model(torch.tensor([ids]))
            token = int(torch.argmax(logits[0, -1]))
            generated.append(token)
            ids.append(token)
            if token in eos:
                break
        model(torch.tensor([ids]))
        return generated, captured["h"]
    finally:
        capture.remove()
        if handle is not None:
            handle.remove()
