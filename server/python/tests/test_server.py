"""The server over real HTTP on localhost, started the documented way in a subprocess.

Frames are parsed by the test's own parser (support.py); activations are checked against the
tiny model's hidden states recomputed in the test process with a test-owned steering hook.
"""

import contextlib
import dataclasses
import http.client
import io
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import numpy as np
import torch

from support import (
    HAVE_TINY_QWEN2,
    PYTHON,
    SERVER_ROOT,
    TINY_QWEN2,
    FrameReader,
    parse_body,
    reference_greedy,
    steering_hook,
    tiny_lm,
    vector_b64,
)

TOKEN = "s3cret-token"
ALLOWED = "https://loupe.example"
CHAT = [{"role": "user", "content": "What is 7 * 8?"}]
STARTUP_SECONDS = 60


class ServerProcess:
    """``cd server/python && /usr/bin/python3 -m loupe_server --model ../../tests/fixtures/tiny-qwen2 ...``"""

    def __init__(self, *args, env=None):
        self.log = tempfile.TemporaryFile()
        environment = {k: v for k, v in os.environ.items() if k != "LOUPE_TOKEN"}
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "loupe_server", "--model", "../../tests/fixtures/tiny-qwen2", "--port", "0", *args],
            cwd=SERVER_ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=environment,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_SECONDS)
        line = self.proc.stdout.readline() if ready else ""
        match = re.fullmatch(r"loupe-server listening on http://127\.0\.0\.1:(\d+)\n", line)
        if not match:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr()}")
        self.host, self.port = "127.0.0.1", int(match.group(1))
        self.base = f"http://{self.host}:{self.port}"

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def call(base, method, path, body=None, headers=None):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def generate_body(**fields):
    fields.setdefault("messages", CHAT)
    return fields


def reference_activations(model, ids, layer, steer=None):
    """Block ``layer`` output for the whole sequence, optionally with additive steering."""
    handle = None
    if steer is not None:
        handle, _ = steering_hook(layer, steer[0], steer[1], steer[2], model)
    try:
        with torch.no_grad():
            return model.hidden_states(torch.tensor([ids]))[layer + 1][0].numpy()
    finally:
        if handle is not None:
            handle.remove()


def assert_within_dtype(test, got, expected, dtype):
    """|got - expected| within the wire dtype's rounding (relative half-ulp) plus float noise."""
    relative = {"f32": 0.0, "f16": 2.0**-11, "bf16": 2.0**-8}[dtype]
    bound = np.abs(expected) * relative + 1e-4
    worst = float(np.max(np.abs(got - expected) - bound))
    test.assertLessEqual(worst, 0.0, f"{dtype}: activations differ beyond rounding")


