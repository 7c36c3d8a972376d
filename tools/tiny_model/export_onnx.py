#!/usr/bin/python3
"""Export tests/fixtures/tiny-qwen2 to ONNX: two transformers.js model folders plus golden values.

Run with Debian's own python3 (NOT the pyenv python3 that may come first on PATH):

    /usr/bin/python3 tools/tiny_model/export_onnx.py

Needs only the standard library, NumPy and PyTorch 1.13 (no onnx / onnxruntime packages: the
few protobuf operations needed are hand-written below). The outputs are committed; tests never
run this script. It is deterministic (one thread, fixed seed; it exports twice and checks that
the bytes agree): running it again writes byte-identical files.

What it writes:

  tests/fixtures/tiny-qwen2-onnx/
    config.json, generation_config.json,   copied from tests/fixtures/tiny-qwen2 (config.json
    tokenizer.json, tokenizer_config.json  already has "transformers.js_config": {"dtype": "fp32"})
    onnx/model.onnx                        opset 17, weights inside (one file)
    onnx/sites.json                        per layer, the node and tensor of the residual stream
                                           before/after the block and of the MLP output
    golden.json                            PyTorch float32 outputs of the same model (see below)
    README.md
  tests/fixtures/tiny-qwen2-onnx-external/
    config.json                            as above plus "use_external_data_format": true
    generation_config.json, tokenizer.json, tokenizer_config.json
    onnx/model.onnx, onnx/model.onnx_data  the same graph; every initializer stored externally
    README.md

Graph (Optimum / transformers.js layout for decoder-only models with a KV cache):

  inputs   input_ids        int64   [batch_size, sequence_length]
           attention_mask   int64   [batch_size, past_sequence_length + sequence_length]
           position_ids     int64   [batch_size, sequence_length]
           past_key_values.{i}.key|value  float32 [batch_size, 2, past_sequence_length, 16]
  outputs  logits           float32 [batch_size, sequence_length, 512]
           present.{i}.key|value          float32 [batch_size, 2, past_sequence_length + sequence_length, 16]

The trace freezes no shape (no int()/.item()/Python branch on a size): the causal mask is built
from tensor shapes, masked scores use finfo(float32).min, and RoPE cos/sin are constant tables
(initializers) gathered by position_ids, so a zero-length past works and WebGPU's low-accuracy
sin/cos never enter the graph. The tables hold exactly the values the PyTorch module uses.

External data. torch 1.13's torch.onnx.export has no switch for external data (it only writes
it for models over 2 GB), so the external folder is made by post-processing the single-file
protobuf (see ``externalize``): in ModelProto.graph (field 7), every GraphProto.initializer
(field 5, a TensorProto) loses its raw_data (field 9) and gains data_location (field 14) =
EXTERNAL (1) and external_data (field 13, StringStringEntryProto{key=1, value=2}) entries
``location`` = "model.onnx_data", ``offset``, ``length``. The tensors are written one after the
other into model.onnx_data, each starting on a 64-byte boundary. All other fields are copied
byte for byte, in order.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "server", "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from loupe_server.models.qwen2 import KVCache, Qwen2ForCausalLM, _causal_mask  # noqa: E402
from loupe_server.tokenizer import Tokenizer  # noqa: E402

SRC = os.path.join(REPO, "tests", "fixtures", "tiny-qwen2")
OUT_SINGLE = os.path.join(REPO, "tests", "fixtures", "tiny-qwen2-onnx")
OUT_EXTERNAL = os.path.join(REPO, "tests", "fixtures", "tiny-qwen2-onnx-external")
COPIED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
OPSET = 17
EXTERNAL_DATA_FILE = "model.onnx_data"
EXTERNAL_ALIGN = 64

PROMPT = "What is 7 * 8?"
GREEDY_TOKENS = 12
STEER_LAYER = 1
STEER_FROM_POSITION = 5
STEER_STRENGTH = 4.0
STEER_SEED = 7

BATCH = "batch_size"
SEQ = "sequence_length"
PAST = "past_sequence_length"
TOTAL = "past_sequence_length + sequence_length"


# ---------------------------------------------------------------------------------------------
# The exported module.


class RopeTables(nn.Module):
    """Constant cos/sin tables [positions, head_dim] as buffers: exported as initializers and
    gathered by position_ids (a Gather per table, no Sin/Cos in the graph)."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("cos_table", cos.clone().contiguous())
        self.register_buffer("sin_table", sin.clone().contiguous())

    def forward(self, position_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.cos_table[position_ids], self.sin_table[position_ids]


class OnnxQwen2Model(nn.Module):
    """The loaded ``Qwen2Model``'s submodules under their own names, with a trace-friendly
    forward (flat past in, presents out). It must run as a module call: torch puts a scope in a
    node's name only for modules whose forward the node ran in, so this gives ``/model/...``."""

    def __init__(self, lm: Qwen2ForCausalLM) -> None:
        super().__init__()
        rot = lm.model.rotary_emb
        positions = int(lm.config.max_position_embeddings)
        rot._ensure(positions, torch.device("cpu"))  # the exact tables the module itself uses
        assert rot._cos is not None and rot._sin is not None
        self.embed_tokens = lm.model.embed_tokens
        self.rotary_emb = RopeTables(rot._cos[:positions], rot._sin[:positions])
        self.layers = lm.model.layers
        self.norm = lm.model.norm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    ) -> Tuple[torch.Tensor, KVCache]:
        batch = input_ids.shape[0]  # traced sizes, never Python ints
        seq = input_ids.shape[1]
        total = past[0][0].shape[2] + seq
        hidden = self.embed_tokens(input_ids)
        cos_sin = self.rotary_emb(position_ids)
        mask = _causal_mask(batch, seq, total, hidden.dtype, hidden.device, attention_mask)
        presents: KVCache = []
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, cos_sin, mask, past[i], presents)[0]
        return self.norm(hidden), presents


