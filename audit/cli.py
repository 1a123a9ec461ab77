"""The `audit` command line. Thin: each subcommand parses its arguments and calls one library function.

Exit codes: 0 all gates pass; 1 a gate failed (reports are written first); 2 usage, config, input
or runtime error, printed as one line (the traceback only with --debug).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from .config import ConfigError
from .errors import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_PASS, AuditError, first_line
from .io.safe_yaml import load_yaml, load_yaml_file
from .io.untrusted import one_line
from .launch import EXIT_DIR_ENV, run_rank

log = logging.getLogger("audit")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one line, like every other error
        self.print_usage(sys.stderr)
        print(f"audit: error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's choice; for small models on few cores 1 is often fastest)")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-d", metavar="DIR", help="output directory for results.json, samples.jsonl and reports (default: reports/<suite name>)")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                   help="also write FILE; the extension picks the format (repeatable; `audit ls` lists formats)")
    p.add_argument("--section", action="append", metavar="NAME", help="run only this section (repeatable)")
    p.add_argument("--seed", type=int, help="override the suite's seed")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store cached generations and scores")
    p.add_argument("--cache-dir", metavar="DIR", help="cache location (default: $AUDIT_CACHE or ~/.cache/audit)")
    p.add_argument("--baseline", metavar="FILE", help="baseline results.json for regression gates (refused if it measured another suite version, data or generation settings)")
    p.add_argument("--force-baseline", action="store_true", help="compare with an incompatible baseline anyway")
    g = p.add_argument_group("tracking (docs/tracking.md; needs pip install 'audit[tracking]')")
    g.add_argument("--mlflow", nargs="?", const=True, metavar="URI",
                   help="log params, metrics, gates and reports to MLflow (overrides the suite's tracking block): a "
                        "tracking server http(s)://HOST:PORT, a sqlite:/// URI or a directory; without URI "
                        "the suite's tracking.mlflow, else $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db. A failure "
                        "to log after the audit exits 2 with results.json and the reports already written")
    g.add_argument("--mlflow-experiment", metavar="NAME", help="MLflow experiment (default: the suite's tracking.experiment, else its name)")
    g.add_argument("--mlflow-run-name", metavar="NAME", help="MLflow run name (default: '<suite> <model>')")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="audit", description="Evaluate, explain, harden and gate text-generation language models.")
    parser.add_argument("--version", action="version", version=f"audit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run a suite on a model and gate the result",
                       description="Run SUITE (a YAML file or a bundled suite name) on a model; write results.json, "
                                   "samples.jsonl and reports; exit 0 if every gate passes, 1 if one fails, 2 on error.")
    p.add_argument("suite", help="suite YAML file, or a bundled suite name (e.g. demo)")
    p.add_argument("--model", "-m", help="model (overrides the suite): builtin:tiny, builtin:smollm2, a local Hugging Face directory, a .gguf file, a cached hub id, or a served model openai:URL[#NAME]")
    _run_args(p)
    _common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="audit the embedded default model with the bundled demo suite (offline)",
                       description="Build (once, cached) the embedded builtin:tiny model and audit it with the bundled demo suite.")
    p.add_argument("--model", "-m", default=None, help="model to audit instead of builtin:tiny")
    _run_args(p)
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("validate", help="check a suite file without loading a model")
    p.add_argument("suite", help="suite YAML file or bundled suite name")
    _common(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("score", help="score existing outputs (JSONL) with a refusal judge or toxicity backend, no model",
                       description="Score every line of IN ({\"prompt\": ..., \"response\": ...}; prompt optional for text-only "
                                   "scorers) and write the lines with \"score\" added to OUT. refusal: the probability that "
                                   "the response declines what was asked (a refusal at >= 0.5). A bad line: exit 2, nothing written.")
    p.add_argument("input", metavar="IN", help="JSONL file of {prompt, response} lines")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="JSONL file to write (the input lines with score)")
    p.add_argument("--scorer", default="refusal", help="refusal (the MiniLM judge), refusal:substring, or a toxicity backend "
                                                       "(profanity, detoxify:original, hf:PATH; `audit ls`); default refusal")
    p.add_argument("--batch-size", type=int, metavar="N", help="texts per scoring batch")
    _common(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("ls", help="list sections, metrics, output formats and other components")
    _common(p)
    p.set_defaults(func=cmd_ls)

    _add_harden(sub)

    # Listed for --help only: main() hands `audit launch ...` to audit.launch before argparse sees it.
    sub.add_parser("launch", help="run a command under `accelerate launch` keeping the exit codes (0/1/2)",
                   description="audit launch [ACCELERATE LAUNCH OPTIONS] -- COMMAND [ARGS ...]", add_help=False
                   ).set_defaults(func=_launch_not_first)

    # Subcommands of other areas live beside their library code; each module has add_commands(sub).
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub, common=_common, run_args=_run_args)
    return parser


def _add_harden(sub) -> None:
    from .finetune.commands import config_flags  # harden takes the finetune config's flags too

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
    p.add_argument("--attack-recipe", action="append", default=[], metavar="RECIPE",
                   help="with --train-split: attack the train split with this of the suite's recipes only "
                        "(repeatable; default all); the others are audited but never trained on (transfer)")
    p.add_argument("--objective", choices=["robustness", "safety"], default="robustness",
                   help="robustness (default): train on the successful attacks. safety: train on the suite's safety "
                        "section's TRAIN split (refusals of harmful and jailbreak-wrapped requests, the model's own "
                        "answers to harmless look-alikes) mixed with the data's --train-split task records; the "
                        "section must audit split: test (docs/safety.md)")
    p.add_argument("--hold-out-area", action="append", default=[], metavar="AREA",
                   help="safety: a risk area never trained on (measured as transfer); repeatable")
    p.add_argument("--safety-harmful-limit", type=int, metavar="N",
                   help="safety: train on N harmful train-split requests (stratified; default: "
                        "audit.safety_training.SafetyTraining's)")
    p.add_argument("--safety-mix", action="append", default=[], metavar="KEY=VALUE",
                   help="safety: a setting of the training mix (wrapped_copies, benign_repeat, task_repeat, benign, "
                        "refusals, benign_max_new_tokens, max_template_chars); repeatable; docs/safety.md")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached generations")
    p.add_argument("--cache-dir", metavar="DIR", help="cache location")
    hfields = config_flags(p, skip=("model", "data", "out_dir", "train_split", "val_split", "format", "prompt_field",
                                     "target_field", "text_field", "resume"))
    _common(p)
    p.set_defaults(func=lambda a: cmd_harden(a, hfields))


def _launch_not_first(args) -> int:
    raise AuditError("launch: `launch` must come first, right after `audit` (audit launch [OPTIONS] -- run SUITE ...)")


# Modules that add subcommands (report, compare, explain, finetune, ...).
COMMAND_MODULES: list[str] = ["audit.report.commands", "audit.finetune.commands", "audit.explain.commands"]


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


def _setup_logging(args) -> None:
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if not args.debug:
        # Log lines quote suite, model and data strings: one printable line each (no ANSI, no fake lines).
        for handler in logging.getLogger().handlers:
            if handler not in before:   # only the handler made here, never an embedding program's own
                handler.setFormatter(_OneLineFormatter("%(message)s"))
    logging.getLogger("audit").setLevel(level)
    if not args.debug:
        # Library chatter (transformers' deprecation notes, tokenizer fork warnings) hides our lines.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # absl: rouge_score's "Using default tokenizer."; matplotlib: "generated new fontManager" on first use.
        for name in ("transformers", "datasets", "evaluate", "textattack", "urllib3", "filelock", "huggingface_hub",
                     "sentence_transformers", "absl", "matplotlib", "mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"


def _finish(result, out_dir: Path | None) -> int:
    from .report import WRITERS

    print(WRITERS.get(".txt")(result), end="")
    if out_dir is not None:
        print(f"results: {out_dir / 'results.json'}")
    if result.errors:
        return EXIT_ERROR
    return EXIT_PASS if result.passed else EXIT_GATE_FAILED


def _default_outputs(out_dir: Path) -> list[str]:
    """Reports written beside results.json by default: every registered rich format we ship."""
    from .report import WRITERS

    return [str(out_dir / name) for ext, name in (( ".html", "report.html"), (".xml", "junit.xml"), (".md", "summary.md"))
            if ext in WRITERS]


def cmd_run(args) -> int:
    from .runner import run_suite
    from .suite import load_suite

    suite = load_suite(args.suite, model_override=args.model)
    from .models.builtin import first_build_note

    if note := first_build_note(suite.model.path):
        log.info(note)
    out_dir = Path(args.out) if args.out else Path("reports") / suite.name
    from .tracking.store import TrackingFailed

    tracking = {"mlflow": args.mlflow, "experiment": args.mlflow_experiment, "run_name": args.mlflow_run_name}
    try:
        result = run_suite(suite, out_dir=out_dir, outputs=_default_outputs(out_dir) + args.output, progress=not args.quiet,
                           use_cache=not args.no_cache, cache_dir=args.cache_dir, only_sections=args.section, seed=args.seed,
                           baseline=getattr(args, "baseline", None), force_baseline=getattr(args, "force_baseline", False),
                           tracking=tracking)
    except TrackingFailed as e:   # the audit is done and written: show it, then the tracking error (exit 2)
        if e.result is not None:
            _finish(e.result, out_dir)
        raise
    from .models.distributed import world

    if not world().is_main:   # under `accelerate launch`: rank 0 prints the summary and writes the reports
        return EXIT_ERROR if result.errors else EXIT_PASS if result.passed else EXIT_GATE_FAILED
    return _finish(result, out_dir)


def cmd_demo(args) -> int:
    args.suite = "demo"
    if args.out is None:
        args.out = str(Path("reports") / "demo")
    return cmd_run(args)


def cmd_validate(args) -> int:
    from .suite import validate_suite

    suite, records = validate_suite(args.suite)
    print(f"ok: {suite.path}: suite {suite.name!r}, model {suite.model.path}, {len(records)} records, "
          f"{len(suite.sections)} sections ({', '.join(suite.sections)}), {len(suite.gates)} gates")
    return EXIT_PASS


def cmd_harden(args, fields) -> int:
    from .finetune.commands import overrides
    from .finetune.config import set_dotted
    from .harden import harden

    config: dict[str, Any] = {}
    if args.config:
        config = load_yaml_file(args.config, what="finetune config", error=ConfigError) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{args.config}: a finetune config must be a YAML mapping")
    for k, v in overrides(args, fields).items():
        set_dotted(config, k, v)
    if args.objective != "safety" and (args.hold_out_area or args.safety_harmful_limit is not None or args.safety_mix):
        raise ConfigError("harden: --hold-out-area, --safety-harmful-limit and --safety-mix need --objective safety")
    safety = {"hold_out": args.hold_out_area}
    for item in args.safety_mix:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"harden: --safety-mix takes KEY=VALUE, got {item!r}")
        try:
            safety[key.strip()] = load_yaml(value)
        except Exception as e:  # noqa: BLE001 - yaml's errors: a value that does not parse
            raise ConfigError(f"harden: --safety-mix {item!r}: the value does not parse ({first_line(e)})") from None
    if args.safety_harmful_limit is not None:
        safety["harmful_limit"] = args.safety_harmful_limit
    r = harden(args.model, args.suite, args.out, config=config, target=args.target, include_clean=not args.no_clean,
               progress=not args.quiet, use_cache=not args.no_cache, cache_dir=args.cache_dir,
               train_split=args.train_split, objective=args.objective, attack_recipes=args.attack_recipe or None,
               safety=safety if args.objective == "safety" else None)
    for key, pair in _summary_rows(r):
        print(f"{key}: {pair[0]} -> {pair[1]}")
    if r.objective == "safety":
        print("trained on: " + ", ".join(f"{n} {k}" for k, n in r.mix["counts"].items()) + f" ({r.n_train} pairs)")
    else:
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


def _summary_rows(r):
    from .harden import summary_keys

    def fmt(v):
        return "n/a" if v is None else f"{v:.4g}"

    # The safety objective's per-category rows (metric.category) stay in harden.json and the comparison.
    keys = [k for k in summary_keys(r.before, r.after, r.objective) if r.objective != "safety" or k.count(".") == 1]
    return [(k, (fmt(r.before.metrics.get(k)), fmt(r.after.metrics.get(k)))) for k in keys]


def listings() -> dict[str, list[str]]:
    """Every registry a suite or command can name, for `audit ls`."""
    from .evaluators import SECTIONS
    from .report import WRITERS

    out: dict[str, list[str]] = {}
    for name, cls in SECTIONS.items():
        infos = cls.metric_infos(cls.Options())
        out[f"section {name}"] = [f"{name}.{m} { {True: '↑', False: '↓'}.get(info.higher_is_better, '(diagnostic)') }"
                                  + (f"  {info.description}" if info.description else "") for m, info in sorted(infos.items())]
    out["output formats"] = WRITERS.names()
    from .models.load import model_kinds

    out["models (--model, a suite's model:)"] = model_kinds()
    for title, registry in _extra_listings():
        out[title] = registry.names()
    return out


def _extra_listings():
    """(title, registry) pairs from optional modules (backends, recipes, methods, losses)."""
    import importlib

    for title, mod, attr in _LISTED:
        try:
            yield title, getattr(importlib.import_module(mod), attr)
        except ImportError:
            continue


# (title, module, registry attribute): other modules' registries shown by `audit ls`.
_LISTED: list[tuple[str, str, str]] = [("toxicity backends", "audit.scorers", "SCORERS"),
                                      ("sentiment backends", "audit.scorers", "SENTIMENT_SCORERS"),
                                      ("refusal judges", "audit.scorers.refusal", "REFUSAL_SCORERS"),
                                      ("attack recipes", "audit.attacks", "RECIPES"),
                                      ("prompt perturbations", "audit.perturb", "PERTURBATIONS"),
                                      ("attribution methods", "audit.explain", "METHODS"),
                                      ("training losses", "audit.finetune", "LOSSES")]


def cmd_score(args) -> int:
    from .scoring import score_file

    summary = score_file(args.scorer, args.input, args.output, batch_size=args.batch_size, progress=not args.quiet)
    print(f"scored {summary['n']} lines with {summary['scorer'].get('backend', args.scorer)}: mean {summary['mean']:.3f}, "
          f"{summary['flagged']} at >= {summary['threshold']} -> {summary['out']}")
    return EXIT_PASS


def cmd_ls(args) -> int:
    for title, rows in listings().items():
        print(f"{title}:")
        for r in rows:
            print(f"  {r}")
    return EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(EXIT_DIR_ENV):   # a rank under `audit launch`: its code goes to the launcher (audit/launch.py)
        return run_rank(_main, argv)
    return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:   # its arguments are accelerate's options and another command: not argparse's
        from .launch import main as launch_main

        return launch_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_ERROR
    _setup_logging(args)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(max(1, args.threads))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("audit: interrupted (finished generations are cached; rerun to resume)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        if args.debug:
            # The traceback is what --debug is for; the exit code stays the error one (2): letting the
            # exception escape would make Python exit 1, which CI reads as "a gate failed".
            traceback.print_exc(file=sys.stderr)
        print(_error_line(e), file=sys.stderr)
        return EXIT_ERROR


# Longest error line printed: messages quote untrusted values, and a terminal is no place for megabytes.
_MAX_ERROR_CHARS = 1000


def _error_line(e: BaseException) -> str:
    """``audit: error: ...`` on one printable line; never raises (a failure here would exit 1, not 2)."""
    try:
        if isinstance(e, MemoryError):
            return "audit: error: out of memory (rerun with --debug for the traceback)"
        msg = one_line(first_line(e, default=""), limit=_MAX_ERROR_CHARS)
        if isinstance(e, AuditError):
            return f"audit: error: {msg}"
        return f"audit: error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)"
    except BaseException:  # noqa: BLE001 - even MemoryError while formatting must end as exit 2
        return f"audit: error: {type(e).__name__} (rerun with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
