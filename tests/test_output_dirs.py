"""Output directories: the input model is never removed, only audit's own directories are cleared,
and one run at a time writes into a directory (issue 23, defects 1 and 4)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audit.io.output_dirs import LOCK_FILE, OWNED_MARKER, output_lock
from audit.io.output_paths import OutputPathError

ROWS = [{"id": f"r{i}", "prompt": f"Customer: where is my order number {i}?\nAgent:",
         "reference": " It is on its way.", "split": "test" if i % 4 == 0 else "train"} for i in range(12)]
SUITE = """
name: t
model: builtin:micro
seed: 1
data: {path: data.jsonl, split: test}
generation: {max_new_tokens: 4, batch_size: 4}
sections:
  diversity: {}
"""
ROBUST_SUITE = SUITE.replace("  diversity: {}\n", "  robustness:\n    recipes: [deepwordbug]\n    examples: 2\n"
                                                    "    query_budget: 5\n    perturbations: []\n")


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path, micro_path) -> Path:
    """tmp_path with data.jsonl, a finetune config, suites, and a copy of the micro model in X/model."""
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "ft.yaml").write_text("data: data.jsonl\ntrain_split: train\nval_split: test\nbatch_size: 4\n"
                                      "max_steps: 1\nprogress: false\n")
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "robust.yaml").write_text(ROBUST_SUITE)
    shutil.copytree(micro_path, tmp_path / "X" / "model")
    return tmp_path


def _one_line_refusal(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-2000:])
    err = p.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


# ---- defect 1: never delete the user's model -----------------------------------------------

def test_finetune_refuses_an_out_dir_holding_the_input_model(workdir):
    before = _tree_digest(workdir / "X" / "model")
    p = _cli("finetune", "ft.yaml", "--model", "X/model", "--out-dir", "X", "-q", cwd=workdir)
    _one_line_refusal(p, "out_dir X", "contains the input model's directory")
    assert _tree_digest(workdir / "X" / "model") == before
    # The same through a symlink to the model, and an out_dir inside the model's directory.
    os.symlink(workdir / "X" / "model", workdir / "link")
    p = _cli("finetune", "ft.yaml", "--model", "link", "--out-dir", "X/model/sub", "-q", cwd=workdir)
    _one_line_refusal(p, "lies inside the input model's directory")
    assert _tree_digest(workdir / "X" / "model") == before and not (workdir / "X" / "model" / "sub").exists()


def test_harden_refuses_an_out_dir_holding_the_input_model(workdir):
    (workdir / "X" / "train").mkdir()
    (workdir / "X" / "model").rename(workdir / "X" / "train" / "model")   # a hardened model re-hardened into its run
    before = _tree_digest(workdir / "X" / "train" / "model")
    p = _cli("harden", "--model", "X/train/model", "--suite", "robust.yaml", "--out", "X", "--max-steps", "1", "-q",
             cwd=workdir)
    _one_line_refusal(p, "contains the input model's directory")
    assert _tree_digest(workdir / "X" / "train" / "model") == before
    assert not (workdir / "X" / "before").exists()   # refused before the first audit


def test_finetune_never_removes_a_directory_it_did_not_create(workdir, micro_path):
    from audit.finetune.run import finetune

    # The user keeps something at OUT/model (not the input model): the final save would clear it.
    keep = workdir / "runs" / "model"
    keep.mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    cfg = {"model": str(micro_path), "data": str(workdir / "data.jsonl"), "max_steps": 1, "batch_size": 4,
           "progress": False, "val_fraction": 0.0, "out_dir": str(workdir / "runs")}
    with pytest.raises(OutputPathError, match=rf"audit did not create \(no {OWNED_MARKER} marker\)") as e:
        finetune(cfg)
    assert "\n" not in str(e.value)
    assert (keep / "notes.txt").read_text() == "mine" and not (workdir / "runs" / "checkpoints").exists()
    # Its own directories it replaces run after run.
    shutil.rmtree(keep)
    first = finetune(cfg)
    assert (first.model_dir / OWNED_MARKER).is_file()
    again = finetune(cfg)
    assert again.model_dir == first.model_dir and (again.model_dir / "model.safetensors").is_file()


# ---- defect 4: one run per output directory ----------------------------------------------

def test_a_second_run_into_a_locked_out_dir_is_refused(workdir):
    out = workdir / "o"
    with output_lock(out):
        p = _cli("run", "suite.yaml", "--out", "o", "--no-cache", "-q", cwd=workdir)
        _one_line_refusal(p, "another audit run", f"pid {os.getpid()}")
        assert not (out / "results.json").exists()
        p = _cli("finetune", "ft.yaml", "--model", "X/model", "--out-dir", "o", "-q", cwd=workdir)
        _one_line_refusal(p, "another audit run")
        p = _cli("harden", "--model", "X/model", "--suite", "robust.yaml", "--out", "o", "--max-steps", "1", "-q",
                 cwd=workdir)
        _one_line_refusal(p, "another audit run")
        assert not (out / "model").exists() and not (out / "before").exists()
    # In the library: the same refusal, before anything loads.
    from audit.runner import run_suite

    with output_lock(out):
        with pytest.raises(OutputPathError, match="another audit run"):
            run_suite(workdir / "suite.yaml", out_dir=out, progress=False, use_cache=False)


def test_a_killed_run_leaves_no_lock_behind(workdir):
    out = workdir / "o"
    # A process that takes the lock and is killed (no clean-up runs): the kernel releases it.
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom audit.io.output_dirs import output_lock\n"
                               "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputPathError, match=f"pid {holder.pid}"):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / LOCK_FILE).exists()   # the stale file stays, unlocked
    p = _cli("run", "suite.yaml", "--out", "o", "--no-cache", "-q", cwd=workdir)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "results.json").exists() and (out / "samples.jsonl").exists()

