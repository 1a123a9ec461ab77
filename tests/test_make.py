"""The make targets pass audit's exit code through (scripts/make-exit): a failed gate is 1, an error 2."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / ".installed").exists(),
                                reason="needs make and the project's venv (`make install`)")


def _make_exit(args: str, out: Path) -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([str(ROOT / "scripts" / "make-exit"), "-s", "demo", f"DEMO_ARGS={args} --out {out} -q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600).returncode


def test_a_failed_gate_is_1_an_error_is_2_a_pass_is_0(tmp_path):
    # builtin:micro (random weights) fails the demo's distinct-2 gate; quality alone passes; a bad seed is an error.
    assert _make_exit("--model builtin:micro --section diversity", tmp_path / "a") == 1
    assert _make_exit("--model builtin:micro --seed notanumber", tmp_path / "b") == 2
    assert _make_exit("--model builtin:micro --section quality", tmp_path / "c") == 0
    assert not (ROOT / ".audit-exit").exists()
    # Plain make still fails with its own code 2 on a failed gate (why the wrapper exists).
    plain = subprocess.run(["make", "-s", "demo", f"DEMO_ARGS=--model builtin:micro --section diversity --out {tmp_path / 'd'} -q"],
                           cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 2
    (ROOT / ".audit-exit").unlink(missing_ok=True)
