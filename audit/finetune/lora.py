"""Parameter-efficient fine-tuning: LoRA adapters through ``peft`` (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models", arXiv:2106.09685), and freezing all but the top k blocks.

Example:
    >>> from audit.models.local import LanguageModel
    >>> lm = LanguageModel.load("builtin:micro")
    >>> peft_model = apply_lora(lm.model, LoraOptions(r=2))
    >>> all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    True
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import AuditError, first_line
from .config import LoraOptions

log = logging.getLogger("audit")


def apply_lora(model: torch.nn.Module, options: LoraOptions) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters; only adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=options.target_modules, task_type="CAUSAL_LM",
                        # GPT-2's attention/MLP projections are Conv1D (weights stored transposed).
                        fan_in_fan_out=_uses_conv1d(model))
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as e:
        raise AuditError(f"lora: {first_line(e)} (set lora.target_modules to module names of this model)") from None
    n_train = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in wrapped.parameters())
    log.info("LoRA r=%d alpha=%d: %s of %s parameters trainable (%.2f%%)", options.r, options.alpha, f"{n_train:,}",
             f"{n_all:,}", 100 * n_train / max(1, n_all))
    return wrapped


def _uses_conv1d(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "Conv1D" for m in model.modules())


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_adapter(model: torch.nn.Module, path: str | Path) -> Path:
    """Save only the adapter (``adapter_model.safetensors`` + ``adapter_config.json``)."""
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    return path


def merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A plain transformers model with the adapters merged into the base weights.

    Merging in place would turn the training model into a plain model; we merge a deep copy so
    a run can keep training (or save again) after an intermediate save.
    """
    import copy

    return copy.deepcopy(model).merge_and_unload()


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks: the longest ``ModuleList`` (GPT-2 ``h``, Llama ``layers``)."""
    best = None
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise AuditError("freeze_all_but_top_k: cannot find the model's transformer blocks (no ModuleList)")
    return best


def freeze_all_but_top_k(model: torch.nn.Module, k: int) -> int:
    """Freeze every parameter, then unfreeze the top ``k`` blocks and the final norm.

    Embeddings (often tied to the output head) stay frozen. Returns the number of trainable
    parameters.

    Example:
        >>> from audit.models.local import LanguageModel
        >>> m = LanguageModel.load("builtin:micro").model
        >>> freeze_all_but_top_k(m, 1) < sum(p.numel() for p in m.parameters())
        True
    """
    blocks = transformer_blocks(model)
    if k > len(blocks):
        raise AuditError(f"freeze_all_but_top_k: {k} > the model's {len(blocks)} blocks")
    for p in model.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[len(blocks) - k:] if k else []:
        for p in block.parameters():
            p.requires_grad_(True)
    if k:
        for name, module in model.named_modules():
            # The final norm (GPT-2 ln_f, Llama norm) sits after the blocks and feeds the head.
            if name.split(".")[-1] in ("ln_f", "norm", "final_layer_norm", "final_layernorm"):
                for p in module.parameters():
                    p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
