"""Issue 12, security and correctness: each numbered defect reproduced as a hostile or careless user would.

Every test is named after its defect and fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import write_suite


class _RunsCode:
    """Pickles to a call of os.system: loading it with the full unpickler runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path, payload=lambda evil: evil) -> None:
    torch.save(payload(_RunsCode(marker)), path)


# ---- 1. no code runs from a file the package reads -------------------------------------------------------------

def test_defect1_detoxify_checkpoint_pickle_runs_no_code(tmp_path):
    from audit.scorers import ScorerError, get_scorer

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    _plant(ckpt, marker, lambda evil: {"config": evil, "state_dict": {}})
    with pytest.raises(ScorerError) as e:
        get_scorer("detoxify:original", checkpoint=str(ckpt))
    assert not marker.exists(), "loading the checkpoint ran the planted command"
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt) in msg and "could run code" in msg and "posix.system" in msg


def test_defect1_detoxify_config_is_read_as_data(tmp_path):
    """A checkpoint of plain data still may not steer detoxify to other transformers attributes or kwargs."""
    from audit.scorers import ScorerError, get_scorer
    from audit.scorers.testing import build_tiny_detoxify_checkpoint

    path, _, _ = build_tiny_detoxify_checkpoint(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["arch"]["args"]["model_name"] = "pipeline"
    torch.save(ckpt, tmp_path / "odd.ckpt")
    with pytest.raises(ScorerError, match=r"model_name / tokenizer_name pair of the released Detoxify checkpoints"):
        get_scorer("detoxify:original", checkpoint=str(tmp_path / "odd.ckpt"))


@pytest.fixture(scope="module")
def finetuned_checkpoint(tmp_path_factory, micro_path):
    """A real two-step fine-tuning run's checkpoint directory (optimizer, scheduler and RNG state files)."""
    from audit.finetune.run import finetune

    root = tmp_path_factory.mktemp("ft")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Customer: order {i}?\nAgent:", "reference": f" It ships {i}."}) + "\n"
                            for i in range(8)))
    cfg = {"model": str(micro_path), "data": str(data), "batch_size": 4, "lr": 1e-3, "max_steps": 2, "save_every": 2,
           "out_dir": str(root / "run"), "progress": False, "seed": 0}
    finetune(cfg)
    step = root / "run" / "checkpoints" / "step-000002"
    assert (step / "optimizer.pt").exists()
    return cfg, step


def test_defect1_resume_reads_rng_state_without_pickle(finetuned_checkpoint, tmp_path):
    """What this version writes resumes under weights_only (numpy's RNG state is stored as tensors)."""
    from audit.finetune.run import finetune

    cfg, step = finetuned_checkpoint
    copy = tmp_path / "ok"
    shutil.copytree(step, copy)
    for name in ("optimizer.pt", "scheduler.pt", "rng-rank0.pt"):
        torch.load(copy / name, weights_only=True)   # raises on anything but tensors and plain data
    r = finetune({**cfg, "max_steps": 3, "out_dir": str(tmp_path / "resumed"), "resume": str(copy)})
    assert r.steps == 3


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng-rank0.pt"])
def test_defect1_resume_checkpoint_pickle_runs_no_code(finetuned_checkpoint, tmp_path, name):
    from audit.finetune.checkpoint import CheckpointError
    from audit.finetune.run import finetune

    cfg, step = finetuned_checkpoint
    evil_dir = tmp_path / "step-000002"
    shutil.copytree(step, evil_dir)
    marker = tmp_path / "pwned"
    _plant(evil_dir / name, marker, lambda evil: {"state": evil})
    with pytest.raises(CheckpointError) as e:
        finetune({**cfg, "max_steps": 3, "out_dir": str(tmp_path / "out"), "resume": str(evil_dir)})
    assert not marker.exists(), f"resuming ran the command planted in {name}"
    assert "\n" not in str(e.value) and name in str(e.value) and "could run code" in str(e.value)


def test_defect1_no_full_unpickler_left_in_the_package():
    """Every torch.load goes through audit.io.tensor_files (weights_only=True); no pickle module use."""
    root = Path(__file__).resolve().parents[1] / "audit"
    offenders = []
    for py in root.rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        if py.name != "tensor_files.py" and ("torch.load(" in text or "weights_only=False" in text):
            offenders.append(str(py))
        if "import pickle" in text and py.name != "tensor_files.py":
            offenders.append(str(py))
    assert offenders == []


