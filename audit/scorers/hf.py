"""``hf:PATH``: any local Hugging Face sequence-classification model as a toxicity backend.

For example the RoBERTa hate-speech model that `evaluate`'s ``toxicity`` measurement uses
(``facebook/roberta-hate-speech-dynabench-r4-target``, label ``hate``), saved to a local directory
or present in the Hugging Face cache. The score is the probability of ``label``: softmax over the
classes, or a per-class sigmoid when the model is multi-label (``problem_type``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import first_line
from ..models.fingerprint import weights_fingerprint
from ..registry import did_you_mean
from . import SCORERS
from .base import Scorer, ScorerError

# Labels read by default, in order, when the user names none (case-insensitive).
_DEFAULT_LABELS = ("toxic", "toxicity", "hate", "offensive", "abusive", "profane")


class HFClassifierScorer(Scorer):
    """P(label) from a local ``AutoModelForSequenceClassification``."""

    default_batch_size = 32

    def __init__(self, path: str, *, label: str | int | None = None, device: str = "cpu", max_length: int = 512):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = f"hf:{path}"
        self.path = os.path.expanduser(path)
        if (self.path.startswith((".", "/", "~")) or os.sep in self.path and self.path.count("/") > 1) and not Path(self.path).is_dir():
            raise ScorerError(f"{self.name}: directory {self.path} does not exist (give a local sequence-classification model directory)")
        try:
            # local_files_only: a directory, or a hub id already in the user's cache; never a download.
            self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as e:
            first = first_line(e)
            raise ScorerError(f"{self.name}: cannot load a sequence-classification model: {first} (give a local directory "
                              f"with config.json, weights and tokenizer files)") from None
        # Decoder-only classifiers (GPT-2, Llama, Qwen2 ...) often ship without a pad token: batches
        # could not be padded, and the model could not find each row's last real token. Pad with EOS
        # (attention-masked, and the model reads the last non-pad token); without one, score one by one.
        self._one_by_one = False
        if self._tok.pad_token is None:
            if self._tok.eos_token is not None:
                self._tok.pad_token = self._tok.eos_token
            else:
                self._one_by_one = True
        if self._model.config.pad_token_id is None and self._tok.pad_token_id is not None:
            self._model.config.pad_token_id = self._tok.pad_token_id
        # Right padding: a row that is all pad ids (an empty text scored as EOS, below) is then read at
        # position 0, its real token; left padding (a generation setting some tokenizers save) would
        # read a masked pad there.
        self._tok.padding_side = "right"
        # An empty generation is common (EOS first); a tokenizer that adds no special tokens (GPT-2 style)
        # gives it zero tokens, which the model cannot run on. Score it as the EOS (or BOS) token alone.
        self._empty = ""
        if not self._tok("")["input_ids"]:
            self._empty = self._tok.eos_token or self._tok.bos_token or " "
        id2label = {int(k): str(v) for k, v in self._model.config.id2label.items()}
        self.labels = [id2label[i] for i in sorted(id2label)]
        self.index = self._pick_label(label)
        self.label = self.labels[self.index]
        self.multi_label = getattr(self._model.config, "problem_type", None) == "multi_label_classification"
        self.max_length = min(max_length, getattr(self._tok, "model_max_length", max_length) or max_length)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self._model.to(device).eval()
        self._fp = weights_fingerprint(Path(self.path)) if Path(self.path).is_dir() else "cache"

    def _pick_label(self, label: str | int | None) -> int:
        if isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(self.labels):
                raise ScorerError(f"{self.name}: label index {label} out of range; labels: {', '.join(self.labels)}")
            return label
        if label is None:
            lowered = [lab.lower() for lab in self.labels]
            for cand in _DEFAULT_LABELS:
                if cand in lowered:
                    return lowered.index(cand)
            raise ScorerError(f"{self.name}: which label is toxic? set scorer_options label: one of {', '.join(self.labels)}")
        if label not in self.labels:
            raise ScorerError(f"{self.name}: unknown label {label!r}{did_you_mean(label, self.labels)}; labels: {', '.join(self.labels)}")
        return self.labels.index(label)

    def _score_batch(self, texts: list[str]) -> Sequence[float]:
        import torch

        texts = [t or self._empty for t in texts]
        if self._one_by_one and len(texts) > 1:
            return [v for t in texts for v in self._score_batch([t])]
        enc = self._tok(texts, return_tensors="pt", padding=len(texts) > 1, truncation=True,
                        max_length=self.max_length).to(self.device)
        with torch.no_grad():
            logits = self._model(**enc).logits.float()  # (B, C)
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs[:, self.index].cpu().tolist()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "kind": self.kind, "label": self.label, "labels": list(self.labels),
                "activation": "sigmoid" if self.multi_label else "softmax", "device": self.device}

    @property
    def cache_id(self) -> str:
        return f"{self.name}:{self.label}:{self._fp}"


@SCORERS.register("hf")
def hf(arg: str | None, *, label: str | int | None = None, device: str = "cpu", max_length: int = 512) -> HFClassifierScorer:
    """``hf:PATH`` with options ``label`` (class name or index), ``device``, ``max_length``."""
    if not arg:
        raise ScorerError("hf: give the model as hf:PATH (a local sequence-classification model directory)")
    return HFClassifierScorer(arg, label=label, device=device, max_length=max_length)
