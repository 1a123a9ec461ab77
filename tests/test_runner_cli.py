"""End to end: suites run through the runner and the CLI; contracts on exit codes, caching, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.cli import main
from audit.suite import load_suite
from audit.results import AuditResult
from audit.runner import run_suite

from .conftest import write_suite

SUITE = """
name: t
model: builtin:micro
seed: 1
data: {path: data.jsonl, split: test}
generation: {max_new_tokens: 8, batch_size: 4}
sections:
  quality: {}
  diversity: {}
gates:
  - quality.perplexity < 1e9
  - diversity.distinct_1 >= 0
"""


@pytest.fixture
def suite_file(tmp_path, support_like):
    return write_suite(tmp_path, SUITE)


def test_run_writes_results_and_is_deterministic(suite_file, tmp_path):
    a = run_suite(suite_file, out_dir=tmp_path / "a", progress=False, use_cache=False)
    b = run_suite(suite_file, out_dir=tmp_path / "b", progress=False, use_cache=False)
    assert a.metrics == b.metrics
    assert set(a.metrics) >= {"quality.perplexity", "quality.bleu", "quality.chrf", "quality.rouge_l",
                              "diversity.distinct_1", "diversity.distinct_2", "diversity.self_bleu", "diversity.rep_4"}
    assert a.passed and all(g.passed for g in a.gates)
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    for key in ("schema_version", "suite", "model", "generation", "seed", "versions", "timings", "metrics", "gates", "passed"):
        assert key in doc
    assert doc["model"]["fingerprint"] and doc["model"]["dtype"] == "float32"
    # Plain numbers; NaN (e.g. rep-4 of generations shorter than 4 words) is written as JSON null.
    assert all(v is None or isinstance(v, (int, float)) for v in doc["metrics"].values())
    assert len((tmp_path / "a" / "samples.jsonl").read_text().splitlines()) == 6  # the 6 test-split records
    loaded = AuditResult.load(tmp_path / "a" / "results.json")
    assert loaded.metrics == a.metrics and len(loaded.samples) == 6
    assert loaded.metric_info("diversity.self_bleu").higher_is_better is False
    frame = loaded.to_frame()
    assert len(frame) == 6 and "quality.chrf" in frame.columns


def test_cache_reused_across_runs_and_sections(suite_file, tmp_path, caplog):
    caplog.set_level("INFO", logger="audit")
    run_suite(suite_file, progress=False, cache_dir=tmp_path / "c", only_sections=["quality"])
    caplog.clear()
    run_suite(suite_file, progress=False, cache_dir=tmp_path / "c", only_sections=["diversity"])
    assert "6 of 6 generations reused from cache, 0 generated" in caplog.text


def test_killed_run_resumes_from_cache(tmp_path):
    """SIGKILL a real `audit run` midway; the rerun reuses the generations finished before the kill."""
    rows = [{"id": f"p{i}", "prompt": f"Customer: question number {i} about printing?\nAgent:", "reference": " ok"}
            for i in range(40)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp_path, SUITE.replace("data: {path: data.jsonl, split: test}", "data: data.jsonl")
                        .replace("max_new_tokens: 8, batch_size: 4", "max_new_tokens: 24, batch_size: 2"))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "audit", "run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    files = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        files = list(cache.glob("gen-*.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "results.json").exists(), "killed before the end: no results.json"
    done = len(files[0].read_text().splitlines())
    assert 6 <= done < 40
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    reused = int(rerun.stderr.split(" of 40 generations reused")[0].rsplit("generation: ", 1)[1])
    assert reused >= done - 2  # at most the batch in flight was lost
    assert (tmp_path / "out" / "results.json").exists()


def test_cli_exit_codes(suite_file, tmp_path, capsys):
    assert main(["run", str(suite_file), "--out", str(tmp_path / "ok"), "-q", "--no-cache"]) == 0
    failing = write_suite(tmp_path, SUITE.replace("diversity.distinct_1 >= 0", "diversity.distinct_1 > 2"), "fail.yaml")
    assert main(["run", str(failing), "--out", str(tmp_path / "fail"), "-q", "--no-cache"]) == 1
    assert (tmp_path / "fail" / "results.json").exists()  # reports are written before exit 1
    out = capsys.readouterr().out
    assert "FAIL  diversity.distinct_1 > 2" in out


@pytest.mark.parametrize("body, fragment", [
    ("name: [unclosed", "malformed YAML"),
    (SUITE.replace("quality: {}", "qualty: {}"), "did you mean 'quality'"),
    (SUITE.replace("quality.perplexity < 1e9", "quality.perplexty < 1e9"), "did you mean 'perplexity'"),
    (SUITE.replace("quality.perplexity < 1e9", "quality.perplexity <> 3"), "cannot parse gate"),
    (SUITE.replace("max_new_tokens: 8", "max_new_tokens: 0"), "max_new_tokens must be >= 1"),
    (SUITE.replace("max_new_tokens: 8", "max_new_token: 8"), "did you mean 'max_new_tokens'"),
    (SUITE.replace("path: data.jsonl", "path: missing.jsonl"), "data file not found"),
    (SUITE.replace("split: test", "split: nothing"), "no records with split='nothing'"),
    (SUITE.replace("model: builtin:micro", "model: /nonexistent/model"), "does not exist"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, support_like, capsys, body, fragment):
    suite = write_suite(tmp_path, body)
    code = main(["run", str(suite), "--out", str(tmp_path / "out"), "-q", "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert fragment in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_jsonl_line_names_the_line(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text('{"prompt": "a", "split": "test"}\n{"prompt": "b", split}\n')
    suite = write_suite(tmp_path, SUITE)
    assert main(["run", str(suite), "-q", "--no-cache", "--out", str(tmp_path / "o")]) == 2
    assert "data.jsonl:2: invalid JSON" in capsys.readouterr().err


def test_missing_suite_and_unknown_section_flag(tmp_path, suite_file, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "suite file not found" in capsys.readouterr().err
    assert main(["run", str(suite_file), "--section", "diversty", "-q"]) == 2
    assert "did you mean 'diversity'" in capsys.readouterr().err


def test_validate_and_ls(suite_file, capsys):
    assert main(["validate", str(suite_file)]) == 0
    assert "2 sections" in capsys.readouterr().out
    assert main(["validate", "demo"]) == 0
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "diversity.self_bleu ↓" in out and "quality.perplexity ↓" in out and ".json" in out


def test_bundled_suites_validate():
    from audit.finetune.config import load_finetune_config

    bundled = Path(__file__).parents[1] / "audit" / "suites"
    paths = sorted(bundled.glob("*.yaml"))
    for path in paths:   # finetune configs live beside the suites, named finetune-*.yaml
        load_finetune_config(path) if path.name.startswith("finetune-") else load_suite(path)
    assert {"finetune-demo.yaml", "finetune-smollm2.yaml", "harden-smollm2.yaml", "smollm2.yaml"} <= {p.name for p in paths}


def test_quality_runs_a_local_evaluate_module(tmp_path, support_like):
    """A user's `evaluate` metric module, named by local path, gets predictions + references; numbers land in metrics."""
    module = tmp_path / "len_match"
    module.mkdir()
    (module / "len_match.py").write_text(
        "import datasets\nimport evaluate\n"
        "class LenMatch(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        return evaluate.MetricInfo(description='', citation='', inputs_description='', features=datasets.Features(\n"
        "            {'predictions': datasets.Value('string'), 'references': datasets.Value('string')}))\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'n': len(predictions), 'ref_chars': sum(len(r) for r in references), 'label': 'not a number'}\n")
    suite = write_suite(tmp_path, SUITE.replace("quality: {}", "quality: {evaluate_modules: [len_match]}"))
    result = run_suite(suite, progress=False, use_cache=False)
    assert result.metrics["quality.len_match_n"] == 6
    assert result.metrics["quality.len_match_ref_chars"] == 6 * len(" Open settings and choose reset password.")
    assert "quality.len_match_label" not in result.metrics
    bad = write_suite(tmp_path, SUITE.replace("quality: {}", "quality: {evaluate_modules: [nowhere/metric]}"), "bad.yaml")
    assert "does not exist" in run_suite(bad, progress=False, use_cache=False).sections["quality"].error


