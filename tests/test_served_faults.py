"""A hostile OpenAI-compatible server (issue 24, issue 23 #8): redirects, impossible numbers, unbounded
answers, deep JSON, and servers echoing the key in disguise.

Every case runs against the fault-injecting stdlib server in tests/served_fake.py; the "other host"
of the redirect cases is a second one bound on 127.0.0.2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.config import GenerationSettings
from audit.models.served import ServedError, ServedModel, ServedSpec

sys.path.insert(0, str(Path(__file__).parent))
from served_fake import FakeServer, answer_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Customer: question number {i} about my order?\nAgent:" for i in range(6)]
CHAT = "/v1/chat/completions"
KEY = "sk-audit-faults-Zq81Kx0Pw7"


def _spec(url, **kw) -> ServedSpec:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_attempts", 2)
    return ServedSpec(base_url=url, **kw)


def _write_suite(tmp_path: Path, url: str, *, extra_model: str = "", sections: str = "  diversity: {}\n",
                 gates: str = "  - diversity.distinct_1 >= 0\n") -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p, "reference": " fine thanks"}) + "\n"
                            for i, p in enumerate(PROMPTS)))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: served-faults\nmodel:\n  provider: openai\n  base_url: {url}\n  concurrency: 1\n"
                     f"  backoff: 0.01\n  max_attempts: 2\n{extra_model}"
                     f"data: {{path: {data}}}\ngeneration: {{max_new_tokens: 8}}\nsections:\n{sections}gates:\n{gates}")
    return suite


def _cli(*args, env_extra=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=ROOT)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _cache_values(cache_dir: Path) -> list:
    vals = []
    for f in cache_dir.glob("**/gen-*.jsonl"):
        vals += [json.loads(line)["v"] for line in f.read_text().splitlines() if line.strip()]
    return vals


# ---- 1. the key never follows a redirect to another host ------------------------------------------
def test_a_redirect_to_another_host_does_not_carry_the_key(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer(host="127.0.0.2") as other:
        target = f"http://127.0.0.2:{other.port}/v1/models"
        with FakeServer(lambda n, path, body: ("redirect", 302, target) if path == "/v1/models" else None) as srv:
            lm = ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
            assert srv.requests[0]["headers"].get("Authorization") == f"Bearer {KEY}"   # the configured host gets it
        assert lm.server_model == "fake-model" and other.count("/v1/models") == 1     # the redirect was followed ...
        assert all("Authorization" not in r["headers"] for r in other.requests)       # ... without the key
        assert not any(KEY in json.dumps(r) for r in other.requests)


def test_a_redirect_to_another_port_of_the_same_host_drops_the_key_too(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer() as other:
        target = f"http://127.0.0.1:{other.port}/v1/models"
        with FakeServer(lambda n, path, body: ("redirect", 301, target) if path == "/v1/models" else None) as srv:
            ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
        assert other.count("/v1/models") == 1 and "Authorization" not in other.requests[0]["headers"]


def test_a_redirect_within_the_same_origin_keeps_the_key(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer(lambda n, path, body: ("redirect", 302, "/v1/models") if n == 0 else None) as srv:
        ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
        assert [r["path"] for r in srv.requests] == ["/v1/models", "/v1/models"]
        assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in srv.requests)


def test_a_redirect_to_another_scheme_is_refused_in_one_line():
    with FakeServer(lambda n, path, body: ("redirect", 302, "ftp://127.0.0.1:9/v1/models")) as srv:
        with pytest.raises(ServedError) as e:
            ServedModel.load(_spec(srv.url))
    assert "redirect" in str(e.value) and "\n" not in str(e.value)
