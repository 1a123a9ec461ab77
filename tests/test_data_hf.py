"""Prompt records from the Hugging Face `datasets` formats: save_to_disk directories, Parquet and Arrow
files, and a dataset name in the local datasets cache (offline), validated like JSONL and CSV."""

from __future__ import annotations

import json
import socket
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets.builder import Key

from audit.cli import main
from audit.config import ConfigError
from audit.data import DataError, load_records
from audit.suite import load_suite

from .conftest import write_suite

ROWS = [
    {"id": "a", "prompt": "Hi,\n there", "reference": "Hello", "messages": None, "topic": "x"},
    {"id": "b", "prompt": None, "reference": None,
     "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bye?"}], "topic": "y"},
    {"id": "c", "prompt": "Third", "reference": "", "messages": None, "topic": None},
]


def _table(rows=ROWS) -> pa.Table:
    return pa.Table.from_pylist(rows)


def _same(recs):
    return [(r.id, r.prompt, r.reference, r.metadata, r.messages) for r in recs]


class _HubLike(datasets.ArrowBasedBuilder):
    """Writes a cache entry the way a Hub dataset's builder does (repo_id + commit hash), from local tables."""

    def __init__(self, *args, tables, **kwargs):
        self._tables = tables
        super().__init__(*args, **kwargs)

    def _info(self):
        return datasets.DatasetInfo()

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=name, gen_kwargs={"table": t}) for name, t in self._tables.items()]

    def _generate_tables(self, table):
        yield Key(0, 0), table


def cache_dataset(root, name, tables, *, config="default", commit="0123456789abcdef"):
    """Put dataset `name` into the datasets cache at `root` as `load_dataset(name)` would have left it."""
    ns_name = name.split("/")[-1]
    builder = _HubLike(cache_dir=str(root), repo_id=name, dataset_name=ns_name, config_name=config, hash=commit,
                       tables=tables)
    builder.download_and_prepare()
    return builder.cache_dir


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails the test: hf:NAME must be read from the cache, never asked of the Hub."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    root = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(root))
    return root


