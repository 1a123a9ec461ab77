"""Prompt/reference records from JSONL, CSV or the Hugging Face ``datasets`` formats, validated by line or row."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .config import resolve_data_path
from .errors import AuditError
from .hf_data import HF_PREFIX, is_table_source, open_table
from .io.input_files import check_regular_file, iter_lines, read_text
from .io.untrusted import excerpt
from .models.chat import ChatTemplateError, check_messages

MAX_JSON_ARRAY_BYTES = 256 << 20   # a .json array is parsed whole; JSONL streams line by line


class DataError(AuditError):
    """A data file is missing or malformed; the message names the file and line."""


@dataclass
class Record:
    """One prompt with an optional reference and free-form metadata.

    A record given as ``messages`` (role/content turns ending with a user turn) keeps them here;
    its ``prompt`` is the final user turn's words, which sections show and perturb.
    """

    id: str
    prompt: str
    reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None

    @property
    def model_input(self):
        """What the model adapter renders: the turns when there are any, else the prompt."""
        return self.messages if self.messages else self.prompt


# JSON's \\uD800-\\uDFFF escapes are the only way a lone surrogate (not Unicode text: no tokenizer and
# no UTF-8 writer takes it) gets past the UTF-8 decoder; rows that contain one are checked exactly.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_unicode(row: dict, where: str) -> None:
    """Refuse a row any of whose strings holds a lone surrogate, naming the field (at load, not after generation)."""
    for key, value in row.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}: field {excerpt(key)} holds a lone UTF-16 surrogate escape (e.g. \\ud800), "
                            f"which is not text; fix the data file") from None


def _starts_with(path: Path, char: str) -> bool:
    """Whether the file's first non-blank character (after a BOM) is ``char``, reading only its start."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return head[:1] == char.encode()


def read_rows(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """Rows of a JSONL or CSV file as ``(line_number, mapping)``; errors name the line.

    Only regular files are read (a symlink to ``/dev/zero`` or a FIFO would read or block forever),
    each line at most ``input_files.MAX_LINE_BYTES``, and the text must be UTF-8.
    """
    path = check_regular_file(path, what="data file", error=DataError)
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict]] = []
    if suffix == ".json" and _starts_with(path, "["):
        # A JSON array of objects (the other common export format); line numbers are array positions.
        text = read_text(path, what="data file", error=DataError, max_bytes=MAX_JSON_ARRAY_BYTES)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply") from None
        escaped = bool(_SURROGATE_ESCAPE.search(text))   # one scan of the file, not one per item
        for n, obj in enumerate(items, 1):
            if not isinstance(obj, dict):
                raise DataError(f"{path}: item {n} of the array: expected a JSON object, got {type(obj).__name__}")
            if escaped:
                _check_unicode(obj, f"{path}: item {n} of the array")
            rows.append((n, obj))
    elif suffix in (".jsonl", ".ndjson", ".json"):
        for n, line in iter_lines(path, what="data file", error=DataError):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{n}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
            if _SURROGATE_ESCAPE.search(line):
                _check_unicode(obj, f"{path}:{n}")
            rows.append((n, obj))
    elif suffix in (".csv", ".tsv"):
        # Bounded, decoded lines (a leading BOM dropped: spreadsheet exports start with one).
        lines = (text for _, text in iter_lines(path, what="data file", error=DataError))
        reader = csv.DictReader(lines, delimiter="\t" if suffix == ".tsv" else ",")
        try:
            for row in reader:
                if None in row:
                    raise DataError(f"{path}:{reader.line_num}: more fields than the header has")
                rows.append((reader.line_num, dict(row)))
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    else:
        raise DataError(f"{path}: unsupported data format {suffix or '(none)'}; use .jsonl or .csv")
    return rows


def unique_id(row: dict, path: str | os.PathLike, n: int, seen: set[str]) -> str:
    """A row's ``id`` (default ``FILESTEM-LINE``), added to ``seen``; a repeat is an error naming the line.

    Example:
        >>> seen = set(); unique_id({}, "d.jsonl", 3, seen), unique_id({"id": 7}, "d.jsonl", 4, seen)
        ('d-3', '7')
    """
    rid = str(row.get("id", f"{Path(path).stem}-{n}"))
    if rid in seen:
        raise DataError(f"{path}:{n}: duplicate id {rid!r}")
    seen.add(rid)
    return rid


