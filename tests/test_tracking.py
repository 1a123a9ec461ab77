"""Experiment tracking against a real MLflow server and real TensorBoard event files (issue 22).

Every check reads back what was logged (``MlflowClient``, TensorBoard's ``EventAccumulator``) and compares
it with what the run wrote to disk (results.json, metrics.jsonl, the reports), value for value and byte
for byte. The server is started once per session (tests/mlflow_server.py).
"""

from __future__ import annotations

import builtins
import json
import math
import sys
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'audit[tracking]')")
from mlflow.tracking import MlflowClient  # noqa: E402

from audit.cli import main  # noqa: E402
from audit.tracking import MlflowRun, log_harden, sanitize_key  # noqa: E402
from audit.tracking.store import metric_names  # noqa: E402

from .conftest import write_robust_tiny, write_suite  # noqa: E402
from .mlflow_server import free_port, mlflow_server  # noqa: E402,F401  (the fixture)

sys.path.insert(0, str(Path(__file__).parent))
from served_fake import FakeServer, write_served_suite  # noqa: E402

SUITE = """
name: tracked
model: builtin:micro
seed: 1
data: {path: data.jsonl, split: test}
generation: {max_new_tokens: 8, batch_size: 4}
tracking:
  mlflow: true
  experiment: EXPERIMENT
  tags: {team: quality, nightly: true}
sections:
  quality: {}
  diversity: {}
gates:
  - quality.perplexity < 1e9
  - diversity.distinct_1 >= 0
  - diversity.distinct_1 > 2
"""


def _suite(tmp_path, experiment: str, body: str = SUITE) -> Path:
    return write_suite(tmp_path, body.replace("EXPERIMENT", experiment))


