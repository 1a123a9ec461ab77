"""``audit finetune`` and ``audit harden``: parse arguments, call one library function each.

Every scalar field of :class:`~audit.finetune.config.FinetuneConfig` is also a flag
(``max_steps`` -> ``--max-steps``); ``--set KEY=VALUE`` reaches nested fields
(``--set losses.pgd.epsilon=0.5``). Values are read as YAML scalars (``null``, ``true``, ``1e-4``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import yaml

from ..errors import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_PASS
from ..io.safe_yaml import load_yaml


def _value(text: str, tp: Any = None) -> Any:
    """A flag's text as a value: null/none -> None, numbers for int/float fields, YAML otherwise."""
    from ..config import ConfigError

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


def _overrides(args, fields) -> dict[str, Any]:
    from ..config import ConfigError

    out: dict[str, Any] = {}
    for name, tp, _ in fields:
        v = getattr(args, f"ft_{name}", None)
        if v is not None:
            out[name] = _value(v, tp)
    for item in args.set or []:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. losses.pgd.epsilon=0.5)")
        out[key.strip()] = _value(val)
    return out


def _config_flags(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> list:
    from .config import scalar_fields

    fields = [f for f in scalar_fields() if f[0] not in skip]
    g = p.add_argument_group("config fields (override the file)")
    for name, tp, comment in fields:
        g.add_argument(f"--{name.replace('_', '-')}", dest=f"ft_{name}", metavar=tp.__name__.upper(),
                       help=comment.replace("%", "%%") or None)
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="any field, dotted for nested ones (repeatable)")
    return fields


def add_commands(sub, *, common, run_args) -> None:
    p = sub.add_parser("finetune", help="fine-tune a causal LM with CE, unlikelihood, SimCTG, adversarial losses",
                       description="Fine-tune a model as CONFIG (YAML) says; every config field is also a flag. "
                                   "Multi-GPU / multi-node: accelerate launch -m audit finetune CONFIG.")
    p.add_argument("config", nargs="?", help="finetune config YAML (see audit/suites/finetune-demo.yaml)")
    fields = _config_flags(p)
    common(p)
    p.set_defaults(func=lambda a: cmd_finetune(a, fields))

    p = sub.add_parser("harden", help="attack a model, fine-tune on the successful attacks, re-audit, compare",
                       description="Run SUITE's robustness section on MODEL (or, with --train-split, on that split's records), "
                                   "fine-tune on the successful adversarial prompts and the clean ones (clean targets; by default "
                                   "CE + the clean-vs-perturbed consistency KL, plus a typo'd copy of each), re-audit with the same "
                                   "suite and seed (regression gates compare with the first audit), and write the before/after "
                                   "comparison. Exit 0/1 by the suite's gates on the hardened model.")
    p.add_argument("--model", "-m", help="model to harden (default: the suite's)")
    p.add_argument("--suite", "-s", required=True, help="suite YAML file or bundled name; must have a robustness section")
    p.add_argument("--out", "-d", required=True, metavar="DIR", help="output directory (before/, train/, after/, comparison.*)")
    p.add_argument("--config", metavar="FILE", help="finetune config YAML overriding the harden defaults (data/out_dir are set by harden)")
    p.add_argument("--target", choices=["auto", "target", "reference"], default="auto",
                   help="train perturbed prompts towards the dataset reference (reference) or the model's clean output "
                        "(target); auto (default): reference when every record has one")
    p.add_argument("--no-clean", action="store_true", help="train on the adversarial pairs only")
    p.add_argument("--train-split", metavar="SPLIT", help="build the training set by attacking the data's SPLIT records "
                   "(e.g. train); the suite's audited prompts stay held out and are never trained on")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached generations")
    p.add_argument("--cache-dir", metavar="DIR", help="cache location")
    hfields = _config_flags(p, skip=("model", "data", "out_dir", "train_split", "val_split", "format", "prompt_field",
                                     "target_field", "text_field", "resume"))
    common(p)
    p.set_defaults(func=lambda a: cmd_harden(a, hfields))


def cmd_finetune(args, fields) -> int:
    from .run import finetune

    overrides = _overrides(args, fields)
    if args.quiet:
        overrides.setdefault("progress", False)
    result = finetune(args.config, **overrides)
    if int(os.environ.get("RANK", "0")) != 0:
        return EXIT_PASS  # under `accelerate launch`, one summary (rank 0's) is enough
    val = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"finetune: {result.steps} steps ({result.stopped}){val}")
    print(f"model: {result.model_dir}")
    if result.adapter_dir:
        print(f"adapter: {result.adapter_dir}")
    print(f"metrics: {result.metrics_path}")
    return EXIT_PASS


def cmd_harden(args, fields) -> int:
    from ..harden import harden

    config: dict[str, Any] = {}
    if args.config:
        from ..config import ConfigError

        from ..io.safe_yaml import load_yaml_file

        config = load_yaml_file(args.config, what="finetune config", error=ConfigError) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{args.config}: a finetune config must be a YAML mapping")
    from .config import _set_dotted

    for k, v in _overrides(args, fields).items():
        _set_dotted(config, k, v)
    r = harden(args.model, args.suite, args.out, config=config, target=args.target, include_clean=not args.no_clean,
               progress=not args.quiet, use_cache=not args.no_cache, cache_dir=args.cache_dir,
               train_split=args.train_split)
    for key, pair in _robustness_rows(r):
        print(f"{key}: {pair[0]} -> {pair[1]}")
    print(f"adversarial examples trained on: {r.n_adversarial} (of {r.n_train} pairs)")
    if r.model_dir:
        print(f"hardened model: {r.model_dir}")
    for p in r.reports:
        print(f"comparison: {p}")
    gates = "pass" if r.after.passed else "FAIL"
    print(f"gates on the hardened model: {gates}")
    if r.after.errors:
        return EXIT_ERROR
    return EXIT_PASS if r.after.passed else EXIT_GATE_FAILED


def _robustness_rows(r):
    def fmt(v):
        return "n/a" if v is None else f"{v:.4g}"

    keys = sorted(k for k in r.before.metrics if k.startswith("robustness."))
    return [(k, (fmt(r.before.metrics.get(k)), fmt(r.after.metrics.get(k)))) for k in keys]
