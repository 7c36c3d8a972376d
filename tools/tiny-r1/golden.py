#!/usr/bin/python3
"""Golden outputs of the committed Tiny-R1 artifacts, for the test that loads them on all three
paths (tests/node/tiny-r1-artifacts.test.ts): PyTorch, plain modules, no KV cache.

    /usr/bin/python3 tools/tiny-r1/golden.py --root demo/public/models/tiny-r1

Writes ROOT/golden.json: a chat-templated prompt's ids, 24 greedy tokens (full forward per step),
the SAE layer's block outputs for prompt + generated ids, and the SAE's codes of those vectors
computed with SAELens 6.x TopK semantics on the saved file (top-k of the raw pre-activations,
then ReLU; zeros dropped).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "server", "python"))

from loupe_server.models.qwen2 import Qwen2ForCausalLM  # noqa: E402
from loupe_server.safetensors_io import load_file  # noqa: E402
from loupe_server.tokenizer import Tokenizer  # noqa: E402

PROMPT = "What is 12 × 4 - 7?"
STEPS = 24


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(REPO, "demo", "public", "models", "tiny-r1"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model_dir = os.path.join(args.root, "model")
    sae_dir = os.path.join(args.root, "sae")
    model = Qwen2ForCausalLM.from_pretrained(model_dir)
    model.eval()
    tok = Tokenizer.from_folder(model_dir)
    prompt_ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True), add_special_tokens=False)
    cfg = json.load(open(os.path.join(sae_dir, "cfg.json")))
    layer = int(cfg["metadata"]["hook_name"].split(".")[-1])
    ids = list(prompt_ids)
    eos = set(tok.eos_token_ids)
    with torch.no_grad():
        for _ in range(STEPS):
            logits, _ = model(torch.tensor([ids]))
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            if nxt in eos:
                break
        hidden = model.hidden_states(torch.tensor([ids]))[layer + 1][0]
        w = load_file(os.path.join(sae_dir, "sae_weights.safetensors"))
        pre = (hidden - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        vals, idx = pre.topk(int(cfg["k"]), dim=-1)
        codes = []
        for t in range(pre.shape[0]):
            pairs = sorted(((float(v), int(i)) for v, i in zip(vals[t].relu(), idx[t]) if float(v) > 0), key=lambda p: (-p[0], p[1]))
            codes.append({"indices": [i for _, i in pairs], "values": [v for v, _ in pairs]})
    out = {
        "prompt": PROMPT,
        "layer": layer,
        "prompt_ids": prompt_ids,
        "ids": ids,
        "hidden": hidden.tolist(),
        "codes": codes,
    }
    with open(os.path.join(args.root, "golden.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"golden: {len(prompt_ids)} prompt + {len(ids) - len(prompt_ids)} generated tokens, layer {layer}")


if __name__ == "__main__":
    main()