def _only_run(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _download(client: MlflowClient, run_id: str, name: str, dst: Path) -> bytes:
    return Path(client.download_artifacts(run_id, name, str(dst))).read_bytes()


# ---- audit run --------------------------------------------------------------------------------------
def test_audit_run_logs_params_metrics_gates_and_reports(mlflow_server, tmp_path, support_like, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the suite's `mlflow: true` would mean ./mlruns: --mlflow must override it
    suite = _suite(tmp_path, "audit-e2e")
    out = tmp_path / "out"
    rc = main(["run", str(suite), "--out", str(out), "-q", "--no-cache", "--mlflow", mlflow_server,
               "--mlflow-run-name", "nightly micro"])
    assert rc == 1   # the third gate fails: the exit code is the audit's, tracking changes nothing
    assert not (tmp_path / "mlruns").exists()
    doc = json.loads((out / "results.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "audit-e2e")   # the suite's experiment: the block's other fields still apply
    assert run.info.status == "FINISHED" and run.info.run_name == "nightly micro"

    # Every flat metric of results.json, value for value; NaN (null) ones skipped and listed.
    metrics = run.data.metrics
    flat = doc["metrics"]
    assert len(flat) >= 8
    finite = {k: v for k, v in flat.items() if v is not None}
    skipped = sorted(k for k, v in flat.items() if v is None)
    for k, v in finite.items():
        assert sanitize_key(k) == k   # these names are MLflow-safe as they are: logged unchanged
        assert metrics[k] == v, k
    assert run.data.tags.get("audit.skipped_metrics", "") == ",".join(skipped)
    # Gates: one 1/0 metric each (a second gate on a metric gets _2), and the verdict.
    assert metrics["gate.quality.perplexity"] == 1.0
    assert metrics["gate.diversity.distinct_1"] == 1.0 and metrics["gate.diversity.distinct_1_2"] == 0.0
    assert metrics["gates.passed"] == 0.0 and run.data.tags["audit.passed"] == "false"
    assert run.data.tags["gate.diversity.distinct_1_2"].startswith("diversity.distinct_1 > 2: FAIL")
    assert set(metrics) == set(finite) | {"gate.quality.perplexity", "gate.diversity.distinct_1",
                                          "gate.diversity.distinct_1_2", "gates.passed"}
    # Each metric once, at step 0.
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "quality.perplexity")] == \
        [(0, finite["quality.perplexity"])]

    # Params: what was audited and how.
    params = run.data.params
    assert params["suite.name"] == "tracked" and params["suite.path"] == str(suite)
    assert params["suite.fingerprint"] == doc["suite"]["fingerprint"]
    assert params["model.fingerprint"] == doc["model"]["fingerprint"] and params["model.dtype"] == "float32"
    assert params["model.path"] == doc["model"]["path"]
    assert params["generation.max_new_tokens"] == "8" and params["generation.batch_size"] == "4"
    assert params["generation.temperature"] == str(doc["generation"]["temperature"])
    assert params["seed"] == "1" and params["data.records"] == "6"
    assert run.data.tags["team"] == "quality" and run.data.tags["nightly"] == "True"

    # The reports, byte for byte.
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.html", "junit.xml", "samples.jsonl"} <= names
    for name in ("results.json", "report.html", "junit.xml"):
        assert _download(client, run.info.run_id, name, tmp_path / "dl") == (out / name).read_bytes(), name


def test_metric_names_are_sanitised_without_clashes():
    assert sanitize_key("bias.gap[gender=female]") == "bias.gap_gender_female_"
    assert sanitize_key("../x") == "_./x" and sanitize_key("/abs//x") == "abs/_x"
    assert sanitize_key("é" * 300) == "_" * 250
    names = metric_names(["q.a(b)", "q.a[b]", "q.a_b_", "ok.name"])
    assert names == {"q.a(b)": "q.a_b_", "q.a[b]": "q.a_b__2", "q.a_b_": "q.a_b__3", "ok.name": "ok.name"}


def test_a_directory_as_uri_is_a_local_sqlite_store(tmp_path, support_like):
    suite = _suite(tmp_path, "local-dir", SUITE.replace("  - diversity.distinct_1 > 2\n", ""))
    store = tmp_path / "track"
    assert main(["run", str(suite), "--out", str(tmp_path / "o"), "-q", "--no-cache", "--mlflow", str(store)]) == 0
    assert (store / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    run = _only_run(client, "local-dir")
    assert run.data.metrics["gates.passed"] == 1.0
    # The artifacts went beside the database, not into the working directory's ./mlruns.
    assert run.info.artifact_uri.startswith((store / "artifacts").as_uri())
    assert (Path(run.info.artifact_uri.removeprefix("file://")) / "results.json").read_bytes() == \
        (tmp_path / "o" / "results.json").read_bytes()


# ---- errors ---------------------------------------------------------------------------------------
@pytest.fixture
def no_mlflow(monkeypatch):
    """``import mlflow`` fails as it does where it is not installed."""
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    for mod in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake)


def _never_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was loaded although tracking could not work")

    monkeypatch.setattr("audit.runner.load_model", boom)
    monkeypatch.setattr("audit.finetune.run.load_language_model", boom)


def test_missing_mlflow_is_one_line_before_any_model_loads(tmp_path, support_like, capsys, monkeypatch, no_mlflow):
    _never_load(monkeypatch)
    suite = _suite(tmp_path, "x")
    assert main(["run", str(suite), "--out", str(tmp_path / "o"), "-q", "--mlflow", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MLflow is not installed" in err and "pip install 'audit[tracking]'" in err
    assert not (tmp_path / "o" / "results.json").exists()
    # finetune --report-to mlflow: the same line, before the model loads.
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"prompt": "a", "reference": "b"}) + "\n")
    assert main(["finetune", "--data", str(data), "--out-dir", str(tmp_path / "ft"), "--report-to", "mlflow", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'audit[tracking]'" in err


def test_missing_tensorboard_is_an_error_only_when_asked_for(tmp_path, micro_path, monkeypatch, capsys):
    from audit.finetune.run import finetune

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails, as without the package
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "reference": f" a{i}"}) + "\n" for i in range(8)))
    # The old default (tensorboard: true) means "when installed": the run goes on without it.
    r = finetune({"model": str(micro_path), "data": str(data), "max_steps": 1, "out_dir": str(tmp_path / "a"),
                  "progress": False, "val_fraction": 0})
    assert r.steps == 1 and not (tmp_path / "a" / "tensorboard").exists()
    _never_load(monkeypatch)
    assert main(["finetune", "--data", str(data), "--out-dir", str(tmp_path / "b"), "--report-to", "tensorboard", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "TensorBoard is not installed" in err and "pip install 'audit[tracking]'" in err


def test_unreachable_server_is_one_line_naming_the_uri(tmp_path, support_like, capsys, monkeypatch):
    _never_load(monkeypatch)
    uri = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    t = time.perf_counter()
    assert main(["run", str(_suite(tmp_path, "x")), "--out", str(tmp_path / "o"), "-q", "--mlflow", uri]) == 2
    assert time.perf_counter() - t < 30   # not MLflow's minutes of retries
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"MLflow tracking server {uri} is unreachable" in err
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"prompt": "a", "reference": "b"}) + "\n")
    assert main(["finetune", "--data", str(data), "--out-dir", str(tmp_path / "ft"), "--mlflow-uri", uri, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and uri in err and "unreachable" in err


def test_a_failure_logging_after_the_audit_keeps_the_reports_and_exits_2(mlflow_server, tmp_path, support_like, capsys,
                                                                        monkeypatch):
    from audit.tracking import TrackingError

    def refuse(self, paths, artifact_path=None):
        raise TrackingError(f"MLflow at {self.uri}: upload results.json: the store refused it")

    monkeypatch.setattr(MlflowRun, "log_artifacts", refuse)
    suite = _suite(tmp_path, "fails-late", SUITE.replace("  - diversity.distinct_1 > 2\n", ""))
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "-q", "--no-cache", "--mlflow", mlflow_server]) == 2
    captured = capsys.readouterr()
    for name in ("results.json", "samples.jsonl", "report.html", "junit.xml"):
        assert (out / name).is_file(), name   # written before anything was logged
    assert "PASS" in captured.out and f"results: {out / 'results.json'}" in captured.out   # the summary is shown
    err = captured.err.strip()
    assert err.count("\n") == 0 and "the store refused it" in err and f"results are in {out}" in err
    assert "gates passed" in err
    run = _only_run(MlflowClient(tracking_uri=mlflow_server), "fails-late")
    assert run.info.status == "FAILED"


