"""A Qwen2-architecture causal language model in plain PyTorch.

The module tree and parameter names are Hugging Face's (``model.embed_tokens``,
``model.layers.{i}.self_attn.q_proj`` ... ``lm_head``), so a ``model.safetensors`` written by
``transformers`` loads with ``load_state_dict`` unchanged, and hook paths such as
``model.layers.12`` mean the same thing here as in a Hugging Face model.

Numerics follow ``transformers``' eager Qwen2 implementation: RMSNorm computed in float32 and
cast back before the weight multiply; rotate-half RoPE with ``inv_freq = 1 / theta^(2i/d)`` and
angles ``position * inv_freq`` in float32; grouped-query attention by repeating K/V heads;
softmax in float32; masked scores filled with ``finfo(dtype).min`` (never ``-inf``, so a fully
masked row gives a uniform distribution rather than NaN).

Differences from ``transformers``, all deliberate:

* RoPE cos/sin come from precomputed tables indexed by position (as the browser runtime needs
  for accuracy on WebGPU); the table entries are bit-identical to what the on-the-fly formula
  gives, because each entry is the same float32 product and cosine.
* Each decoder layer returns the classic tuple ``(hidden_states,)``; its K/V cache entry is
  handed back through a list argument, not through the output tuple, so a forward hook on
  ``model.layers[i]`` sees ``output[0]`` = the residual stream after block ``i`` and may
  replace it by returning a new tuple.
* :meth:`Qwen2ForCausalLM.hidden_states` returns the raw output of every block. Hugging Face's
  ``output_hidden_states`` replaces the last entry by ``model.norm`` of it; pass
  ``final_norm=True`` to get exactly that.
* Sliding-window attention and RoPE scaling are not implemented; configs that enable them are
  refused rather than silently mis-run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..safetensors_io import iter_file, read_header

__all__ = [
    "KVCache",
    "Qwen2Attention",
    "Qwen2Config",
    "Qwen2DecoderLayer",
    "Qwen2ForCausalLM",
    "Qwen2MLP",
    "Qwen2Model",
    "Qwen2RMSNorm",
    "Qwen2RotaryEmbedding",
    "greedy_decode",
]

# One (key, value) pair per layer, each [batch, kv_heads, seq, head_dim].
KVCache = List[Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Qwen2Config:
    """The fields of a Hugging Face Qwen2 ``config.json`` that the forward pass needs.

    Unknown keys are kept in ``extra`` and written back by :meth:`to_dict`.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: Optional[int] = None
    head_dim: Optional[int] = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Union[int, List[int]]] = None
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    model_type: str = "qwen2"
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError("hidden_size is not a multiple of num_attention_heads and head_dim is not set")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for rotary embeddings")
        if self.hidden_act != "silu":
            raise NotImplementedError(f"hidden_act {self.hidden_act!r} (only 'silu' is implemented)")
        if self.extra.get("rope_scaling") not in (None, {}):
            raise NotImplementedError(f"rope_scaling {self.extra['rope_scaling']!r} is not implemented")
        if self.extra.get("use_sliding_window"):
            raise NotImplementedError("sliding-window attention is not implemented")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Qwen2Config":
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path: "os.PathLike[str] | str") -> "Qwen2Config":
        with open(path, "r", encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **d}

    @property
    def eos_token_ids(self) -> List[int]:
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)


class Qwen2RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        h = hidden_states.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * h.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"


