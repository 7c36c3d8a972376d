"""Loupe reference server: a plain-PyTorch model zoo, tokenizer and safetensors I/O (stdlib + torch + numpy)."""