# ---- 2. the weights fingerprint covers every byte --------------------------------------------------------------

def _two_models_differing_in_a_middle_layer(root: Path, micro_path: Path) -> tuple[Path, Path]:
    """Two 13 MB GPT-2s (n_embd 256, 4 layers) equal except in layer 2: the issue's reproduction."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = json.loads((micro_path / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=256, n_layer=4, n_head=4, n_positions=128,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0))
    dirs = []
    for name in ("a", "b"):
        if name == "b":
            with torch.no_grad():
                model.transformer.h[2].mlp.c_fc.weight.mul_(-1.0)
        d = root / name
        model.save_pretrained(d, safe_serialization=True)
        for f in micro_path.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens")):
                shutil.copy(f, d / f.name)
        dirs.append(d)
    return dirs[0], dirs[1]


def test_defect2_models_differing_in_a_middle_layer_never_share_generations(tmp_path, micro_path, support_like):
    from audit.models.fingerprint import weights_fingerprint

    a, b = _two_models_differing_in_a_middle_layer(tmp_path, micro_path)
    size = (a / "model.safetensors").stat().st_size
    assert size == (b / "model.safetensors").stat().st_size and size > 4 << 20
    assert weights_fingerprint(a) != weights_fingerprint(b)

    from audit.runner import run_suite

    suite = write_suite(tmp_path, "name: t\nseed: 0\ndata: {path: data.jsonl, limit: 3}\n"
                                  "generation: {max_new_tokens: 6, batch_size: 3}\nsections: {diversity: {}}\n")
    run_suite(suite, model=str(a), progress=False, cache_dir=tmp_path / "cache")
    cached = run_suite(suite, model=str(b), out_dir=tmp_path / "out", progress=False, cache_dir=tmp_path / "cache")
    fresh = run_suite(suite, model=str(b), progress=False, use_cache=False)
    assert [s.generations for s in cached.samples] == [s.generations for s in fresh.samples]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    covers = doc["model"]["fingerprint_covers"]
    assert covers.startswith("sha256 of the full bytes") and "model.safetensors" in covers and "tokenizer.json" in covers


def test_defect2_file_digests_are_cached_by_path_size_and_times(tmp_path, monkeypatch):
    from audit.models import fingerprint as fpmod

    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"x" * 1000)
    (d / "config.json").write_text("{}")
    hashed = []
    real = fpmod.file_sha256
    monkeypatch.setattr(fpmod, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    first = fpmod.fingerprint_path(d)
    assert sorted(hashed) == ["config.json", "model.safetensors"]
    hashed.clear()
    assert fpmod.fingerprint_path(d) == first and hashed == []       # cached: nothing re-read
    st = (d / "model.safetensors").stat()
    (d / "model.safetensors").write_bytes(b"y" * 1000)               # same size ...
    os.utime(d / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))   # ... and mtime set back
    assert fpmod.fingerprint_path(d).digest != first.digest and hashed == ["model.safetensors"]


def test_defect2_docs_state_what_the_fingerprint_covers():
    from audit.models.fingerprint import STATEMENT

    docs = (Path(__file__).resolve().parents[1] / "docs" / "reports.md").read_text(encoding="utf-8")
    assert STATEMENT in docs


# ---- 3. YAML alias bombs ---------------------------------------------------------------------------------------

def _bomb(levels: int, width: int = 9) -> str:
    """A flow list ``[&a0 [lol], &a1 [*a0, *a0, ...], ...]``: each level aliases the one before
    ``width`` times, so ~600 bytes expand to ``width**levels`` nodes."""
    items = ["&a0 [lol]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


def _suite_with(tmp_path, bomb: str, where: str, name: str = "suite.yaml") -> Path:
    """A valid suite but for ``where`` (a field with BOMB in place of its value)."""
    body = "name: t\ndata: data.jsonl\nsections: {diversity: {}}\n"
    field = where.split(":")[0]
    if field in ("name", "description"):
        body = body.replace("name: t\n", "")
    return write_suite(tmp_path, body + where.replace("BOMB", bomb) + "\n", name=name)


@pytest.mark.parametrize("where", ["confidence: {level: BOMB}", "name: BOMB", "description: BOMB",
                                   "generation: {stop: BOMB}"])
def test_defect3_yaml_alias_bomb_is_refused_fast_with_a_short_line(tmp_path, support_like, capsys, where):
    import time

    from audit.cli import main

    suite = _suite_with(tmp_path, _bomb(9), where)
    assert suite.stat().st_size < 1000
    t = time.perf_counter()
    code = main(["validate", str(suite)])
    elapsed = time.perf_counter() - t
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 5
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400 and "alias bomb" in lines[0] and str(suite) in lines[0]


def test_defect3_small_alias_expansions_still_load_and_bad_values_are_excerpted(tmp_path, support_like, capsys):
    from audit.cli import main
    from audit.suite import load_suite

    ok = write_suite(tmp_path, "name: t\ndata: data.jsonl\nseed: &s 3\ngeneration: {max_new_tokens: *s}\n"
                               "sections: {diversity: {}}\n", name="ok.yaml")
    assert load_suite(ok).generation.max_new_tokens == 3     # aliases within budget still work
    # 3 levels of 9 (729 nodes) is within budget: the type error quotes only an excerpt of the value.
    medium = _suite_with(tmp_path, _bomb(3), "confidence: {level: BOMB}", name="medium.yaml")
    assert main(["validate", str(medium)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and len(line) < 400 and "confidence.level: expected float" in line


def test_defect3_recursive_alias_and_deep_nesting_are_one_line_errors(tmp_path, capsys):
    from audit.cli import main

    cases = {"rec.yaml": "name: &n [*n]\n", "deep.yaml": "name: " + "[" * 5000 + "]" * 5000 + "\n",
             "deep2.yaml": "name: " + "[" * 150 + "]" * 150 + "\n"}
    for name, body in cases.items():
        p = write_suite(tmp_path, body, name=name)
        assert main(["validate", str(p)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(p) in err and "Traceback" not in err, err


def test_defect3_memory_error_while_reporting_still_exits_2(capsys, monkeypatch):
    """Even an error whose message cannot be built ends as exit 2 with one line, never exit 1."""
    from audit import cli

    class Nasty(Exception):
        def __str__(self):
            raise MemoryError

    def boom(args):
        raise Nasty()

    monkeypatch.setattr(cli, "cmd_validate", boom)
    assert cli.main(["validate", "x"]) == 2
    assert capsys.readouterr().err.strip() == "audit: error: Nasty (rerun with --debug for the traceback)"


def test_defect3_finetune_config_alias_bomb_is_refused(tmp_path):
    from audit.config import ConfigError
    from audit.finetune.config import load_finetune_config

    p = tmp_path / "ft.yaml"
    p.write_text(f"data: x.jsonl\nlr: {_bomb(9)}\n")
    with pytest.raises(ConfigError, match="alias bomb"):
        load_finetune_config(str(p))


# ---- 4. outputs are checked before anything runs ----------------------------------------------------------------

@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if any model is loaded (the check must come first)."""
    from audit.models.local import LanguageModel

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the output paths were checked")

    monkeypatch.setattr(LanguageModel, "load", refuse)


