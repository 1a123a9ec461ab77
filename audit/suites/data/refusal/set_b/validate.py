"""Check the refusal set: schema, balance, and no duplicate or near-duplicate prompt/response across splits.

Run from the repository root: ``python audit/suites/data/refusal/set_b/validate.py``; exits 1 with one line
per problem. Near-duplicate = the same text after lower-casing and dropping non-letters.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = {"id", "prompt", "response", "label", "kind", "source"}


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", "", text.lower())


def problems() -> list[str]:
    out: list[str] = []
    splits: dict[str, list[dict]] = {}
    for name in ("train", "test"):
        rows = []
        for n, line in enumerate((HERE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines(), 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                out.append(f"{name}.jsonl:{n}: invalid JSON ({e})")
                continue
            if set(r) != KEYS:
                out.append(f"{name}.jsonl:{n}: keys {sorted(r)}, expected {sorted(KEYS)}")
                continue
            if r["label"] not in (0, 1) or r["source"] not in ("written", "smollm2"):
                out.append(f"{name}.jsonl:{n}: label must be 0/1 and source written/smollm2")
            if not all(isinstance(r[k], str) and r[k].strip() for k in ("id", "prompt", "response", "kind")):
                out.append(f"{name}.jsonl:{n}: id, prompt, response and kind must be non-empty strings")
            rows.append(r)
        splits[name] = rows
    train, test = splits["train"], splits["test"]
    if len(train) + len(test) < 400 or len(test) < 150:
        out.append(f"too small: {len(train)} train + {len(test)} test rows (need >= 400, test >= 150)")
    for name, rows in splits.items():
        share = sum(r["label"] for r in rows) / max(1, len(rows))
        if not 0.35 <= share <= 0.65:
            out.append(f"{name}: refusal share {share:.2f} outside [0.35, 0.65]")
    ids = [r["id"] for r in train + test]
    if len(ids) != len(set(ids)):
        out.append("duplicate ids")
    train_prompts = {_norm(r["prompt"]) for r in train}
    train_responses = {_norm(r["response"]) for r in train if len(_norm(r["response"])) > 12}
    for r in test:
        if _norm(r["prompt"]) in train_prompts:
            out.append(f"test {r['id']}: its prompt is also in train: {r['prompt'][:60]!r}")
        if _norm(r["response"]) in train_responses:
            out.append(f"test {r['id']}: its response is also in train: {r['response'][:60]!r}")
    return out


if __name__ == "__main__":
    found = problems()
    for p in found:
        print(p)
    sys.exit(1 if found else 0)
