"""``detoxify:VARIANT``: the real ``detoxify`` package, loaded from local files only.

Detoxify builds its classifier from a checkpoint dict ``{"config": ..., "state_dict": ...}``. Its
``config.arch.args`` names ``model_type`` (e.g. ``bert-base-uncased``), ``model_name`` (a transformers
model class), ``tokenizer_name`` and ``num_classes``; ``config.dataset.args.classes`` names the
outputs. Offline, ``Detoxify("original")`` cannot download the checkpoint, and even given one it
fetches config and tokenizer from the hub by ``model_type``. It runs fully offline when
``model_type`` names a local directory holding ``config.json`` and the tokenizer files, so we:

1. find the checkpoint: ``checkpoint: PATH``, else torch hub's cache
   (``$TORCH_HOME/hub/checkpoints/<file from detoxify.MODEL_URLS>``), where ``Detoxify()`` keeps it;
2. find the HF config + tokenizer directory: ``config_dir: PATH``, else ``model_type`` when it is a
   directory, else the ``model_type`` snapshot in the Hugging Face cache;
3. point ``model_type`` at that directory and call detoxify's own ``get_model_and_tokenizer``, and
   score with detoxify's own ``Detoxify.predict`` (sigmoid per class).

Anything missing is a one-line :class:`ScorerError` naming the file to provide, raised before any
network call (no multi-second hub retries).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import first_line
from ..io.tensor_files import load_tensors
from ..models.fingerprint import weights_fingerprint
from ..registry import did_you_mean
from . import SCORERS
from .base import Scorer, ScorerError

# detoxify renames some Jigsaw classes in load_checkpoint; we load the checkpoint ourselves, so we
# apply the same renaming to keep the label names users know from Detoxify's output.
_CLASS_RENAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
# model_type of each released checkpoint (for messages before the checkpoint is read).
_MODEL_TYPES = {"original": "bert-base-uncased", "unbiased": "roberta-base", "multilingual": "xlm-roberta-base",
                "original-small": "albert-base-v2", "unbiased-small": "albert-base-v2"}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


# The classes Detoxify's released checkpoints name in config.arch.args (original: BERT; unbiased:
# RoBERTa; multilingual: XLM-R; original-small / unbiased-small: ALBERT), model -> its tokenizers.
_ALLOWED_CLASSES: dict[str, tuple[str, ...]] = {
    "BertForSequenceClassification": ("BertTokenizer", "BertTokenizerFast"),
    "RobertaForSequenceClassification": ("RobertaTokenizer", "RobertaTokenizerFast"),
    "XLMRobertaForSequenceClassification": ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast"),
    "AlbertForSequenceClassification": ("AlbertTokenizer", "AlbertTokenizerFast"),
}


def _hf_cache_snapshot(repo_id: str, cache_dir: str | None) -> Path | None:
    """The cached snapshot directory of ``repo_id`` if its config.json is in the HF cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except Exception:  # an invalid repo id (e.g. a path that does not exist) is just "not cached"
        return None
    return Path(hit).parent if isinstance(hit, str) else None


