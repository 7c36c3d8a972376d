#!/bin/sh
# Rebuild every Tiny-R1 artifact into demo/public/models/tiny-r1/ (or --out DIR): tokenizer,
# model (+ ONNX), SAE, figures.json. Debian's python3 on purpose: PyTorch 1.13 + NumPy, no pip.
# Options are those of make_tiny_r1.py (--smoke, --out, --onnx, --threads).
set -eu
exec /usr/bin/python3 "$(dirname "$0")/make_tiny_r1.py" "$@"