def test_every_format_loads_the_same_records_as_jsonl(tmp_path, hf_cache, no_network):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    expected = _same(load_records(tmp_path / "d.jsonl"))
    assert expected[1][1] == "Bye?" and expected[2][2] is None and expected[0][3] == {"topic": "x"}

    pq.write_table(_table(), tmp_path / "d.parquet")
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, _table().schema) as w:
        w.write_table(_table())                                   # Arrow IPC file format (Feather v2)
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))                        # a Dataset directory
    datasets.DatasetDict({"test": ds, "train": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    stream = next((tmp_path / "one").glob("data-*.arrow"))        # the Arrow stream format datasets writes
    cache_dataset(hf_cache, "acme/prompts", {"test": _table()})

    for source, kw in [(tmp_path / "d.parquet", {}), (tmp_path / "file.arrow", {}), (stream, {}),
                       (tmp_path / "one", {}), (tmp_path / "dict", {"split": "test"}), ("hf:acme/prompts", {})]:
        assert _same(load_records(source, **kw)) == expected, source
    assert [r.id for r in load_records(tmp_path / "dict", split="train")] == ["a"]
    assert [r.id for r in load_records("hf:acme/prompts", limit=2)] == ["a", "b"]


def test_column_mapping_and_default_ids(tmp_path):
    rows = [{"question": "Q1", "answer": "A1", "conv": None},
            {"question": None, "answer": None, "conv": [{"role": "user", "content": "Q2"}]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "qa.parquet")
    recs = load_records(tmp_path / "qa.parquet", prompt_field="question", reference_field="answer", messages_field="conv")
    assert [(r.id, r.prompt, r.reference, r.messages, r.metadata) for r in recs] == [
        ("qa-1", "Q1", "A1", None, {}), ("qa-2", "Q2", None, [{"role": "user", "content": "Q2"}], {})]


def _sources(tmp_path, hf_cache, table):
    """The same table as a Parquet file, an Arrow file, a save_to_disk dict and a cached dataset."""
    pq.write_table(table, tmp_path / "d.parquet")
    with pa.OSFile(str(tmp_path / "d.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    datasets.DatasetDict({"test": datasets.Dataset(table)}).save_to_disk(str(tmp_path / "dict"))
    cache_dataset(hf_cache, "acme/qa", {"test": table})
    return {"parquet": (str(tmp_path / "d.parquet"), str(tmp_path / "d.parquet")),
            "arrow": (str(tmp_path / "d.arrow"), str(tmp_path / "d.arrow")),
            "dict": (str(tmp_path / "dict"), f"{tmp_path / 'dict'}[test]"),
            "hf": ("hf:acme/qa", "hf:acme/qa[test]")}


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "dict", "hf"])
def test_a_bad_column_name_is_one_line_naming_column_and_source(tmp_path, hf_cache, no_network, fmt):
    source, name = _sources(tmp_path, hf_cache, pa.table({"question": ["Q"], "answer": ["A"]}))[fmt]
    with pytest.raises(DataError) as e:
        load_records(source, prompt_field="questoin", reference_field="answer")
    assert str(e.value) == f"{name}: no column 'questoin' (prompt_column); columns: question, answer"
    with pytest.raises(DataError) as e:
        load_records(source, prompt_field="question", reference_field="answr")
    assert str(e.value) == f"{name}: no column 'answr' (reference_column); columns: question, answer"
    with pytest.raises(DataError) as e:   # the default names, neither present
        load_records(source)
    assert str(e.value) == (f"{name}: no column 'prompt' (prompt_column) or 'messages' (messages_column); "
                            f"columns: question, answer")
    assert load_records(source, prompt_field="question", reference_field="answer")[0].reference == "A"


def test_csv_header_gets_the_same_column_check(tmp_path):
    (tmp_path / "d.csv").write_text("question,answer\nQ,A\n")
    with pytest.raises(DataError, match=r"d\.csv: no column 'q' \(prompt_column\); columns: question, answer$"):
        load_records(tmp_path / "d.csv", prompt_field="q")


def test_bad_rows_name_the_row(tmp_path):
    pq.write_table(pa.table({"prompt": ["ok", None]}), tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet row 2: field 'prompt' must be a string, missing$"):
        load_records(tmp_path / "d.parquet")
    pq.write_table(pa.table({"prompt": ["a", "b"], "id": [1, 1]}), tmp_path / "dup.parquet")
    with pytest.raises(DataError, match=r"dup\.parquet row 2: duplicate id '1'$"):
        load_records(tmp_path / "dup.parquet")
    turns = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]
    pq.write_table(pa.table({"conv": turns}), tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"m\.parquet row 1: messages must end with a user turn"):
        load_records(tmp_path / "m.parquet", messages_field="conv")
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(DataError, match=r"empty\.parquet: no records$"):
        load_records(tmp_path / "empty.parquet")


def test_splits(tmp_path, hf_cache, no_network):
    t = pa.table({"prompt": ["p1", "p2"], "split": ["train", "test"]})
    datasets.DatasetDict({"train": datasets.Dataset(t), "test": datasets.Dataset(t.slice(1))}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError) as e:
        load_records(tmp_path / "dd")
    assert str(e.value) == f"{tmp_path / 'dd'}: has splits train, test; set data.split to one of them"
    with pytest.raises(DataError) as e:
        load_records(tmp_path / "dd", split="validation")
    assert str(e.value) == f"{tmp_path / 'dd'}: no split 'validation'; splits: train, test"
    # A picked split is not also a row filter (its 'split' column says "train" for the first row).
    assert [r.prompt for r in load_records(tmp_path / "dd", split="train")] == ["p1", "p2"]
    # One table: `split` filters on its 'split' column, as in JSONL; without one it is an error naming the table.
    pq.write_table(t, tmp_path / "t.parquet")
    assert [r.prompt for r in load_records(tmp_path / "t.parquet", split="test")] == ["p2"]
    pq.write_table(t.drop(["split"]), tmp_path / "nosplit.parquet")
    with pytest.raises(DataError, match=r"nosplit\.parquet: split 'test' asked for, but this is one table with no "
                                        r"splits and no 'split' column; columns: prompt$"):
        load_records(tmp_path / "nosplit.parquet", split="test")
    cache_dataset(hf_cache, "acme/two", {"train": t, "test": t.slice(1)})
    with pytest.raises(DataError, match=r"^hf:acme/two: has splits train, test; set data.split"):
        load_records("hf:acme/two")
    assert [r.prompt for r in load_records("hf:acme/two", split="test")] == ["p2"]


def test_cached_dataset_names_and_configs(hf_cache, no_network):
    with pytest.raises(DataError) as e:
        load_records("hf:acme/absent")
    assert str(e.value).startswith(f"hf:acme/absent: dataset not in the local datasets cache ({hf_cache}); "
                                   f"audit never downloads") and "\n" not in str(e.value)
    cache_dataset(hf_cache, "acme/cfg", {"test": pa.table({"prompt": ["en"]})}, config="en")
    cache_dataset(hf_cache, "acme/cfg", {"test": pa.table({"prompt": ["fr"]})}, config="fr")
    with pytest.raises(DataError, match=r"^hf:acme/cfg: several configurations are cached: en, fr; set data.config"):
        load_records("hf:acme/cfg")
    assert load_records("hf:acme/cfg", config="fr")[0].prompt == "fr"
    with pytest.raises(DataError, match=r"^hf:acme/cfg: configuration 'de' is not cached; cached: en, fr$"):
        load_records("hf:acme/cfg", config="de")
    with pytest.raises(DataError, match=r"^hf:a b: not a dataset name"):
        load_records("hf:a b")
    # A name without a namespace, and a CamelCase one (datasets snake-cases it in the cache path).
    cache_dataset(hf_cache, "MyPrompts", {"test": pa.table({"prompt": ["x"]})})
    assert load_records("hf:MyPrompts")[0].prompt == "x"


def test_unreadable_sources_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file \("):
        load_records(tmp_path / "bad.parquet")
    (tmp_path / "bad.arrow").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=r"bad\.arrow: not a readable Arrow IPC file \("):
        load_records(tmp_path / "bad.arrow")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match=r"plain: is a directory, not a dataset written by datasets' save_to_disk"):
        load_records(tmp_path / "plain")
    with pytest.raises(DataError, match=r"d\.txt: unsupported data format \.txt; use .*\.parquet or \.arrow"):
        (tmp_path / "d.txt").write_text("x")
        load_records(tmp_path / "d.txt")
    with pytest.raises(DataError, match=r"data\.config is only for a cached dataset"):
        load_records(tmp_path / "bad.parquet", config="en")


def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch):
    datasets.Dataset.from_list([{"prompt": "p"}]).save_to_disk(str(tmp_path / "one"))
    pq.write_table(pa.table({"prompt": ["p"]}), tmp_path / "d.parquet")
    monkeypatch.setitem(sys.modules, "datasets", None)     # `import datasets` now raises ImportError
    for source in (tmp_path / "one", "hf:acme/x"):
        with pytest.raises(DataError) as e:
            load_records(source)
        assert str(e.value) == f"{source}: reading it needs the 'datasets' package, which is not installed (pip install datasets)"
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError, match=r"d\.parquet: reading it needs the 'pyarrow' package"):
        load_records(tmp_path / "d.parquet")