def _outputs_cases(tmp_path):
    (tmp_path / "adir.html").mkdir()
    (tmp_path / "afile").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    cases = [(["-o", str(tmp_path / "x.pdf")], "unknown extension '.pdf'"),
             (["-o", str(tmp_path / "noext")], "no extension"),
             (["-o", str(tmp_path / "adir.html")], "it is a directory"),
             (["-o", "/proc/audit-report.html"], "cannot write report in /proc"),
             (["--out", str(tmp_path / "afile")], "is an existing file"),
             (["--out", str(tmp_path / "afile" / "sub")], "is not a directory")]
    if os.geteuid() != 0:   # root writes into a 0555 directory, so it is no error there
        cases.append((["-o", str(ro / "r.html")], "Permission denied"))
    return cases


def test_defect4_bad_output_paths_fail_before_the_model_loads(tmp_path, support_like, capsys, no_model_load):
    from audit.cli import main

    suite = write_suite(tmp_path, "name: t\ndata: data.jsonl\nsections: {diversity: {}}\n")
    for extra, fragment in _outputs_cases(tmp_path):
        out = tmp_path / "out"
        args = ["run", str(suite), "-m", "builtin:micro", "-q"] + (["--out", str(out)] if "--out" not in extra else []) + extra
        assert main(args) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)
        assert not (out / "results.json").exists()


