"""benchmarks/gpu_check.py runs on the CPU with its tiny config and reports every loss and generation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.main(["--tiny", "--steps", "2", "--json", str(tmp_path / "r.json")])
    assert set(report["losses"]) == set(mod.LOSSES)
    for name, r in report["losses"].items():
        assert r["tokens_per_s"] > 0 and r["final_loss"] == r["final_loss"], name  # finite, not NaN
        assert r["precision"] == "no"  # no CUDA here: fp32
    assert report["losses"]["ce"]["ratio_vs_ce"] == 1.0
    assert report["generation"]["batched_s"] > 0 and report["generation"]["prompts"] == 8
    assert json.loads((tmp_path / "r.json").read_text())["parameters"] == report["parameters"]
