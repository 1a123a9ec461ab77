"""Tiny random classifiers in the on-disk formats the scorers load, for tests and benchmarks.

Real Detoxify and hate-speech weights cannot be downloaded here, so tests build a ~20k-parameter
random BERT in exactly the format each backend reads and load it through the real code path:
a Hugging Face directory (``config.json``, weights, ``vocab.txt``) for ``hf:PATH``, and a Detoxify
checkpoint dict (``config.arch.args`` + ``config.dataset.args.classes`` + ``state_dict``) beside a
config/tokenizer directory for ``detoxify:*``. Scores from these models are meaningless; only the
plumbing is real.
"""

from __future__ import annotations

from pathlib import Path

# Detoxify "original" (Jigsaw 2018) class names as stored in its checkpoint, before renaming.
JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
_WORDS = ("you are a an the idiot stupid nice day have lovely good bad hate love go away shut up "
          "what to is it this that and or not fool great").split()


def _vocab() -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for w in _WORDS + list("abcdefghijklmnopqrstuvwxyz.,!?'") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]:
        if w not in vocab:
            vocab.append(w)
    return vocab


def build_tiny_bert_classifier(directory: str | Path, *, labels: list[str], seed: int = 0, multi_label: bool = False,
                               save_weights: bool = True):
    """Write a random BERT sequence classifier with ``labels`` to ``directory``; return the model.

    Example:
        >>> import tempfile
        >>> m = build_tiny_bert_classifier(tempfile.mkdtemp(), labels=["ok", "toxic"])
        >>> m.config.num_labels
        2
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.txt").write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(d / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(d)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(_vocab()), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=64, initializer_range=0.5, num_labels=len(labels), id2label=dict(enumerate(labels)),
                     label2id={lab: i for i, lab in enumerate(labels)},
                     problem_type="multi_label_classification" if multi_label else None)
    model = BertForSequenceClassification(cfg).eval()
    # Random init gives near-equal logits for every text; spread the classifier so scores differ.
    with torch.no_grad():
        model.classifier.weight.mul_(4.0)
    if save_weights:
        model.save_pretrained(d)
    else:
        cfg.save_pretrained(d)
    return model


def build_tiny_detoxify_checkpoint(directory: str | Path, *, model_type: str | None = None, seed: int = 0) -> tuple[Path, Path, object]:
    """A Detoxify-format checkpoint of a tiny random BERT, and its config/tokenizer directory.

    Args:
        directory: where ``tiny-detoxify.ckpt`` and ``bert/`` (config.json + vocab.txt) go.
        model_type: what the checkpoint's ``config.arch.args.model_type`` says; default: the local
            ``bert/`` directory (Detoxify's fully offline route). Pass ``"bert-base-uncased"`` to get
            a checkpoint like the released ones, which needs ``config_dir`` or the HF cache.

    Returns:
        ``(checkpoint path, config dir, the torch model)``.
    """
    import torch

    d = Path(directory)
    cfg_dir = d / "bert"
    model = build_tiny_bert_classifier(cfg_dir, labels=[f"LABEL_{i}" for i in range(len(JIGSAW_CLASSES))], seed=seed,
                                       save_weights=False)
    ckpt = {
        "config": {
            "arch": {"args": {"model_type": model_type or str(cfg_dir), "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": len(JIGSAW_CLASSES)}},
            "dataset": {"args": {"classes": list(JIGSAW_CLASSES)}},
        },
        "state_dict": model.state_dict(),
    }
    path = d / "tiny-detoxify.ckpt"
    torch.save(ckpt, path)
    return path, cfg_dir, model
