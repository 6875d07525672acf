"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks.

It is a real HTTP server (``http.server.ThreadingHTTPServer``, one daemon thread per
connection) so clients are exercised end to end, faults included::

    with OpenAITestServer([error(429, retry_after=0.2), reply("hello")]) as srv:
        client = OpenAICompatLLM(..., base_url=srv.base_url)
        ...
        assert srv.request_count == 2

Scripts: a list of actions is consumed in order, then ``default`` (``reply("")`` unless
given) answers every further request; a callable gets the parsed :class:`ChatRequest` and
returns the action for it (lets a test reply per prompt). ``latency`` delays every answer.

Routes: ``POST /v1/chat/completions`` and ``POST /chat/completions``; ``GET /v1/models``.

Manual use::

    python -m evoforge.testing.openai_server --port 8000 --latency 1.0 --reply-file reply.txt
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "Action",
    "ChatRequest",
    "OpenAITestServer",
    "RecordedRequest",
    "empty",
    "empty_content",
    "error",
    "hang",
    "hashed_embedding",
    "malformed",
    "reply",
]


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """What the server does with one request. Build these with the factory functions."""

    kind: str  # "reply" | "error" | "hang" | "malformed" | "empty" | "empty_content"
    text: str | None = ""
    status: int = 200
    prompt_tokens: int | None = 10
    completion_tokens: int | None = 5
    delay: float = 0.0
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None


def hashed_embedding(text: str, dims: int = 64) -> list[float]:
    """A deterministic unit vector from the text's word and character-trigram counts (hashed into
    ``dims`` buckets): texts that share most of their content get a cosine near 1."""
    import hashlib
    import math

    vec = [0.0] * dims
    words = text.split()
    grams = words + [text[i:i + 3] for i in range(0, max(len(text) - 2, 0))]
    for g in grams:
        h = int.from_bytes(hashlib.blake2b(g.encode("utf-8", "replace"), digest_size=4).digest(),
                           "little")
        vec[h % dims] += 1.0 if h & 0x10000 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def reply(text: str, *, prompt_tokens: int | None = 10, completion_tokens: int | None = 5,
          delay: float = 0.0) -> Action:
    """A normal completion. ``prompt_tokens=None`` and ``completion_tokens=None`` omit usage."""
    return Action("reply", text=text, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, delay=delay)


def error(status: int, *, retry_after: float | None = None,
          body: str | dict[str, Any] | None = None, headers: dict[str, str] | None = None,
          delay: float = 0.0) -> Action:
    """An HTTP error (429, 500, 401, ...). ``retry_after`` sets the ``Retry-After`` header
    (seconds); ``headers`` adds raw headers (e.g. ``{"retry-after-ms": "150"}``)."""
    if body is None:
        body = {"error": {"message": f"scripted error {status}", "type": "test_error",
                          "code": status}}
    raw = body if isinstance(body, str) else json.dumps(body)
    return Action("error", status=status, retry_after=retry_after, body=raw,
                  headers=tuple((headers or {}).items()), delay=delay)


def hang() -> Action:
    """Never answer until the server stops (the client has to time out)."""
    return Action("hang")


def malformed(body: str = "this is {not json", *, delay: float = 0.0) -> Action:
    """HTTP 200 with a body that is not a chat completion (by default not even JSON)."""
    return Action("malformed", body=body, delay=delay)


def empty(*, prompt_tokens: int | None = 10, delay: float = 0.0) -> Action:
    """HTTP 200 completion with ``choices: []``."""
    return Action("empty", prompt_tokens=prompt_tokens, completion_tokens=0, delay=delay)