def test_defect4_explain_finetune_and_harden_outputs_fail_first(tmp_path, support_like, no_model_load, monkeypatch):
    from audit.explain.files import explain_to_files
    from audit.harden import harden
    from audit.finetune.run import finetune
    from audit.io.output_paths import OutputPathError

    (tmp_path / "e.html").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="it is a directory"):
        explain_to_files("builtin:micro", "Hi", outputs=[str(tmp_path / "e.html")])
    with pytest.raises(OutputPathError, match="cannot write explanation in /proc"):
        explain_to_files("builtin:micro", "Hi", outputs=["/proc/e.json"])
    import audit.finetune.run as ftrun

    monkeypatch.setattr(ftrun, "load_for_training", lambda *a, **k: pytest.fail("the model loaded first"))
    monkeypatch.setattr(ftrun, "load_language_model", lambda *a, **k: pytest.fail("the model loaded first"))
    with pytest.raises(OutputPathError, match="existing file"):
        finetune({"model": "builtin:micro", "data": str(support_like), "out_dir": str(tmp_path / "afile")})
    with pytest.raises(OutputPathError, match="existing file"):
        harden("builtin:micro", "robustness", tmp_path / "afile")


# ---- 5. non-finite numbers never pass and never become a "good" checkpoint --------------------------------------

@pytest.mark.parametrize("field,body", [("generation.temperature", "generation: {do_sample: true, temperature: .nan}"),
                                        ("generation.top_p", "generation: {top_p: .inf}"),
                                        ("confidence.level", "confidence: {level: .nan}"),
                                        ("sections.toxicity.threshold", "sections: {toxicity: {threshold: .nan}}")])
def test_defect5_non_finite_numbers_in_a_suite_are_refused(tmp_path, support_like, capsys, field, body):
    from audit.cli import main

    text = "name: t\ndata: data.jsonl\n" + ("" if body.startswith("sections") else "sections: {diversity: {}}\n") + body + "\n"
    suite = write_suite(tmp_path, text)
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{field}: must be a finite number" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf"])
def test_defect5_finetune_lr_inf_is_refused_before_training(tmp_path, support_like, capsys, lr):
    from audit.cli import main

    out = tmp_path / "ft"
    code = main(["finetune", "--model", "builtin:micro", "--data", str(support_like), "--out", str(out), f"--lr={lr}",
                 "--max-steps", "2", "--save-every", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "lr: must be a finite number" in err and not (out / "checkpoints").exists()


def _ft_cfg(micro_path, data, out, **kw):
    cfg = {"model": str(micro_path), "data": str(data), "batch_size": 4, "max_steps": 4, "save_every": 1,
           "out_dir": str(out), "progress": False, "seed": 0, "max_grad_norm": None, "warmup_steps": 2}
    cfg.update(kw)
    return cfg


def _all_finite(step_dir: Path) -> bool:
    from safetensors.torch import load_file

    return all(torch.isfinite(v).all() for v in load_file(str(step_dir / "model.safetensors")).values())


def test_defect5_lr_overflow_is_a_named_error_and_the_last_finite_checkpoint_is_kept(micro_path, support_like, tmp_path):
    """lr 3e38, no clipping: step 1 (warm-up, lr 0) saves; step 2's AdamW step size overflows float32."""
    from audit.finetune.run import finetune
    from audit.finetune.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"optimizer update overflowed .*at step 2 .*last good checkpoint: .*step-000001"):
        finetune(_ft_cfg(micro_path, support_like, tmp_path / "o", lr=3e38))
    steps = sorted(p.name for p in (tmp_path / "o" / "checkpoints").iterdir())
    assert steps == ["step-000001"] and _all_finite(tmp_path / "o" / "checkpoints" / "step-000001")
    assert not (tmp_path / "o" / "model").exists()


def test_defect5_non_finite_weights_are_never_saved(micro_path, support_like, tmp_path):
    """A step that makes a weight infinite (here weight decay with lr*wd > 2 on a huge unused position
    embedding) stops before saving it; the finite step-1 checkpoint is named last good."""
    from audit.finetune.run import finetune
    from audit.finetune.trainer import TrainingDiverged

    def poison(trainer, rec):
        if trainer.step == 1:   # after the step-1 checkpoint: a huge weight that no prompt position reads
            with torch.no_grad():
                trainer.model.transformer.wpe.weight[-1, 0] = 3e38

    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite at step 2 .*last good checkpoint: .*step-000001"):
        finetune(_ft_cfg(micro_path, support_like, tmp_path / "w", lr=300.0, weight_decay=1.0), callbacks=[poison])
    steps = sorted(p.name for p in (tmp_path / "w" / "checkpoints").iterdir())
    assert steps == ["step-000001"] and _all_finite(tmp_path / "w" / "checkpoints" / "step-000001")


def test_defect5_a_checkpoint_whose_weights_give_nan_is_not_called_good(micro_path, support_like, tmp_path):
    """lr 1e38 with warm-up: step 2 saves huge but finite weights whose loss is NaN at step 3."""
    from audit.finetune.run import finetune
    from audit.finetune.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3 .*step-2 checkpoint holds the weights that gave "
                                               r"this loss .*last good checkpoint: .*step-000001"):
        finetune(_ft_cfg(micro_path, support_like, tmp_path / "n", lr=1e38))
    steps = sorted(p.name for p in (tmp_path / "n" / "checkpoints").iterdir())
    assert steps == ["step-000001", "step-000002.diverged"]


