"""The fine-tuning configuration: one typed dataclass with commented defaults, from YAML or CLI flags.

Every field is validated in ``__post_init__``; errors name the field (and the file, through
:func:`audit.config.from_mapping`). Loss and LoRA options are validated against their own
dataclasses, so a typo in ``losses.pgd.epsilno`` names the loss and suggests ``epsilon``.

Example:
    >>> cfg = load_finetune_config({"model": "builtin:micro", "data": "d.jsonl", "losses": {"ce": 1.0, "pgd": 0.5}})
    >>> cfg.loss_specs()[1].name, cfg.loss_specs()[1].weight
    ('pgd', 0.5)
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, from_mapping, resolve_data_path
from ..io.safe_yaml import load_yaml_file
from ..registry import unknown_name


@dataclass
class LoraOptions:
    """LoRA adapters through ``peft`` (Hu et al. 2021): train low-rank updates, freeze the base."""

    r: int = 8                               # adapter rank
    alpha: int = 16                          # scaling numerator (update scaled by alpha / r)
    dropout: float = 0.0                     # dropout on the adapter input
    target_modules: list[str] | None = None  # module names to adapt; None: peft's default for the architecture
    merge_on_save: bool = True               # final model = base + merged adapter (loadable without peft)

    def __post_init__(self):
        if self.r < 1:
            raise ValueError("lora.r must be >= 1")
        if self.alpha <= 0:
            raise ValueError("lora.alpha must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError("lora.dropout must be in [0, 1)")


@dataclass
class AugmentOptions:
    """Data-level adversarial augmentation of training prompts with TextAttack's ``Augmenter``.

    Static (``online: false``): one fixed set of ``per_prompt`` perturbed copies of every training
    prompt, built before training. Online (``online: true``, Ivgi & Berant 2021, "Achieving Model
    Robustness through Discrete Adversarial Training", EMNLP 2021, arXiv:2104.05062): the same
    ``per_prompt`` slots per prompt, but every time a slot is drawn (once an epoch) its prompt is a
    fresh perturbation of the clean one, from an RNG seeded by (``seed``, epoch, slot index): reruns,
    resumed runs and every data-parallel process see the same stream (see
    :class:`audit.finetune.augment.OnlineAugmented`).
    """

    transformations: list[str] = field(default_factory=lambda: ["char_swap", "char_delete", "qwerty"])  # see augment.TRANSFORMATIONS
    per_prompt: int = 1              # augmented copies (online: slots) of each training prompt
    pct_words_to_swap: float = 0.1   # share of words each copy perturbs
    fields: str = "prompt"           # which part to perturb: prompt (the target stays clean)
    online: bool = False             # re-perturb each slot every epoch (seeded by seed, epoch, slot) instead of one fixed set

    def __post_init__(self):
        if self.per_prompt < 1:
            raise ValueError("augment.per_prompt must be >= 1")
        if not 0 < self.pct_words_to_swap <= 1:
            raise ValueError("augment.pct_words_to_swap must be in (0, 1]")
        if self.fields != "prompt":
            raise ValueError("augment.fields: only 'prompt' is supported (targets stay clean)")
        if not isinstance(self.online, bool):
            raise ValueError(f"augment.online must be true or false, got {self.online!r}")


@dataclass
class LossSpec:
    """One weighted loss term, its options validated by the loss's own ``Options`` dataclass."""

    name: str
    weight: float
    options: Any


#: ``max_length``'s default (lowered to the model's context window when that is smaller).
DEFAULT_MAX_LENGTH = 256


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs; ``audit finetune CONFIG.yaml`` reads exactly these fields."""

    # ---- model and data ----
    model: str = "builtin:tiny"          # builtin:tiny | builtin:micro | a local Hugging Face directory
    data: str = ""                       # JSONL/CSV of prompt/target records, or a .txt file of plain text
    format: str = "auto"                 # auto | prompt_target (loss on target tokens only) | text (loss on all tokens)
    prompt_field: str = "prompt"         # prompt column of prompt/target records
    target_field: str = "reference"      # target column (the text the model should produce after the prompt)
    text_field: str = "text"             # column of plain-text records
    train_split: str | None = None       # keep rows whose `split` equals this for training (None: all rows)
    val_split: str | None = None         # rows whose `split` equals this form the validation set (None: hold out val_fraction)
    val_fraction: float = 0.1            # share of training rows held out for validation when val_split is None
    limit: int | None = None             # use the first N training rows
    adversarial: list[str] = field(default_factory=list)  # adversarial.jsonl files written by robustness audits
    augment: dict[str, Any] | None = None  # TextAttack augmentation of training prompts (see AugmentOptions)
    max_length: int = DEFAULT_MAX_LENGTH # tokens per example, longer ones are cut (prompt from the left); at most the model's window
                                         # (the default is lowered to a smaller window, a larger value is refused)
    add_eos: bool = True                 # end each target with the eos token, so the model learns to stop
    # As the model is used: a record is a user turn and an assistant turn of the model's chat template,
    # the loss on the answer and its end-of-turn markup. No effect on base models or plain text.
    use_chat_template: bool = True       # prompt/target records through the model's chat template, if it has one
    system_prompt: str | None = None     # a system turn before every record (needs a chat template); use the
                                         # same text as the suite's model.system_prompt the model is audited with

    # ---- output ----
    out_dir: str = "runs/finetune"       # checkpoints/, model/ (final), metrics.jsonl, tensorboard/
    seed: int = 0                        # seeds data order, init of adversarial noise, dropout

    # ---- optimisation ----
    epochs: int = 1                      # passes over the training set (max_steps wins when set)
    max_steps: int | None = None         # optimizer steps in total (None: epochs x steps per epoch)
    batch_size: int = 8                  # examples per micro-batch per process
    grad_accum: int = 1                  # micro-batches per optimizer step
    lr: float = 5e-5                     # peak learning rate of AdamW
    weight_decay: float = 0.01           # decoupled weight decay (not on biases, norms or embeddings' 1-d params)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    adam_eps: float = 1e-8               # AdamW epsilon
    warmup_steps: int = 0                # linear warm-up from 0 to lr
    schedule: str = "linear"             # decay after warm-up: linear | cosine | constant
    min_lr_ratio: float = 0.0            # the decay ends at lr * min_lr_ratio
    max_grad_norm: float | None = 1.0    # clip the global gradient norm (None: no clipping)
    losses: dict[str, Any] = field(default_factory=lambda: {"ce": 1.0})  # name -> weight, or name -> {weight, options}

    # ---- validation, early stopping, checkpoints ----
    eval_every: int = 50                 # validate every N optimizer steps (and at the end)
    patience: int | None = None          # stop after N validations without improvement (None: no early stopping)
    min_delta: float = 0.0               # an improvement must lower validation loss by more than this
    load_best: bool = True               # the final model is the best validated one (when validation ran)
    save_every: int = 100                # checkpoint every N optimizer steps (and at the end)
    keep_checkpoints: int = 2            # newest step checkpoints kept on disk (the best one is kept apart)
    resume: str | None = None            # a checkpoint directory, or "auto" for the newest in out_dir/checkpoints

    # ---- scale and efficiency ----
    precision: str = "auto"              # auto (bf16 autocast on capable CUDA, else fp32) | no | bf16 | fp16
    gradient_checkpointing: bool = False # recompute activations in backward: less memory, ~30% more time
    freeze_all_but_top_k: int | None = None  # train only the top k transformer blocks and the final norm
    lora: dict[str, Any] | None = None   # LoRA adapters (see LoraOptions); None: full fine-tuning
    length_grouped: bool = True          # batch examples of similar length (less padding), order still shuffled

    # ---- logging ----
    log_every: int = 10                  # write training metrics every N optimizer steps
    tensorboard: bool = True             # also log to TensorBoard when it is installed (without report_to)
    report_to: list[str] | None = None   # trackers of the training curves: mlflow, tensorboard (None: tensorboard as above)
    mlflow_uri: str | None = None        # MLflow tracking URI or directory (default: $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db); without report_to, adds mlflow
    mlflow_experiment: str | None = None # MLflow experiment (default: finetune; harden: harden-<suite>)
    mlflow_run_name: str | None = None   # MLflow run name (default: the out_dir's name)
    progress: bool = True                # tqdm bar with the running loss

    def __post_init__(self):
        if self.format not in ("auto", "prompt_target", "text"):
            raise ValueError(f"format must be auto, prompt_target or text, got {self.format!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if not self.adam_eps > 0:   # torch refuses a negative one only when the optimizer is built; NaN too
            raise ValueError(f"adam_eps must be > 0 (AdamW's epsilon; got {self.adam_eps})")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError("betas must be two numbers in [0, 1)")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"schedule must be linear, cosine or constant, got {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("min_lr_ratio must be in [0, 1]")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError("max_grad_norm must be > 0 (or null for no clipping)")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be >= 1 (or null for no early stopping)")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be >= 1")
        if self.precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, no, bf16 or fp16, got {self.precision!r}")
        if self.freeze_all_but_top_k is not None and self.freeze_all_but_top_k < 0:
            raise ValueError("freeze_all_but_top_k must be >= 0")
        if self.lora is not None and self.freeze_all_but_top_k is not None:
            raise ValueError("lora and freeze_all_but_top_k are exclusive (LoRA already freezes the base)")
        if not isinstance(self.losses, dict) or not self.losses:
            raise ValueError("losses must map at least one loss name to a weight")
        if self.report_to is not None:
            from ..tracking.training import TRACKERS

            if not isinstance(self.report_to, (list, tuple)) or not all(isinstance(t, str) for t in self.report_to):
                raise ValueError(f"report_to must be a list of tracker names ({', '.join(TRACKERS)}), got {self.report_to!r}")
            for t in self.report_to:
                if t not in TRACKERS:
                    raise ValueError(f"report_to: {unknown_name('tracker', t, TRACKERS)}")
            if "tensorboard" in self.report_to and not self.tensorboard:
                raise ValueError("report_to names tensorboard but tensorboard is false; drop one of them")
            if self.mlflow_uri and "mlflow" not in self.report_to:
                raise ValueError("mlflow_uri is set but report_to does not name mlflow; add it (or drop mlflow_uri)")
        # Validate nested options now, so errors surface before any model loads.
        self.loss_specs()
        self.lora_options()
        self.augment_options()

    def trackers(self) -> set[str]:
        """Where the training curves go: ``report_to`` when given; else TensorBoard as ``tensorboard`` says, and
        MLflow when ``mlflow_uri`` is set (old configs, ``tensorboard: true/false``, mean what they did)."""
        if self.report_to is not None:
            return set(self.report_to)
        return ({"tensorboard"} if self.tensorboard else set()) | ({"mlflow"} if self.mlflow_uri else set())

    def fit_window(self, window: int | None, *, model: str) -> "FinetuneConfig":
        """This config for a model of ``window`` positions (None: unknown). Position embeddings stop at the
        window (a longer example is an IndexError in its first batch): the default ``max_length``
        (:data:`DEFAULT_MAX_LENGTH`) is lowered to it, any other value beyond it is refused.

        Raises:
            ConfigError: one line naming ``max_length`` and the model's window.
        """
        if not window or self.max_length <= window:
            return self
        if self.max_length == DEFAULT_MAX_LENGTH:
            return dataclasses.replace(self, max_length=window)
        raise ConfigError(f"max_length {self.max_length}: the model {model} has {window} positions (its context "
                          f"window); set max_length to at most {window}")

    # ---- nested options -------------------------------------------------------------------
    def loss_specs(self) -> list[LossSpec]:
        """The weighted loss terms, each with validated options."""
        from .losses import LOSSES

        specs = []
        for name, value in self.losses.items():
            if name not in LOSSES:
                raise ValueError(f"losses: {unknown_name('loss', name, LOSSES.names())}")
            cls = LOSSES.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                weight, opts = float(value), {}
            elif isinstance(value, dict):
                opts = dict(value)
                weight = opts.pop("weight", 1.0)
                if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                    raise ValueError(f"losses.{name}.weight: expected a number, got {weight!r}")
            else:
                raise ValueError(f"losses.{name}: expected a weight or a mapping of options, got {value!r}")
            if not (math.isfinite(weight) and weight >= 0):   # NaN passes `weight < 0`
                raise ValueError(f"losses.{name}.weight must be a finite number >= 0, got {weight}")
            try:
                options = from_mapping(cls.Options, opts, f"losses.{name}")
            except ConfigError as e:
                raise ValueError(str(e)) from None
            specs.append(LossSpec(name=name, weight=float(weight), options=options))
        return specs

    def lora_options(self) -> LoraOptions | None:
        if self.lora is None:
            return None
        try:
            return from_mapping(LoraOptions, self.lora, "lora")
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def augment_options(self) -> AugmentOptions | None:
        if self.augment is None:
            return None
        try:
            return from_mapping(AugmentOptions, self.augment, "augment")
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_finetune_config(source: str | os.PathLike | dict | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """Build a :class:`FinetuneConfig` from a YAML file or a mapping, then apply ``overrides``.

    Relative ``data`` and ``adversarial`` paths in a file are resolved against the file's directory
    (``audit:`` names bundled data); ``out_dir`` stays relative to the working directory.

    Args:
        source: a YAML path, a mapping, or None (defaults + overrides only).
        overrides: field -> value (e.g. from CLI flags); dotted keys reach into mappings
            (``losses.pgd.epsilon``).

    Raises:
        ConfigError: naming the file and field.

    Example:
        >>> load_finetune_config({"data": "x.jsonl"}, {"lr": 1e-3}).lr
        0.001
    """
    where = "finetune config"
    base = Path.cwd()
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, dict):
        raw = dict(source)
    else:
        p = Path(source)
        if not p.exists():
            raise ConfigError(f"{source}: config file not found")
        where, base = str(p), p.parent
        raw = load_yaml_file(p, what="finetune config", error=ConfigError) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: a finetune config must be a YAML mapping")
        for key in ("data",):
            if isinstance(raw.get(key), str) and raw[key]:
                raw[key] = str(_resolve(raw[key], base))
        if isinstance(raw.get("adversarial"), list):
            raw["adversarial"] = [str(_resolve(a, base)) if isinstance(a, str) else a for a in raw["adversarial"]]
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    if isinstance(raw.get("data"), str) and raw["data"].startswith("audit:"):
        raw["data"] = str(_resolve(raw["data"], base))
    return from_mapping(FinetuneConfig, raw, where)


def _resolve(p: str, base: Path) -> Path:
    return resolve_data_path(p, base)


def set_dotted(raw: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        raw[head] = value
        return
    sub = raw.get(head)
    if head == "losses" and isinstance(sub, dict):
        name, _, opt = rest.partition(".")
        if opt and isinstance(sub.get(name), (int, float)):
            sub[name] = {"weight": sub[name]}  # a bare weight grows into an options mapping
    if not isinstance(sub, dict):
        sub = {} if sub is None else sub
        if not isinstance(sub, dict):
            raise ConfigError(f"{key}: {head!r} is not a mapping")
        raw[head] = sub
    set_dotted(sub, rest, value)


def scalar_fields() -> list[tuple[str, Any, str]]:
    """(name, type, comment) for each scalar config field, to generate one CLI flag per field."""
    import inspect
    import re

    hints = typing.get_type_hints(FinetuneConfig)
    comments: dict[str, str] = {}
    for line in inspect.getsource(FinetuneConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    out = []
    for f in dataclasses.fields(FinetuneConfig):
        tp = hints[f.name]
        origin = typing.get_origin(tp)
        union = origin is typing.Union or str(origin) == "<class 'types.UnionType'>"
        args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
        if args and all(a in (int, float, str, bool) for a in args):
            out.append((f.name, args[0], comments.get(f.name, "")))
    return out