def test_config_errors_name_the_field(tmp_path, support_like, capsys):
    from audit.config import ConfigError
    from audit.finetune.config import load_finetune_config
    from audit.suite import load_suite

    with pytest.raises(ConfigError, match="report_to: unknown tracker 'wandb'"):
        load_finetune_config({"data": "x", "report_to": ["wandb"]})
    with pytest.raises(ConfigError, match="tensorboard is false"):
        load_finetune_config({"data": "x", "report_to": ["tensorboard"], "tensorboard": False})
    with pytest.raises(ConfigError, match="report_to does not name mlflow"):
        load_finetune_config({"data": "x", "report_to": ["tensorboard"], "mlflow_uri": "http://h:1"})
    # Old configs keep their meaning: tensorboard true/false, no MLflow unless asked.
    assert load_finetune_config({"data": "x"}).trackers() == {"tensorboard"}
    assert load_finetune_config({"data": "x", "tensorboard": False}).trackers() == set()
    assert load_finetune_config({"data": "x", "mlflow_uri": "http://h:1"}).trackers() == {"tensorboard", "mlflow"}
    bad = _suite(tmp_path, "x", SUITE.replace("experiment: EXPERIMENT", "experimnt: x"))
    with pytest.raises(ConfigError, match=r"tracking: unknown field 'experimnt' \(did you mean 'experiment'\?\)"):
        load_suite(bad)
    # CLI over suite: a URI replaces the block's, `--mlflow` alone keeps it; experiment/run name replace.
    from audit.tracking import TrackingSettings

    block = TrackingSettings(mlflow="http://h:5000", experiment="e", tags={"a": 1})
    assert block.merged({"mlflow": True, "experiment": None}).mlflow == "http://h:5000"
    assert block.merged({"mlflow": "sqlite:///x.db", "run_name": "r"}).mlflow == "sqlite:///x.db"
    assert block.merged({"experiment": "f", "tags": {"b": 2}}) == TrackingSettings(mlflow="http://h:5000", experiment="f",
                                                                                 tags={"a": 1, "b": 2})
    # The tracking block does not change what is measured: the suite's fingerprint ignores it.
    a = load_suite(_suite(tmp_path, "one"))
    b = load_suite(write_suite(tmp_path, SUITE.replace("EXPERIMENT", "two").replace("team: quality", "team: other"), "b.yaml"))
    assert a.fingerprint() == b.fingerprint() and a.tracking.experiment == "one"