def test_run_suite_api_respects_model_string_and_leaves_config_untouched(tmp_path, support_like, micro_path):
    suite = load_suite(write_suite(tmp_path, SUITE.replace("model: builtin:micro", "model: /nonexistent/model")))
    gates_before = list(suite.gates)
    result = run_suite(suite, model=str(micro_path), progress=False, use_cache=False, only_sections=["quality"], seed=7)
    assert result.model["spec"] == str(micro_path) and result.seed == 7
    assert set(result.sections) == {"quality"}
    assert suite.model.path == "/nonexistent/model" and suite.seed == 1 and suite.gates == gates_before


def test_debug_shows_the_traceback_and_still_exits_2(tmp_path, capsys):
    # --debug adds the traceback; the exit code stays 2 (an escaping exception made Python exit 1,
    # the "a gate failed" code).
    suite = write_suite(tmp_path, "name: [unclosed")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-cache", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("audit: error: ") and "malformed YAML" in err.strip().splitlines()[-1]
    proc = subprocess.run([sys.executable, "-m", "audit", "run", str(suite), "--out", str(tmp_path / "out"), "--no-cache",
                           "--debug"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr and "malformed YAML" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [42, None, ["a", "list"], {"an": "object"}])
def test_cache_values_that_are_not_text_are_regenerated_with_a_warning(suite_file, tmp_path, caplog, value):
    # A cache line holding a number, null or a list was handed to the evaluators as a generation and
    # failed later with a TypeError; it is a missing entry: regenerated, with a warning.
    fresh = run_suite(suite_file, progress=False, use_cache=False)
    run_suite(suite_file, progress=False, cache_dir=tmp_path / "c")
    [path] = (tmp_path / "c").glob("gen-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["v"] = value
    lines[3]["v"] = value
    path.write_text("".join(json.dumps(obj) + "\n" for obj in lines))
    caplog.set_level("INFO", logger="audit")
    again = run_suite(suite_file, progress=False, cache_dir=tmp_path / "c")
    assert [s.generations for s in again.samples] == [s.generations for s in fresh.samples]
    assert again.metrics == fresh.metrics
    assert "2 cached values are not text (number, null or list); regenerating them" in caplog.text
    assert "4 of 6 generations reused from cache, 2 generated" in caplog.text
