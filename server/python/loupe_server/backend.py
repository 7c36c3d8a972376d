"""Loading the served model and giving generation one interface to it, whatever its origin.

Two origins:

* a folder whose ``config.json`` says ``model_type: "qwen2"`` and that holds
  ``model.safetensors`` (or a sharded index): loaded with this package's plain-PyTorch
  :mod:`loupe_server.models.qwen2` and :mod:`loupe_server.tokenizer`; no Hugging Face library;
* anything else: Hugging Face ``transformers`` (``AutoModelForCausalLM`` / ``AutoTokenizer``),
  imported only here and only then, so the reference server and its tests never need it.

Generation sees a :class:`LoadedModel`: a ``step(input_ids, past, position_ids) -> (logits,
past)`` function, the module tree to hook, sizes, and a :class:`TokenizerAdapter`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .protocol import ModelLimits

StepFn = Callable[[torch.Tensor, Any, torch.Tensor], Tuple[torch.Tensor, Any]]


class TokenizerAdapter:
    """What generation needs from a tokenizer. Subclasses wrap a concrete tokenizer."""

    name: str = ""
    chat_template: Optional[str] = None
    eos_token_ids: Tuple[int, ...] = ()
    think_start_id: Optional[int] = None
    think_end_id: Optional[int] = None

    def encode_prompt(self, text: str) -> List[int]:
        """Ids of a raw prompt string, exactly as written: no BOS or other special token is
        added (write ``<｜begin▁of▁sentence｜>`` into the text to have one)."""
        raise NotImplementedError

    def encode_chat(self, messages: List[Dict[str, str]]) -> List[int]:
        """Ids of ``messages`` rendered with the chat template, generation prompt added."""
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token's text piece (may end inside a UTF-8 character)."""
        raise NotImplementedError

    def header(self) -> Dict[str, Any]:
        """The HEADER frame's ``tokenizer`` object."""
        return {
            "name": self.name,
            "eos_token_ids": list(self.eos_token_ids),
            "think_start_token_id": self.think_start_id,
            "think_end_token_id": self.think_end_id,
        }


@dataclass
class LoadedModel:
    name: str
    model: nn.Module
    tokenizer: TokenizerAdapter
    step: StepFn
    num_layers: int
    d_in: int
    vocab_size: int
    max_positions: int
    input_device: torch.device
    dtype: torch.dtype

    def limits(self, default_layer: int) -> ModelLimits:
        return ModelLimits(
            num_layers=self.num_layers, d_in=self.d_in, default_layer=default_layer, vocab_size=self.vocab_size
        )


# --------------------------------------------------------------------------------------------
# This package's Qwen2