# ---- 6. no unbounded reads -------------------------------------------------------------------------------------

def test_defect6_data_symlinked_to_dev_zero_is_refused(tmp_path, capsys):
    from audit.cli import main

    (tmp_path / "data.jsonl").symlink_to("/dev/zero")
    suite = write_suite(tmp_path, "name: t\ndata: data.jsonl\nsections: {diversity: {}}\n")
    assert main(["run", str(suite), "-m", "builtin:micro", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"audit: error: {tmp_path / 'data.jsonl'}: is a device, not a regular data file; give a regular file"


def test_defect6_suite_symlinked_to_dev_zero_is_refused(tmp_path, capsys):
    from audit.cli import main

    (tmp_path / "s.yaml").symlink_to("/dev/zero")
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
    assert "is a device, not a regular suite file" in capsys.readouterr().err


def test_defect6_data_fifo_does_not_block(tmp_path):
    import threading

    from audit.data import DataError, load_records

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_records(fifo)
        except DataError as e:
            outcome.append(str(e))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=20)
    if t.is_alive():   # blocked in open(): release it so the test process can end
        with open(fifo, "w"):
            pass
        t.join(timeout=5)
        pytest.fail("reading a FIFO blocked")
    assert outcome == [f"{fifo}: is a FIFO, not a regular data file; give a regular file"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_defect6_a_line_over_the_cap_names_the_file_and_line(tmp_path, suffix):
    from audit.data import DataError, load_records
    from audit.io.input_files import MAX_LINE_BYTES

    p = tmp_path / f"big{suffix}"
    head = '{"prompt": "ok"}\n' if suffix == ".jsonl" else "prompt\nok\n"
    with p.open("w") as f:
        f.write(head)
        f.write("x" * (MAX_LINE_BYTES + 10))   # no newline at all, as /dev/zero or a binary file would give
    with pytest.raises(DataError, match=rf"^{p}:\d: line longer than 16 MiB"):
        load_records(p)


# ---- 7. every error names the file or field --------------------------------------------------------------------

def _run_line(capsys, argv) -> tuple[int, str]:
    from audit.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return code, err


def test_defect7_invalid_utf8_names_file_and_line(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_bytes(b"name: t\ndescription: caf\xe9\n")
    code, err = _run_line(capsys, ["validate", str(suite)])
    assert code == 2 and f"{suite}:2: suite file is not valid UTF-8 (byte 0xe9)" in err
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    write_suite(tmp_path, "name: t\ndata: d.jsonl\nsections: {diversity: {}}\n", name="s2.yaml")
    code, err = _run_line(capsys, ["validate", str(tmp_path / "s2.yaml")])
    assert code == 2 and f"{data}:2: data file is not valid UTF-8 (byte 0xe9)" in err


def test_defect7_lone_surrogate_fails_at_load_naming_the_field(tmp_path, capsys, no_model_load):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "fine \\ud83d\\ude00"}\n{"prompt": "bad \\ud800 here"}\n')   # a pair is fine, a lone one is not
    suite = write_suite(tmp_path, "name: t\ndata: d.jsonl\nsections: {diversity: {}}\n")
    for argv in (["validate", str(suite)], ["run", str(suite), "-m", "builtin:micro", "--out", str(tmp_path / "o"), "-q"]):
        code, err = _run_line(capsys, argv)
        assert code == 2 and f"{data}:2: field 'prompt' holds a lone UTF-16 surrogate" in err


def test_defect7_deeply_nested_json_names_the_file(tmp_path):
    from audit.data import DataError, load_records

    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=rf"^{p}:1: JSON nested too deeply"):
        load_records(p)


def test_defect7_broken_model_directories_name_the_directory(tmp_path, micro_path, capsys, support_like):
    only_cfg = tmp_path / "only-config"
    only_cfg.mkdir()
    shutil.copy(micro_path / "config.json", only_cfg)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(micro_path, corrupt)
    (corrupt / "model.safetensors").write_bytes((micro_path / "model.safetensors").read_bytes()[:1000])
    suite = write_suite(tmp_path, "name: t\ndata: data.jsonl\nsections: {diversity: {}}\n")
    code, err = _run_line(capsys, ["run", str(suite), "-m", str(only_cfg), "--out", str(tmp_path / "o"), "-q"])
    assert code == 2 and f"{only_cfg}: model directory has no weights file" in err
    code, err = _run_line(capsys, ["run", str(suite), "-m", str(corrupt), "--out", str(tmp_path / "o"), "-q"])
    assert code == 2 and f"cannot load model '{corrupt}': corrupt weights file" in err
    from audit.models.local import LanguageModel, ModelLoadError

    with pytest.raises(ModelLoadError, match="has no weights file"):   # the library entry point too
        LanguageModel.load(str(only_cfg))


def test_defect7_a_directory_named_jsonl_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "data.jsonl").mkdir()
    suite = write_suite(tmp_path, "name: t\ndata: data.jsonl\nsections: {diversity: {}}\n")
    code, err = _run_line(capsys, ["validate", str(suite)])
    assert code == 2 and err == f"audit: error: {tmp_path / 'data.jsonl'}: is a directory, not a data file"


