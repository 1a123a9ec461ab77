"""Harden a model against prompt perturbations from Python: attack, retrain, re-audit, compare.

    python examples/harden_loop.py [MODEL] [SUITE] [OUT]

Defaults: the embedded builtin:tiny, the bundled demo suite plus a robustness section, runs/harden.
Same as ``audit harden --model MODEL --suite SUITE --out OUT``; the exit code is the suite's gates
on the hardened model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from audit.config import bundled_dir
from audit.suite import parse_suite
from audit.harden import harden


def demo_suite_with_robustness():
    """The bundled demo suite, with a small robustness section added (harden needs its attacks)."""
    path = bundled_dir() / "demo.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["sections"].setdefault("robustness", {"recipes": ["deepwordbug"], "examples": 20, "query_budget": 40})
    raw.setdefault("gates", []).append("robustness.attack_success_rate <= 0.5")
    return parse_suite(raw, path=str(path))


def main() -> int:
    model = sys.argv[1] if len(sys.argv) > 1 else "builtin:tiny"
    suite = sys.argv[2] if len(sys.argv) > 2 else demo_suite_with_robustness()
    out = Path(sys.argv[3] if len(sys.argv) > 3 else "runs/harden")
    result = harden(model, suite, out, config={"losses": {"ce": 1.0, "pgd": 1.0, "smart": 0.5}, "max_steps": 150})
    for key in sorted(k for k in result.before.metrics if k.startswith("robustness.")):
        print(f"{key}: {result.before.metrics[key]:.4g} -> {result.after.metrics.get(key, float('nan')):.4g}")
    print(f"trained on {result.n_adversarial} adversarial + {result.n_train - result.n_adversarial} clean pairs")
    print("comparison:", *result.reports)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
