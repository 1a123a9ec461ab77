"""The pytest plugin runs the suite once, whatever the error (issue 23, defect 6)."""

from __future__ import annotations

import json
import subprocess
import sys

# Stands in for a run that breaks with an error that is not an AuditError (a bug, a library's
# RuntimeError): every call is counted in runs.txt.
CONFTEST = '''
import audit.runner

def broken_run(*args, **kwargs):
    with open("runs.txt", "a") as f:
        f.write("run\\n")
    raise RuntimeError("CUDA error: device-side assert triggered\\nsecond line of detail")

audit.runner.run_suite = broken_run
'''


def test_plugin_runs_once_and_fails_every_item_with_the_error(tmp_path):
    (tmp_path / "data.jsonl").write_text(json.dumps({"prompt": "Customer: hi\nAgent:", "reference": " Hello."}) + "\n")
    (tmp_path / "suite.yaml").write_text("name: s\nmodel: builtin:micro\ndata: data.jsonl\nsections:\n  diversity: {}\n"
                                         "gates:\n  - diversity.distinct_1 >= 0\n  - diversity.distinct_2 >= 0\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--rootdir={tmp_path}",
                           "--audit-suite", "suite.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "3 failed" in out, out                                   # two gates and one section
    assert (tmp_path / "runs.txt").read_text().count("run") == 1, out   # one run, not one per item
    # Each item fails with the error's one line; the full traceback is shown once, with the item that ran it.
    assert out.count("RuntimeError: CUDA error: device-side assert triggered") >= 3, out
    assert [line.strip() for line in out.splitlines()].count("second line of detail") == 1, out
    assert out.count("Traceback (most recent call last)") == 1, out