# ---- fine-tuning curves -----------------------------------------------------------------------------
def test_finetune_curves_in_mlflow_and_tensorboard_equal_metrics_jsonl(mlflow_server, micro_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    words = ["password", "order", "refund", "invoice", "account", "delivery"]
    rows = [{"prompt": f"Customer: where is my {words[i % 6]} number {i}?\nAgent:",
             "reference": f" Your {words[i % 6]} is on its way" + " today" * (i % 3) + ".",
             "split": "test" if i % 5 == 0 else "train"} for i in range(30)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ft"
    # Early stopping (min_delta larger than any improvement: patience runs out at step 6), a loss of two parts.
    rc = main(["finetune", "--model", str(micro_path), "--data", str(data), "--train-split", "train", "--val-split", "test",
               "--batch-size", "4", "--lr", "2e-3", "--max-steps", "50", "--eval-every", "2", "--patience", "2",
               "--min-delta", "100", "--log-every", "1", "--warmup-steps", "2", "--out-dir", str(out), "--seed", "3",
               "--set", "losses={ce: 1.0, unlikelihood: 0.5}", "--report-to", "mlflow,tensorboard",
               "--mlflow-uri", mlflow_server, "--mlflow-experiment", "ft-curves", "-q"])
    assert rc == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6] and [r["step"] for r in evals] == [2, 4, 6]
    assert len({r["lr"] for r in train}) > 2   # warm-up then decay: a curve, not a constant

    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "ft-curves")
    assert run.info.status == "FINISHED" and run.info.run_name == "ft"
    keys = ["loss", "loss.ce", "loss.unlikelihood", "lr", "grad_norm", "tokens", "epoch", "tokens_per_s"]
    for key in keys:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["step"], r[key]) for r in train], key
    for key in ("val_loss", "val_ppl", "best_val_loss"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["step"], r[key]) for r in evals], key
    assert run.data.metrics["early_stopping"] == 1.0 and run.data.metrics["steps"] == 6.0
    assert run.data.tags["stopped"] == "early_stopping"
    assert run.data.params["lr"] == "0.002" and run.data.params["patience"] == "2"
    assert json.loads(run.data.params["losses"]) == {"ce": 1.0, "unlikelihood": 0.5}

    # TensorBoard: the same curves under the same names (stored as float32).
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert set(keys) | {"val_loss", "val_ppl", "best_val_loss"} <= set(acc.Tags()["scalars"])
    for key in keys:
        events = acc.Scalars(key)
        assert [e.step for e in events] == [r["step"] for r in train], key
        for e, r in zip(events, train):
            assert e.value == pytest.approx(r[key], rel=1e-6, abs=1e-12), (key, e.step)
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("val_loss")] == [(r["step"], round(r["val_loss"], 4)) for r in evals]


