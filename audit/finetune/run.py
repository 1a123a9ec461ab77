"""``audit.finetune.finetune(...)``: config -> data -> model (LoRA / frozen) -> trainer -> saved model.

Example:
    >>> from audit.finetune import finetune
    >>> r = finetune("audit/suites/finetune-demo.yaml", max_steps=20, out_dir="runs/demo")  # doctest: +SKIP
    >>> LanguageModel.load(str(r.model_dir))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml

from ..config import ConfigError
from ..data import DataError
from ..io.output_dirs import check_apart, check_replaceable, output_lock
from ..io.output_paths import check_output_dir
from ..models.distributed import world
from ..models.files import context_length, context_window
from ..tracking.training import TrainingTracking
from .config import FinetuneConfig, load_finetune_config
from .data import Example, TextPair, read_adversarial, read_pairs, split_train_val, tokenize_pairs
from .trainer import Trainer, TrainResult

log = logging.getLogger("audit")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def prepare_data(cfg: FinetuneConfig, tokenizer, *, progress: bool = False,
                 chat=None) -> tuple[Sequence[Example], list[Example], dict[str, int]]:
    """Read, split, augment and tokenise the training data as ``cfg`` says.

    The validation set is always clean data from ``cfg.data``; adversarial records and augmented
    prompts join the training set only. With ``augment.online`` the training set is an
    :class:`~audit.finetune.augment.OnlineAugmented` (its augmented slots re-perturbed every epoch,
    ``counts``: ``augment`` slots, ``augment_online: 1``). ``chat`` (the model's :class:`~audit.models.chat.ChatFormat`)
    renders prompt/target records as a user and an assistant turn when ``cfg.use_chat_template``.
    """
    if not cfg.data:
        raise DataError("finetune: data is required (a JSONL/CSV of prompt/target records or a .txt file)")
    common = dict(fmt=cfg.format, prompt_field=cfg.prompt_field, target_field=cfg.target_field, text_field=cfg.text_field)
    pairs, fmt = read_pairs(cfg.data, split=cfg.train_split, **common)
    if not pairs:
        raise DataError(f"{cfg.data}: no records with split={cfg.train_split!r}")
    if cfg.limit is not None:
        pairs = pairs[:cfg.limit]
    if cfg.val_split is not None:
        val_pairs, _ = read_pairs(cfg.data, split=cfg.val_split, **common)
        if not val_pairs:  # a typo in the split name would silently turn off validation and early stopping
            raise DataError(f"{cfg.data}: no records with split={cfg.val_split!r} (val_split)")
        fraction = 0.0
    else:
        val_pairs, fraction = [], cfg.val_fraction
    if fmt == "prompt_target":
        pairs, held = split_train_val(pairs, fraction, cfg.seed)
        val_pairs = val_pairs + held
    counts = {"data": len(pairs)}
    extra: list[TextPair] = []
    for path in cfg.adversarial:
        adv = read_adversarial(path)
        counts["adversarial"] = counts.get("adversarial", 0) + len(adv)
        extra.extend(adv)
    aug = cfg.augment_options()
    if aug is not None and not aug.online:
        from .augment import augment_pairs

        augmented = augment_pairs(pairs, aug, seed=cfg.seed, progress=progress)
        counts["augment"] = len(augmented)
        extra.extend(augmented)
    chat = chat if cfg.use_chat_template and fmt == "prompt_target" else None
    tok_kw = dict(max_length=cfg.max_length, add_eos=cfg.add_eos, chat=chat)
    train = tokenize_pairs(pairs + extra, tokenizer, **tok_kw)
    if aug is not None and aug.online:
        from .augment import OnlineAugmented

        if any(p.prompt for p in pairs):   # plain text has no prompt to perturb
            train = OnlineAugmented(train, pairs, aug, seed=cfg.seed,
                                    tokenize=lambda ps: tokenize_pairs(ps, tokenizer, **tok_kw))
        counts.update(augment=len(train.slots) if isinstance(train, OnlineAugmented) else 0, augment_online=1)
    val = tokenize_pairs(val_pairs, tokenizer, **tok_kw)
    if fmt == "text":  # plain text: hold out blocks, not files
        train, held_blocks = split_train_val(train, fraction, cfg.seed)
        val = val + held_blocks
    counts.update(train_examples=len(train), val_examples=len(val), chat_template=int(chat is not None))
    return train, val, counts


def load_language_model(cfg: FinetuneConfig, model=None):
    """The :class:`~audit.models.local.LanguageModel` to train (its chat format included): ``model`` or ``cfg.model``."""
    from ..models.local import LanguageModel

    if model is None or isinstance(model, (str, os.PathLike)):
        # fp32 master weights; bf16 comes from autocast on CUDA. Accelerate places the model.
        model = LanguageModel.load(str(model or cfg.model), device="cpu", dtype="float32")
    return model


def _chat_format(cfg: FinetuneConfig, lm):
    """The chat format records are rendered with: the model's, with ``cfg.system_prompt`` as its system turn."""
    if not cfg.system_prompt:
        return lm.chat
    if lm.chat is None or not cfg.use_chat_template:
        raise ConfigError("finetune: system_prompt needs a chat template (the model has none, or use_chat_template is false)")
    return dataclasses.replace(lm.chat, system_prompt=cfg.system_prompt)


def load_for_training(cfg: FinetuneConfig, model=None):
    """(transformers model, tokenizer) ready to train: fp32 weights, LoRA or freezing applied."""
    from .lora import apply_lora, freeze_all_but_top_k

    model = load_language_model(cfg, model)
    net, tok = model.model, model.tokenizer
    seed_everything(cfg.seed)  # LoRA's random init must be the same on every process
    lora = cfg.lora_options()
    if lora is not None:
        net = apply_lora(net, lora)
    elif cfg.freeze_all_but_top_k is not None:
        n = freeze_all_but_top_k(net, cfg.freeze_all_but_top_k)
        log.info("training the top %d blocks: %s parameters", cfg.freeze_all_but_top_k, f"{n:,}")
    return net, tok


#: The directories under ``out_dir`` a run removes and rewrites: they must be absent or audit's own.
REPLACED_DIRS = {"model": "final model", "best": "best validated weights", "adapter": "LoRA adapter"}


def local_model_path(model) -> str | None:
    """The file or directory on disk a model (spec string, path, ``ModelSpec``, loaded model) comes from, if any."""
    path = model if isinstance(model, (str, os.PathLike)) else getattr(model, "path", None)
    if not isinstance(path, (str, os.PathLike)):
        return None   # in memory, served
    path = os.path.expanduser(str(path))
    return path if os.path.exists(path) else None   # builtin:NAME and hub ids live in caches


def check_out_dir(out_dir: str | os.PathLike, model, *, out_field: str = "out_dir", model_field: str = "model",
                  trains_in: str = ".") -> Path:
    """Everything about ``out_dir`` that can be refused before a model loads: writable, apart from the
    input model (is, contains or lies inside it: a fine-tune's save would replace the model), and no
    directory the run replaces (:data:`REPLACED_DIRS`, under ``out_dir/trains_in``) that audit did not create.

    Raises:
        OutputPathError: one line naming the field and the directory.
    """
    source = local_model_path(model)
    if source is not None:
        check_apart(out_dir, source, out_field=out_field, model_field=model_field)
    out = check_output_dir(out_dir)
    for name, what in REPLACED_DIRS.items():
        check_replaceable(out / trains_in / name, what=what)
    return out


def finetune(config: FinetuneConfig | str | os.PathLike | dict | None = None, *, model=None,
             callbacks: Sequence[Callable] = (), tracking_run=None, **overrides: Any) -> TrainResult:
    """Fine-tune a causal LM as a config says; returns where the model and logs went.

    Args:
        config: a :class:`FinetuneConfig`, a YAML path, or a mapping of its fields.
        model: a :class:`~audit.models.local.LanguageModel` (trained in place) or a model spec; default
            ``config.model``.
        callbacks: ``cb(trainer, record)`` after every optimizer step.
        tracking_run: an :class:`~audit.tracking.MlflowRun` the curves go to (harden's), not ended here;
            default: a run of its own when ``report_to`` names mlflow.
        **overrides: config fields to change (``max_steps=10``, ``losses={"ce": 1, "pgd": 1}``).

    Returns:
        :class:`TrainResult` with ``model_dir`` (load it with ``LanguageModel.load``).

    Raises:
        ConfigError / DataError: invalid config or data (one line, naming the field or line).
        TrainingDiverged: NaN / inf loss.
        TrackingError: MLflow / TensorBoard named in ``report_to`` but missing, or the server down (before
            any model loads); logging failed during the run (after the model is saved).

    Example:
        >>> r = finetune({"model": "builtin:micro", "data": "support.jsonl", "max_steps": 5})  # doctest: +SKIP
    """
    if isinstance(config, FinetuneConfig):
        cfg = config if not overrides else load_finetune_config(config.to_dict(), overrides)
    else:
        cfg = load_finetune_config(config, overrides)
    # `model=` wins over `config.model`: record the model really trained (finetune.yaml, checkpoints).
    trained = str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "spec", None)
    if trained and trained != "<in-memory>" and trained != cfg.model:
        cfg = dataclasses.replace(cfg, model=trained)

    # Before the model loads, not after training.
    check_out_dir(cfg.out_dir, model if model is not None else cfg.model)
    source = local_model_path(model if model is not None else cfg.model)
    if source is not None and os.path.isdir(source):   # config.json says the window before any weights load
        cfg = cfg.fit_window(context_length(Path(source)), model=cfg.model)
    # One run at a time writes into out_dir (rank 0 holds it for every process of a distributed run).
    with output_lock(cfg.out_dir, what="finetune out_dir") if world().is_main else contextlib.nullcontext():
        # Trackers before the model loads: MLflow missing or its server down is a one-line error now.
        tracking = TrainingTracking.open(cfg, main=world().is_main, mlflow_run=tracking_run)
        try:
            return _finetune(cfg, model, callbacks, tracking)
        except BaseException:
            tracking.close(status="FAILED")   # the trainer closed it already when it got that far
            raise


