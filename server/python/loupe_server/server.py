"""The HTTP side: ``POST /v1/generate`` streams the Loupe protocol, ``GET /v1/info`` describes it.

Standard library only (``http.server.ThreadingHTTPServer``). One model, so one generation at a
time: a second ``POST /v1/generate`` while one runs gets ``503`` with ``Retry-After`` rather
than waiting in a queue, because a queued request's client cannot tell a slow start from a
stuck server, and the page can retry (or the reader can cancel the other tab).

Each stream has two threads. A worker runs the model and puts encoded frames on a small
bounded queue; the request thread takes them off and writes them as HTTP chunks. That split is
what lets the request thread send a HEARTBEAT while a long forward pass runs, and notice a
client that went away (a failed write, or the socket polled readable with nothing to read,
i.e. closed) while the worker is busy. It then sets the stream's cancel flag, which the worker
checks before every forward pass, so generation stops before the next token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import queue
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .backend import LoadedModel
from .generate import Generation, check_lengths, prompt_ids
from .protocol import (
    CONTENT_TYPE,
    DTYPE_SIZES,
    END_CANCELLED,
    FRAME_HEADER,
    PREAMBLE,
    PROTOCOL_MAJOR,
    PROTOCOL_NAME,
    SITES,
    STEERING_MODES,
    GenerateRequest,
    RequestError,
    end_frame,
    error_frame,
    heartbeat_frame,
    json_frame,
    parse_generate_request,
    token_frame,
)

GENERATE_PATH = "/v1/generate"
INFO_PATH = "/v1/info"

_END_OF_STREAM = object()
# How often the request thread wakes to poll the socket and the heartbeat clock.
_POLL_SECONDS = 0.05
# Frames a worker may run ahead of the network before it waits.
_QUEUE_FRAMES = 64


@dataclass(frozen=True)
class ServerOptions:
    default_layer: int
    token: Optional[str] = None
    cors_origins: Tuple[str, ...] = ()
    heartbeat_seconds: float = 5.0
    # Testing aid: a pause before each generated token, to imitate a slow model.
    token_delay_seconds: float = 0.0
    retry_after_seconds: int = 2
    max_body_bytes: int = 16 * 1024 * 1024
    # A client that stops reading for this long (socket send blocked) is treated as gone.
    socket_timeout_seconds: float = 60.0


class RequestLog:
    """What ``GET /v1/info`` reports about the latest generation (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Optional[Dict[str, Any]] = None

    def start(self, request_id: str, prompt_tokens: int, resume_from: int) -> None:
        with self._lock:
            self._last = {
                "request_id": request_id,
                "prompt_tokens": prompt_tokens,
                "resume_from": resume_from,
                "generated_tokens": 0,
                "generated_tokens_at_disconnect": None,
                "reason": None,
                "finished": False,
            }

    def update(self, **fields: Any) -> None:
        with self._lock:
            if self._last is not None:
                self._last.update(fields)

    def snapshot(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return dict(self._last) if self._last is not None else None


class LoupeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], lm: LoadedModel, options: ServerOptions) -> None:
        self.lm = lm
        self.options = options
        self.limits = lm.limits(options.default_layer)
        self.generation_lock = threading.Lock()
        self.stopping = threading.Event()
        self.request_log = RequestLog()
        self._open_streams = 0
        self._streams_changed = threading.Condition()
        super().__init__(address, LoupeRequestHandler)

    def info(self) -> Dict[str, Any]:
        lm = self.lm
        return {
            "protocol": PROTOCOL_NAME,
            "version": PROTOCOL_MAJOR,
            "model": lm.name,
            "layers": lm.num_layers,
            "d_in": lm.d_in,
            "default_layer": self.options.default_layer,
            "sites": list(SITES),
            "dtypes": list(DTYPE_SIZES),
            "steering_modes": list(STEERING_MODES),
            "max_positions": lm.max_positions,
            "tokenizer": lm.tokenizer.header(),
            "busy": self.generation_lock.locked(),
            "last_request": self.request_log.snapshot(),
        }

    def drain(self, timeout: float) -> None:
        """Ask a running generation to end and wait until its stream (END ``cancelled``) has
        been written, so a shutdown does not cut it off mid-frame."""
        self.stopping.set()
        with self._streams_changed:
            self._streams_changed.wait_for(lambda: self._open_streams == 0, timeout=timeout)

    @contextlib.contextmanager
    def open_stream(self) -> Iterator[None]:
        with self._streams_changed:
            self._open_streams += 1
        try:
            yield
        finally:
            with self._streams_changed:
                self._open_streams -= 1
                self._streams_changed.notify_all()


class LoupeRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "loupe-server/1"
    server: LoupeServer

    def setup(self) -> None:
        self.timeout = self.server.options.socket_timeout_seconds
        super().setup()

    # ---- routing -----------------------------------------------------------------------------

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        for name, value in self._cors_headers(preflight=True):
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _get(self) -> None:
        if self._path() != INFO_PATH:
            raise RequestError("not_found", f"no such endpoint; GET {INFO_PATH} or POST {GENERATE_PATH}", 404)
        self._require_auth()
        self._send_json(200, self.server.info())

    def _post(self) -> None:
        if self._path() != GENERATE_PATH:
            raise RequestError("not_found", f"no such endpoint; POST {GENERATE_PATH} or GET {INFO_PATH}", 404)
        self._require_auth()
        request = parse_generate_request(self._read_body(), self.server.limits)
        lm = self.server.lm
        try:
            prompt = prompt_ids(lm, request)
        except Exception as e:  # a tokenizer or chat template refusing the input
            raise RequestError("bad_request", f"could not tokenise the input: {e}") from None
        check_lengths(lm, request, prompt)
        if not self.server.generation_lock.acquire(blocking=False):
            raise RequestError(
                "busy",
                "another generation is running on this model; retry after the Retry-After delay or cancel it",
                503,
            )
        try:
            generation = Generation(lm, request, prompt)
            request_id = uuid.uuid4().hex
            header = self._header_frame(request, generation, request_id)
        except BaseException:
            self.server.generation_lock.release()
            raise
        self._stream(generation, header, request_id)

    def _guarded(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except RequestError as e:
            self._send_json(e.status, e.body())
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, {"code": "internal_error", "message": f"the server failed: {e}"})

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # ---- request pieces -----------------------------------------------------------------------

    def _require_auth(self) -> None:
        token = self.server.options.token
        if token is None:
            return
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise RequestError(
                "unauthorized",
                "this server needs 'Authorization: Bearer <token>' with the token it was started with",
                401,
            )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError("bad_request", "send the JSON body with a Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise RequestError("bad_request", "a Content-Length header with the JSON body's size is required")
        length = int(length_text)
        if length > self.server.options.max_body_bytes:
            self.close_connection = True
            raise RequestError(
                "body_too_large",
                f"the body has {length} bytes; at most {self.server.options.max_body_bytes} are accepted",
                413,
            )
        return self.rfile.read(length)

    def _cors_headers(self, preflight: bool = False) -> List[Tuple[str, str]]:
        allowed = self.server.options.cors_origins
        origin = self.headers.get("Origin")
        if not allowed or origin is None:
            return []
        if "*" in allowed and self.server.options.token is None:
            value = "*"
        elif "*" in allowed or origin in allowed:
            value = origin
        else:
            return []
        headers = [
            ("Access-Control-Allow-Origin", value),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
            ("Access-Control-Allow-Methods", "POST, OPTIONS"),
            ("Access-Control-Expose-Headers", "Retry-After"),
        ]
        if value != "*":
            headers.append(("Vary", "Origin"))
        if preflight:
            headers.append(("Access-Control-Max-Age", "600"))
            # Chrome asks before a public page may reach a private-network address.
            if self.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
                headers.append(("Access-Control-Allow-Private-Network", "true"))
        return headers

    def _send_json(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if status >= 400:
            # The request body may be unread (auth and routing come first): do not reuse the
            # connection, or its leftover bytes would be parsed as the next request.
            self.close_connection = True
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if status == 503:
            self.send_header("Retry-After", str(self.server.options.retry_after_seconds))
        for name, value in self._cors_headers():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _header_frame(self, request: GenerateRequest, generation: Generation, request_id: str) -> bytes:
        lm = self.server.lm
        return json_frame(
            FRAME_HEADER,
            {
                "protocol": PROTOCOL_NAME,
                "version": PROTOCOL_MAJOR,
                "model": lm.name,
                "layer": request.layer,
                "site": request.site,
                "d_in": lm.d_in,
                "dtype": request.dtype,
                "prompt_tokens": generation.prompt_tokens,
                "resume_from": generation.resume_from,
                "request_id": request_id,
                "tokenizer": lm.tokenizer.header(),
                "chat_template": lm.tokenizer.chat_template,
            },
        )

    # ---- streaming ------------------------------------------------------------------------------

    def _stream(self, generation: Generation, header: bytes, request_id: str) -> None:
        """Runs with the generation lock held; the worker releases it when it ends."""
        self.server.request_log.start(request_id, generation.prompt_tokens, generation.resume_from)
        frames: "queue.Queue[Any]" = queue.Queue(maxsize=_QUEUE_FRAMES)
        cancel = threading.Event()
        worker = threading.Thread(
            target=self._generate_into,
            args=(generation, header, frames, cancel),
            name=f"loupe-generate-{request_id[:8]}",
            daemon=True,
        )
        try:
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Accel-Buffering", "no")  # reverse proxies: do not buffer the stream
            self.send_header("Connection", "close")
            for name, value in self._cors_headers():
                self.send_header(name, value)
            self.end_headers()
        except BaseException:
            self.server.generation_lock.release()
            raise
        self.close_connection = True
        with self.server.open_stream():
            worker.start()
            self._pump(frames, cancel, generation)

    def _generate_into(
        self, generation: Generation, header: bytes, frames: "queue.Queue[Any]", cancel: threading.Event
    ) -> None:
        server = self.server
        log = server.request_log
        started = time.monotonic()
        dtype = generation.request.dtype
        delay = server.options.token_delay_seconds

        def put(item: Any) -> bool:
            while True:
                try:
                    frames.put(item, timeout=_POLL_SECONDS)
                    return True
                except queue.Full:
                    if cancel.is_set():
                        return False

        def should_stop() -> bool:
            return cancel.is_set() or server.stopping.is_set()

        reason = END_CANCELLED
        try:
            put(PREAMBLE + header)
            # closing(): leaving the loop early closes the generator at once, which removes the
            # layer hook before the lock is released for the next request.
            with contextlib.closing(generation.records(should_stop)) as records:
                for record in records:
                    frame = token_frame(
                        record.position,
                        record.token_id,
                        record.phase,
                        record.steered,
                        record.text,
                        record.activation.numpy(),
                        dtype,
                    )
                    log.update(generated_tokens=generation.generated_tokens)
                    if not put(frame):
                        break
                    if delay and record.position >= generation.prompt_tokens:
                        cancel.wait(delay)
            reason = generation.reason or END_CANCELLED
            elapsed_ms = int(round((time.monotonic() - started) * 1000))
            put(end_frame(reason, generation.prompt_tokens, generation.generated_tokens, elapsed_ms))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            reason = "error"
            # Out of memory may pass (a retry with 'resume' continues from the last frame received);
            # anything else would fail the same way again.
            out_of_memory = "out of memory" in str(e).lower()
            message = f"generation failed after {generation.generated_tokens} generated tokens: {type(e).__name__}: {e}"
            put(error_frame("generation_failed", message, retryable=out_of_memory))
        finally:
            log.update(generated_tokens=generation.generated_tokens, reason=reason, finished=True)
            server.generation_lock.release()
            put(_END_OF_STREAM)

    def _pump(self, frames: "queue.Queue[Any]", cancel: threading.Event, generation: Generation) -> None:
        heartbeat = self.server.options.heartbeat_seconds
        last_write = time.monotonic()
        while True:
            try:
                item = frames.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                item = None
            if item is _END_OF_STREAM:
                self._write_quietly(b"0\r\n\r\n")
                return
            if _peer_closed(self.connection):
                self._client_gone(cancel, generation)
                return
            if item is None:
                if time.monotonic() - last_write < heartbeat:
                    continue
                item = heartbeat_frame()
            if not self._write_quietly(b"%x\r\n" % len(item) + item + b"\r\n"):
                self._client_gone(cancel, generation)
                return
            last_write = time.monotonic()

    def _client_gone(self, cancel: threading.Event, generation: Generation) -> None:
        self.server.request_log.update(generated_tokens_at_disconnect=generation.generated_tokens)
        cancel.set()
        self.log_message("client disconnected after %d generated tokens; stopping", generation.generated_tokens)

    def _write_quietly(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            return True
        except OSError:
            return False


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client closed the connection (readable, and a peek reads nothing)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
