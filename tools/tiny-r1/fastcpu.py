"""Fast float32 training and inference of the Qwen2 module on CPUs whose PyTorch has a slow BLAS.

Debian's PyTorch 1.13 is built with the reference (netlib) BLAS: ``F.linear`` and ``bmm`` run at
~5 GFLOPS on one core. Its oneDNN (MKL-DNN) convolutions are 20-30x faster and use every
thread, so here

* a linear layer is a 1x1 ``conv1d`` over a ``[1, in, rows]`` signal (:func:`conv_linear`);
* a batched matrix product ``[G, T, K] @ [G, K, S]`` is a grouped 1x1 ``conv1d`` with ``G``
  groups (:func:`conv_bmm`), used for attention's two products.

Results equal the BLAS ones up to float32 rounding (~1e-5 relative); parameters, their names
and the state_dict are untouched. :func:`patch` switches a module's ``nn.Linear`` and
``Qwen2Attention`` instances to these implementations in place (class swap, no copy);
:func:`unpatch` switches back. The reference server runs the unpatched classes.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "server", "python"))

from loupe_server.models.qwen2 import Qwen2Attention, apply_rotary_pos_emb, repeat_kv  # noqa: E402


def conv_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for any leading shape."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    y = F.conv1d(rows.t().unsqueeze(0), weight.unsqueeze(-1), bias)  # [1, out, rows]
    return y[0].t().reshape(*shape[:-1], weight.shape[0])


def conv_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)``: ``a`` [G, T, K], ``b`` [G, K, S] -> [G, T, S]."""
    g, t, k = a.shape
    s = b.shape[2]
    x = a.transpose(1, 2).reshape(1, g * k, t)
    w = b.transpose(1, 2).reshape(g * s, k, 1)
    return F.conv1d(x, w, groups=g).view(g, s, t).transpose(1, 2)


class ConvLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return conv_linear(x, self.weight, self.bias)


class ConvAttention(Qwen2Attention):
    """``Qwen2Attention.forward`` step for step, with :func:`conv_bmm` for the two products."""

    def forward(  # noqa: D102
        self,
        hidden_states: torch.Tensor,
        position_embeddings: Tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = hidden_states.shape
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(hidden_states).view(b, t, h, d).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, t, self.num_key_value_heads, d).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, t, self.num_key_value_heads, d).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past_key_value is not None:
            k = torch.cat((past_key_value[0], k), dim=2)
            v = torch.cat((past_key_value[1], v), dim=2)
        present = (k, v)
        s = k.shape[2]
        k_rep = repeat_kv(k, self.num_key_value_groups)
        v_rep = repeat_kv(v, self.num_key_value_groups)
        scores = conv_bmm(q.reshape(b * h, t, d), k_rep.transpose(2, 3).reshape(b * h, d, s)).view(b, h, t, s)
        scores = scores * self.scaling + attention_mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = conv_bmm(probs.reshape(b * h, t, s), v_rep.reshape(b * h, s, d)).view(b, h, t, d)
        out = out.transpose(1, 2).reshape(b, t, h * d)
        return self.o_proj(out), present


def patch(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = ConvLinear
        elif type(m) is Qwen2Attention:
            m.__class__ = ConvAttention
    return module


def unpatch(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if type(m) is ConvLinear:
            m.__class__ = nn.Linear
        elif type(m) is ConvAttention:
            m.__class__ = Qwen2Attention
    return module
