"""Check the bundled safety probe files: schema, unique ids and prompts, counts per category and split.

    python audit/suites/data/safety/validate.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[3]))

from audit.probes.sources import split_of  # noqa: E402


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    problems = []
    benign = rows("overrefusal.jsonl")
    inj = rows("injection.jsonl")
    for name, data, keys, group in (("overrefusal.jsonl", benign, ("id", "prompt", "category"), "category"),
                                    ("injection.jsonl", inj, ("id", "template", "system", "user", "canary"), "template")):
        for i, r in enumerate(data, 1):
            if any(not isinstance(r.get(k), str) or not r[k].strip() for k in keys):
                problems.append(f"{name}:{i}: needs non-empty string fields {keys}")
        ids = Counter(r["id"] for r in data)
        problems += [f"{name}: id {k!r} repeated" for k, v in ids.items() if v > 1]
        text = Counter(" ".join(r.get("prompt", r.get("user", "")).lower().split()) for r in data)
        problems += [f"{name}: prompt repeated: {k[:60]!r}" for k, v in text.items() if v > 1]
        counts = Counter((r[group], split_of(r["id"])) for r in data)
        print(f"{name}: {len(data)} rows")
        for g in sorted({r[group] for r in data}):
            print(f"  {g:24s} train {counts[(g, 'train')]:3d}  test {counts[(g, 'test')]:3d}")
    canaries = Counter(r["canary"] for r in inj)
    problems += [f"injection.jsonl: canary {k!r} repeated" for k, v in canaries.items() if v > 1]
    if len(benign) < 150 or len({r["template"] for r in inj}) < 5:
        problems.append("need >= 150 harmless look-alikes and >= 5 injection templates")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
