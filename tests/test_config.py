"""Suite validation happens before any model loads and names the file and field."""

from __future__ import annotations

import pytest

from audit.config import ConfigError, GenerationSettings
from audit.suite import load_suite, parse_suite

BASE = {"name": "s", "model": "builtin:micro", "data": {"path": "d.jsonl"}, "sections": {"quality": {}}}


def suite(**changes):
    raw = {**BASE, **changes}
    return parse_suite(raw, path="s.yaml")


def test_forms_that_validate():
    s = suite(model={"path": "/m", "dtype": "bfloat16"}, generation={"do_sample": True, "num_samples": 3},
              gates=["quality.bleu >= 1", {"metric": "quality.chrf", "op": ">", "value": 2}], seed=4)
    assert s.model.path == "/m" and s.model.dtype == "bfloat16" and s.seed == 4
    assert [g.metric for g in s.gates] == ["quality.bleu", "quality.chrf"]
    assert s.generation.key() == {k: v for k, v in GenerationSettings(do_sample=True, num_samples=3).__dict__.items()
                                  if k != "batch_size"}
    assert parse_suite({**BASE}, path="s.yaml", model_override="builtin:tiny").model.path == "builtin:tiny"


@pytest.mark.parametrize("changes, fragment", [
    ({"gatez": []}, "unknown field 'gatez' (did you mean 'gates'?)"),
    ({"seed": "x"}, "seed: expected an integer"),
    ({"data": {"path": "d.jsonl", "limit": "ten"}}, "data.limit: expected int | None"),
    ({"data": {"path": ""}}, "data.path is required"),
    ({"model": {"path": "m", "dtype": "fp8"}}, "dtype must be auto"),
    ({"generation": {"num_samples": 2}}, "num_samples > 1 needs do_sample: true"),
    ({"generation": {"top_p": 0}}, "top_p must be in (0, 1]"),
    ({"sections": {}}, "sections: expected a mapping"),
    ({"sections": {"quality": {"metrics": ["blue"]}}}, "did you mean 'bleu'"),
    ({"gates": ["toxicity.toxic_rate < 0.1"]}, "names section 'toxicity', which this suite does not run"),
    ({"gates": [{"metric": "quality.bleu", "op": "~", "value": 1}]}, "op must be one of"),
])
def test_errors_name_file_and_field(changes, fragment):
    with pytest.raises(ConfigError) as e:
        suite(**changes)
    msg = str(e.value)
    assert msg.startswith("s.yaml") and fragment in msg and "\n" not in msg


def test_bundled_suite_by_name_and_fingerprint_ignores_gates(tmp_path):
    demo = load_suite("demo")
    assert demo.name == "demo" and demo.data.path == "data/support.jsonl"
    assert demo.resolve_path(demo.data.path).exists()
    a = suite(gates=["quality.bleu >= 1"]).fingerprint()
    assert a == suite(gates=[]).fingerprint()                       # gates do not change what is measured
    assert a != suite(generation={"max_new_tokens": 5}).fingerprint()


def test_bundled_name_is_not_shadowed_by_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()          # e.g. an output folder named like the suite
    assert load_suite("demo").name == "demo"
    (tmp_path / "suites.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_suite("suites.yaml")