class LoupeTokenizerAdapter(TokenizerAdapter):
    """Wraps :class:`loupe_server.tokenizer.Tokenizer`."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name
        template = getattr(tokenizer, "chat_template", None)
        self.chat_template = template if isinstance(template, str) else None
        self.eos_token_ids = tuple(int(t) for t in tokenizer.eos_token_ids)
        self.think_start_id = tokenizer.think_start_id
        self.think_end_id = tokenizer.think_end_id

    def encode_prompt(self, text: str) -> List[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: List[Dict[str, str]]) -> List[int]:
        rendered = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if isinstance(rendered, str):
            return list(self._tokenizer.encode(rendered))
        return [int(t) for t in rendered]

    def token_bytes(self, token_id: int) -> bytes:
        return bytes(self._tokenizer.token_bytes(token_id))


def _has_safetensors(folder: str) -> bool:
    return any(
        os.path.isfile(os.path.join(folder, name)) for name in ("model.safetensors", "model.safetensors.index.json")
    )


def _load_loupe_qwen2(folder: str, config: Dict[str, Any], name: str, device: torch.device) -> LoadedModel:
    from .models.qwen2 import Qwen2ForCausalLM
    from .tokenizer import Tokenizer

    model = Qwen2ForCausalLM.from_pretrained(folder, dtype=torch.float32, device=device)
    tokenizer = LoupeTokenizerAdapter(Tokenizer.from_folder(folder), name)

    def step(input_ids: torch.Tensor, past: Any, position_ids: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        return model(input_ids, past_key_values=past, position_ids=position_ids)

    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        step=step,
        num_layers=int(config["num_hidden_layers"]),
        d_in=int(config["hidden_size"]),
        vocab_size=int(config["vocab_size"]),
        max_positions=int(config.get("max_position_embeddings", 32768)),
        input_device=device,
        dtype=torch.float32,
    )


# --------------------------------------------------------------------------------------------
# Hugging Face transformers (optional)


def _byte_level_decoder() -> Dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode``: the printable stand-in character of each byte,
    as used by byte-level BPE vocabularies (GPT-2, Llama 3, Qwen2, DeepSeek-V3/R1)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class HfTokenizerAdapter(TokenizerAdapter):
    """Wraps a Hugging Face tokenizer (``AutoTokenizer``).

    Token bytes come from the vocabulary string: added/special tokens are their UTF-8 text;
    in a byte-level BPE vocabulary (recognised by its base token ``Ġ``, the stand-in for the
    space byte) pieces map back through GPT-2's byte table; SentencePiece pieces use ``▁`` for a
    space and ``<0xNN>`` for raw bytes.
    """

    def __init__(self, tokenizer: Any, eos_token_ids: Sequence[int], name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name
        template = getattr(tokenizer, "chat_template", None)
        self.chat_template = template if isinstance(template, str) else None
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self.think_start_id = self._special_id("<think>")
        self.think_end_id = self._special_id("</think>")
        self._added_ids = {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
        self._added_ids.update(int(i) for i in getattr(tokenizer, "all_special_ids", []))
        self._byte_decoder = _byte_level_decoder() if "\u0120" in tokenizer.get_vocab() else None

    def _special_id(self, token: str) -> Optional[int]:
        token_id = self._tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == getattr(self._tokenizer, "unk_token_id", None):
            return None
        return int(token_id)

    def encode_prompt(self, text: str) -> List[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: List[Dict[str, str]]) -> List[int]:
        # Render to text, then encode without adding special tokens: the template already holds
        # them (R1's starts with its BOS), and the text form is stable across library versions.
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._tokenizer.convert_ids_to_tokens(int(token_id))
        if piece is None:
            return b""
        if int(token_id) in self._added_ids:
            return piece.encode("utf-8")
        if self._byte_decoder is not None:
            return bytes(self._byte_decoder[c] for c in piece)
        byte = _BYTE_FALLBACK.match(piece)
        if byte:
            return bytes([int(byte.group(1), 16)])
        return piece.replace("▁", " ").encode("utf-8")


def _eos_ids(model: Any, tokenizer: Any) -> List[int]:
    generation_config = getattr(model, "generation_config", None)
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(t) for t in eos]


def _dtype_keyword(version: str) -> str:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, which deprecated
    ``torch_dtype`` (huggingface/transformers#39782); older versions only know ``torch_dtype``."""
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    return "dtype" if tuple(numbers) >= (4, 56) else "torch_dtype"


def _load_transformers(
    source: str,
    name: str,
    device: torch.device,
    torch_dtype: Optional[torch.dtype],
    device_map: Optional[str],
    trust_remote_code: bool,
) -> LoadedModel:
    try:
        import transformers
    except ImportError:
        raise RuntimeError(
            f"{source!r} is not a folder with a qwen2 config.json and model.safetensors, and Hugging Face "
            "transformers is not installed; install it (pip install transformers accelerate) to serve other models"
        ) from None
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    kwargs: Dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if torch_dtype is not None:
        kwargs[_dtype_keyword(transformers.__version__)] = torch_dtype
    if device_map:
        kwargs["device_map"] = device_map
    model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if not device_map:
        model = model.to(device)
    model.eval()
    config = model.config

    def step(input_ids: torch.Tensor, past: Any, position_ids: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        out = model(input_ids=input_ids, past_key_values=past, position_ids=position_ids, use_cache=True)
        return out.logits, out.past_key_values

    return LoadedModel(
        name=name,
        model=model,
        tokenizer=HfTokenizerAdapter(tokenizer, _eos_ids(model, tokenizer), name),
        step=step,
        num_layers=int(config.num_hidden_layers),
        d_in=int(config.hidden_size),
        vocab_size=int(config.vocab_size),
        max_positions=int(getattr(config, "max_position_embeddings", 1 << 20)),
        input_device=model.get_input_embeddings().weight.device,
        dtype=next(model.parameters()).dtype,
    )


def load_model(
    source: str,
    name: Optional[str] = None,
    device: str = "cpu",
    torch_dtype: Optional[str] = None,
    device_map: Optional[str] = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``source`` (a folder, or for ``transformers`` also a Hub id) for serving."""
    config_path = os.path.join(source, "config.json")
    config: Dict[str, Any] = {}
    if os.path.isfile(config_path):
        with open(config_path, "r", encoding="utf-8") as f:
            config = json.load(f)
    display_name = name or config.get("_name_or_path") or os.path.basename(os.path.abspath(source))
    torch_device = torch.device(device)
    if config.get("model_type") == "qwen2" and _has_safetensors(source):
        return _load_loupe_qwen2(source, config, display_name, torch_device)
    dtype = getattr(torch, torch_dtype) if torch_dtype else None
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ValueError(f"--torch-dtype {torch_dtype!r} is not a torch dtype (try bfloat16, float16, float32)")
    return _load_transformers(source, display_name, torch_device, dtype, device_map, trust_remote_code)
