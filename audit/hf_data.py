"""Rows from the Hugging Face ``datasets`` formats: ``save_to_disk`` directories, Parquet and Arrow files,
and dataset names already in the local ``datasets`` cache (``hf:NAME``), read offline.

These only open a table and hand back its columns and rows as plain dicts; :func:`audit.data.load_records`
validates them exactly as it validates JSONL and CSV rows, so every format yields the same records and
the same one-line errors.

Why not ``datasets.load_dataset(NAME)``: before it looks in the cache it asks the Hub (which hangs or fails
here, and downloads where there is network); ``hf:NAME`` must never download. The cache is read with the
builder ``load_dataset`` itself falls back to offline (``datasets.packaged_modules.cache``), so the entry
a ``load_dataset`` call made once, anywhere, is read as is. Parquet and Arrow files are read with
``pyarrow`` directly: ``Dataset.from_parquet`` would first copy the file into the user's cache.

Example:
    >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> p = os.path.join(tempfile.mkdtemp(), "d.parquet"); pq.write_table(pa.table({"prompt": ["Hi"]}), p)
    >>> t = open_table(p); t.columns, list(t.rows)
    (['prompt'], [{'prompt': 'Hi'}])
"""

from __future__ import annotations

import datetime
import decimal
import glob
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import AuditError, first_line
from .io.input_files import check_regular_file

HF_PREFIX = "hf:"                      # data.path: hf:NAME (e.g. hf:rajpurkar/squad), a cached dataset
TABLE_SUFFIXES = (".parquet", ".arrow")
BATCH_ROWS = 1024                      # rows converted to Python per Arrow batch (files stream, not load whole)
log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")   # a Hub dataset id: [namespace/]name


@dataclass
class Table:
    """One table of a dataset: what errors call it, its columns, and its rows (plain dicts, streamed once)."""

    source: str              # e.g. "data/qa.parquet", "dir[test]", "hf:acme/prompts[test]"
    columns: list[str]
    rows: Iterable[dict[str, Any]]
    split_chosen: bool = False   # a split of a DatasetDict was picked, so ``split`` is not a row filter too


def is_table_source(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read here: ``hf:NAME``, a ``.parquet``/``.arrow`` file, or a directory."""
    s = str(path)
    return s.startswith(HF_PREFIX) or Path(s).suffix.lower() in TABLE_SUFFIXES or Path(s).is_dir()


def open_table(path: str | os.PathLike, *, split: str | None = None, config: str | None = None,
               error: type[Exception] = AuditError) -> Table:
    """Open a table-shaped data source; ``split`` picks a split of a DatasetDict (the only one by default).

    Raises:
        error: one line naming the file, directory or dataset (and the splits or configs there are).
    """
    s = str(path)
    if s.startswith(HF_PREFIX):
        return _cached(s, split=split, config=config, error=error)
    if config is not None:
        raise error(f"{s}: data.config is only for a cached dataset (path: hf:NAME)")
    if Path(s).is_dir():
        return _from_disk(Path(s), split=split, error=error)
    p = check_regular_file(s, what="data file", error=error)
    if p.suffix.lower() == ".parquet":
        return _parquet(p, error=error)
    return _arrow(p, error=error)


def _require(module: str, package: str, what: str, error: type[Exception]):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise error(f"{what}: reading it needs the '{package}' package, which is not installed "
                    f"(pip install {package})") from None


def _plain(value: Any) -> Any:
    """A cell as JSON-ready data (results.json keeps metadata columns): dates, decimals and bytes as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal)):
        return str(value)
    return value