class DetoxifyScorer(Scorer):
    """A Detoxify classifier; the score is the sigmoid of one class (``toxicity`` by default)."""

    default_batch_size = 32

    def __init__(self, variant: str, *, checkpoint: str | None = None, config_dir: str | None = None,
                 label: str = "toxicity", device: str = "cpu", hf_cache_dir: str | None = None):
        import torch
        from detoxify import detoxify as dx

        self.name = f"detoxify:{variant}"
        self.variant = variant
        self.checkpoint = self._find_checkpoint(variant, checkpoint, dx.MODEL_URLS)
        # Weights and plain data only: the checkpoint path comes from a suite, and suites carry no code.
        # Detoxify's released checkpoints are {"config": dict, "state_dict": tensors}, so they load.
        loaded = load_tensors(self.checkpoint, error=ScorerError, what=f"{self.name} checkpoint")
        try:
            args = dict(loaded["config"]["arch"]["args"])
            classes = list(loaded["config"]["dataset"]["args"]["classes"])
            state_dict = loaded["state_dict"]
            model_type = args["model_type"]
            if not isinstance(state_dict, dict) or not all(isinstance(c, str) for c in classes):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise ScorerError(f"{self.name}: {self.checkpoint} is not a Detoxify checkpoint (needs config.arch.args, "
                              f"config.dataset.args.classes and state_dict)") from None
        args = self._checked_args(args)
        self.class_names = [_CLASS_RENAMES.get(c, c) for c in classes]
        if label not in self.class_names:
            raise ScorerError(f"{self.name}: label {label!r} is not a class of this checkpoint; classes: {', '.join(self.class_names)}")
        self.label = label
        self.config_dir = self._find_config_dir(model_type, config_dir, hf_cache_dir)
        # The documented offline route: model_type names a local directory (see the module docstring).
        args["model_type"] = str(self.config_dir)
        try:
            model, tokenizer = dx.get_model_and_tokenizer(**args, state_dict=state_dict)
        except (OSError, ValueError, RuntimeError, AttributeError) as e:
            first = first_line(e)
            raise ScorerError(f"{self.name}: cannot build the classifier from {self.checkpoint} with config/tokenizer "
                              f"from {self.config_dir}: {first}") from None
        cfg = model.config
        limit = getattr(cfg, "max_position_embeddings", None)
        if limit and tokenizer.model_max_length > limit:
            # Tokenizers saved without model_max_length would let predict()'s truncation pass
            # sequences longer than the position table; RoBERTa-style models offset positions by pad+1.
            offset = (cfg.pad_token_id or 0) + 1 if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta") else 0
            tokenizer.model_max_length = limit - offset
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # detoxify's own predict(): tokenizer(padding, truncation) -> model -> sigmoid per class.
        self._detox = dx.Detoxify.__new__(dx.Detoxify)
        self._detox.model, self._detox.tokenizer, self._detox.class_names = model, tokenizer, self.class_names
        self._detox.device = device
        self._detox.model.to(device)
        self._detox.model.eval()
        self.device = device
        # Weights and the config/tokenizer directory both decide the scores.
        self._fp = f"{weights_fingerprint(self.checkpoint)}-{weights_fingerprint(self.config_dir)}"

    def _checked_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's ``arch.args`` as data: the four fields detoxify reads, each of the expected kind.

        detoxify looks ``model_name`` and ``tokenizer_name`` up as attributes of ``transformers``, so
        they are held to the classes the released checkpoints name (:data:`_ALLOWED_CLASSES`), as a
        matching pair; any other class (``TransfoXLTokenizer`` unpickles its vocabulary) is refused,
        and no other keyword passes through.
        """
        name, tok, n = args.get("model_name"), args.get("tokenizer_name"), args.get("num_classes")
        ok = (isinstance(args.get("model_type"), str) and isinstance(name, str) and isinstance(tok, str)
              and tok in _ALLOWED_CLASSES.get(name, ()) and isinstance(n, int) and not isinstance(n, bool) and n > 0)
        if not ok:
            pairs = "; ".join(f"{m} with {' or '.join(t)}" for m, t in _ALLOWED_CLASSES.items())
            raise ScorerError(f"{self.name}: {self.checkpoint}: config.arch.args must name model_type, num_classes > 0 "
                              f"and a model_name / tokenizer_name pair of the released Detoxify checkpoints: {pairs}")
        return {k: args[k] for k in ("model_type", "model_name", "tokenizer_name", "num_classes")}

    @staticmethod
    def _find_checkpoint(variant: str, checkpoint: str | None, urls: dict[str, str]) -> Path:
        if checkpoint:
            p = Path(os.path.expanduser(checkpoint))
            if not p.is_file():
                raise ScorerError(f"detoxify:{variant}: checkpoint {p} not found (give the path of a Detoxify .ckpt file)")
            return p
        import torch

        url = urls[variant]
        p = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
        if not p.is_file():
            raise ScorerError(
                f"detoxify:{variant}: weights not found at {p} and downloads are off; download {url} there, or set "
                f"scorer_options checkpoint: PATH and config_dir: a local {_MODEL_TYPES[variant]} directory with config.json and tokenizer files")
        return p

    def _find_config_dir(self, model_type: str, config_dir: str | None, hf_cache_dir: str | None) -> Path:
        if config_dir:
            d = Path(os.path.expanduser(config_dir))
            where = f"config_dir {d}"
        elif Path(os.path.expanduser(model_type)).is_dir():
            d = Path(os.path.expanduser(model_type))
            where = f"model_type directory {d}"
        else:
            found = _hf_cache_snapshot(model_type, hf_cache_dir)
            if found is None:
                raise ScorerError(
                    f"{self.name}: the checkpoint needs the {model_type!r} config and tokenizer, which are not in the Hugging Face "
                    f"cache; set scorer_options config_dir: a local directory with {model_type}'s config.json and tokenizer files")
            d, where = found, f"Hugging Face cache snapshot {found}"
        if not (d / "config.json").is_file():
            raise ScorerError(f"{self.name}: {where} has no config.json (give a directory with {model_type}'s config.json and tokenizer files)")
        if not any((d / f).is_file() for f in _TOKENIZER_FILES):
            raise ScorerError(f"{self.name}: {where} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}); "
                              f"copy {model_type}'s tokenizer files there")
        return d

    def _score_batch(self, texts: list[str]) -> Sequence[float]:
        out = self._detox.predict(texts)[self.label]
        # predict() squeezes a batch of one to a bare float.
        return [out] if isinstance(out, float) else out

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "kind": self.kind, "label": self.label, "checkpoint": str(self.checkpoint),
                "config_dir": str(self.config_dir), "classes": list(self.class_names), "device": self.device}

    @property
    def cache_id(self) -> str:
        return f"{self.name}:{self.label}:{self._fp}"


@SCORERS.register("detoxify")
def detoxify(arg: str | None, *, checkpoint: str | None = None, config_dir: str | None = None, label: str = "toxicity",
             device: str = "cpu", hf_cache_dir: str | None = None) -> DetoxifyScorer:
    """``detoxify:original|unbiased|multilingual|original-small|unbiased-small``.

    Options: ``checkpoint`` (a Detoxify .ckpt; default: torch hub's cache), ``config_dir`` (local HF
    config + tokenizer directory; default: ``model_type`` if a directory, else the HF cache),
    ``label`` (class to read, default ``toxicity``), ``device`` (cpu | cuda | auto), ``hf_cache_dir``.
    """
    variants = list(_MODEL_TYPES)
    if arg not in variants:
        raise ScorerError(f"detoxify:{arg or ''}: unknown Detoxify variant{did_you_mean(arg or '', variants)}; "
                          f"use one of: {', '.join('detoxify:' + v for v in variants)}")
    return DetoxifyScorer(arg, checkpoint=checkpoint, config_dir=config_dir, label=label, device=device,
                          hf_cache_dir=hf_cache_dir)
