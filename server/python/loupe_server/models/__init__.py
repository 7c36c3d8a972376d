"""Plain-PyTorch model implementations whose module and parameter names match Hugging Face's."""

from .qwen2 import KVCache, Qwen2Config, Qwen2ForCausalLM, greedy_decode

__all__ = ["KVCache", "Qwen2Config", "Qwen2ForCausalLM", "greedy_decode"]