class Qwen2RotaryEmbedding(nn.Module):
    """cos/sin tables indexed by position, grown on demand (no parameters, nothing persistent).

    Entry ``[p, j]`` is ``cos(float32(p) * inv_freq[j mod d/2])``, exactly the value the
    ``transformers`` formula computes on the fly, so growing the table never changes old rows.
    """

    def __init__(self, head_dim: int, theta: float, initial_positions: int = 4096) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.initial_positions = initial_positions
        self._cos: Optional[torch.Tensor] = None  # float32 [positions, head_dim]
        self._sin: Optional[torch.Tensor] = None

    def inv_freq(self, device: Optional[torch.device] = None) -> torch.Tensor:
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        return 1.0 / (self.theta**exponent)

    def _ensure(self, needed: int, device: torch.device) -> None:
        have = 0 if self._cos is None or self._cos.device != device else self._cos.shape[0]
        if have >= needed:
            return
        n = max(needed, self.initial_positions, 2 * have)
        positions = torch.arange(n, dtype=torch.int64, device=device).float()
        freqs = torch.outer(positions, self.inv_freq(device))  # float32, one rounding per entry
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos = emb.cos()
        self._sin = emb.sin()

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """``position_ids`` [B, T] (int64) → cos, sin [B, T, head_dim] in ``dtype``."""
        if position_ids.numel() and int(position_ids.min()) < 0:
            raise ValueError("position_ids must be non-negative")
        needed = int(position_ids.max()) + 1 if position_ids.numel() else 1
        self._ensure(needed, position_ids.device)
        assert self._cos is not None and self._sin is not None
        return self._cos[position_ids].to(dtype), self._sin[position_ids].to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    cos = cos.unsqueeze(1)  # [B, 1, T, D] broadcasts over heads
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, kv_heads, S, D] → [B, kv_heads * n_rep, S, D] (head h uses kv head h // n_rep)."""
    if n_rep == 1:
        return x
    b, kvh, s, d = x.shape
    return x[:, :, None, :, :].expand(b, kvh, n_rep, s, d).reshape(b, kvh * n_rep, s, d)


class Qwen2Attention(nn.Module):
    def __init__(self, config: Qwen2Config, layer_idx: int, device=None, dtype=None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = int(config.num_key_value_heads or config.num_attention_heads)
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.head_dim = int(config.head_dim or config.hidden_size // config.num_attention_heads)
        self.scaling = self.head_dim**-0.5
        kw = {"device": device, "dtype": dtype}
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=True, **kw)
        self.k_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=True, **kw)
        self.v_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=True, **kw)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=False, **kw)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: Tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Returns ``(attn_output [B, T, hidden], (k, v))`` with k, v including the past."""
        b, t, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past_key_value is not None:
            k = torch.cat((past_key_value[0], k), dim=2)
            v = torch.cat((past_key_value[1], v), dim=2)
        present = (k, v)
        k_rep = repeat_kv(k, self.num_key_value_groups)
        v_rep = repeat_kv(v, self.num_key_value_groups)
        scores = torch.matmul(q, k_rep.transpose(2, 3)) * self.scaling
        scores = scores + attention_mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v_rep).transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(out), present


class Qwen2MLP(nn.Module):
    def __init__(self, config: Qwen2Config, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False, **kw)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False, **kw)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, config: Qwen2Config, layer_idx: int, device=None, dtype=None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.self_attn = Qwen2Attention(config, layer_idx, device=device, dtype=dtype)
        self.mlp = Qwen2MLP(config, device=device, dtype=dtype)
        self.input_layernorm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps, device=device, dtype=dtype)
        self.post_attention_layernorm = Qwen2RMSNorm(
            config.hidden_size, config.rms_norm_eps, device=device, dtype=dtype
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: Tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        presents: Optional[KVCache] = None,
    ) -> Tuple[torch.Tensor]:
        """Returns ``(hidden_states,)``; appends this layer's (k, v) to ``presents`` if given."""
        residual = hidden_states
        attn_out = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, past_key_value
        )
        if presents is not None:
            presents.append(attn_out[1])
        hidden_states = residual + attn_out[0]
        residual = hidden_states
        hidden_states = residual + self.mlp(self.post_attention_layernorm(hidden_states))
        return (hidden_states,)


def _causal_mask(
    batch: int,
    query_len: int,
    key_len: int,
    dtype: torch.dtype,
    device: torch.device,
    attention_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Additive mask [B, 1, T, S]: 0 where query i (absolute index S - T + i) may see key j.

    ``attention_mask`` [B, S] (1 keep, 0 padding) additionally hides padded keys. Built from
    shapes only (no Python branch on values), so it also traces for ONNX export.
    """
    key_pos = torch.arange(key_len, device=device)
    query_pos = torch.arange(query_len, device=device) + (key_len - query_len)
    allowed = key_pos[None, :] <= query_pos[:, None]  # [T, S]
    allowed = allowed[None, None, :, :].expand(batch, 1, query_len, key_len)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].to(torch.bool)
    zero = torch.zeros((), dtype=dtype, device=device)
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=device)
    return torch.where(allowed, zero, low)


class Qwen2Model(nn.Module):
    def __init__(self, config: Qwen2Config, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            [Qwen2DecoderLayer(config, i, device=device, dtype=dtype) for i in range(config.num_hidden_layers)]
        )
        self.norm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps, device=device, dtype=dtype)
        self.rotary_emb = Qwen2RotaryEmbedding(
            int(config.head_dim or 0), config.rope_theta, min(4096, config.max_position_embeddings)
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
        position_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> Tuple[torch.Tensor, KVCache, Optional[List[torch.Tensor]]]:
        """Returns ``(normed_last_hidden [B, T, H], presents, all_hidden or None)``.

        ``all_hidden`` holds the embeddings and each block's output as the next block saw it
        (after any forward hook replaced it): ``num_hidden_layers + 1`` tensors [B, T, H].
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        b, t = input_ids.shape
        if past_key_values is not None and len(past_key_values) != len(self.layers):
            raise ValueError(f"past_key_values has {len(past_key_values)} layers, model has {len(self.layers)}")
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device).unsqueeze(0).expand(b, t)
        if attention_mask is not None and attention_mask.shape != (b, past + t):
            raise ValueError(f"attention_mask must be [batch, past + seq] = {(b, past + t)}")

        hidden = self.embed_tokens(input_ids)
        cos_sin = self.rotary_emb(position_ids, hidden.dtype)
        mask = _causal_mask(b, t, past + t, hidden.dtype, hidden.device, attention_mask)
        presents: KVCache = []
        all_hidden: Optional[List[torch.Tensor]] = [hidden] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            layer_past = None if past_key_values is None else past_key_values[i]
            hidden = layer(hidden, cos_sin, mask, layer_past, presents)[0]
            if all_hidden is not None:
                all_hidden.append(hidden)
        if len(presents) != len(self.layers):
            raise RuntimeError("a decoder layer did not report its key/value cache")
        return self.norm(hidden), presents, all_hidden