def _finetune(cfg: FinetuneConfig, model, callbacks: Sequence[Callable], tracking: TrainingTracking) -> TrainResult:
    seed_everything(cfg.seed)
    lm = load_language_model(cfg, model)
    cfg = cfg.fit_window(context_window(lm.model.config), model=cfg.model)   # before any data work
    net, tok = load_for_training(cfg, lm)
    # Instruct models learn through their chat template, as they are generated from and audited.
    train, val, counts = prepare_data(cfg, tok, progress=cfg.progress, chat=_chat_format(cfg, lm))
    log.info("finetune: %d training / %d validation examples (%s)", len(train), len(val),
             ", ".join(f"{k}={v}" for k, v in counts.items() if k not in ("train_examples", "val_examples")))
    lora = cfg.lora_options()
    seed_everything(cfg.seed)  # the same RNG stream whether or not LoRA / augmentation drew numbers
    trainer = Trainer(cfg, net, tok, train, val, callbacks=callbacks, merge_lora=lora.merge_on_save if lora else True,
                      tracking=tracking)
    out = Path(cfg.out_dir)
    if trainer.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "finetune.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        (out / "data.json").write_text(json.dumps(counts, indent=2), encoding="utf-8")
    try:
        return trainer.train()
    finally:
        # Without it, rank 0 of a multi-process run aborts at exit with the process group alive.
        trainer.accelerator.end_training()
