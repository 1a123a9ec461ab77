"""A tiny OpenAI-compatible HTTP server in a thread, for the error cases (the success path is llama.cpp's).

It answers GET /v1/models and POST /v1/chat/completions and /v1/completions with a deterministic
text derived from the prompt, and injects faults from a plan: ``plan(n, path, body)`` returns
None (answer normally) or one of ``("status", code)``, ``("garbage",)``, ``("hang", seconds)`` (then an
empty object), ``("delay", seconds)`` (then the normal answer).
Every request is recorded (path, headers, body) so tests can count tries and inspect what was sent.
``logprobs="aligned"`` answers ``/completions`` with ``echo`` + ``logprobs`` as vLLM does (a model that
predicts every token at -0.1); ``"shifted"`` as llama-cpp-python 0.3.x does for a prompt without BOS
(position i reports the distribution that predicts token i+1).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def answer_for(text: str) -> str:
    """The fake model's deterministic answer for a prompt."""
    words = text.split()
    return " " + " ".join(reversed(words[-4:])) + " ok"


def echo_logprobs(text: str, prompt_len: int, *, shifted: bool) -> dict:
    """Echoed prompt log-probabilities of a model that gives each next token p = e^-0.1 (one generated token)."""
    spans = [(m.start(), m.group()) for m in re.finditer(r"\s*[^\s,]+|,", text)]
    spans = [sp for sp in spans if sp[0] < prompt_len] + [next(sp for sp in spans if sp[0] >= prompt_len)]
    tokens = [t for _, t in spans]
    if shifted:   # the distribution at i predicts token i+1; the value reported is that of token i under it
        tops = [{tokens[i + 1]: -0.1, tokens[i]: -9.0} if i + 1 < len(tokens) else {tokens[i]: -0.1} for i in range(len(tokens))]
        values = [-9.0] * (len(tokens) - 1) + [-0.1]
    else:
        tops = [{t: -0.1} for t in tokens]
        values = [-0.1] * len(tokens)
    tops[0], values[0] = None, None
    return {"tokens": tokens, "text_offset": [o for o, _ in spans], "token_logprobs": values, "top_logprobs": tops}


class FakeServer:
    def __init__(self, plan: Callable[[int, str, dict], Any] | None = None, *, port: int = 0, model_id: str = "fake-model",
                 require_key: str | None = None, error_echo: str = "", logprobs: str | None = None):
        self.plan = plan or (lambda n, path, body: None)
        self.model_id = model_id
        self.require_key = require_key
        self.error_echo = error_echo
        self.logprobs = logprobs
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._port = port
        self.httpd = None
        self.thread = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1] if self.httpd is not None else self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r["path"] == path)

    def start(self) -> "FakeServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, code: int, payload: bytes, ctype: str = "application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (its timeout): expected in the hang tests

            def _handle(self, body: dict):
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if fake.require_key is not None and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                    msg = {"error": {"message": f"invalid api key {fake.error_echo}".strip()}}
                    return self._send(401, json.dumps(msg).encode())
                action = fake.plan(n, self.path, body)
                if action is not None:
                    kind = action[0]
                    if kind == "status":
                        return self._send(action[1], json.dumps({"error": {"message": "injected"}}).encode())
                    if kind == "garbage":
                        return self._send(200, b"<html>not json{")
                    if kind == "delay":   # a slow but healthy answer
                        time.sleep(action[1])
                        action = None
                    elif kind == "hang":
                        time.sleep(action[1])
                        return self._send(200, b"{}")
                if self.path == "/v1/models":
                    return self._send(200, json.dumps({"object": "list", "data": [{"id": fake.model_id, "object": "model"}]}).encode())
                if self.path == "/v1/chat/completions":
                    text = answer_for(body["messages"][-1]["content"])
                    n_choices = body.get("n", 1)
                    choices = [{"index": j, "message": {"role": "assistant", "content": text + (f" {j}" if j else "")},
                                "finish_reason": "stop"} for j in range(n_choices)]
                    return self._send(200, json.dumps({"model": fake.model_id, "choices": choices}).encode())
                if self.path == "/v1/completions":
                    text = answer_for(body["prompt"])
                    choice = {"index": 0, "text": text}
                    if body.get("echo") and body.get("logprobs") and fake.logprobs:
                        choice = {"index": 0, "text": body["prompt"] + text, "logprobs": echo_logprobs(body["prompt"] + text, len(body["prompt"]),
                                                                                                   shifted=fake.logprobs == "shifted")}
                    return self._send(200, json.dumps({"model": fake.model_id, "choices": [choice],
                                                       "usage": {"completion_tokens": 1}}).encode())
                return self._send(404, b'{"error": "not found"}')

            def do_GET(self):
                self._handle({})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    body = {}
                self._handle(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self.httpd.daemon_threads = True
        self._port = self.port   # a restart comes back on the same port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
