"""Shared fixtures: offline environment, an isolated cache, and the micro model."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Hub look-ups must fail fast offline instead of retrying for ~45 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache per test session: tests never read a developer's cache, and builtin models build once.
# Made here, so removed here when the session ends (it grows to ~0.5 GB: converted GGUFs, built models).
_OWN_CACHE = None
if "AUDIT_CACHE" not in os.environ:
    _OWN_CACHE = os.environ["AUDIT_CACHE"] = tempfile.mkdtemp(prefix="audit-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's own cache (never one the caller named with AUDIT_CACHE)."""
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def micro_path() -> Path:
    from audit.models.builtin import resolve

    return resolve("builtin:micro")


@pytest.fixture(scope="session")
def micro_lm(micro_path):
    from audit.models.local import LanguageModel

    return LanguageModel.load(str(micro_path))


@pytest.fixture
def support_like(tmp_path) -> Path:
    """A small prompt/reference JSONL file."""
    path = tmp_path / "data.jsonl"
    rows = [{"id": f"r{i}", "prompt": f"Customer: how do I reset password number {i}?\nAgent:",
             "reference": " Open settings and choose reset password.", "split": "test" if i % 2 else "train"}
            for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_suite(tmp_path: Path, body: str, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


# A tiny Llama with SmolLM2's ChatML template, built locally (tests/chat_models.py); one per test module.
@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    from .chat_models import build_chat_llama

    return build_chat_llama(tmp_path_factory.mktemp("chat") / "m")


@pytest.fixture(scope="module")
def chat_lm(chat_dir):
    from audit.models.local import LanguageModel

    return LanguageModel.load(str(chat_dir))


@pytest.fixture(scope="module")
def sensitive_micro_lm(micro_path):
    # The random micro model answers every prompt with the same tokens, so no attack can change its
    # output. Scaling its matrices makes it chaotic: outputs depend on the prompt, attacks succeed.
    from audit.models.local import LanguageModel

    lm = LanguageModel.load(str(micro_path))
    with torch.no_grad():
        for p in lm.model.parameters():
            if p.dim() >= 2:
                p.mul_(6)
    return lm


def write_robust_tiny(tmp_path: Path) -> Path:
    """A robustness-only suite ``robust-tiny`` on builtin:micro with 4 support-like records (what the harden
    tests attack and fine-tune on); returns the suite's path."""
    rows = [{"id": f"r{i}", "prompt": f"Customer: how do I reset password number {i}?\nAgent:",
             "reference": " Open settings and choose reset password."} for i in range(4)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "suite.yaml"
    path.write_text(
        "name: robust-tiny\nmodel: builtin:micro\nseed: 0\ndata:\n  path: data.jsonl\ngeneration:\n  max_new_tokens: 4\n"
        "sections:\n  robustness:\n    recipes: [deepwordbug]\n    examples: 3\n    query_budget: 10\n"
        "    max_similarity: 0.9\n    perturbations: []\ngates:\n  - robustness.attack_success_rate <= 0.5\n")
    return path