def test_a_logging_failure_during_training_keeps_the_model_and_exits_2(mlflow_server, micro_path, tmp_path, monkeypatch,
                                                                       capsys):
    from audit.tracking import TrackingError

    def refuse(self):
        raise TrackingError(f"MLflow at {self.uri}: log metrics: the server went away")

    monkeypatch.setattr(MlflowRun, "wait", refuse)
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "reference": f" a{i}"}) + "\n" for i in range(8)))
    out = tmp_path / "ft"
    rc = main(["finetune", "--model", str(micro_path), "--data", str(data), "--max-steps", "3", "--val-fraction", "0",
               "--out-dir", str(out), "--report-to", "mlflow", "--mlflow-uri", mlflow_server,
               "--mlflow-experiment", "ft-fails", "-q"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the server went away" in err and "the model and metrics.jsonl are saved" in err
    assert (out / "model" / "config.json").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert _only_run(MlflowClient(tracking_uri=mlflow_server), "ft-fails").info.status == "FAILED"


def test_only_the_main_process_makes_trackers(tmp_path):
    from audit.finetune.config import load_finetune_config
    from audit.tracking import TrainingTracking

    cfg = load_finetune_config({"data": "x", "report_to": ["mlflow", "tensorboard"], "mlflow_uri": "http://127.0.0.1:9",
                                "out_dir": str(tmp_path / "o")})
    t = TrainingTracking.open(cfg, main=False)   # rank 1..N: no server contacted, no event file
    assert not t.active
    t.log({"step": 1, "loss": 1.0})
    t.close(stopped="max_steps", steps=1)
    assert not (tmp_path / "o").exists()


def test_under_accelerate_only_rank_0_logs(mlflow_server, micro_path, tmp_path):
    # Two gloo processes train data-parallel: one MLflow run, one TensorBoard event file, rank 0's records.
    import os
    import shutil
    import subprocess

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    rows = [{"prompt": f"Customer: where is my order number {i}?\nAgent:", "reference": " On its way.",
             "split": "test" if i % 5 == 0 else "train"} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ft.yaml").write_text(
        f"model: {micro_path}\ndata: d.jsonl\ntrain_split: train\nval_split: test\nbatch_size: 4\nmax_steps: 4\n"
        f"eval_every: 2\nlog_every: 1\nlr: 0.002\nout_dir: out\nprogress: false\nreport_to: [mlflow, tensorboard]\n"
        f"mlflow_uri: {mlflow_server}\nmlflow_experiment: ft-ranks\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    p = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "audit", "finetune", "ft.yaml", "-q"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "fingerprint-rank1.txt").is_file()   # both ranks really trained
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "ft-ranks")   # one run, not one per process
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert history == [(r["step"], r["loss"]) for r in records]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]


# ---- harden ------------------------------------------------------------------------------------------
def test_log_harden_logs_both_audits(mlflow_server, tmp_path, support_like):
    from audit.runner import run_suite

    body = SUITE.replace("  - diversity.distinct_1 > 2\n", "")
    before = run_suite(_suite(tmp_path, "unused", body), out_dir=tmp_path / "before", progress=False, use_cache=False,
                       tracking=False)
    other = write_suite(tmp_path, body.replace("split: test", "split: train"), "after.yaml")
    after = run_suite(other, out_dir=tmp_path / "after", progress=False, use_cache=False, tracking=False)
    differ = [k for k, v in before.metrics.items() if v == v and after.metrics.get(k) == after.metrics.get(k)
              and v != after.metrics[k]]
    assert differ   # other prompts: other numbers, so a before/after mix-up would show
    run = MlflowRun(mlflow_server, experiment="harden-log", run_name="h")
    log_harden(run, before, after, artifacts=[tmp_path / "after" / "results.json"],
               summary={"steps": 12, "training_pairs": 30, "best_val_loss": None})
    run.finish()
    got = MlflowClient(tracking_uri=mlflow_server).get_run(run.run_id).data
    for side, res in (("before", before), ("after", after)):
        for k, v in res.metrics.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                assert f"{side}.{k}" not in got.metrics and f"{side}.{k}" in got.tags["audit.skipped_metrics"]
            else:
                assert got.metrics[f"{side}.{k}"] == v, (side, k)
        assert got.metrics[f"{side}.gates.passed"] == 1.0
        assert got.metrics[f"{side}.gate.quality.perplexity"] == 1.0
    assert got.metrics["harden.steps"] == 12 and "harden.best_val_loss" not in got.metrics
    assert got.params["before.model.fingerprint"] == before.model["fingerprint"]
    assert got.params["before.seed"] == "1"


def test_harden_cli_logs_curves_and_both_audits_in_one_run(mlflow_server, tmp_path, sensitive_micro_lm):
    # A prompt-sensitive micro model: attacks succeed, the model is trained 4 steps and re-audited.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tmp_path / "model"
    sensitive_micro_lm.model.save_pretrained(model)
    sensitive_micro_lm.tokenizer.save_pretrained(model)
    write_robust_tiny(tmp_path)
    out = tmp_path / "out"
    rc = main(["harden", "--model", str(model), "--suite", str(tmp_path / "suite.yaml"), "--out", str(out), "--max-steps", "4",
               "--lr", "3e-3", "--target", "target", "--log-every", "1", "--report-to", "mlflow,tensorboard",
               "--mlflow-uri", mlflow_server, "-q"])
    summary = json.loads((out / "harden.json").read_text())
    assert rc == (0 if summary["passed_after"] else 1) and summary["steps"] == 4
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "harden-robust-tiny")   # one run: not one per audit, not one for the training
    assert run.info.status == "FINISHED" and run.data.tags["stopped"] == "max_steps"
    records = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("loss", "loss.ce", "loss.consistency", "lr"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["step"], r[key]) for r in records], key
    for side in ("before", "after"):
        doc = json.loads((out / side / "results.json").read_text())
        for k, v in doc["metrics"].items():
            if v is not None:
                assert run.data.metrics[f"{side}.{k}"] == v, (side, k)
        assert run.data.metrics[f"{side}.gates.passed"] == float(doc["passed"])
    assert run.data.metrics["harden.steps"] == 4 and run.data.params["train.lr"] == "0.003"
    assert run.data.params["before.model.fingerprint"] != run.data.params["after.model.fingerprint"]
    acc = EventAccumulator(str(out / "train" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert _download(client, run.info.run_id, "after/results.json", tmp_path / "dl") == (out / "after" / "results.json").read_bytes()


def test_harden_logs_before_and_after_in_one_run(mlflow_server, tmp_path, micro_lm):
    # The random micro model answers every prompt alike: no attack succeeds, nothing is trained (fast); the
    # run still holds both audits, from harden's own tracking path.
    from audit.harden import harden

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"prompt": f"Customer: reset password {i}?\nAgent:"}) + "\n"
                                              for i in range(2)))
    (tmp_path / "s.yaml").write_text("name: s\ndata: d.jsonl\ngeneration:\n  max_new_tokens: 3\nsections:\n  robustness:\n"
                                     "    examples: 2\n    query_budget: 5\n    perturbations: []\n")
    r = harden(micro_lm, str(tmp_path / "s.yaml"), tmp_path / "o", progress=False, use_cache=False,
               config={"report_to": ["mlflow"], "mlflow_uri": mlflow_server})
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "harden-s")
    assert run.info.status == "FINISHED" and run.data.tags["audit.kind"] == "harden"
    m = run.data.metrics
    assert m["before.robustness.attack_success_rate"] == r.before.metrics["robustness.attack_success_rate"] == 0
    assert m["after.robustness.attack_success_rate"] == r.after.metrics["robustness.attack_success_rate"]
    assert m["harden.adversarial_examples"] == 0 and m["harden.steps"] == 0
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"harden.json", "comparison.html", "before"} <= names
    before_files = {a.path for a in client.list_artifacts(run.info.run_id, "before")}
    assert {"before/results.json", "before/report.html"} <= before_files
    assert _download(client, run.info.run_id, "before/results.json", tmp_path / "dl") == \
        (tmp_path / "o" / "before" / "results.json").read_bytes()
    assert _download(client, run.info.run_id, "harden.json", tmp_path / "dl") == (tmp_path / "o" / "harden.json").read_bytes()


