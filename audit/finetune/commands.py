"""``audit finetune``: parse arguments, call one library function (the flags ``audit harden`` shares live here too).

Every scalar field of :class:`~audit.finetune.config.FinetuneConfig` is also a flag
(``max_steps`` -> ``--max-steps``); ``--set KEY=VALUE`` reaches nested fields
(``--set losses.pgd.epsilon=0.5``). Values are read as YAML scalars (``null``, ``true``, ``1e-4``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import yaml

from ..config import ConfigError
from ..errors import EXIT_PASS
from ..io.safe_yaml import load_yaml


def _value(text: str, tp: Any = None) -> Any:
    """A flag's text as a value: null/none -> None, numbers for int/float fields, YAML otherwise."""
    if text.strip().lower() in ("null", "none", "~"):
        return None
    if tp is str:
        return text
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise ConfigError(f"expected {tp.__name__}, got {text!r}") from None
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "3e-3" as a string; a number was meant
        try:
            return float(value)
        except ValueError:
            pass
    return value


def overrides(args, fields) -> dict[str, Any]:
    """Config fields given as flags (``--lr 1e-4``) and ``--set KEY=VALUE`` items, as a mapping of overrides."""
    out: dict[str, Any] = {}
    for name, tp, _ in fields:
        v = getattr(args, f"ft_{name}", None)
        if v is not None:
            out[name] = _value(v, tp)
    report_to = getattr(args, "report_to", None)
    if report_to is not None:   # --report-to mlflow,tensorboard; --report-to none: no tracker at all
        names = [t.strip() for t in report_to.split(",") if t.strip()]
        out["report_to"] = [] if names == ["none"] else names
    for item in args.set or []:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. losses.pgd.epsilon=0.5)")
        out[key.strip()] = _value(val)
    return out


def config_flags(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> list:
    """One flag per scalar FinetuneConfig field (minus ``skip``) and ``--set``; returns the fields for :func:`overrides`."""
    from .config import scalar_fields

    fields = [f for f in scalar_fields() if f[0] not in skip]
    g = p.add_argument_group("config fields (override the file)")
    for name, tp, comment in fields:
        g.add_argument(f"--{name.replace('_', '-')}", dest=f"ft_{name}", metavar=tp.__name__.upper(),
                       help=comment.replace("%", "%%") or None)
    g.add_argument("--report-to", metavar="TRACKERS",
                   help="training curves to mlflow, tensorboard or both (comma-separated; none: neither); with --mlflow-uri "
                        "(docs/tracking.md); needs pip install 'audit[tracking]'")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="any field, dotted for nested ones (repeatable)")
    return fields


def add_commands(sub, *, common, run_args) -> None:
    p = sub.add_parser("finetune", help="fine-tune a causal LM with CE, unlikelihood, SimCTG, adversarial losses",
                       description="Fine-tune a model as CONFIG (YAML) says; every config field is also a flag. "
                                   "Multi-GPU / multi-node: accelerate launch -m audit finetune CONFIG.")
    p.add_argument("config", nargs="?", help="finetune config YAML (see audit/suites/finetune-demo.yaml)")
    fields = config_flags(p)
    common(p)
    p.set_defaults(func=lambda a: cmd_finetune(a, fields))


def cmd_finetune(args, fields) -> int:
    from .run import finetune

    given = overrides(args, fields)
    if args.quiet:
        given.setdefault("progress", False)
    result = finetune(args.config, **given)
    if int(os.environ.get("RANK", "0")) != 0:
        return EXIT_PASS  # under `accelerate launch`, one summary (rank 0's) is enough
    val = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"finetune: {result.steps} steps ({result.stopped}){val}")
    print(f"model: {result.model_dir}")
    if result.adapter_dir:
        print(f"adapter: {result.adapter_dir}")
    print(f"metrics: {result.metrics_path}")
    return EXIT_PASS
