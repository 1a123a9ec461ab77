"""Start and stop llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) for tests and benchmarks.

The server lives in its own virtual environment (``make server`` builds it into ``.venv-server``;
``AUDIT_LLAMA_PYTHON`` may name another interpreter that has it). :func:`why_unavailable` says in
one line why it cannot run here, so tests skip with a reason instead of failing or passing silently.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_PIN = "llama-cpp-python[server]==0.3.36"


def server_python() -> Path:
    env = os.environ.get("AUDIT_LLAMA_PYTHON")
    return Path(env) if env else ROOT / ".venv-server" / "bin" / "python"


def smollm2_gguf() -> Path:
    from audit.models.gguf import smollm2_gguf as find

    return find()


def why_unavailable() -> str | None:
    """None when the server can start here, else the reason (for pytest.skip)."""
    py = server_python()
    if not py.exists():
        return (f"llama.cpp server not installed: {py} does not exist (run `make server` to build {SERVER_PIN} "
                f"into .venv-server, ~25 min once, or set AUDIT_LLAMA_PYTHON to a python that has it)")
    r = subprocess.run([str(py), "-c", "import llama_cpp.server, uvicorn"], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"llama.cpp server not importable with {py}: {last} (run `make server`)"
    try:
        smollm2_gguf()
    except Exception as e:  # noqa: BLE001 - the reason is the message
        return f"no GGUF to serve: {e}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server --model GGUF`` on 127.0.0.1:PORT, as a child process we own."""

    def __init__(self, *, port: int | None = None, n_threads: int = 1, n_ctx: int = 2048, alias: str = "smollm2",
                 log_path: Path | None = None):
        self.port = port or free_port()
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.alias = alias
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> "LlamaServer":
        # The launcher keeps llama.cpp off AMX tiles (see llama_launch.py); arguments are the server's own.
        cmd = [str(server_python()), str(Path(__file__).with_name("llama_launch.py")), "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_threads", str(self.n_threads), "--n_ctx", str(self.n_ctx),
               "--model_alias", self.alias]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode} (see {self.log_path})")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    if json.loads(r.read()).get("data"):
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
