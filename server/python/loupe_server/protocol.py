"""The Loupe stream protocol, version 1 (``docs/protocol.md``): frames, wire dtypes, requests.

Everything here is pure data handling, so the byte layout can be tested against the spec's
worked example without a model or a socket:

* :func:`token_frame`, :func:`json_frame`, :func:`heartbeat_frame` build frames
  (``u32 length`` little-endian, ``u8 type``, payload); :data:`PREAMBLE` opens every body.
* :func:`encode_activation` converts float32 activations to the wire dtype (``f32``, ``f16``,
  ``bf16`` rounded to nearest even from the float32 bits).
* :func:`parse_generate_request` turns a request body into a :class:`GenerateRequest` or raises
  :class:`RequestError` (HTTP 400) whose message says what was expected and what to send.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

PROTOCOL_NAME = "loupe-stream"
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
PREAMBLE = b"LOUPE" + bytes([PROTOCOL_MAJOR, PROTOCOL_MINOR, 0])
CONTENT_TYPE = "application/vnd.loupe.stream; version=1"

FRAME_HEADER = 1
FRAME_TOKEN = 2
FRAME_ERROR = 3
FRAME_HEARTBEAT = 4
FRAME_END = 5

# A frame's length field counts the type byte and the payload; clients refuse more than this.
MAX_FRAME_LENGTH = 64 * 1024 * 1024

PHASE_PROMPT = 0
PHASE_THINKING = 1
PHASE_ANSWER = 2

FLAG_STEERED = 1

DTYPE_SIZES = {"f32": 4, "f16": 2, "bf16": 2}
SITES = ("resid_post",)
STEERING_MODES = ("add", "clamp-projection")
NAMED_STARTS = ("after-prefix", "answer")

END_EOS = "eos"
END_MAX_TOKENS = "max_tokens"
END_CANCELLED = "cancelled"

# Request defaults for fields a client leaves out (the spec's example sends them all).
DEFAULT_MAX_TOKENS = 256
DEFAULT_DTYPE = "f32"
# Bounds that keep one request's work and memory proportionate; a client never needs more.
MAX_STEERING_ENTRIES = 64
MAX_SEED = 2**63 - 1

_U32_MAX = 2**32 - 1
_TOKEN_FIXED = struct.Struct("<IIBBHI")  # position, token_id, phase, flags, text_len, d_in


class RequestError(Exception):
    """A request the server refuses before any stream starts: HTTP ``status`` with JSON
    ``{"code", "message"}``. The message says what was expected and what to send instead."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> Dict[str, str]:
        return {"code": self.code, "message": self.message}


# --------------------------------------------------------------------------------------------
# Frames


def frame(frame_type: int, payload: bytes = b"") -> bytes:
    """``u32 length`` (type byte + payload), ``u8 type``, payload."""
    length = 1 + len(payload)
    if length > MAX_FRAME_LENGTH:
        raise ValueError(f"frame of {length} bytes exceeds the protocol's {MAX_FRAME_LENGTH}-byte limit")
    return struct.pack("<IB", length, frame_type) + payload


def json_frame(frame_type: int, obj: Dict[str, Any]) -> bytes:
    """A HEADER, ERROR or END frame: compact UTF-8 JSON."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return frame(frame_type, text.encode("utf-8"))


def heartbeat_frame() -> bytes:
    return frame(FRAME_HEARTBEAT)


def error_frame(code: str, message: str, retryable: bool) -> bytes:
    return json_frame(FRAME_ERROR, {"code": code, "message": message, "retryable": retryable})


def end_frame(reason: str, prompt_tokens: int, generated_tokens: int, elapsed_ms: int) -> bytes:
    return json_frame(
        FRAME_END,
        {
            "reason": reason,
            "prompt_tokens": prompt_tokens,
            "generated_tokens": generated_tokens,
            "elapsed_ms": elapsed_ms,
        },
    )


def pad4(n: int) -> int:
    """``n`` rounded up to a multiple of 4."""
    return (n + 3) & ~3


def token_frame(
    position: int,
    token_id: int,
    phase: int,
    steered: bool,
    text: bytes,
    activation: np.ndarray,
    dtype: str,
) -> bytes:
    """One TOKEN frame. ``activation`` is the float32 vector at the hook (after steering)."""
    if len(text) > 0xFFFF:
        raise ValueError(f"token text piece of {len(text)} bytes does not fit the u16 text_len field")
    values = np.asarray(activation, dtype=np.float32).reshape(-1)
    d_in = values.shape[0]
    fixed = _TOKEN_FIXED.pack(position, token_id, phase, FLAG_STEERED if steered else 0, len(text), d_in)
    padding = b"\x00" * (pad4(len(text)) - len(text))
    return frame(FRAME_TOKEN, fixed + text + padding + encode_activation(values, dtype))


# --------------------------------------------------------------------------------------------
# Wire dtypes


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of float32 ``values``, rounded to nearest, ties to even.

    Rounding works on the float32 bits: add ``0x7FFF`` plus the lowest kept bit, then drop the
    low 16 bits; a carry into the exponent rounds up correctly, including to infinity. NaNs keep
    their sign and top payload bits and get the quiet bit, so they stay NaN.
    """
    f32 = np.ascontiguousarray(values, dtype=np.float32)
    bits = f32.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f32)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


