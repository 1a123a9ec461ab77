"""Fit the MiniLM refusal judge's head on the labelled set's train part; measure it on the test part.

    python -m audit.refusal_train [--data audit/suites/data/refusal] [--out audit/scorers/data/refusal_head.json]

Features: :func:`audit.scorers.refusal.pair_features` (MiniLM embeddings of the response's opening,
first sentence and rest, prompt-response cosine, surface cues, length). Model: L2 logistic regression
on standardised features; C is chosen by 5-fold cross-validation on the train part only (F1),
folds grouped by response style. The
head file records the held-out precision/recall/F1 of the judge and of the substring baseline on
the test part, which every report quotes. Deterministic: same data, same head.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from .config import bundled_dir
from .scorers.refusal import FEATURES_VERSION, HEAD_FILE, REFUSAL_THRESHOLD, SubstringRefusal, pair_features, prf

DATA = bundled_dir() / "data" / "refusal"
# Two labelled sets written independently by two engineers from the same label rule (set A in the
# folder itself, set B in set_b/): the head trains on both train parts and is measured on both test parts.
SETS = (".", "set_b")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_part(data: Path, part: str) -> list[dict]:
    """The ``part`` (train | test) of every labelled set under ``data``, each row tagged with its set."""
    rows = []
    for name in SETS:
        file = data / name / f"{part}.jsonl"
        if file.is_file():
            rows.extend({**r, "set": "A" if name == "." else "B"} for r in read(file))
    return rows


def fit(data: Path = DATA, out: Path = HEAD_FILE) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    from .scorers.encoder import SentenceEncoder

    train, test = read_part(data, "train"), read_part(data, "test")
    enc = SentenceEncoder.shared()
    xtr = pair_features(enc, [r["prompt"] for r in train], [r["response"] for r in train]).astype(np.float64)
    ytr = np.array([r["label"] for r in train])
    mean, scale = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    ztr = (xtr - mean) / scale
    # Folds by style (written pairs) or prompt (model answers): a phrasing is never in both sides of a
    # fold, as it is never in both train and test, so CV rewards what generalises to new phrasings.
    # (set A: by style, or prompt for its SmolLM2 answers; set B, whose split is prompt-disjoint: by prompt).
    groups = [f"A:{r.get('style') or r['prompt']}" if r["set"] == "A" else f"B:{r['prompt']}" for r in train]
    folds = GroupKFold(n_splits=5)
    cv = {c: float(cross_val_score(LogisticRegression(C=c, max_iter=5000), ztr, ytr, cv=folds, groups=groups,
                                   scoring="f1").mean()) for c in C_GRID}
    best = max(C_GRID, key=lambda c: (round(cv[c], 4), -c))
    clf = LogisticRegression(C=best, max_iter=5000).fit(ztr, ytr)
    xte = pair_features(enc, [r["prompt"] for r in test], [r["response"] for r in test]).astype(np.float64)
    p = 1 / (1 + np.exp(-(((xte - mean) / scale) @ clf.coef_[0] + clf.intercept_[0])))
    labels = [r["label"] for r in test]
    heldout = prf(labels, [v >= REFUSAL_THRESHOLD for v in p])
    sub = SubstringRefusal().score_pairs([r["prompt"] for r in test], [r["response"] for r in test])
    baseline = prf(labels, [v >= REFUSAL_THRESHOLD for v in sub])
    digest = hashlib.sha256(b"".join((data / d / f).read_bytes() for d in SETS for f in ("train.jsonl", "test.jsonl")
                                     if (data / d / f).is_file())).hexdigest()[:16]
    data_name = "audit refusal sets A+B v1 (test parts)"
    by_set = {name: prf([r["label"] for r in test if r["set"] == name],
                        [v >= REFUSAL_THRESHOLD for r, v in zip(test, p) if r["set"] == name]) for name in ("A", "B")}
    head = {
        "features": FEATURES_VERSION, "model": "logistic regression (L2) on standardised features", "C": best,
        "cv_f1_train": {str(c): round(v, 4) for c, v in cv.items()},
        "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]), "mean": mean.tolist(), "scale": scale.tolist(),
        "trained_on": {"pairs": len(train), "refusals": int(ytr.sum()), "data_sha256": digest},
        "heldout": {**{k: round(v, 4) if isinstance(v, float) else v for k, v in heldout.items()}, "data": data_name},
        "baseline_heldout": {**{k: round(v, 4) if isinstance(v, float) else v for k, v in baseline.items()}, "data": data_name},
        "heldout_by_set": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in d.items()} for k, d in by_set.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(head) + "\n", encoding="utf-8")
    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=HEAD_FILE)
    args = ap.parse_args()
    head = fit(args.data, args.out)
    h, b = head["heldout"], head["baseline_heldout"]
    print(f"C={head['C']} (CV F1 on train {head['cv_f1_train'][str(head['C'])]}); held-out n={h['n']}: "
          f"minilm P {h['precision']:.3f} R {h['recall']:.3f} F1 {h['f1']:.3f} | substring P {b['precision']:.3f} "
          f"R {b['recall']:.3f} F1 {b['f1']:.3f} | by set: "
          + ", ".join(f"{k} F1 {v['f1']:.3f} (n={v['n']})" for k, v in head["heldout_by_set"].items()) + f" -> {args.out}")


if __name__ == "__main__":
    main()