class OnnxQwen2(nn.Module):
    """Qwen2ForCausalLM with transformers.js' flat I/O. Module paths (``model.layers.2`` ...)
    are the loaded model's, so torch names the nodes ``/model/layers.2/Add_1`` etc."""

    def __init__(self, lm: Qwen2ForCausalLM) -> None:
        super().__init__()
        self.model = OnnxQwen2Model(lm)
        self.lm_head = lm.lm_head
        self.num_layers = len(lm.model.layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past_flat: torch.Tensor,
    ) -> Tuple[torch.Tensor, ...]:
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.num_layers)]
        hidden, presents = self.model(input_ids, attention_mask, position_ids, past)
        out: List[torch.Tensor] = [self.lm_head(hidden)]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


def io_spec(num_layers: int) -> Tuple[List[str], List[str], Dict[str, Dict[int, str]]]:
    inputs = ["input_ids", "attention_mask", "position_ids"]
    outputs = ["logits"]
    axes: Dict[str, Dict[int, str]] = {
        "input_ids": {0: BATCH, 1: SEQ},
        "attention_mask": {0: BATCH, 1: TOTAL},
        "position_ids": {0: BATCH, 1: SEQ},
        "logits": {0: BATCH, 1: SEQ},
    }
    for i in range(num_layers):
        for kv in ("key", "value"):
            inputs.append(f"past_key_values.{i}.{kv}")
            outputs.append(f"present.{i}.{kv}")
            axes[f"past_key_values.{i}.{kv}"] = {0: BATCH, 2: PAST}
            axes[f"present.{i}.{kv}"] = {0: BATCH, 2: TOTAL}
    return inputs, outputs, axes