def empty_content(content: str | None = "", *, prompt_tokens: int | None = 10,
                  completion_tokens: int | None = 0, delay: float = 0.0) -> Action:
    """HTTP 200 completion whose message content is ``""`` (default) or ``null``; billed
    ``completion_tokens`` (a reasoning model bills its hidden reasoning)."""
    return Action("empty_content", text=content, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, delay=delay)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ChatRequest:
    """The parsed body of a chat completion request, handed to a callable script."""

    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any]
    index: int  # 0-based order of arrival

    @property
    def last_user_message(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content") or "")
        return ""


@dataclass(frozen=True)
class RecordedRequest:
    body: dict[str, Any]
    path: str
    headers: dict[str, str]
    received_at: float  # time.monotonic() when the request body had been read
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


Script = Callable[[ChatRequest], Action] | Sequence[Action] | None


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the benchmark opens many connections at once
    owner: OpenAITestServer

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True)
        self.owner._track(t, request)
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._untrack(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on hung or slow answers on purpose; that is not worth a traceback.
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "evoforge-test-openai/1.0"
    # headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux), which real servers (uvicorn, vLLM, ...) do not add
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None

    # -- helpers
    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    # -- routes
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "test-model", "object": "model", "created": 0, "owned_by": "evoforge"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}",
                                            "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/embeddings", "/embeddings"):
            self._embeddings(raw)
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}",
                                            "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            self._send_json(400, {"error": {"message": "request body is not JSON",
                                            "type": "invalid_request_error"}})
            return
        action, index = owner._next_action(body, path, dict(self.headers.items()))
        if owner._wait(owner.latency + action.delay):
            self.close_connection = True
            return
        self._perform(action, body, index)

    def _embeddings(self, raw: bytes) -> None:
        """OpenAI's embeddings API: ``input`` a string or a list of strings; vectors from the
        server's ``embed`` function (default :func:`hashed_embedding`)."""
        owner = self.server.owner
        try:
            body = json.loads(raw or b"{}")
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError("input must be a string or a list of strings")
        except (ValueError, AttributeError) as e:
            self._send_json(400, {"error": {"message": f"bad embeddings request: {e}",
                                            "type": "invalid_request_error"}})
            return
        with owner._lock:
            owner.embedding_inputs.extend(texts)
        vectors = [owner.embed(t) for t in texts]
        tokens = sum(len(t.split()) for t in texts)
        self._send_json(200, {
            "object": "list", "model": str(body.get("model", "test-embedding")),
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _perform(self, action: Action, body: dict[str, Any], index: int) -> None:
        owner = self.server.owner
        model = str(body.get("model", "test-model"))
        if action.kind == "hang":
            owner._wait(None)
            self.close_connection = True
            return
        if action.kind == "error":
            headers = list(action.headers)
            if action.retry_after is not None:
                ra = action.retry_after
                headers.append(("Retry-After", str(int(ra)) if float(ra).is_integer() else str(ra)))
            self._send(action.status, (action.body or "").encode(), headers=headers)
            return
        if action.kind == "malformed":
            self._send(200, (action.body or "").encode())
            return
        usage: dict[str, int] | None = None
        if action.prompt_tokens is not None or action.completion_tokens is not None:
            pt, ct = action.prompt_tokens or 0, action.completion_tokens or 0
            usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        choices: list[dict[str, Any]] = []
        if action.kind in ("reply", "empty_content"):
            choices = [{"index": 0, "finish_reason": "stop", "logprobs": None,
                        "message": {"role": "assistant", "content": action.text}}]
        completion: dict[str, Any] = {
            "id": f"chatcmpl-test-{index}", "object": "chat.completion",
            "created": int(time.time()), "model": model, "choices": choices,
        }
        if usage is not None:
            completion["usage"] = usage
        self._send_json(200, completion)


class OpenAITestServer:
    """A scripted OpenAI-compatible server on 127.0.0.1. Use as a context manager or call
    :meth:`start` / :meth:`stop`. ``port=0`` picks a free port."""

    def __init__(self, script: Script = None, *, latency: float = 0.0,
                 default: Action | None = None, port: int = 0, host: str = "127.0.0.1",
                 embed: Callable[[str], list[float]] | None = None) -> None:
        self.latency = float(latency)
        self.embed = embed or hashed_embedding  # /v1/embeddings: text -> vector
        self.embedding_inputs: list[str] = []  # every text /v1/embeddings was asked for
        self.default = default if default is not None else reply("")
        self._host, self._port = host, port
        self._callable: Callable[[ChatRequest], Action] | None = None
        self._queue: list[Action] = []
        if callable(script):
            self._callable = script
        elif script is not None:
            self._queue = list(script)
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._threads: dict[threading.Thread, socket.socket] = {}
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> OpenAITestServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._serve_thread = threading.Thread(target=httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, name="openai-test-server", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop serving. Hung and delayed answers are released (their connections closed)."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(join_timeout)
        with self._lock:
            conns = dict(self._threads)
        for sock in conns.values():  # wake handlers blocked on idle keep-alive connections
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + join_timeout
        for t in conns:
            t.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None
        self._serve_thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("OpenAITestServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat requests received, in order of arrival."""
        return [r.body for r in self.records]

    @property
    def request_times(self) -> list[float]:
        """``time.monotonic()`` at the arrival of each chat request."""
        return [r.received_at for r in self.records]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._records)

    def push(self, *actions: Action) -> None:
        """Append actions to a list script (thread-safe)."""
        with self._lock:
            self._queue.extend(actions)

    # -- internals used by the handler
    def _track(self, t: threading.Thread, sock: socket.socket) -> None:
        with self._lock:
            self._threads[t] = sock

    def _untrack(self, t: threading.Thread) -> None:
        with self._lock:
            self._threads.pop(t, None)

    def _wait(self, seconds: float | None) -> bool:
        """Sleep up to ``seconds`` (None: until stop). True if the server is stopping."""
        if seconds is not None and seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)

    def _next_action(self, body: dict[str, Any], path: str,
                     headers: dict[str, str]) -> tuple[Action, int]:
        with self._lock:
            index = len(self._records)
            self._records.append(RecordedRequest(body=body, path=path, headers=headers,
                                                 received_at=time.monotonic(), index=index))
            if self._callable is None:
                action = self._queue.pop(0) if self._queue else self.default
                return action, index
        req = ChatRequest(model=str(body.get("model", "")),
                          messages=list(body.get("messages") or []), body=body, index=index)
        try:
            action = self._callable(req)
        except Exception as e:  # a broken script answers 500 and says why
            return error(500, body={"error": {"message": f"script raised {e!r}"}}), index
        return action, index


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m evoforge.testing.openai_server",
                                description="Scripted OpenAI-compatible chat server (testing).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    p.add_argument("--reply-file", type=Path, default=None,
                   help="file whose text is the reply to every request (default: empty reply)")
    p.add_argument("--prompt-tokens", type=int, default=10)
    p.add_argument("--completion-tokens", type=int, default=5)
    args = p.parse_args(argv)
    text = args.reply_file.read_text() if args.reply_file else ""
    srv = OpenAITestServer(latency=args.latency, port=args.port, host=args.host,
                           default=reply(text, prompt_tokens=args.prompt_tokens,
                                         completion_tokens=args.completion_tokens))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    srv.start()
    print(f"serving on http://{args.host}:{srv.port}/v1 (Ctrl-C to stop)", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