# ---- secrets ------------------------------------------------------------------------------------------
def test_a_served_models_api_key_is_never_logged(mlflow_server, tmp_path, monkeypatch, capsys):
    key = "sk-audit-track-5f4e3d2c1b0a99"
    monkeypatch.setenv("AUDIT_TRACK_KEY", key)
    with FakeServer(require_key=key) as srv:
        suite = write_served_suite(tmp_path, srv.url, name="served-tracked", extra_model="  api_key_env: AUDIT_TRACK_KEY\n")
        # A careless tag that holds the key (upper-cased, dashes as underscores): it must not reach the server either.
        text = suite.read_text() + f"tracking:\n  experiment: served-key\n  tags:\n    note: 'debug {key.upper().replace('-', '_')}'\n"
        suite.write_text(text)
        rc = main(["run", str(suite), "--out", str(tmp_path / "o"), "-q", "--no-cache", "--mlflow", mlflow_server,
                   "--mlflow-run-name", f"run {key}"])
        assert rc == 0, capsys.readouterr().err
        assert srv.requests and all(r["headers"].get("Authorization") == f"Bearer {key}" for r in srv.requests)
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "served-key")
    assert run.data.params["model.base_url"] == srv.url   # the served model's identity is there ...
    assert run.data.tags["note"] == "debug ***" and run.info.run_name == "run ***"   # ... its key is not
    blob = json.dumps([run.data.params, run.data.tags, run.info.run_name, list(run.data.metrics)]).lower()
    compact = "".join(c for c in blob if c.isalnum())
    assert "".join(c for c in key.lower() if c.isalnum()) not in compact
    assert "5f4e3d2c1b0a99" not in compact