def encode_activation(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of float32 ``values`` in wire ``dtype`` (``f32``, ``f16``, ``bf16``).

    ``f16`` uses NumPy's conversion, which rounds to nearest even and overflows to infinity.
    """
    f32 = np.asarray(values, dtype=np.float32)
    if dtype == "f32":
        return f32.astype("<f4").tobytes()
    if dtype == "f16":
        return f32.astype("<f2").tobytes()
    if dtype == "bf16":
        return f32_to_bf16_bits(f32).astype("<u2").tobytes()
    raise ValueError(f"unknown wire dtype {dtype!r}; expected one of {sorted(DTYPE_SIZES)}")


# --------------------------------------------------------------------------------------------
# Requests


Start = Union[int, str]


@dataclass(frozen=True)
class SteeringSpec:
    """One steering entry. ``vector`` is float32 [d_in]; ``start`` a position or a named start."""

    vector: np.ndarray
    strength: float
    start: Start
    mode: str
    target: Optional[float] = None


@dataclass(frozen=True)
class ResumeSpec:
    """Frames before ``position`` are on the client; ``generated`` are the ids it got after the prompt."""

    position: int
    generated: Tuple[int, ...]


@dataclass(frozen=True)
class GenerateRequest:
    messages: Optional[Tuple[Tuple[str, str], ...]]
    prompt: Optional[str]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    layer: int
    site: str
    dtype: str
    steering: Tuple[SteeringSpec, ...]
    resume: Optional[ResumeSpec]
    stop_at_think_end: bool


@dataclass(frozen=True)
class ModelLimits:
    """What request validation needs to know about the served model."""

    num_layers: int
    d_in: int
    default_layer: int
    vocab_size: int


def _reject_constant(name: str) -> None:
    raise RequestError("bad_json", f"the request body contains {name}, which is not JSON; send finite numbers only")


def parse_generate_request(body: bytes, limits: ModelLimits) -> GenerateRequest:
    """Validate a ``POST /v1/generate`` body. Unknown fields are ignored (the spec requires it)."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RequestError("bad_json", "the request body is not UTF-8; send a UTF-8 JSON object") from None
    except json.JSONDecodeError as e:
        raise RequestError("bad_json", f"the request body is not valid JSON ({e}); send a JSON object") from None
    if not isinstance(data, dict):
        raise RequestError("bad_request", "the request body must be a JSON object with 'messages' or 'prompt'")

    messages, prompt = _parse_input(data)
    max_tokens = _get_int(data, "max_tokens", DEFAULT_MAX_TOKENS, minimum=0)
    temperature = _get_number(data, "temperature", 0.0)
    if temperature < 0:
        raise RequestError("bad_request", f"'temperature' must be >= 0 (0 is greedy), got {temperature}")
    top_p = _get_number(data, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise RequestError("bad_request", f"'top_p' must be in (0, 1], got {top_p}")
    seed = _get_int(data, "seed", 0, minimum=0, maximum=MAX_SEED)

    layer, site = _parse_hook(data.get("hook"), limits)
    dtype = data.get("dtype", DEFAULT_DTYPE)
    if dtype is None:
        dtype = DEFAULT_DTYPE
    if dtype not in DTYPE_SIZES:
        raise RequestError("bad_dtype", f"'dtype' must be one of \"f32\", \"f16\", \"bf16\", got {dtype!r}")

    steering = _parse_steering(data.get("steering"), limits.d_in)
    resume = _parse_resume(data.get("resume"), limits.vocab_size)
    stop_at_think_end = data.get("stop_at_think_end", False)
    if stop_at_think_end is None:
        stop_at_think_end = False
    if not isinstance(stop_at_think_end, bool):
        raise RequestError("bad_request", f"'stop_at_think_end' must be true or false, got {stop_at_think_end!r}")

    return GenerateRequest(
        messages=messages,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        layer=layer,
        site=site,
        dtype=dtype,
        steering=steering,
        resume=resume,
        stop_at_think_end=stop_at_think_end,
    )


def _parse_input(data: Dict[str, Any]) -> Tuple[Optional[Tuple[Tuple[str, str], ...]], Optional[str]]:
    messages = data.get("messages")
    prompt = data.get("prompt")
    if (messages is None) == (prompt is None):
        raise RequestError(
            "bad_request",
            "send exactly one of 'messages' (a list of {role, content}) or 'prompt' (a string); "
            + ("both were given" if messages is not None else "neither was given"),
        )
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise RequestError("bad_request", "'prompt' must be a non-empty string")
        return None, prompt
    if not isinstance(messages, list) or not messages:
        raise RequestError("bad_request", "'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    parsed = []
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise RequestError(
                "bad_request",
                f"messages[{i}] must be an object with string 'role' and string 'content' (text only)",
            )
        parsed.append((message["role"], message["content"]))
    return tuple(parsed), None


def _parse_hook(hook: Any, limits: ModelLimits) -> Tuple[int, str]:
    if hook is None:
        return limits.default_layer, "resid_post"
    if not isinstance(hook, dict):
        raise RequestError("bad_request", "'hook' must be an object like {\"layer\": 12, \"site\": \"resid_post\"}")
    layer = _get_int(hook, "layer", limits.default_layer, minimum=None, field_prefix="hook.")
    if not 0 <= layer < limits.num_layers:
        raise RequestError(
            "unknown_layer",
            f"hook.layer {layer} does not exist: this model has layers 0..{limits.num_layers - 1}",
        )
    site = hook.get("site", "resid_post")
    if site not in SITES:
        raise RequestError("unsupported_site", f"hook.site {site!r} is not served; this server serves {list(SITES)}")
    return layer, site


def _parse_steering(entries: Any, d_in: int) -> Tuple[SteeringSpec, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise RequestError("bad_steering", "'steering' must be a list of steering entries")
    if len(entries) > MAX_STEERING_ENTRIES:
        raise RequestError(
            "bad_steering",
            f"'steering' has {len(entries)} entries; at most {MAX_STEERING_ENTRIES} are accepted "
            "(sum vectors with the same start and mode on the client)",
        )
    return tuple(_parse_steering_entry(entry, i, d_in) for i, entry in enumerate(entries))


def _parse_steering_entry(entry: Any, i: int, d_in: int) -> SteeringSpec:
    where = f"steering[{i}]"
    if not isinstance(entry, dict):
        raise RequestError("bad_steering", f"{where} must be an object with 'vector', 'strength', 'start', 'mode'")
    raw = entry.get("vector")
    if not isinstance(raw, str):
        raise RequestError("bad_vector", f"{where}.vector must be a base64 string of {d_in} little-endian f32 values")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("bad_vector", f"{where}.vector is not valid base64") from None
    if len(data) != 4 * d_in:
        raise RequestError(
            "bad_vector",
            f"{where}.vector has {len(data)} bytes; this model's d_in is {d_in}, so send {4 * d_in} bytes "
            f"({d_in} little-endian f32 values)",
        )
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(vector).all():
        raise RequestError("bad_vector", f"{where}.vector contains NaN or infinity; send finite values")

    mode = entry.get("mode", "add")
    if mode not in STEERING_MODES:
        raise RequestError("bad_steering", f"{where}.mode must be \"add\" or \"clamp-projection\", got {mode!r}")
    strength = _get_number(entry, "strength", 1.0, field_prefix=where + ".")
    target = None
    if mode == "clamp-projection":
        if "target" not in entry:
            raise RequestError("bad_steering", f"{where}: mode \"clamp-projection\" needs a numeric 'target'")
        target = _get_number(entry, "target", 0.0, field_prefix=where + ".")
        if not float(np.linalg.norm(vector.astype(np.float64))) > 0:
            raise RequestError("bad_vector", f"{where}.vector is zero; clamp-projection needs a direction")

    start = entry.get("start", 0)
    if isinstance(start, bool) or not (isinstance(start, int) or start in NAMED_STARTS):
        raise RequestError(
            "bad_steering",
            f"{where}.start must be a position (integer >= 0), \"after-prefix\" or \"answer\", got {start!r}",
        )
    if isinstance(start, int) and not 0 <= start <= _U32_MAX:
        raise RequestError("bad_steering", f"{where}.start must be a position >= 0, got {start}")
    return SteeringSpec(vector=vector, strength=strength, start=start, mode=mode, target=target)


def _parse_resume(resume: Any, vocab_size: int) -> Optional[ResumeSpec]:
    if resume is None:
        return None
    if not isinstance(resume, dict):
        raise RequestError("bad_resume", "'resume' must be an object {\"position\", \"generated\"} or null")
    position = _get_int(resume, "position", None, minimum=0, maximum=_U32_MAX, field_prefix="resume.")
    generated = resume.get("generated", [])
    if not isinstance(generated, list) or any(
        isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size for t in generated
    ):
        raise RequestError(
            "bad_resume",
            f"resume.generated must be a list of token ids in 0..{vocab_size - 1} (the ids of the TOKEN frames "
            "received after the prompt)",
        )
    return ResumeSpec(position=position, generated=tuple(generated))


def _get_int(
    data: Dict[str, Any],
    key: str,
    default: Optional[int],
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
    field_prefix: str = "",
) -> int:
    value = data.get(key, default)
    if value is None:
        if default is None:
            raise RequestError("bad_request", f"'{field_prefix}{key}' is required (an integer)")
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError("bad_request", f"'{field_prefix}{key}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise RequestError("bad_request", f"'{field_prefix}{key}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise RequestError("bad_request", f"'{field_prefix}{key}' must be <= {maximum}, got {value}")
    return value


def _get_number(data: Dict[str, Any], key: str, default: float, field_prefix: str = "") -> float:
    value = data.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError("bad_request", f"'{field_prefix}{key}' must be a finite number, got {value!r}")
    return float(value)


def messages_as_dicts(messages: Sequence[Tuple[str, str]]) -> List[Dict[str, str]]:
    """The ``[{role, content}]`` form chat templates take."""
    return [{"role": role, "content": content} for role, content in messages]