ROW_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")   # read by read_rows; the rest by audit.hf_data
DEFAULT_COLUMNS = {"prompt": "prompt", "reference": "reference", "messages": "messages"}


@dataclass
class _Source:
    """Rows of one data source before validation, and how errors name it and a row of it."""

    name: str                          # the file, directory or hf:NAME (with [split] when one was picked)
    rows: Iterable[tuple[int, dict]]   # (line or row number, mapping)
    columns: list[str] | None          # known before reading rows (CSV header, Arrow schema); None for JSON(L)
    lines: bool                        # positions are line numbers ("f.jsonl:3") or row numbers ("f.parquet row 3")
    split_filter: str | None           # keep rows whose `split` field equals this (None: a split was picked)
    cell_json: bool = False            # messages are JSON text in a cell (CSV)

    def at(self, n: int) -> str:
        return f"{self.name}:{n}" if self.lines else f"{self.name} row {n}"


def _open(path: str | os.PathLike, *, split: str | None, config: str | None) -> _Source:
    """The rows of a JSONL/JSON/CSV file, or of a Parquet/Arrow file, save_to_disk directory or ``hf:NAME``."""
    p = Path(str(path))
    if is_table_source(path) and not (p.is_dir() and p.suffix.lower() in ROW_SUFFIXES):
        t = open_table(path, split=split, config=config, error=DataError)
        return _Source(t.source, enumerate(t.rows, 1), t.columns, lines=False,
                       split_filter=None if t.split_chosen else split)
    if config is not None:
        raise DataError(f"{path}: data.config is only for a cached dataset (path: hf:NAME)")
    if p.suffix.lower() not in ROW_SUFFIXES and p.exists():
        raise DataError(f"{path}: unsupported data format {p.suffix.lower() or '(none)'}; use .jsonl, .json, .csv, "
                        f".tsv, .parquet or .arrow, a save_to_disk directory, or hf:NAME")
    rows = read_rows(path)
    tabular = p.suffix.lower() in (".csv", ".tsv")
    return _Source(str(path), rows, list(rows[0][1]) if tabular and rows else None, lines=True,
                   split_filter=split, cell_json=tabular)


def _check_columns(src: _Source, prompt: str, reference: str, messages: str) -> None:
    """With the columns known up front: a named column that is absent is one line naming it and listing them."""
    if src.columns is None:
        return
    have = ", ".join(src.columns) or "(none)"
    for what, col in (("prompt", prompt), ("reference", reference), ("messages", messages)):
        if col != DEFAULT_COLUMNS[what] and col not in src.columns:   # a name the suite chose must exist
            raise DataError(f"{src.name}: no column {col!r} ({what}_column); columns: {have}")
    if prompt not in src.columns and messages not in src.columns:
        raise DataError(f"{src.name}: no column {prompt!r} (prompt_column) or {messages!r} (messages_column); "
                        f"columns: {have}")
    if src.split_filter is not None and "split" not in src.columns:
        raise DataError(f"{src.name}: split {src.split_filter!r} asked for, but this is one table with no splits "
                        f"and no 'split' column; columns: {have}")


