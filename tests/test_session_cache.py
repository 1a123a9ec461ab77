"""The test session's own cache is removed when the session ends (issue 25: each `make test` left ~0.5 GB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_test_session_removes_its_own_cache(tmp_path):
    """conftest's per-session AUDIT_CACHE (converted GGUFs, built models: ~0.5 GB) goes when the session ends;
    a cache the caller named is never removed."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CACHE"}
    env["TMPDIR"] = str(tmp_path)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_layers.py::test_no_import_cycle"]
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(tmp_path.glob("audit-test-cache-*"))
    mine = tmp_path / "named-cache"
    mine.mkdir()
    r = subprocess.run(cmd, cwd=root, env={**env, "AUDIT_CACHE": str(mine)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and mine.is_dir()
