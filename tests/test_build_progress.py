"""scripts/quiet-build (make server's llama.cpp build): says what it builds first, shows progress, keeps the
command's exit code and whole log (issue 25: 34 minutes of nothing but "still running...")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "quiet-build"
FAKE_BUILD = """
import sys
for i in range(1, 41):
    print(f"[{i}/40] Building CXX object vendor/llama.cpp/src/unit{i}.cpp.o")
print("[ 97%] Linking CXX shared library libllama.so")
print("noise " * 5)
sys.exit(int(sys.argv[1]))
"""


def _run(tmp_path, code: int):
    log = tmp_path / "build.log"
    r = subprocess.run([sys.executable, str(SCRIPT), str(log), "Building the fake server once: ~1 s", "--",
                        sys.executable, "-c", FAKE_BUILD, str(code)], capture_output=True, text=True, timeout=60)
    return r, log


def test_note_first_then_progress_and_the_whole_log(tmp_path):
    r, log = _run(tmp_path, 0)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Building the fake server once: ~1 s"
    progress = [ln for ln in lines if "% compiled" in ln]
    assert 15 <= len(progress) <= 21                      # one line per 5%, not one per compiled file
    assert progress[0].strip().startswith("0%") or progress[0].strip().startswith("5%")
    assert "100% compiled" in progress[-1] and "done in" in lines[-1]
    assert "Building CXX object" not in r.stdout           # the compiler lines go to the log only
    assert log.read_text().count("Building CXX object") == 40


def test_a_failed_build_keeps_its_code_and_shows_the_log_tail(tmp_path):
    r, log = _run(tmp_path, 3)
    assert r.returncode == 3
    assert "build failed (exit 3)" in r.stderr and str(log) in r.stderr and "noise" in r.stderr