def load_records(path: str | os.PathLike, *, prompt_field: str = "prompt", reference_field: str = "reference",
                 messages_field: str = "messages", split: str | None = None, limit: int | None = None,
                 config: str | None = None, require_reference: bool = False) -> list[Record]:
    """Load and validate prompt records, from any supported format through one validation.

    Args:
        path: a ``.jsonl``/``.json``/``.csv``/``.tsv`` file, a ``.parquet`` or ``.arrow`` file, a directory
            written by ``datasets``' ``save_to_disk``, or ``hf:NAME`` (a dataset in the local ``datasets``
            cache, read offline).
        prompt_field / reference_field / messages_field: column names (suite: ``prompt_column`` ...).
        split: the split of a DatasetDict (save_to_disk dict, cached dataset; default: the only one);
            for one table or file, keep only rows whose ``split`` field equals this.
        limit: keep the first N rows after the split.
        config: the configuration of a cached dataset (``hf:NAME`` only) when several are cached.
        require_reference: every row must have a non-empty reference.

    Raises:
        DataError: naming the file and line (or row) of the first bad row, a missing column with the
            columns there are, or an empty result.

    Example:
        >>> import tempfile, json; p = tempfile.mktemp(suffix=".jsonl")
        >>> _ = open(p, "w").write(json.dumps({"prompt": "Hi"}) + "\\n")
        >>> load_records(p)[0].prompt
        'Hi'
    """
    src = _open(path, split=split, config=config)
    _check_columns(src, prompt_field, reference_field, messages_field)
    records: list[Record] = []
    seen: set[str] = set()
    for n, row in src.rows:
        if src.split_filter is not None and str(row.get("split")) != src.split_filter:
            continue
        where = src.at(n)
        messages = _messages(row.get(messages_field), where, cell=src.cell_json, column=messages_field)
        if messages is not None:
            if row.get(prompt_field) not in (None, ""):
                raise DataError(f"{where}: give either {prompt_field!r} or {messages_field!r}, not both")
            row = {**row, prompt_field: messages[-1]["content"]}
        prompt = row.get(prompt_field)
        if not isinstance(prompt, str):
            got = "missing" if prompt is None else f"a {type(prompt).__name__}"
            raise DataError(f"{where}: field {prompt_field!r} must be a string, {got}")
        ref = row.get(reference_field)
        if ref is not None and not isinstance(ref, str):
            raise DataError(f"{where}: field {reference_field!r} must be a string")
        if ref == "" and reference_field in row:
            ref = None
        if require_reference and not ref:
            raise DataError(f"{where}: field {reference_field!r} is required")
        rid = _unique_id(row, src, n, seen)
        meta = {k: v for k, v in row.items() if k not in (prompt_field, reference_field, "id", messages_field)}
        records.append(Record(id=rid, prompt=prompt, reference=ref, metadata=meta, messages=messages))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        what = f" with split={src.split_filter!r}" if src.split_filter is not None else ""
        raise DataError(f"{src.name}: no records{what}")
    return records


def _unique_id(row: dict, src: _Source, n: int, seen: set[str]) -> str:
    """:func:`unique_id` for any source: a table's default id is ``STEM-ROW``, a repeat names the row."""
    if src.lines:
        return unique_id(row, src.name, n, seen)
    stem = Path(src.name.split("[")[0].removeprefix(HF_PREFIX)).stem
    rid = str(row.get("id", f"{stem}-{n}"))
    if rid in seen:
        raise DataError(f"{src.at(n)}: duplicate id {rid!r}")
    seen.add(rid)
    return rid


def data_location(path: str, base: Path) -> str | Path:
    """Where a suite's ``data.path`` points: ``hf:NAME`` as given, a path resolved like every suite path."""
    return path if path.startswith(HF_PREFIX) else resolve_data_path(path, base)


def load_data(spec: Any, base: Path, **overrides: Any) -> list[Record]:
    """The records a suite's :class:`~audit.config.DataSpec` names (paths relative to ``base``); ``overrides``
    replace ``split``/``limit`` or add ``require_reference``. The one place a suite's data is read."""
    kw = dict(prompt_field=spec.prompt_column, reference_field=spec.reference_column,
              messages_field=spec.messages_column, split=spec.split, limit=spec.limit, config=spec.config)
    kw.update(overrides)
    return load_records(data_location(spec.path, base), **kw)


def _messages(value: Any, where: str, *, cell: bool = False, column: str = "messages") -> list[dict[str, str]] | None:
    """A record's ``messages`` turns, validated; ``cell``: the value is a CSV cell, holding them as a JSON string.

    In JSON(L) the turns are the value itself: a string there (``"messages": "hello"``) is text,
    not JSON to decode, and is reported as not being a list of turns.
    """
    if value is None or value == "":   # an empty cell or field: no turns given
        return None
    if isinstance(value, str) and cell:
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: field {column!r} must be a JSON list of {{role, content}} turns; "
                            f"the cell is not valid JSON ({e.msg})") from None
    if isinstance(value, str):
        raise DataError(f"{where}: field {column!r} must be a list of {{role, content}} turns, got a string "
                        f"(for a single user turn use the 'prompt' field)")
    try:
        return check_messages(value, where)
    except ChatTemplateError as e:
        raise DataError(str(e).replace("field 'messages'", f"field {column!r}")) from None