def export_bytes(lm: Qwen2ForCausalLM) -> bytes:
    cfg = lm.config
    wrapper = OnnxQwen2(lm).eval()
    n = cfg.num_hidden_layers
    kvh, hd = int(cfg.num_key_value_heads or 0), int(cfg.head_dim or 0)
    # Example sizes all different (batch 2, past 3, seq 5), so no two symbolic dims get confused.
    b, p, t = 2, 3, 5
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
    attention_mask = torch.ones(b, p + t, dtype=torch.int64)
    position_ids = torch.arange(p, p + t).unsqueeze(0).expand(b, t).contiguous()
    past = [torch.randn(b, kvh, p, hd, generator=g) for _ in range(2 * n)]
    inputs, outputs, axes = io_spec(n)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from the module's size checks
        torch.onnx.export(
            wrapper,
            (input_ids, attention_mask, position_ids, *past),
            f,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return f.getvalue()


# ---------------------------------------------------------------------------------------------
# A minimal protobuf reader/writer (wire format only) for the parts of onnx.proto used here.


def read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def write_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def iter_fields(buf: bytes) -> Iterator[Tuple[int, int, object, bytes]]:
    """Yields (field number, wire type, value, the field's raw bytes incl. its key).

    value: int for varints, bytes for length-delimited fields and fixed32/64."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value, buf[start:pos]


def key_bytes(field: int, wire: int) -> bytes:
    return write_varint((field << 3) | wire)


def len_field(field: int, payload: bytes) -> bytes:
    return key_bytes(field, 2) + write_varint(len(payload)) + payload


def varint_field(field: int, value: int) -> bytes:
    return key_bytes(field, 0) + write_varint(value)


def strings(buf: bytes, field: int) -> List[str]:
    return [bytes(v).decode("utf-8") for f, w, v, _ in iter_fields(buf) if f == field and w == 2]  # type: ignore[arg-type]


def one(buf: bytes, field: int, default: object = None) -> object:
    found = default
    for f, _, v, _ in iter_fields(buf):
        if f == field:
            found = v
    return found


def graph_of(model: bytes) -> bytes:
    g = one(model, 7)
    assert isinstance(g, bytes), "ModelProto has no graph"
    return g


def parse_value_info(vi: bytes) -> Tuple[str, int, List[object]]:
    """ValueInfoProto → (name, elem_type, dims), dims as int (dim_value) or str (dim_param)."""
    name = bytes(one(vi, 1, b"")).decode()  # type: ignore[arg-type]
    tensor = one(bytes(one(vi, 2, b"")), 1, b"")  # TypeProto.tensor_type  # type: ignore[arg-type]
    elem = int(one(bytes(tensor), 1, 0))  # type: ignore[arg-type]
    dims: List[object] = []
    shape = one(bytes(tensor), 2)  # type: ignore[arg-type]
    if isinstance(shape, bytes):
        for f, _, d, _ in iter_fields(shape):
            if f != 1:
                continue
            assert isinstance(d, bytes)
            val = one(d, 1)
            param = one(d, 2)
            dims.append(int(val) if val is not None else bytes(param).decode() if param is not None else "?")  # type: ignore[arg-type]
    return name, elem, dims


class Node:
    def __init__(self, buf: bytes) -> None:
        self.inputs = strings(buf, 1)
        self.outputs = strings(buf, 2)
        self.name = bytes(one(buf, 3, b"")).decode()  # type: ignore[arg-type]
        self.op_type = bytes(one(buf, 4, b"")).decode()  # type: ignore[arg-type]
        self.int_attrs: Dict[str, int] = {}
        for f, _, v, _ in iter_fields(buf):
            if f == 5:  # AttributeProto{name=1, i=3}
                assert isinstance(v, bytes)
                i = one(v, 3)
                if isinstance(i, int):
                    self.int_attrs[bytes(one(v, 1, b"")).decode()] = i  # type: ignore[arg-type]


def externalize(model: bytes, location: str) -> Tuple[bytes, bytes]:
    """Move every initializer's raw_data into an external file (see the module docstring)."""
    data = bytearray()
    new_graph = bytearray()
    for f, w, v, raw in iter_fields(graph_of(model)):
        if f != 5:  # GraphProto.initializer
            new_graph += raw
            continue
        assert isinstance(v, bytes)
        tensor = bytearray()
        payload: Optional[bytes] = None
        for tf, tw, tv, traw in iter_fields(v):
            if tf == 9:  # raw_data
                assert isinstance(tv, bytes)
                payload = tv
            elif tf in (4, 5, 6, 7, 10, 11):  # float/int32/string/int64/double/uint64 _data
                raise ValueError("initializer stored without raw_data; not handled")
            elif tf in (13, 14):
                raise ValueError("initializer is already external")
            else:
                tensor += traw
        if payload is None:
            raise ValueError("initializer without raw_data")
        offset = (len(data) + EXTERNAL_ALIGN - 1) // EXTERNAL_ALIGN * EXTERNAL_ALIGN
        data += b"\0" * (offset - len(data))
        data += payload
        for k, val in (("location", location), ("offset", str(offset)), ("length", str(len(payload)))):
            tensor += len_field(13, len_field(1, k.encode()) + len_field(2, val.encode()))
        tensor += varint_field(14, 1)  # data_location = EXTERNAL
        new_graph += len_field(5, bytes(tensor))
    out = bytearray()
    for f, _, _, raw in iter_fields(model):
        out += len_field(7, bytes(new_graph)) if f == 7 else raw
    return bytes(out), bytes(data)


def initializer_stats(model: bytes) -> Tuple[int, int, int]:
    """(count, bytes of raw_data inside the file, count stored externally)."""
    n = inside = external = 0
    for f, _, v, _ in iter_fields(graph_of(model)):
        if f == 5:
            assert isinstance(v, bytes)
            n += 1
            raw = one(v, 9)
            inside += len(raw) if isinstance(raw, bytes) else 0
            external += int(one(v, 14, 0) == 1)  # type: ignore[arg-type]
    return n, inside, external


# ---------------------------------------------------------------------------------------------
# Checks on the exported graph.

FLOAT, INT64 = 1, 7


def check_io(model: bytes, num_layers: int, kv_heads: int, head_dim: int, vocab: int) -> Dict[str, List[object]]:
    g = graph_of(model)
    inits = set()
    for f, _, v, _ in iter_fields(g):
        if f == 5:
            assert isinstance(v, bytes)
            inits.add(bytes(one(v, 8, b"")).decode())  # type: ignore[arg-type]
    ins = [parse_value_info(bytes(v)) for f, _, v, _ in iter_fields(g) if f == 11]  # type: ignore[arg-type]
    ins = [i for i in ins if i[0] not in inits]
    outs = [parse_value_info(bytes(v)) for f, _, v, _ in iter_fields(g) if f == 12]  # type: ignore[arg-type]
    want_in: List[Tuple[str, int, List[object]]] = [
        ("input_ids", INT64, [BATCH, SEQ]),
        ("attention_mask", INT64, [BATCH, TOTAL]),
        ("position_ids", INT64, [BATCH, SEQ]),
    ]
    want_out: List[Tuple[str, int, List[object]]] = [("logits", FLOAT, [BATCH, SEQ, vocab])]
    for i in range(num_layers):
        for kv in ("key", "value"):
            want_in.append((f"past_key_values.{i}.{kv}", FLOAT, [BATCH, kv_heads, PAST, head_dim]))
            want_out.append((f"present.{i}.{kv}", FLOAT, [BATCH, kv_heads, TOTAL, head_dim]))
    if ins != want_in:
        raise AssertionError(f"graph inputs\n{ins}\n!=\n{want_in}")
    if outs != want_out:
        raise AssertionError(f"graph outputs\n{outs}\n!=\n{want_out}")
    return {name: dims for name, _, dims in ins + outs}


def find_sites(model: bytes, num_layers: int) -> List[Dict[str, object]]:
    """Locate, per layer, the two residual Adds and the MLP output, checking the graph's wiring
    (not just the names): Add = resid_pre + attention output; Add_1 = Add + down_proj output;
    block i's input is block i-1's Add_1 (or the embedding Gather); the final norm reads the
    last Add_1; every reader of a block's output belongs to the next block (or the final norm),
    so rewiring those readers steers everything downstream.

    One wrinkle, kept because real exports have it too: RMSNorm's ``hidden_states.to(float32)``
    is a no-op on float32 input that returns the same tensor object, and torch's tracer then
    maps that object to the Cast's output. So the residual Adds read the block input through
    ``/model/layers.{i}/input_layernorm/Cast`` and the attention sum through
    ``post_attention_layernorm/Cast`` (float32 → float32, an identity), not directly."""
    nodes = [Node(bytes(v)) for f, _, v, _ in iter_fields(graph_of(model)) if f == 1]  # type: ignore[arg-type]
    producer = {o: n for n in nodes for o in n.outputs}
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise AssertionError("node names are not unique")

    def consumers(tensor: str) -> List[Node]:
        return [n for n in nodes if tensor in n.inputs]

    def source(tensor: str) -> str:
        """The tensor behind a chain of float32 → float32 Casts (identities here)."""
        while tensor in producer and producer[tensor].op_type == "Cast" and producer[tensor].int_attrs.get("to") == FLOAT:
            tensor = producer[tensor].inputs[0]
        return tensor

    embed = [n for n in nodes if n.name.startswith("/model/embed_tokens/")]
    assert len(embed) == 1 and embed[0].op_type == "Gather", [n.name for n in embed]
    prev = embed[0]
    sites: List[Dict[str, object]] = []
    for i in range(num_layers):
        scope = f"/model/layers.{i}/"
        pre = prev.outputs[0]
        readers = consumers(pre)
        assert readers and all(r.name.startswith(scope) for r in readers), f"layer {i}: readers of {pre}"
        # Nodes directly in the block's scope (not in self_attn/, mlp/, *_layernorm/).
        direct = [n for n in nodes if n.name.startswith(scope) and "/" not in n.name[len(scope) :]]
        adds = [n for n in direct if n.op_type == "Add"]
        assert len(adds) == 2, f"layer {i}: residual adds {[n.name for n in adds]}"
        first = next(n for n in adds if pre in map(source, n.inputs))
        second = next(n for n in adds if n is not first)
        assert first.outputs[0] in map(source, second.inputs), f"layer {i}: {second.name} does not read {first.name}"
        attn = producer[next(x for x in first.inputs if source(x) != pre)]
        assert attn.name.startswith(scope + "self_attn/o_proj/") and attn.op_type == "MatMul", attn.name
        mlp = producer[next(x for x in second.inputs if source(x) != first.outputs[0])]
        assert mlp.name.startswith(scope + "mlp/down_proj/") and mlp.op_type == "MatMul", mlp.name
        sites.append(
            {
                "layer": i,
                "resid_post": {"node": second.name, "tensor": second.outputs[0]},
                "resid_pre": {"node": prev.name, "tensor": pre},
                "mlp_out": {"node": mlp.name, "tensor": mlp.outputs[0]},
            }
        )
        prev = second
    readers = consumers(prev.outputs[0])
    assert readers and all(r.name.startswith("/model/norm/") for r in readers), "final norm must read the last block"
    return sites


# ---------------------------------------------------------------------------------------------
# Golden values from PyTorch.


def f32(values: torch.Tensor) -> object:
    """Nested lists of floats, each the shortest decimal that round-trips its float32 value
    (numpy's str of a float32), so the JSON stays small and parses back to the exact float32."""

    def conv(a: "np.ndarray") -> object:
        return [conv(x) for x in a] if a.ndim > 1 else [float(str(np.float32(x))) for x in a]

    return conv(values.detach().to(torch.float32).numpy())


@torch.no_grad()
def golden(lm: Qwen2ForCausalLM, tok: Tokenizer) -> Dict[str, object]:
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = tok.encode(text)
    x = torch.tensor([ids])
    logits, _ = lm(x)
    hidden = lm.hidden_states(x)  # embeddings, then each block's output

    seq = list(ids)
    greedy: List[int] = []
    margins: List[float] = []
    for _ in range(GREEDY_TOKENS):  # uncached: a full forward over the whole sequence per token
        step_logits, _ = lm(torch.tensor([seq]))
        top2 = torch.topk(step_logits[0, -1], 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        nxt = int(top2.indices[0])
        greedy.append(nxt)
        seq.append(nxt)

    g = torch.Generator().manual_seed(STEER_SEED)
    v = torch.randn(lm.config.hidden_size, generator=g)
    v = (v / v.norm()).to(torch.float32)

    def hook(_module: nn.Module, _inputs: object, output: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, ...]:
        h = output[0].clone()
        h[:, STEER_FROM_POSITION:, :] += STEER_STRENGTH * v
        return (h,) + tuple(output[1:])

    handle = lm.model.layers[STEER_LAYER].register_forward_hook(hook)
    try:
        steered, _ = lm(x)
    finally:
        handle.remove()
    shift = float((steered[0, -1] - logits[0, -1]).abs().max())
    assert shift > 0.1, f"steering changes the logits too little ({shift})"

    return {
        "generator": "tools/tiny_model/export_onnx.py (PyTorch float32, loupe_server.models.qwen2)",
        "prompt": {"messages": [{"role": "user", "content": PROMPT}], "add_generation_prompt": True, "text": text},
        "input_ids": ids,
        "last_logits": f32(logits[0, -1]),
        "hidden_states": {
            "note": "hidden_states[l][t] = residual stream after block l (output of model.layers[l]) at position t",
            "values": [f32(h[0]) for h in hidden[1:]],
        },
        "greedy": {
            "note": "uncached greedy argmax continuation of input_ids",
            "max_new_tokens": GREEDY_TOKENS,
            "tokens": greedy,
            "text": tok.decode(greedy),
            "top2_margins": [round(m, 6) for m in margins],
        },
        "steering": {
            "note": "last-position logits with strength * vector added to the output of block `layer` "
            "(resid_post) at every position >= from_position (a forward hook in PyTorch)",
            "layer": STEER_LAYER,
            "site": "resid_post",
            "from_position": STEER_FROM_POSITION,
            "strength": STEER_STRENGTH,
            "vector_seed": STEER_SEED,
            "vector": f32(v),
            "last_logits": f32(steered[0, -1]),
            "max_abs_logit_shift": round(shift, 6),
        },
    }


# ---------------------------------------------------------------------------------------------
# Files.


def write_json(path: str, obj: object, compact: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def copy_config(dst: str, external: bool) -> None:
    for name in COPIED:
        if name == "config.json" and external:
            with open(os.path.join(SRC, name), "r", encoding="utf-8") as f:
                cfg = json.load(f)
            cfg["transformers.js_config"] = {"dtype": "fp32", "use_external_data_format": True}
            with open(os.path.join(dst, name), "w", encoding="utf-8", newline="\n") as f:
                json.dump(cfg, f, ensure_ascii=False, separators=(",", ":"))
                f.write("\n")
        else:
            shutil.copyfile(os.path.join(SRC, name), os.path.join(dst, name))


README_SINGLE = """# tiny-qwen2-onnx: the tiny Qwen2 as a transformers.js model folder (single-file ONNX)

Generated by `tools/tiny_model/export_onnx.py` (run `/usr/bin/python3 tools/tiny_model/export_onnx.py`
from the repository root; PyTorch 1.13, no onnx package). Deterministic; do not edit by hand.

## What it is

The model of `tests/fixtures/tiny-qwen2` (hidden 64, 4 layers, 4 heads, 2 KV heads, head_dim 16,
vocabulary 512, random weights), loaded with `loupe_server.models.qwen2` and exported with
`torch.onnx.export` at opset {opset}.

- `config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`: copied from
  `tests/fixtures/tiny-qwen2` (`"transformers.js_config": {{"dtype": "fp32"}}` makes transformers.js
  load `onnx/model.onnx`).
- `onnx/model.onnx` ({size} bytes, weights inside). Graph I/O (Optimum / transformers.js layout):
  - inputs: `input_ids` int64 [batch_size, sequence_length], `attention_mask` int64
    [batch_size, past_sequence_length + sequence_length], `position_ids` int64
    [batch_size, sequence_length], `past_key_values.{{i}}.key|value` float32
    [batch_size, 2, past_sequence_length, 16] for i = 0..3;
  - outputs: `logits` float32 [batch_size, sequence_length, 512], `present.{{i}}.key|value` float32
    [batch_size, 2, past_sequence_length + sequence_length, 16].
  A zero-length past works (transformers.js' first step). RoPE uses constant cos/sin tables
  (2048 positions) gathered by `position_ids`; masked scores use finfo(float32).min.
- `onnx/sites.json`: per layer, the node and output tensor of three residual-stream sites,
  found by checking the graph's wiring: `resid_pre` (block input: previous block's output, or the
  embedding Gather for layer 0), `mlp_out` (the `mlp/down_proj` MatMul) and `resid_post` (the
  block output: the second residual Add, `/model/layers.{{i}}/Add_1`, tensor
  `/model/layers.{{i}}/Add_1_output_0`, as in Optimum exports). Tests of the graph editor use it as
  the expected answer. Every reader of a block's output lies in the next block (or the final
  norm), so rewiring those readers steers both the residual path and the norm. One wrinkle
  that real torch exports share: RMSNorm's `.to(float32)` is a float32 → float32 `Cast`
  (an identity), and the tracer routes the residual through it, so `/model/layers.{{i}}/Add`
  reads `/model/layers.{{i}}/input_layernorm/Cast_output_0` (not the block input itself) and
  `Add_1` reads `/model/layers.{{i}}/post_attention_layernorm/Cast_output_0` (not `Add_output_0`).
  `tests/node/tiny-onnx.test.ts` checks that the `resid_post` tensors, added as graph outputs,
  equal `golden.json`'s hidden states.
- `golden.json`: PyTorch float32 outputs of the same model for the chat-templated prompt
  "{prompt}" ({ntok} tokens, `input_ids`): `last_logits` (512), `hidden_states.values[l][t]`
  (output of block l at position t, 4 × {ntok} × 64), `greedy.tokens` (12-token uncached greedy
  continuation, with its top-2 margins), and `steering` (last-position logits when
  `strength` 4 × the unit vector `vector` (seed {seed}) is added to block 1's output at every
  position ≥ 5, via a forward hook).

## What it is for

`tests/node/tiny-onnx.test.ts` runs this folder with onnxruntime-web (wasm EP, Node) and with
transformers.js (`AutoModelForCausalLM.from_pretrained` + `generate()`) and compares with
`golden.json`; tests of the ONNX graph editor (taps and steering on the residual stream) use
`onnx/sites.json` and `golden.json`. `tests/fixtures/tiny-qwen2-onnx-external` is the same graph
with the weights in an external-data file.
"""

README_EXTERNAL = """# tiny-qwen2-onnx-external: the tiny Qwen2 ONNX export with external weights

Generated by `tools/tiny_model/export_onnx.py` (run `/usr/bin/python3 tools/tiny_model/export_onnx.py`
from the repository root). Deterministic; do not edit by hand.

## What it is

The same graph as `tests/fixtures/tiny-qwen2-onnx/onnx/model.onnx` (same I/O, node and tensor
names: `../tiny-qwen2-onnx/onnx/sites.json` and `../tiny-qwen2-onnx/golden.json` apply unchanged),
but with every initializer ({count} tensors) stored in `onnx/model.onnx_data` ({data} bytes) the
way large exports are laid out: each TensorProto has `data_location: EXTERNAL` and
`external_data` entries `location: "model.onnx_data"`, `offset`, `length` (offsets 64-byte
aligned). `onnx/model.onnx` is {size} bytes (the graph only).

torch 1.13 writes external data only for models over 2 GB, so the script writes the single-file
model and moves the initializers out by rewriting the protobuf with a small hand-written
reader/writer (no onnx package needed).

`config.json` has `"transformers.js_config": {{"dtype": "fp32", "use_external_data_format": true}}`
so that transformers.js also fetches `model.onnx_data`; the other files are copied from
`tests/fixtures/tiny-qwen2`. With onnxruntime-web directly, pass the file as the session option
`externalData: [{{ path: 'model.onnx_data', data: bytes }}]`.

## What it is for

Tests that the loading and graph-editing code handles models whose weights live outside the
protobuf (as real LLM exports do): `tests/node/tiny-onnx.test.ts` runs it with onnxruntime-web
(wasm EP, Node) and compares with `../tiny-qwen2-onnx/golden.json`.
"""


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM.from_pretrained(SRC)
    cfg = lm.config
    n, kvh, hd = cfg.num_hidden_layers, int(cfg.num_key_value_heads or 0), int(cfg.head_dim or 0)

    model = export_bytes(lm)
    again = export_bytes(Qwen2ForCausalLM.from_pretrained(SRC))
    assert model == again, "torch.onnx.export is not deterministic here"
    check_io(model, n, kvh, hd, cfg.vocab_size)
    sites = find_sites(model, n)
    external_model, external_data = externalize(model, EXTERNAL_DATA_FILE)
    check_io(external_model, n, kvh, hd, cfg.vocab_size)
    assert find_sites(external_model, n) == sites
    count, inside, _ = initializer_stats(model)
    count_ext, inside_ext, external = initializer_stats(external_model)
    assert count == count_ext == external and inside_ext == 0 and len(external_data) >= inside

    tok = Tokenizer.from_folder(SRC)
    gold = golden(lm, tok)

    for out, external_layout in ((OUT_SINGLE, False), (OUT_EXTERNAL, True)):
        os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
        copy_config(out, external_layout)
    write_bytes(os.path.join(OUT_SINGLE, "onnx", "model.onnx"), model)
    write_json(os.path.join(OUT_SINGLE, "onnx", "sites.json"), {"layers": sites})
    write_json(os.path.join(OUT_SINGLE, "golden.json"), gold, compact=True)
    write_bytes(os.path.join(OUT_EXTERNAL, "onnx", "model.onnx"), external_model)
    write_bytes(os.path.join(OUT_EXTERNAL, "onnx", EXTERNAL_DATA_FILE), external_data)
    ids = gold["input_ids"]
    assert isinstance(ids, list)
    with open(os.path.join(OUT_SINGLE, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(README_SINGLE.format(opset=OPSET, size=len(model), prompt=PROMPT, ntok=len(ids), seed=STEER_SEED))
    with open(os.path.join(OUT_EXTERNAL, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(README_EXTERNAL.format(count=count, data=len(external_data), size=len(external_model)))

    print(f"model.onnx: {len(model)} bytes, {count} initializers ({inside} bytes of weights)")
    print(f"external: model.onnx {len(external_model)} bytes + {EXTERNAL_DATA_FILE} {len(external_data)} bytes")
    for s in sites:
        print(
            f"layer {s['layer']}: resid_post {s['resid_post']['node']} -> {s['resid_post']['tensor']}; "  # type: ignore[index]
            f"resid_pre {s['resid_pre']['tensor']}; mlp_out {s['mlp_out']['tensor']}"  # type: ignore[index]
        )
    greedy = gold["greedy"]
    assert isinstance(greedy, dict)
    print(f"prompt {len(ids)} tokens; greedy {greedy['tokens']} {greedy['text']!r}")
    print(f"min top-2 margin {min(greedy['top2_margins']):.4f}; steering shift {gold['steering']['max_abs_logit_shift']}")  # type: ignore[index]
    print(f"golden.json {os.path.getsize(os.path.join(OUT_SINGLE, 'golden.json'))} bytes")


if __name__ == "__main__":
    main()
