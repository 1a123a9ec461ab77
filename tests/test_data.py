"""Prompt records from JSONL, JSON arrays and CSV: validation with line numbers."""

from __future__ import annotations

import json

import pytest

from audit.data import DataError, load_records


def test_jsonl_csv_and_json_array_load_the_same_records(tmp_path):
    rows = [{"id": "a", "prompt": "Hi,\n there", "reference": "Hello", "split": "test", "topic": "x"},
            {"id": "b", "prompt": "Bye", "reference": "", "split": "train"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text('\ufeffid,prompt,reference,split,topic\na,"Hi,\n there",Hello,test,x\nb,Bye,,train,\n',
                                    encoding="utf-8")
    for name in ("d.jsonl", "d.json", "d.csv"):
        recs = load_records(tmp_path / name)
        assert [r.id for r in recs] == ["a", "b"], name
        assert recs[0].prompt == "Hi,\n there" and recs[0].reference == "Hello" and recs[0].metadata["split"] == "test"
        assert recs[1].reference is None  # an empty reference is no reference
        assert [r.id for r in load_records(tmp_path / name, split="test")] == ["a"]
    assert len(load_records(tmp_path / "d.jsonl", limit=1)) == 1


@pytest.mark.parametrize("content, suffix, fragment", [
    ('{"prompt": "a"}\n{"prompt": 3}\n', ".jsonl", ":2: field 'prompt' must be a string"),
    ('{"prompt": "a"}\n[1, 2]\n', ".jsonl", ":2: expected a JSON object"),
    ('{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n', ".jsonl", ":2: duplicate id 'x'"),
    ('[{"prompt": "a"}, 5]', ".json", "item 2 of the array"),
    ("prompt\nhello,extra\n", ".csv", ":2: more fields than the header has"),
    ("", ".jsonl", "no records"),
    ("prompt: a\n", ".yaml", "unsupported data format .yaml"),
])
def test_bad_rows_name_the_line(tmp_path, content, suffix, fragment):
    path = tmp_path / f"d{suffix}"
    path.write_text(content)
    with pytest.raises(DataError) as e:
        load_records(path)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_required_reference_and_missing_file(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a"}\n')
    with pytest.raises(DataError, match="'reference' is required"):
        load_records(tmp_path / "d.jsonl", require_reference=True)
    with pytest.raises(DataError, match="data file not found"):
        load_records(tmp_path / "missing.jsonl")