class Qwen2ForCausalLM(nn.Module):
    """``Qwen2ForCausalLM(config)``: ``model`` (a :class:`Qwen2Model`) plus ``lm_head``."""

    def __init__(self, config: Qwen2Config, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        self.model = Qwen2Model(config, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, device=device, dtype=dtype)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
        position_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, KVCache]:
        """``input_ids`` [B, T] → ``(logits [B, T, V] float32, present)``.

        ``present`` is a list with one ``(k, v)`` per layer, each [B, kv_heads, past + T,
        head_dim]; pass it back as ``past_key_values`` to continue. ``position_ids`` defaults to
        ``past .. past + T - 1``. ``attention_mask`` [B, past + T] (optional, 1 = real token)
        hides padded keys.
        """
        hidden, presents, _ = self.model(input_ids, past_key_values, position_ids, attention_mask)
        return self.lm_head(hidden).float(), presents

    @torch.no_grad()
    def hidden_states(
        self,
        input_ids: torch.Tensor,
        position_ids: Optional[torch.Tensor] = None,
        final_norm: bool = False,
    ) -> List[torch.Tensor]:
        """Embeddings, then every block's output: ``num_hidden_layers + 1`` tensors [B, T, H].

        Entry ``i + 1`` equals ``output[0]`` of a forward hook on ``model.layers[i]``. With
        ``final_norm`` the last entry is ``model.norm`` of the last block's output, which is
        what Hugging Face's ``output_hidden_states`` returns there.
        """
        normed, _, all_hidden = self.model(input_ids, None, position_ids, None, output_hidden_states=True)
        assert all_hidden is not None
        if final_norm:
            all_hidden[-1] = normed
        return all_hidden

    @classmethod
    def from_pretrained(
        cls,
        folder: "os.PathLike[str] | str",
        dtype: Optional[torch.dtype] = torch.float32,
        device: Union[str, torch.device] = "cpu",
    ) -> "Qwen2ForCausalLM":
        """Load ``config.json`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``) from ``folder``.

        Weights are converted to ``dtype`` (``None`` keeps the stored dtype of the embeddings).
        Every parameter must be present (``lm_head.weight`` may be absent when the embeddings
        are tied); unknown tensors other than old rotary ``inv_freq`` buffers are an error.
        """
        config = Qwen2Config.from_json(os.path.join(folder, "config.json"))
        files = _weight_files(folder)
        if dtype is None:
            dtype = _stored_dtype(files, "model.embed_tokens.weight")
        model = cls(config, device="meta", dtype=dtype)
        model = model.to_empty(device=device)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        params = dict(model.named_parameters())
        loaded = set()
        for path in files:
            for name, tensor in iter_file(path):
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    continue
                if name not in params:
                    raise KeyError(f"{path}: unexpected tensor {name!r}")
                p = params[name]
                if tuple(p.shape) != tuple(tensor.shape):
                    raise ValueError(f"{name}: checkpoint shape {tuple(tensor.shape)}, model {tuple(p.shape)}")
                with torch.no_grad():
                    p.copy_(tensor)
                loaded.add(name)
        missing = sorted(set(params) - loaded - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
        if missing:
            raise KeyError(f"missing tensors in {folder}: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        model.eval()
        return model


def _weight_files(folder: "os.PathLike[str] | str") -> List[str]:
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return [single]
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, "r", encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(folder, shard) for shard in sorted(set(weight_map.values()))]
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")


def _stored_dtype(files: Iterable[str], name: str) -> torch.dtype:
    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    for path in files:
        with open(path, "rb") as f:
            header, _, _ = read_header(f, os.path.getsize(path))
        if name in header:
            return table[header[name]["dtype"]]
    return torch.float32


@torch.no_grad()
def greedy_decode(
    model: Qwen2ForCausalLM,
    input_ids: Sequence[int],
    max_new_tokens: int,
    eos_token_ids: Iterable[int] = (),
) -> Tuple[List[int], float]:
    """Greedy decoding with the KV cache, batch 1.

    Returns ``(new_token_ids, min_margin)`` where ``min_margin`` is the smallest gap between the
    top two logits over the steps taken (how far the argmax is from flipping). Stops after an
    EOS token (included in the output) or ``max_new_tokens``.
    """
    stop = set(eos_token_ids)
    device = next(model.parameters()).device
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=device)
    past: Optional[KVCache] = None
    out: List[int] = []
    min_margin = math.inf
    for _ in range(max_new_tokens):
        logits, past = model(ids, past_key_values=past)
        top2 = torch.topk(logits[0, -1], 2)
        min_margin = min(min_margin, float(top2.values[0] - top2.values[1]))
        nxt = int(top2.indices[0])
        out.append(nxt)
        if nxt in stop:
            break
        ids = torch.tensor([[nxt]], dtype=torch.long, device=device)
    return out, min_margin