@pytest.mark.parametrize("body,fragment", [
    ("data: missing.jsonl", "missing.jsonl: data file not found"),
    ("data: data.jsonl\nmodel: builtin:huge", "model.path: unknown builtin model 'builtin:huge'"),
    ("data: data.jsonl\nmodel: {device: tpu9}", "device must be auto, cpu, cuda, cuda:N, mps or xpu[:N], got 'tpu9'"),
    ("data: data.jsonl\ngeneration: {do_sample: true, temperature: .nan}", "generation.temperature: must be a finite number"),
    ("data: data.jsonl\ngeneration: {max_new_tokens: 1000000000}", "max_new_tokens must be <= 1,048,576"),
    ("data: data.jsonl\nmodel: MICRO\ngeneration: {max_new_tokens: 5000}",
     "generation.max_new_tokens: 5000 does not fit the model's context window of 128 tokens"),
])
def test_defect7_validate_catches_what_run_would_reject(tmp_path, support_like, capsys, micro_path, body, fragment):
    suite = write_suite(tmp_path, f"name: t\nsections: {{diversity: {{}}}}\n{body.replace('MICRO', str(micro_path))}\n")
    code, err = _run_line(capsys, ["validate", str(suite)])
    assert code == 2 and fragment in err


def test_defect7_validate_still_passes_a_good_suite(tmp_path, support_like, capsys, micro_path):
    from audit.cli import main

    suite = write_suite(tmp_path, f"name: t\nmodel: {micro_path}\ndata: data.jsonl\nsections: {{diversity: {{}}}}\n")
    assert main(["validate", str(suite)]) == 0
    assert "12 records" in capsys.readouterr().out