def _batches_to_rows(batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for row in batch.to_pylist():
            yield {k: _plain(v) for k, v in row.items()}


def _parquet(path: Path, *, error) -> Table:
    _require("pyarrow", "pyarrow", str(path), error)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise error(f"{path}: not a readable Parquet file ({first_line(e)})") from None
    return Table(str(path), list(pf.schema_arrow.names), _guarded(_batches_to_rows(pf.iter_batches(batch_size=BATCH_ROWS)),
                                                                   str(path), "Parquet", error))


def _arrow(path: Path, *, error) -> Table:
    """An Arrow IPC file: the stream format ``datasets`` writes (``data-00000-of-00001.arrow``, cache
    shards) or the random-access file format (Feather v2, ``pyarrow.ipc.new_file``)."""
    _require("pyarrow", "pyarrow", str(path), error)
    import pyarrow as pa

    with path.open("rb") as f:
        is_file_format = f.read(6) == b"ARROW1"   # the file format's magic; a stream starts with a message
    try:
        source = pa.memory_map(str(path))
        if is_file_format:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
    except (pa.ArrowException, OSError) as e:
        raise error(f"{path}: not a readable Arrow IPC file ({first_line(e)})") from None
    return Table(str(path), list(reader.schema.names), _guarded(_batches_to_rows(batches), str(path), "Arrow", error))


def _guarded(rows: Iterator[dict], source: str, kind: str, error) -> Iterator[dict]:
    """Rows, a file corrupt past its header being one line naming it (the batches are read lazily)."""
    import pyarrow as pa

    try:
        yield from rows
    except (pa.ArrowException, OSError) as e:
        raise error(f"{source}: corrupt {kind} data ({first_line(e)})") from None


def _pick(splits: list[str], split: str | None, source: str, error) -> str:
    """The split to read: ``split``, or the only one; several and none asked for is an error listing them."""
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise error(f"{source}: has splits {', '.join(splits)}; set data.split to one of them")
    if split not in splits:
        raise error(f"{source}: no split {split!r}; splits: {', '.join(splits)}")
    return split


def _dataset_table(ds: Any, source: str, *, split: str | None, error) -> Table:
    """A ``Dataset`` or ``DatasetDict`` as a :class:`Table` (a dict's split chosen by :func:`_pick`)."""
    import datasets

    if isinstance(ds, datasets.DatasetDict):   # split name -> Dataset
        name = _pick(list(ds.keys()), split, source, error)
        ds = ds[name]
        return Table(f"{source}[{name}]", list(ds.column_names), _plain_rows(ds), split_chosen=True)
    return Table(source, list(ds.column_names), _plain_rows(ds))


def _plain_rows(ds: Any) -> Iterator[dict[str, Any]]:
    # Arrow batches (through any indices mapping), not `for row in ds` (one formatter call per row).
    yield from _batches_to_rows(ds.with_format("arrow").iter(batch_size=BATCH_ROWS))


def _from_disk(path: Path, *, split: str | None, error) -> Table:
    """A directory written by ``Dataset.save_to_disk`` (``state.json``) or ``DatasetDict.save_to_disk``
    (``dataset_dict.json``), read with ``datasets.load_from_disk`` (memory-mapped, nothing copied)."""
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise error(f"{path}: is a directory, not a dataset written by datasets' save_to_disk "
                    f"(no dataset_dict.json or state.json in it); give a data file or such a directory")
    datasets = _require("datasets", "datasets", str(path), error)
    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError, KeyError) as e:   # missing shards, bad JSON in state.json
        raise error(f"{path}: cannot read the saved dataset ({first_line(e)})") from None
    return _dataset_table(ds, str(path), split=split, error=error)


def cache_dir() -> str:
    """The ``datasets`` cache: ``HF_DATASETS_CACHE`` as set now, else the one ``datasets`` computed at import."""
    env = os.environ.get("HF_DATASETS_CACHE")
    if env:
        return os.path.expanduser(env)
    import datasets.config

    return os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE))


def cached_configs(name: str, root: str) -> list[str]:
    """Configurations of dataset ``name`` in the cache at ``root``, laid out as ``datasets`` writes it:
    ``NAMESPACE___NAME/CONFIG/VERSION/HASH/`` (the name snake-cased, as ``datasets.naming`` does)."""
    from datasets.naming import camelcase_to_snakecase

    parts = name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    base = os.path.join(root, "___".join(parts))
    return sorted({Path(p).parts[-3] for p in glob.glob(os.path.join(glob.escape(base), "*", "*", "*")) if os.path.isdir(p)})


def _cached(spec: str, *, split: str | None, config: str | None, error) -> Table:
    name = spec[len(HF_PREFIX):]
    if not _NAME.fullmatch(name):
        raise error(f"{spec}: not a dataset name (hf:NAME or hf:NAMESPACE/NAME)")
    _require("datasets", "datasets", spec, error)
    from datasets.packaged_modules.cache.cache import Cache

    root = cache_dir()
    configs = cached_configs(name, root)
    if not configs:
        raise error(f"{spec}: dataset not in the local datasets cache ({root}); audit never downloads: run "
                    f"datasets.load_dataset({name!r}) once where there is network, or give a save_to_disk directory "
                    f"or a Parquet file")
    if config is None and len(configs) > 1:
        raise error(f"{spec}: several configurations are cached: {', '.join(configs)}; set data.config to one of them")
    if config is not None and config not in configs:
        raise error(f"{spec}: configuration {config!r} is not cached; cached: {', '.join(configs)}")
    # Its "Found the latest cached dataset configuration ..." warning, printed twice, says what this logs once.
    quiet = logging.getLogger(Cache.__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # What load_dataset(NAME) builds offline (CachedDatasetModuleFactory): the latest cached version.
        builder = Cache(cache_dir=root, repo_id=name, dataset_name=name.split("/")[-1],
                        config_name=config or configs[0], version="auto", hash="auto")
        ds = builder.as_dataset()
    except (OSError, ValueError, KeyError) as e:
        raise error(f"{spec}: cannot read the cached dataset in {root} ({first_line(e)})") from None
    finally:
        quiet.setLevel(level)
    log.info("data %s: configuration %r, cached at %s", spec, builder.config.name, builder.cache_dir)
    return _dataset_table(ds, spec, split=split, error=error)
