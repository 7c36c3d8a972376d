"""``python -m loupe_server --model FOLDER [--port 8765]``: serve one model's activations.

Prints ``loupe-server listening on http://HOST:PORT`` on stdout once it accepts connections
(with ``--port 0`` the port is the one the system chose). Stops on Ctrl-C or SIGTERM, after
letting a running stream end with END ``cancelled``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from typing import List, Optional

import torch

from .backend import load_model
from .server import LoupeServer, ServerOptions


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loupe_server",
        description="Stream a model's residual-stream activations (and apply steering) for Loupe pages.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model folder (a qwen2 config.json + model.safetensors loads without Hugging Face libraries); "
        "anything else, including a Hub id, loads with transformers if it is installed",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--layer-default", type=int, default=None, help="layer for requests without 'hook' (default: the middle one)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LOUPE_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' (default: $LOUPE_TOKEN; none = no auth)",
    )
    parser.add_argument(
        "--cors",
        default="",
        help="comma-separated origins allowed to call from a browser, e.g. https://example.org,http://localhost:5173, "
        "or '*' for any (default: none)",
    )
    parser.add_argument("--model-name", default=None, help="name reported to clients (default: from config or folder)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device for the model (default: cuda if available, else cpu)",
    )
    parser.add_argument("--torch-dtype", default=None, help="transformers only: weights dtype, e.g. bfloat16")
    parser.add_argument("--device-map", default=None, help="transformers only: e.g. 'auto' to spread over GPUs")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="transformers only: run modelling code shipped in the model repository",
    )
    parser.add_argument(
        "--heartbeat-interval", type=float, default=5.0, help="seconds without a frame before a HEARTBEAT (default 5)"
    )
    parser.add_argument(
        "--token-delay-ms",
        type=float,
        default=0.0,
        help="testing aid: pause before each generated token, to imitate a slow model (default 0)",
    )
    return parser.parse_args(argv)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        lm = load_model(
            args.model,
            name=args.model_name,
            device=args.device,
            torch_dtype=args.torch_dtype,
            device_map=args.device_map,
            trust_remote_code=args.trust_remote_code,
        )
    except Exception as e:  # a broken or unsupported model folder: say so in one line
        print(f"could not load the model from {args.model!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    default_layer = lm.num_layers // 2 if args.layer_default is None else args.layer_default
    if not 0 <= default_layer < lm.num_layers:
        print(f"--layer-default {default_layer} is outside 0..{lm.num_layers - 1}", file=sys.stderr)
        return 2
    cors = tuple(origin.strip() for origin in args.cors.split(",") if origin.strip())
    token = args.token or None
    if token is None and not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host} without --token; anyone who can reach it can run the model",
            file=sys.stderr,
        )
    options = ServerOptions(
        default_layer=default_layer,
        token=token,
        cors_origins=cors,
        heartbeat_seconds=args.heartbeat_interval,
        token_delay_seconds=args.token_delay_ms / 1000.0,
    )
    server = LoupeServer((args.host, args.port), lm, options)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"loupe-server listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.drain(timeout=5.0)
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
