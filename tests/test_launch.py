"""`audit launch ... -- run SUITE`: the exit-code contract (0 pass, 1 a gate failed, 2 an error) under
`accelerate launch`, which itself exits 1 for any failed rank (issue 23, defect 5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit.launch import EXIT_DIR_ENV, final_code

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_OPTS = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]

SUITE = """name: launch
model: {model}
seed: 3
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 4, batch_size: 2}}
sections:
  {section}: {{metrics: [perplexity]}}
gates:
  - {gate}
"""


def _env():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", EXIT_DIR_ENV):
        env.pop(k, None)
    return env


def _suite(tmp_path, model, *, section="quality", gate="quality.perplexity < 1e12"):
    rows = [{"id": f"r{i}", "prompt": f"Customer: where is my order number {i}?\nAgent:", "reference": " It ships today."}
            for i in range(4)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(SUITE.format(model=model, section=section, gate=gate))


def _audit_launch(tmp_path, *run_args):
    return subprocess.run([sys.executable, "-m", "audit", "launch", *LAUNCH_OPTS, "--", "run", "suite.yaml", *run_args],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)


def test_final_code_keeps_rank_0s_pass_and_gate_failure_and_makes_errors_and_crashes_2():
    assert final_code({0: 0, 1: 0}, launcher_code=0) == 0
    assert final_code({0: 1, 1: 1}, launcher_code=0) == 1
    assert final_code({0: 1}, launcher_code=1) == 1            # rank 1 stopped after rank 0 gated: still a gate failure
    assert final_code({0: 2, 1: 2}, launcher_code=0) == 2
    assert final_code({0: 0, 1: 2}, launcher_code=0) == 2      # an error on another rank is not a pass
    assert final_code({0: 1, 1: 2}, launcher_code=0) == 2
    assert final_code({0: 0}, launcher_code=1) == 2            # another rank crashed (noted nothing)
    assert final_code({1: 0}, launcher_code=1) == 2            # rank 0 crashed
    assert final_code({}, launcher_code=1) == 2
    assert final_code({0: 7}, launcher_code=0) == 2


def test_a_rank_under_audit_launch_notes_its_code_and_exits_0(tmp_path):
    # Exit 0 so torch elastic never SIGTERMs rank 0 while it writes the reports; the code is in the note.
    (tmp_path / "notes").mkdir()
    env = {**_env(), EXIT_DIR_ENV: str(tmp_path / "notes"), "RANK": "1"}
    p = subprocess.run([sys.executable, "-m", "audit", "run", str(tmp_path / "missing.yaml")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "missing.yaml: suite file not found" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "audit", "--no-such-flag"], env={**env, "RANK": "0"},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert sorted(f.name for f in (tmp_path / "notes").iterdir()) == ["rank0", "rank1"]
    assert (tmp_path / "notes" / "rank0").read_text() == "2" and (tmp_path / "notes" / "rank1").read_text() == "2"


def test_audit_launch_needs_the_separator(tmp_path):
    p = subprocess.run([sys.executable, "-m", "audit", "launch", "run", "suite.yaml"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "audit: error: launch: put `--` before the audit command (audit launch [OPTIONS] -- run SUITE ...)"]


@pytest.mark.slow
def test_a_config_error_on_every_rank_exits_2_under_audit_launch_where_accelerate_exits_1(tmp_path):
    _suite(tmp_path, "builtin:micro", section="nosuch")
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    plain = subprocess.run([accelerate, "launch", *LAUNCH_OPTS, "-m", "audit", "run", "suite.yaml"], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=600)
    # Why the wrapper exists: torch elastic reports every rank's 2 as its own 1, "a gate failed".
    assert plain.returncode == 1 and "unknown section 'nosuch'" in plain.stderr, plain.stderr[-3000:]
    p = _audit_launch(tmp_path, "--out", "out")
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.count("audit: error: suite.yaml: sections: unknown section 'nosuch'") == 2, p.stderr[-3000:]  # both ranks ran
    assert "Traceback" not in p.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("gate, code", [("quality.perplexity < 1e12", 0), ("quality.perplexity < 0", 1)])
def test_audit_launch_exits_0_on_a_pass_and_1_on_a_failed_gate_with_rank_0s_reports(tmp_path, micro_path, gate, code):
    _suite(tmp_path, micro_path, gate=gate)
    p = _audit_launch(tmp_path, "--out", "out", "--cache-dir", "c", "-q")
    assert p.returncode == code, p.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["passed"] is (code == 0) and result["metrics"]["quality.perplexity"] > 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert p.stdout.count("audit launch on") == 1 and "audit: error" not in p.stderr, p.stdout + p.stderr[-3000:]