@unittest.skipUnless(HAVE_TINY_QWEN2, "tests/fixtures/tiny-qwen2 is missing")
class DocumentedServerTest(unittest.TestCase):
    """Token from $LOUPE_TOKEN, an allow-list of origins, layer 1 by default."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(
            "--cors", f"{ALLOWED},http://localhost:5173", "--layer-default", "1", env={"LOUPE_TOKEN": TOKEN}
        )
        # The reference model is loaded straight from the fixture, not through the server's loader.
        from loupe_server.models.qwen2 import Qwen2ForCausalLM

        cls.model = Qwen2ForCausalLM.from_pretrained(TINY_QWEN2)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def post(self, body, headers=None):
        merged = {"Authorization": f"Bearer {TOKEN}"}
        merged.update(headers or {})
        return call(self.server.base, "POST", "/v1/generate", body, merged)

    def test_info(self):
        status, _, _ = call(self.server.base, "GET", "/v1/info")
        self.assertEqual(status, 401)
        status, headers, data = call(self.server.base, "GET", "/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(status, 200)
        info = json.loads(data)
        self.assertEqual(
            {k: info[k] for k in ("protocol", "version", "model", "layers", "d_in", "default_layer", "dtypes")},
            {"protocol": "loupe-stream", "version": 1, "model": "tiny-qwen2", "layers": 4, "d_in": 64,
             "default_layer": 1, "dtypes": ["f32", "f16", "bf16"]},
        )
        self.assertEqual(info["tokenizer"]["eos_token_ids"], [505])

    def test_auth(self):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            status, response_headers, data = call(
                self.server.base, "POST", "/v1/generate", generate_body(max_tokens=1), headers
            )
            self.assertEqual(status, 401, headers)
            self.assertEqual(json.loads(data)["code"], "unauthorized")
            self.assertEqual(response_headers["WWW-Authenticate"], "Bearer")

    def test_cors(self):
        preflight = {
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        status, headers, data = call(self.server.base, "OPTIONS", "/v1/generate", headers=preflight)
        self.assertEqual((status, data), (204, b""))
        self.assertEqual(headers["Access-Control-Allow-Origin"], ALLOWED)
        self.assertEqual(headers["Access-Control-Allow-Headers"], "Authorization, Content-Type")
        self.assertEqual(headers["Access-Control-Allow-Methods"], "POST, OPTIONS")
        self.assertEqual(headers["Vary"], "Origin")

        status, headers, _ = call(self.server.base, "OPTIONS", "/v1/generate",
                                  headers={**preflight, "Access-Control-Request-Private-Network": "true"})
        self.assertEqual(headers["Access-Control-Allow-Private-Network"], "true")

        status, headers, _ = call(self.server.base, "OPTIONS", "/v1/generate",
                                  headers={**preflight, "Origin": "https://evil.example"})
        self.assertEqual(status, 204)
        self.assertIsNone(headers["Access-Control-Allow-Origin"])

        status, headers, _ = self.post(generate_body(max_tokens=1), {"Origin": "http://localhost:5173"})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"]), (200, "http://localhost:5173"))
        status, headers, _ = call(self.server.base, "POST", "/v1/generate", generate_body(), {"Origin": ALLOWED})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"]), (401, ALLOWED))

    def test_bad_requests(self):
        cases = [
            (b"{not json", "bad_json", "JSON"),
            (generate_body(prompt="also"), "bad_request", "exactly one"),
            (generate_body(hook={"layer": 9}), "unknown_layer", "0..3"),
            (generate_body(steering=[{"vector": vector_b64(np.ones(3))}]), "bad_vector", "d_in is 64"),
            (generate_body(dtype="int8"), "bad_dtype", "bf16"),
            (generate_body(max_tokens=5000), "prompt_too_long", "2048"),
            (generate_body(resume={"position": 99, "generated": [1]}), "bad_resume", "position"),
        ]
        for body, code, fragment in cases:
            status, headers, data = self.post(body)
            self.assertEqual(status, 400, body)
            self.assertTrue(headers["Content-Type"].startswith("application/json"))
            error = json.loads(data)
            self.assertEqual(error["code"], code)
            self.assertIn(fragment, error["message"])
        status, _, data = call(
            self.server.base, "POST", "/v2/generate", generate_body(), {"Authorization": f"Bearer {TOKEN}"}
        )
        self.assertEqual((status, json.loads(data)["code"]), (404, "not_found"))

    def test_round_trip_activations_match_recomputed_hidden_states(self):
        vector = np.random.default_rng(5).standard_normal(64).astype(np.float32)
        layer, strength, start, max_tokens = 2, 3.0, 16, 8
        for dtype in ("f32", "f16", "bf16"):
            status, headers, data = self.post(
                generate_body(
                    max_tokens=max_tokens,
                    hook={"layer": layer, "site": "resid_post"},
                    dtype=dtype,
                    steering=[{"vector": vector_b64(vector), "strength": strength, "start": start, "mode": "add"}],
                )
            )
            self.assertEqual(status, 200)
            self.assertEqual(headers["Content-Type"], "application/vnd.loupe.stream; version=1")
            self.assertEqual(headers["Cache-Control"], "no-store")
            stream = parse_body(data)
            header = stream.header
            n = header["prompt_tokens"]
            self.assertEqual(
                {k: header[k] for k in
                 ("protocol", "version", "model", "layer", "site", "d_in", "dtype", "resume_from")},
                {"protocol": "loupe-stream", "version": 1, "model": "tiny-qwen2", "layer": layer,
                 "site": "resid_post", "d_in": 64, "dtype": dtype, "resume_from": 0},
            )
            self.assertEqual(header["tokenizer"]["think_end_token_id"], 510)
            self.assertIn("<｜Assistant｜>", header["chat_template"])
            self.assertEqual(stream.order[0], 1)
            self.assertEqual(stream.order[-1], 5)
            self.assertEqual(stream.end["reason"], "max_tokens")
            self.assertEqual((stream.end["prompt_tokens"], stream.end["generated_tokens"]), (n, max_tokens))

            tokens = stream.tokens
            ids = [t["token_id"] for t in tokens]
            self.assertEqual([t["position"] for t in tokens], list(range(n + max_tokens)))
            self.assertEqual(b"".join(t["text"] for t in tokens[:n]).decode(),
                             "<｜begin▁of▁sentence｜><｜User｜>What is 7 * 8?<｜Assistant｜><think>\n")
            self.assertEqual([t["flags"] & 1 for t in tokens], [int(p >= start) for p in range(len(tokens))])
            self.assertEqual([t["phase"] for t in tokens[:n]], [0] * n)

            steer = (start, torch.from_numpy(vector), strength)
            expected_tokens, _ = reference_greedy(self.model, ids[:n], max_tokens, [505], layer, steer=steer)
            self.assertEqual(ids[n:], expected_tokens)
            expected = reference_activations(self.model, ids, layer, steer)
            assert_within_dtype(self, np.stack([t["activation"] for t in tokens]), expected, dtype)

    def test_resume_over_http(self):
        body = generate_body(max_tokens=10, hook={"layer": 3}, temperature=0.8, top_p=0.9, seed=42, dtype="f32")
        status, _, data = self.post(body)
        full = parse_body(data)
        n = full.header["prompt_tokens"]
        cut = n + 4
        generated = [t["token_id"] for t in full.tokens[n:cut]]
        status, _, data = self.post({**body, "resume": {"position": cut, "generated": generated}})
        self.assertEqual(status, 200)
        resumed = parse_body(data)
        self.assertEqual(resumed.header["resume_from"], cut)
        self.assertEqual([t["position"] for t in resumed.tokens], list(range(cut, n + 10)))
        self.assertEqual([t["token_id"] for t in resumed.tokens], [t["token_id"] for t in full.tokens[cut:]])
        np.testing.assert_allclose(
            np.stack([t["activation"] for t in resumed.tokens]),
            np.stack([t["activation"] for t in full.tokens[cut:]]),
            rtol=0,
            atol=1e-4,
        )
        self.assertEqual(resumed.end["generated_tokens"], 10)


@unittest.skipUnless(HAVE_TINY_QWEN2, "tests/fixtures/tiny-qwen2 is missing")
class SlowServerTest(unittest.TestCase):
    """No token, any origin, 300 ms per generated token, heartbeats after 0.1 s of silence."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--cors", "*", "--token-delay-ms", "300", "--heartbeat-interval", "0.1")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def info(self):
        return json.loads(call(self.server.base, "GET", "/v1/info")[2])

    def test_heartbeats_while_the_model_is_slow(self):
        status, headers, data = call(
            self.server.base, "POST", "/v1/generate", generate_body(max_tokens=2), {"Origin": "https://any.example"}
        )
        self.assertEqual(status, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")
        stream = parse_body(data)
        self.assertGreaterEqual(stream.heartbeats, 1)
        self.assertEqual(stream.order[-1], 5)
        last_token = max(i for i, t in enumerate(stream.order) if t == 2)
        self.assertIn(4, stream.order[: last_token], "a heartbeat arrived between tokens")

    def test_disconnect_stops_generation_and_busy_gets_503(self):
        connection = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        connection.request("POST", "/v1/generate", json.dumps(generate_body(max_tokens=100)),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        self.assertEqual(response.status, 200)
        reader = FrameReader(response)
        generated_seen = 0
        while generated_seen < 2:
            if reader.next() == 2 and reader.stream.tokens[-1]["position"] >= reader.stream.header["prompt_tokens"]:
                generated_seen += 1

        status, headers, data = call(self.server.base, "POST", "/v1/generate", generate_body(max_tokens=1))
        self.assertEqual(status, 503)
        self.assertEqual(headers["Retry-After"], "2")
        self.assertEqual(json.loads(data)["code"], "busy")
        self.assertTrue(self.info()["busy"])

        response.close()
        connection.close()
        deadline = time.monotonic() + 10
        while not (self.info()["last_request"] or {}).get("finished"):
            self.assertLess(time.monotonic(), deadline, "generation did not stop after the client left")
            time.sleep(0.05)
        last = self.info()["last_request"]
        self.assertEqual(last["reason"], "cancelled")
        self.assertIsNotNone(last["generated_tokens_at_disconnect"])
        self.assertLessEqual(last["generated_tokens"] - last["generated_tokens_at_disconnect"], 1)
        self.assertLessEqual(last["generated_tokens"], generated_seen + 2)
        self.assertIn("client disconnected", self.server.stderr())

        status, _, data = call(self.server.base, "POST", "/v1/generate", generate_body(max_tokens=1))
        self.assertEqual(status, 200, "the model is free again")
        self.assertEqual(parse_body(data).end["reason"], "max_tokens")


@unittest.skipUnless(HAVE_TINY_QWEN2, "tests/fixtures/tiny-qwen2 is missing")
class InProcessServerTest(unittest.TestCase):
    """Failure paths that need control over the model: an error mid-stream, a shutdown."""

    def setUp(self):
        # The server logs requests and tracebacks to stderr; keep them for assertions instead.
        self.log = io.StringIO()
        redirect = contextlib.redirect_stderr(self.log)
        redirect.__enter__()
        self.addCleanup(redirect.__exit__, None, None, None)

    def start(self, lm, **options):
        from loupe_server.server import LoupeServer, ServerOptions

        server = LoupeServer(("127.0.0.1", 0), lm, ServerOptions(default_layer=1, **options))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    def test_error_after_the_stream_started_sends_an_error_frame(self):
        lm = tiny_lm()
        calls = []

        def failing_step(input_ids, past, position_ids):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("simulated device failure")
            return lm.step(input_ids, past, position_ids)

        server, base = self.start(dataclasses.replace(lm, step=failing_step))
        status, _, data = call(base, "POST", "/v1/generate", generate_body(max_tokens=10))
        self.assertEqual(status, 200)
        stream = parse_body(data)
        self.assertIsNone(stream.end)
        self.assertEqual(stream.order[-1], 3)
        self.assertEqual(stream.error["code"], "generation_failed")
        self.assertIn("simulated device failure", stream.error["message"])
        self.assertFalse(stream.error["retryable"])
        self.assertEqual(len(stream.tokens), stream.header["prompt_tokens"] + 1)
        info = json.loads(call(base, "GET", "/v1/info")[2])
        self.assertEqual((info["busy"], info["last_request"]["reason"]), (False, "error"))
        self.assertIn("RuntimeError: simulated device failure", self.log.getvalue())

    def test_any_origin_with_a_token_echoes_the_origin(self):
        server, base = self.start(tiny_lm(), token="t", cors_origins=("*",))
        status, headers, _ = call(base, "OPTIONS", "/v1/generate", headers={"Origin": "https://a.example"})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"], headers["Vary"]),
                         (204, "https://a.example", "Origin"))
        status, headers, _ = call(base, "GET", "/v1/info", headers={"Origin": "https://b.example"})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"]), (401, "https://b.example"))

    def test_shutdown_ends_a_stream_with_cancelled(self):
        server, base = self.start(tiny_lm(), token_delay_seconds=0.2)
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(response=call(base, "POST", "/v1/generate", generate_body(max_tokens=100)))
        )
        thread.start()
        while not server.generation_lock.locked():
            time.sleep(0.01)
        time.sleep(0.3)
        server.drain(timeout=10)
        thread.join(timeout=10)
        status, _, data = result["response"]
        stream = parse_body(data)
        self.assertEqual(stream.end["reason"], "cancelled")
        self.assertLess(stream.end["generated_tokens"], 100)


if __name__ == "__main__":
    unittest.main()