SUITE = """
name: hf
model: builtin:tiny
seed: 1
data: {{path: {path}, split: test, prompt_column: question, reference_column: answer{extra}}}
generation: {{max_new_tokens: 6, batch_size: 4}}
sections:
  quality: {{}}
gates:
  - quality.perplexity < 1e9
"""


def test_suite_reads_the_columns_and_validate_names_a_bad_one(tmp_path, hf_cache, no_network, capsys):
    t = pa.table({"question": [f"How do I reset password {i}?" for i in range(3)], "answer": ["Open settings."] * 3})
    cache_dataset(hf_cache, "acme/support", {"test": t, "train": t.slice(0, 1)})
    capsys.readouterr()   # the builder's progress bars
    suite = load_suite(write_suite(tmp_path, SUITE.format(path="hf:acme/support", extra="")))
    assert (suite.data.prompt_column, suite.data.reference_column, suite.data.messages_column) == ("question", "answer", "messages")
    bad = write_suite(tmp_path, SUITE.format(path="hf:acme/support", extra="").replace("answer}", "answr}"), "bad.yaml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "audit: error: hf:acme/support[test]: no column 'answr' (reference_column); columns: question, answer"
    with pytest.raises(ConfigError, match=r"data: config is only for a cached dataset"):
        load_suite(write_suite(tmp_path, SUITE.format(path="d.parquet", extra=", config: en"), "cfg.yaml"))


def test_audit_run_on_a_save_to_disk_dataset_with_builtin_tiny(tmp_path, capsys):
    """`audit run` end to end on builtin:tiny (built on first use, about a minute) from a DatasetDict directory."""
    qs = [f"Customer: how do I reset my password, case {i}?\nAgent:" for i in range(4)]
    t = pa.table({"question": qs, "answer": [" Open settings and choose reset password."] * 4})
    datasets.DatasetDict({"train": datasets.Dataset(t.slice(0, 1)), "test": datasets.Dataset(t)}).save_to_disk(str(tmp_path / "support"))
    suite = write_suite(tmp_path, SUITE.format(path="support", extra=", limit: 3"))
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "-q", "--no-cache"]) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["passed"] and doc["data"]["records"] == 3 and doc["data"]["path"] == str(tmp_path / "support")
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == qs[:3] and {s["id"] for s in samples} == {"support-1", "support-2", "support-3"}
    assert all(s["reference"] == " Open settings and choose reset password." for s in samples)


def test_the_old_field_names_still_read_the_columns(tmp_path):
    from audit.config import ConfigError
    from audit.suite import parse_suite

    s = parse_suite({"model": "builtin:tiny", "data": {"path": "x.jsonl", "prompt_field": "q", "reference_field": "a"},
                     "sections": {"quality": {}}}, path=str(tmp_path / "s.yaml"))
    assert (s.data.prompt_column, s.data.reference_column) == ("q", "a")
    with pytest.raises(ConfigError, match="not both"):
        parse_suite({"model": "builtin:tiny", "data": {"path": "x.jsonl", "prompt_field": "q", "prompt_column": "p"},
                     "sections": {"quality": {}}}, path=str(tmp_path / "s.yaml"))