# ---- 8. a torn cache line never swallows the next record -------------------------------------------------------

@pytest.mark.parametrize("cut", ["ascii", "multibyte"])
def test_defect8_torn_cache_line_does_not_swallow_the_next_record(tmp_path, cut):
    import subprocess
    import sys

    from audit.io.cache import DiskCache

    c = DiskCache(tmp_path, "gen")
    c.put_many([("a", "first"), ("b", "second ünïcode")])
    # Simulated crash: a process killed mid-write leaves the start of a record and no newline.
    record = json.dumps({"k": "c", "v": "third ünïcode"}, ensure_ascii=False).encode()
    torn = record[: record.index("ü".encode()) + 1] if cut == "multibyte" else record[:12]
    code = f"import os; f = open({str(c.path)!r}, 'ab'); f.write({torn!r}); f.flush(); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    resumed = DiskCache(tmp_path, "gen")           # the next run: loads what is whole
    assert resumed.get("a") == "first" and resumed.get("b") == "second ünïcode" and "c" not in resumed
    resumed.put_many([("c", "third"), ("d", "fourth")])
    again = DiskCache(tmp_path, "gen")              # every later run reuses all of them
    assert [again.get(k) for k in "abcd"] == ["first", "second ünïcode", "third", "fourth"]


# ---- 9. untrusted strings cannot spoof the console --------------------------------------------------------------

def test_defect9_suite_name_cannot_print_fake_lines_or_ansi(tmp_path, support_like, capsys):
    from audit.cli import main

    spoof = 't\\n  gates:\\n    PASS  quality.toxicity < 0.01 (all good)\\x1b[32m\\r\\x1b]0;pwned\\x07'
    suite = write_suite(tmp_path, f'name: "{spoof}"\ndescription: "x\\x1b[2J"\ndata: {{path: data.jsonl, limit: 2}}\n'
                                  "generation: {max_new_tokens: 2}\nsections: {diversity: {}}\ngates: ['diversity.distinct_1 >= 2']\n")
    out = tmp_path / "o"
    code = main(["run", str(suite), "-m", "builtin:micro", "--out", str(out), "-o", str(tmp_path / "r.txt"), "-q"])
    assert code == 1   # the one real gate fails
    printed = capsys.readouterr()
    for text in (printed.out, printed.err, (tmp_path / "r.txt").read_text(), (out / "summary.md").read_text()):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    lines = printed.out.splitlines()
    assert lines[0].startswith("audit t gates: PASS quality.toxicity") and lines[0].endswith(": FAIL")
    assert not any(line.lstrip().startswith("PASS") for line in lines)
    assert len((tmp_path / "r.txt").read_text().splitlines()) == len([l for l in lines if not l.startswith("results:")])


def test_defect9_one_sanitizer_serves_console_and_markdown():
    """summary.md and the console share audit.io.untrusted.one_line; markdown keeps no copy of its own."""
    from audit.report import markdown

    src = Path(markdown.__file__).read_text(encoding="utf-8")
    assert "one_line" in src and "x1f" not in src
    assert markdown.md_escape("a\n\x1b[31mb") == "a \ufffd\\[31mb"


def test_defect1_pickled_pytorch_model_bin_runs_no_code(tmp_path, micro_path):
    """A model directory's pytorch_model.bin (read by transformers) and an hf: scorer's are pickles too."""
    from audit.models.local import LanguageModel, ModelLoadError

    d = tmp_path / "evil-model"
    shutil.copytree(micro_path, d)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    _plant(d / "pytorch_model.bin", marker, lambda evil: {"transformer.wte.weight": evil})
    with pytest.raises(ModelLoadError) as e:
        LanguageModel.load(str(d))
    assert not marker.exists() and "\n" not in str(e.value) and str(d) in str(e.value)


