"""A small pure-Python safetensors reader and writer (standard library + torch only).

Format: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data section),
an optional ``"__metadata__"`` map of strings, then the raw little-endian tensor bytes.

The reader checks what it reads before trusting it: the header length is bounded
(``MAX_HEADER_BYTES``), every entry's dtype, shape and offsets must agree with each other and
lie inside the file, and entries may not overlap. Tensors are built with ``torch.frombuffer``
over a private ``bytearray`` per tensor, so the file is never mapped and the tensors are
writable.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import BinaryIO, Dict, Iterable, Iterator, Mapping, Optional, Tuple

import torch

__all__ = [
    "MAX_HEADER_BYTES",
    "SafetensorsError",
    "iter_file",
    "load_file",
    "read_header",
    "save_file",
]

# The reference implementation refuses headers over 100 MB; so do we.
MAX_HEADER_BYTES = 100 * 1024 * 1024

_DTYPES: Dict[str, Tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_NAMES: Dict[torch.dtype, str] = {dt: name for name, (dt, _) in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A safetensors file is malformed, truncated or uses an unsupported dtype."""


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def read_header(f: BinaryIO, file_size: int) -> Tuple[Dict[str, dict], Dict[str, str], int]:
    """Read and validate the header of an open file.

    Returns ``(entries, metadata, data_start)`` where ``entries`` maps tensor names to their
    header records and ``data_start`` is the absolute offset of the data section.
    """
    if sys.byteorder != "little":  # pragma: no cover - every supported host is little-endian
        raise SafetensorsError("this reader assumes a little-endian host")
    raw = f.read(8)
    if len(raw) != 8:
        raise SafetensorsError("file too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > file_size:
        raise SafetensorsError(f"header length {n} runs past the end of the file ({file_size} bytes)")
    blob = f.read(n)
    if len(blob) != n:
        raise SafetensorsError("truncated header")
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"header is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")

    data_start = 8 + n
    data_size = file_size - data_start
    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise SafetensorsError("__metadata__ must map strings to strings")

    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise SafetensorsError(f"entry {name!r} is not an object")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if dtype not in _DTYPES:
            raise SafetensorsError(f"entry {name!r}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"entry {name!r}: bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise SafetensorsError(f"entry {name!r}: bad data_offsets {offsets!r} (data section {data_size} bytes)")
        expected = _numel(shape) * _DTYPES[dtype][1]
        if offsets[1] - offsets[0] != expected:
            raise SafetensorsError(
                f"entry {name!r}: {offsets[1] - offsets[0]} bytes for {dtype} {shape} (expected {expected})"
            )
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end_a, name_a), (begin_b, _, name_b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise SafetensorsError(f"entries {name_a!r} and {name_b!r} overlap")
    return header, dict(metadata_raw), data_start


def iter_file(path: "os.PathLike[str] | str", names: Optional[Iterable[str]] = None) -> Iterator[Tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` one tensor at a time (CPU, stored dtype), in file order.

    Only one tensor's bytes are held by the reader at a time, so a caller that copies each
    tensor into its destination and drops it keeps the peak memory near the largest tensor.
    ``names`` restricts (and orders) the tensors read; a missing name raises ``KeyError``.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, _, data_start = read_header(f, size)
        if names is None:
            wanted = sorted(header, key=lambda k: header[k]["data_offsets"][0])
        else:
            wanted = list(names)
        for name in wanted:
            entry = header[name]
            dtype, _ = _DTYPES[entry["dtype"]]
            begin, end = entry["data_offsets"]
            shape = entry["shape"]
            if end == begin:
                yield name, torch.empty(shape, dtype=dtype)
                continue
            buf = bytearray(end - begin)
            f.seek(data_start + begin)
            got = f.readinto(buf)
            if got != len(buf):
                raise SafetensorsError(f"entry {name!r}: file truncated")
            yield name, torch.frombuffer(buf, dtype=dtype).reshape(shape)


def load_file(
    path: "os.PathLike[str] | str",
    names: Optional[Iterable[str]] = None,
    with_metadata: bool = False,
):
    """Load tensors from ``path`` as a dict of CPU tensors in their stored dtype.

    ``names`` restricts loading to a subset (a missing name raises ``KeyError``). With
    ``with_metadata`` the result is ``(tensors, metadata)``.
    """
    tensors: Dict[str, torch.Tensor] = dict(iter_file(path, names))
    if not with_metadata:
        return tensors
    with open(path, "rb") as f:
        _, metadata, _ = read_header(f, os.path.getsize(path))
    return tensors, metadata


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy().tobytes()
    return t.numpy().tobytes()


def save_file(
    tensors: Mapping[str, torch.Tensor],
    path: "os.PathLike[str] | str",
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Write ``tensors`` to ``path``.

    As in the reference writer, tensors are stored by decreasing element size, then by name, and
    the header is padded with spaces to a multiple of 8 bytes, so every tensor's data starts at
    a multiple of its element size (aligned when the file is mapped).
    """
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _NAMES:
            raise SafetensorsError(f"tensor {name!r}: unsupported dtype {t.dtype}")
    order = sorted(tensors, key=lambda k: (-_DTYPES[_NAMES[tensors[k].dtype]][1], k))
    for name in order:
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for data in chunks:
            f.write(data)
    os.replace(tmp, path)
