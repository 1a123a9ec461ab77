"""A tiny OpenAI-compatible HTTP server in a thread, for the error cases (the success path is llama.cpp's).

It answers GET /v1/models and POST /v1/chat/completions and /v1/completions with a deterministic
text derived from the prompt, and injects faults from a plan: ``plan(n, path, body)`` returns
None (answer normally) or one of ``("status", code)``, ``("garbage",)``, ``("hang", seconds)`` (then an
empty object), ``("delay", seconds)`` (then the normal answer), and the hostile ones:
``("redirect", code, location)``, ``("trickle", seconds_per_byte, where)`` (the answer one byte at a
time, ``where`` "body" or "headers"), ``("chunked_forever", max_bytes)`` (a chunked body of JSON
whitespace that does not end before ``max_bytes``), ``("raw", bytes)`` (that body, status 200).
``tamper(path, body, answer)`` may rewrite a normal answer (a dict) before it is sent.
Every request is recorded (path, headers, body) so tests can count tries and inspect what was sent;
``sent`` counts the body bytes written, so a test can tell that a client stopped reading.
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
from pathlib import Path
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
                 require_key: str | None = None, error_echo: str = "", logprobs: str | None = None,
                 host: str = "127.0.0.1", tamper: Callable[[str, dict, dict], dict] | None = None):
        self.host = host
        self.tamper = tamper
        self.sent = 0
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
        return f"http://{self.host}:{self.port}/v1"

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r["path"] == path)

    def start(self) -> "FakeServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, code: int, payload: bytes | dict, ctype: str = "application/json"):
                if isinstance(payload, dict):   # a normal answer: the test may rewrite it first
                    if fake.tamper is not None:
                        payload = fake.tamper(self.path, self._body, payload)
                    payload = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                    fake.sent += len(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (its timeout): expected in the hang tests

            def _write(self, data: bytes) -> bool:
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                    fake.sent += len(data)
                    return True
                except OSError:   # the client hung up: stop sending
                    self.close_connection = True
                    return False

            def _hostile(self, action) -> bool:
                """Send one of the hostile answers; False when ``action`` is not one."""
                kind = action[0]
                if kind == "redirect":
                    self.send_response(action[1])
                    self.send_header("Location", action[2])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                if kind == "raw":
                    self._send(200, action[1])
                    return True
                if kind == "trickle":
                    interval, where = action[1], action[2]
                    body = json.dumps({"choices": [{"index": 0, "message": {"content": "slow"}, "text": "slow"}]}).encode()
                    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                            f"X-Padding: {'p' * 40}\r\n\r\n").encode()
                    self.close_connection = True
                    data = head + body
                    slow = len(b"HTTP/1.1 200 OK\r\n") if where == "headers" else len(head)   # bytes sent at once
                    if not self._write(data[:slow]):
                        return True
                    for i in range(slow, len(data)):
                        time.sleep(interval)
                        if not self._write(data[i:i + 1]):
                            return True
                    return True
                if kind == "chunked_forever":
                    self.close_connection = True
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b" " * 65536
                    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    while fake.sent < action[1]:
                        if not self._write(frame):
                            return True
                    self._write(b"0\r\n\r\n")
                    return True
                return False

            def _handle(self, body: dict):
                self._body = body
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if fake.require_key is not None and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                    msg = {"error": {"message": f"invalid api key {fake.error_echo}".strip()}}
                    return self._send(401, json.dumps(msg).encode())
                action = fake.plan(n, self.path, body)
                if action is not None and self._hostile(action):
                    return None
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
                    return self._send(200, {"object": "list", "data": [{"id": fake.model_id, "object": "model"}]})
                if self.path == "/v1/chat/completions":
                    text = answer_for(body["messages"][-1]["content"])
                    n_choices = body.get("n", 1)
                    choices = [{"index": j, "message": {"role": "assistant", "content": text + (f" {j}" if j else "")},
                                "finish_reason": "stop"} for j in range(n_choices)]
                    return self._send(200, {"model": fake.model_id, "choices": choices})
                if self.path == "/v1/completions":
                    text = answer_for(body["prompt"])
                    choice = {"index": 0, "text": text}
                    if body.get("echo") and body.get("logprobs") and fake.logprobs:
                        choice = {"index": 0, "text": body["prompt"] + text, "logprobs": echo_logprobs(body["prompt"] + text, len(body["prompt"]),
                                                                                                   shifted=fake.logprobs == "shifted")}
                    return self._send(200, {"model": fake.model_id, "choices": [choice], "usage": {"completion_tokens": 1}})
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

        self.httpd = ThreadingHTTPServer((self.host, self._port), Handler)
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


# ---- shared by the served-model test files ------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Customer: question number {i} about my order?\nAgent:" for i in range(6)]


def spec_for(url, *, max_attempts: int = 3, **kw):
    """A ServedSpec for a fake server: fast retries."""
    from audit.models.served import ServedSpec

    kw.setdefault("backoff", 0.01)
    return ServedSpec(base_url=url, max_attempts=max_attempts, **kw)


def write_served_suite(tmp_path: Path, url: str, *, name: str = "served-test", max_attempts: int = 3,
                       extra_model: str = "", sections: str = "  diversity: {}\n",
                       gates: str = "  - diversity.distinct_1 >= 0\n") -> Path:
    """A suite on the served model at ``url`` over PROMPTS (one request at a time, fast retries)."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p, "reference": " fine thanks"}) + "\n"
                            for i, p in enumerate(PROMPTS)))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: {name}\nmodel:\n  provider: openai\n  base_url: {url}\n  concurrency: 1\n"
                     f"  backoff: 0.01\n  max_attempts: {max_attempts}\n{extra_model}"
                     f"data: {{path: {data}}}\ngeneration: {{max_new_tokens: 8}}\nsections:\n{sections}gates:\n{gates}")
    return suite


def run_cli(*args, env_extra=None, timeout=240):
    """``python -m audit ARGS`` from the repository root, offline."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