def test_defect6_and_7_baseline_and_results_files_are_read_safely(tmp_path, capsys):
    """A results file (audit report, --baseline) that is a device, a FIFO or deeply nested JSON: one line, exit 2."""
    from audit.results import read_results
    from audit.errors import AuditError

    (tmp_path / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    for name, fragment in [("zero.json", "is a device"), ("fifo.json", "is a FIFO"), ("deep.json", "RecursionError")]:
        with pytest.raises(AuditError, match=fragment) as e:
            read_results(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)


@pytest.mark.parametrize("gate", ["{metric: diversity.distinct_1, op: '>=', value: .nan}",
                                  "{metric: diversity.distinct_1, max_regression: .nan}",
                                  "{metric: diversity.distinct_1, op: '>=', value: 0.1, confidence: .nan}"])
def test_defect5_non_finite_gate_numbers_are_refused(tmp_path, support_like, capsys, gate):
    from audit.cli import main

    suite = write_suite(tmp_path, f"name: t\ndata: data.jsonl\nsections: {{diversity: {{}}}}\ngates: [{gate}]\n")
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err.strip()
    assert "gates[0]" in err and "nan" in err and len(err.splitlines()) == 1


def test_defect2_scorer_checkpoints_differing_after_the_first_mib_get_different_score_caches(tmp_path):
    """Toxicity scores are cached by the classifier's fingerprint: it must cover the whole checkpoint."""
    from audit.models.fingerprint import weights_fingerprint as file_fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "model.ckpt", tmp_path / "b" / "model.ckpt"   # same name, same size
    body = os.urandom(3 << 20)
    a.write_bytes(body)
    b.write_bytes(body[: 2 << 20] + bytes([body[2 << 20] ^ 1]) + body[(2 << 20) + 1:])   # one byte in the middle
    assert a.stat().st_size == b.stat().st_size
    assert file_fingerprint(a) != file_fingerprint(b)


def test_defect1_old_pickled_numpy_rng_state_is_refused_with_a_hint(finetuned_checkpoint, tmp_path):
    """Checkpoints from before this fix pickled numpy's RNG array: refused (numpy's reconstructor is
    not plain data), with a one-line hint instead of a bare unpickling error."""
    import random

    import numpy as np

    from audit.finetune.checkpoint import CheckpointError
    from audit.finetune.run import finetune

    cfg, step = finetuned_checkpoint
    old = tmp_path / "step-000002"
    shutil.copytree(step, old)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               old / "rng-rank0.pt")
    with pytest.raises(CheckpointError, match=r"rng-rank0.pt: refusing .*written by an older audit") as e:
        finetune({**cfg, "max_steps": 3, "out_dir": str(tmp_path / "out"), "resume": str(old)})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("losses", [{"ce": float("nan")}, {"ce": 1.0, "pgd": {"weight": float("inf")}}])
def test_defect5_non_finite_loss_weights_are_refused(losses):
    from audit.config import ConfigError
    from audit.finetune.config import load_finetune_config

    with pytest.raises(ConfigError, match=r"weight must be a finite number >= 0"):
        load_finetune_config({"data": "x.jsonl", "losses": losses})


@pytest.mark.parametrize("sections,field", [
    ("{bias: {generation: {do_sample: true, temperature: .nan}}}", "sections.bias.generation.temperature"),
    ("{toxicity: {scorer_options: {threshold: .inf}}}", "sections.toxicity.scorer_options.threshold"),
])
def test_defect5_non_finite_numbers_nested_anywhere_in_a_suite_are_refused(tmp_path, support_like, capsys, sections, field):
    from audit.cli import main

    suite = write_suite(tmp_path, f"name: t\ndata: data.jsonl\nsections: {sections}\n")
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{field}: must be a finite number" in err and len(err.splitlines()) == 1


def test_defect3_a_suite_of_a_million_tiny_values_is_refused_fast(tmp_path, capsys):
    """No aliases, just many nodes: 2 MB of '[],' took ~90 s to parse; now it stops after 20,000 values."""
    import time

    from audit.cli import main

    suite = write_suite(tmp_path, "name: [" + "[]," * 700_000 + "]\n")
    t = time.perf_counter()
    assert main(["validate", str(suite)]) == 2
    assert time.perf_counter() - t < 20
    err = capsys.readouterr().err.strip()
    assert "more than 20,000 values" in err and str(suite) in err and len(err.splitlines()) == 1
