"""The training loop: one code path from a single CPU process to multi-GPU / multi-node Accelerate.

``accelerate launch -m audit finetune cfg.yaml`` runs the same loop in every process; Accelerate
wraps the model in DDP (gloo on CPU, NCCL on GPUs) and, on CUDA, in bf16 autocast. The model and
every configured loss live in one :class:`LossModule`, so DDP sees exactly one forward and one
backward per micro-batch however many extra forward passes the adversarial losses make.

Example:
    >>> from audit.finetune import finetune
    >>> result = finetune({"model": "builtin:micro", "data": "train.jsonl", "max_steps": 10,
    ...                    "losses": {"ce": 1.0, "pgd": 0.5}, "out_dir": "runs/x"})  # doctest: +SKIP
    >>> result.model_dir  # doctest: +SKIP
    PosixPath('runs/x/model')
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import AuditError, first_line
from ..io.output_dirs import make_owned_dir, remove_owned_dir
from ..tracking.training import TrainingTracking
from . import checkpoint as ckpt
from .augment import OnlineAugmented
from .config import FinetuneConfig
from .data import Example, LengthGroupedBatches, collate
from .losses import LOSSES, LossInputs

log = logging.getLogger("audit")


class TrainingDiverged(AuditError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class TrainResult:
    """What a fine-tuning run produced."""

    out_dir: Path
    model_dir: Path                    # final model: a transformers directory (LanguageModel.load works)
    adapter_dir: Path | None           # LoRA runs: the adapter alone
    steps: int                         # optimizer steps taken in total
    stopped: str                       # max_steps | early_stopping
    best_val_loss: float | None
    last_val_loss: float | None
    metrics_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def _fresh_precision(precision: str) -> str:
    """``precision``, after forgetting another run's in this process.

    Accelerate keeps one process-wide state and refuses a second ``Accelerator`` with another
    mixed precision ("AcceleratorState has already been initialized and cannot be changed"): two
    ``finetune()`` calls in one notebook, the first fp32, the second bf16, died on that. The state
    of the process group (``PartialState``) stays; only the precision choice is dropped.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, precision):
        AcceleratorState._reset_state(reset_partial_state=False)
    return precision


class LossModule(torch.nn.Module):
    """The causal LM plus the weighted loss terms; ``forward(batch) -> (total, parts)``."""

    def __init__(self, lm: torch.nn.Module, specs):
        super().__init__()
        self.lm = lm
        self.names = [s.name for s in specs]
        self.weights = [s.weight for s in specs]
        self.terms = [LOSSES.get(s.name)(s.options) for s in specs]
        self.needs_hidden = any(t.needs_hidden for t in self.terms)
        self.needs_pairs = any(t.needs_pairs for t in self.terms)
        self.needs_embed_grad = any(t.needs_embed_grad for t in self.terms)

    def forward(self, input_ids, attention_mask, labels, **pair):
        # From embeddings, so the adversarial losses perturb exactly what the clean pass saw.
        embeds = self.lm.get_input_embeddings()(input_ids)                          # (B, T, D)
        if self.needs_embed_grad and not embeds.requires_grad and torch.is_grad_enabled():
            # Frozen embeddings (LoRA): no parameter is upstream, so a detached leaf loses nothing and
            # lets PGD read d(loss)/d(embeds) off the clean pass instead of a forward of its own.
            embeds = embeds.detach().requires_grad_(True)
        out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=self.needs_hidden,
                      use_cache=False)
        inputs = LossInputs(model=self.lm, input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                            embeds=embeds, logits=out.logits,
                            hidden=out.hidden_states[-1] if self.needs_hidden else None, pair=pair or None)
        parts = [term(inputs) for term in self.terms]
        total = sum(w * p.float() for w, p in zip(self.weights, parts))
        return total, torch.stack([p.detach().float() for p in parts])


def lr_lambda(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up, then linear / cosine decay or constant.

    Example:
        >>> [round(lr_lambda(s, warmup=2, total=6, schedule="linear", min_ratio=0.0), 2) for s in range(7)]
        [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if warmup and step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return min_ratio + (1 - min_ratio) * decay


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # No decay on 1-d parameters (biases, norm gains): decaying them only hurts (as in nanoGPT).
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _precision(cfg: FinetuneConfig) -> str:
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if cfg.precision == "fp16" and not torch.cuda.is_available():
        raise AuditError("precision: fp16 needs CUDA; use no or bf16 on CPU")
    return cfg.precision


class Trainer:
    """Fine-tune ``model`` on tokenised examples as ``cfg`` says.

    Args:
        cfg: the run's configuration.
        model: the transformers causal LM (already LoRA-wrapped / partly frozen if asked).
        tokenizer: saved with every checkpoint and the final model.
        train / val: tokenised examples (``val`` may be empty: no validation, no early stopping); ``train``
            may be an :class:`~audit.finetune.augment.OnlineAugmented` (its slots re-perturbed every epoch).
        callbacks: called as ``cb(trainer, record)`` after every optimizer step (e.g. to stop a run).
        merge_lora: save the final model with LoRA adapters merged in.
        tracking: where every metrics.jsonl record also goes (MLflow, TensorBoard; see
            :mod:`audit.tracking.training`); default: the trackers ``cfg`` names, opened by :meth:`train`.
            :meth:`train` closes it however the run ends.
    """

    def __init__(self, cfg: FinetuneConfig, model: torch.nn.Module, tokenizer, train: Sequence[Example],
                 val: Sequence[Example] = (), *, callbacks: Sequence[Callable[["Trainer", dict], None]] = (),
                 merge_lora: bool = True, tracking: TrainingTracking | None = None):
        from accelerate import Accelerator

        if not train:
            raise AuditError("finetune: no training examples")
        self.cfg = cfg
        self.tokenizer = tokenizer
        # Online augmentation stays lazy: its slots are perturbed when drawn (see _micro_batch).
        self.train_set = train if isinstance(train, OnlineAugmented) else list(train)
        self.val_set = list(val)
        self.callbacks = list(callbacks)
        self.merge_lora = merge_lora
        self.tracking = tracking
        # cpu=True without CUDA: `accelerate launch --multi_gpu` then gives gloo processes (MULTI_CPU)
        # instead of silently independent single-process runs.
        self.accelerator = Accelerator(mixed_precision=_fresh_precision(_precision(cfg)), cpu=not torch.cuda.is_available())
        acc = self.accelerator
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        self.module = LossModule(model, cfg.loss_specs())
        params = _param_groups(self.module, cfg.weight_decay)
        if not any(g["params"] for g in params):
            raise AuditError("finetune: no trainable parameters (check freeze_all_but_top_k / lora)")
        # Fused AdamW: one kernel for all parameters on CUDA; the default foreach path elsewhere.
        fused = acc.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps, fused=fused or None)
        self.wrapped, self.optimizer = acc.prepare(self.module, self.optimizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        lengths = self.train_set.lengths() if isinstance(self.train_set, OnlineAugmented) else [len(e) for e in self.train_set]
        self.batcher = LengthGroupedBatches(lengths, batch_size=cfg.batch_size, seed=cfg.seed,
                                            grouped=cfg.length_grouped, rank=acc.process_index, world=acc.num_processes)
        self.micro_per_epoch = len(self.batcher.batches(0))
        if self.micro_per_epoch < 1:
            raise AuditError(f"finetune: {len(self.train_set)} training examples make no batch for each of "
                             f"{acc.num_processes} processes; lower batch_size")
        steps_per_epoch = max(1, self.micro_per_epoch // cfg.grad_accum)
        self.total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
        if cfg.warmup_steps >= self.total_steps and self.is_main:
            log.warning("finetune: warmup_steps (%d) >= the run's %d optimizer steps: the learning rate never reaches "
                        "lr (%g) and never decays; lower warmup_steps", cfg.warmup_steps, self.total_steps, cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, warmup=cfg.warmup_steps, total=self.total_steps, schedule=cfg.schedule,
                                                min_ratio=cfg.min_lr_ratio))
        self.step = 0
        self.best_val: float | None = None
        self.last_val: float | None = None
        self.bad_evals = 0
        self.history: list[dict[str, Any]] = []
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    # ---- properties ----------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        """The (unwrapped) causal LM being trained."""
        return self.module.lm

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    # ---- data ----------------------------------------------------------------------------
    def _micro_batch(self, index: int) -> dict[str, torch.Tensor]:
        epoch, pos = divmod(index, self.micro_per_epoch)
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self.batcher.batches(epoch))
        indices = self._epoch_cache[1][pos]
        if isinstance(self.train_set, OnlineAugmented):   # a function of (epoch, index): resume and every process agree
            examples = self.train_set.draw(indices, epoch)
        else:
            examples = [self.train_set[i] for i in indices]
        batch = collate(examples, self.pad_id, pairs=self.module.needs_pairs)
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    # ---- one optimizer step ------------------------------------------------------------
    def train_step(self, micro_batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Forward + backward over ``micro_batches`` (gradient accumulation), clip, step, schedule.

        Raises:
            TrainingDiverged: the loss is NaN or infinite on any process (weights not updated).
        """
        acc = self.accelerator
        n = len(micro_batches)
        total = torch.zeros((), device=acc.device)
        parts = torch.zeros(len(self.module.names), device=acc.device)
        tokens = 0
        for i, batch in enumerate(micro_batches):
            # Gradients are all-reduced once, on the last micro-batch of the accumulation.
            sync = contextlib.nullcontext() if i == n - 1 else acc.no_sync(self.wrapped)
            with sync:
                pair = {k: v for k, v in batch.items() if k.startswith(("pair_", "orig_"))}
                loss, p = self.wrapped(batch["input_ids"], batch["attention_mask"], batch["labels"], **pair)
                acc.backward(loss / n)
            total += loss.detach() / n
            parts += p / n
            tokens += int(batch["attention_mask"].sum())
        # One all-reduce tells every process whether any process diverged (all stop together).
        stats = acc.reduce(torch.cat([total[None], parts]), reduction="mean")
        if not bool(torch.isfinite(stats).all()):
            self.optimizer.zero_grad(set_to_none=True)
            self._diverged(stats)
        grad_norm = None
        if self.cfg.max_grad_norm is not None:
            grad_norm = float(acc.clip_grad_norm_(self.module.parameters(), self.cfg.max_grad_norm))
        try:
            self.optimizer.step()
        except RuntimeError as e:   # AdamW's step size lr / bias-correction overflows float32 (lr ~1e38)
            if "overflow" not in str(e):
                raise
            self._weights_diverged(f"the optimizer update overflowed ({first_line(e)})")
        if not self._weights_finite():
            self._weights_diverged("the weights became NaN or infinite")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        rec = {"step": self.step, "loss": float(stats[0]), "lr": self.scheduler.get_last_lr()[0], "tokens": tokens}
        rec.update({f"loss.{name}": float(v) for name, v in zip(self.module.names, stats[1:])})
        if grad_norm is not None:
            rec["grad_norm"] = grad_norm
        return rec

    def _last_good(self, *, loss_failed: bool = False) -> str:
        """Name the newest checkpoint that is good: its weights are finite (checked after every step,
        before any save) and, when the loss just failed, they are not the very weights that failed it."""
        dirs = ckpt.step_dirs(self.ckpt_root)
        note = ""
        if loss_failed and dirs and dirs[-1][0] == self.step and ckpt.holds_weights_of(self.model, dirs[-1][1]):
            bad = dirs.pop()[1]
            moved = bad.with_name(bad.name + ".diverged")   # out of `resume: auto`'s way, kept for inspection
            self.accelerator.wait_for_everyone()
            if self.is_main:
                remove_owned_dir(moved, what="diverged checkpoint")
                bad.rename(moved)
            note = f"the step-{self.step} checkpoint holds the weights that gave this loss (moved to {moved}); "
        last = dirs[-1][1] if dirs else None
        return note + (f"last good checkpoint: {last}" if last else "no good checkpoint was saved (lower save_every)")

    def _weights_finite(self) -> bool:
        params = [p.detach() for p in self.module.parameters() if p.requires_grad]
        # One device sync for all parameters, not one per tensor.
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all()) if params else True

    def _weights_diverged(self, what: str) -> None:
        """The update itself broke the weights: stop before anything of this step is saved."""
        if self.is_main:
            self._log({"step": self.step + 1, "event": "diverged", "reason": what})
        raise TrainingDiverged(f"{what} at step {self.step + 1} (lr {self.cfg.lr:g}, max_grad_norm {self.cfg.max_grad_norm}); "
                               f"stopped, nothing of this step saved; {self._last_good()}; try a lower lr or set max_grad_norm")

    def _diverged(self, stats: torch.Tensor) -> None:
        parts = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(self.module.names, stats[1:]))
        keep = self._last_good(loss_failed=True)
        if self.is_main:
            self._log({"step": self.step + 1, "event": "diverged", "loss": float(stats[0])})
        raise TrainingDiverged(f"loss became {float(stats[0])} at step {self.step + 1} ({parts}); stopped without "
                               f"updating the weights; {keep}; try a lower lr, max_grad_norm or loss weight")

    # ---- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float | None:
        """Token-weighted CE on the validation set (sharded over processes, summed)."""
        if not self.val_set:
            return None
        acc = self.accelerator
        self.model.eval()
        order = sorted(range(len(self.val_set)), key=lambda i: len(self.val_set[i]))
        mine = order[acc.process_index::acc.num_processes]
        sums = torch.zeros(2, device=acc.device, dtype=torch.float64)
        bs = self.cfg.batch_size * 2
        for s in range(0, len(mine), bs):
            batch = collate([self.val_set[i] for i in mine[s:s + bs]], self.pad_id)
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            with acc.autocast():
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            targets = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100,
                                                    reduction="sum")
            sums += torch.stack([nll.double(), (targets != -100).sum().double()])
        self.model.train()
        sums = acc.reduce(sums, reduction="sum")
        return float(sums[0] / sums[1].clamp(min=1))

    # ---- logging and checkpoints ---------------------------------------------------------
    def _log(self, rec: dict[str, Any]) -> None:
        self.history.append(rec)
        if not self.is_main:
            return
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tracking is not None:
            self.tracking.log(rec)

    def _state(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "last_val": self.last_val, "bad_evals": self.bad_evals}

    def save_checkpoint(self) -> Path:
        return ckpt.write_checkpoint(self.ckpt_root, self.step, model=self.model, tokenizer=self.tokenizer,
                                     optimizer=self.optimizer, scheduler=self.scheduler, state=self._state(),
                                     config=self.cfg.to_dict(), accelerator=self.accelerator, keep=self.cfg.keep_checkpoints)

    def resume(self, path: str | Path) -> None:
        try:
            state = ckpt.read_checkpoint(Path(path), model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                         accelerator=self.accelerator)
        except (ckpt.CheckpointError, RuntimeError, ValueError, KeyError) as e:
            # torch / peft report a checkpoint of another model or training layout as a multi-line
            # size-mismatch dump: say which config fields differ instead.
            if isinstance(e, ckpt.CheckpointError) and "not match" not in str(e):
                raise
            diff = ckpt.config_diff(Path(path), self.cfg.to_dict(), ("model", "lora", "freeze_all_but_top_k"))
            why = f"it was written with {diff}" if diff else first_line(e)
            raise ckpt.CheckpointError(f"{path}: cannot resume: the checkpoint does not fit this run ({why}); "
                                       f"resume with the same model, lora and freeze_all_but_top_k") from None
        self.step = int(state["step"])
        self.best_val, self.last_val, self.bad_evals = state["best_val"], state["last_val"], state["bad_evals"]
        if self.is_main:
            _truncate_metrics(self.out / "metrics.jsonl", self.step)
        log.info("resumed from %s at step %d", path, self.step)

    def _resume_path(self) -> Path | None:
        r = self.cfg.resume
        if r is None:
            return None
        if r == "auto":
            return ckpt.latest(self.ckpt_root)
        if not Path(r).exists():
            raise ckpt.CheckpointError(f"resume: checkpoint {r} not found")
        return Path(r)

    # ---- the loop ------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run to ``max_steps`` (or the epochs) or early stopping; save the final model.

        Raises:
            TrainingDiverged: NaN / inf loss (the last good checkpoint is kept).
        """
        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        if self.tracking is None:   # only rank 0 ever logs to a tracker
            self.tracking = TrainingTracking.open(cfg, main=self.is_main)
        try:
            result = self._train()
        except BaseException:
            self.tracking.close(status="FAILED")
            raise
        self.tracking.close(stopped=result.stopped, steps=result.steps)
        return result

    def _train(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        path = self._resume_path()
        if path is not None:
            self.resume(path)
        elif self.is_main:
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        bar = None
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="finetune", unit="step", leave=False)
        stopped = "max_steps"
        t_last, tok_last = time.perf_counter(), 0
        try:
            while self.step < self.total_steps:
                first = self.step * cfg.grad_accum
                rec = self.train_step([self._micro_batch(first + i) for i in range(cfg.grad_accum)])
                rec["epoch"] = round(first / self.micro_per_epoch, 4)
                tok_last += rec["tokens"]
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    rec["tokens_per_s"] = round(tok_last * acc.num_processes / max(1e-9, now - t_last), 1)
                    t_last, tok_last = now, 0
                    self._log(rec)
                if self.val_set and (self.step % cfg.eval_every == 0 or self.step == self.total_steps):
                    if self._evaluate():
                        stopped = "early_stopping"
                if self.step % cfg.save_every == 0 or self.step == self.total_steps or stopped != "max_steps":
                    self.save_checkpoint()
                for cb in self.callbacks:
                    cb(self, rec)
                if stopped != "max_steps":
                    break
        finally:
            if bar:
                bar.close()
        model_dir, adapter_dir = self._save_final()
        return TrainResult(out_dir=self.out, model_dir=model_dir, adapter_dir=adapter_dir, steps=self.step, stopped=stopped,
                           best_val_loss=self.best_val, last_val_loss=self.last_val, metrics_path=self.out / "metrics.jsonl",
                           history=self.history)

    def _evaluate(self) -> bool:
        """Validate; keep the best weights; True when patience ran out."""
        val = self.validate()
        self.last_val = val
        improved = self.best_val is None or val < self.best_val - self.cfg.min_delta
        if improved:
            self.best_val, self.bad_evals = val, 0
            if self.cfg.load_best:
                self._save_best()
        else:
            self.bad_evals += 1
        self._log({"step": self.step, "val_loss": val, "val_ppl": math.exp(min(val, 50)), "best_val_loss": self.best_val})
        return self.cfg.patience is not None and self.bad_evals >= self.cfg.patience

    def _save_best(self) -> None:
        if self.is_main:
            best = self.out / "best"
            tmp = self.out / ".best.tmp"
            remove_owned_dir(tmp, what="best weights being written")
            ckpt.save_model_files(self.model, None, make_owned_dir(tmp))
            (tmp / "step.txt").write_text(str(self.step))
            remove_owned_dir(best, what="best validated weights")
            tmp.rename(best)
        self.accelerator.wait_for_everyone()

    def _save_final(self) -> tuple[Path, Path | None]:
        from .lora import is_peft, merged_copy, save_adapter

        acc = self.accelerator
        best = self.out / "best"
        if self.cfg.load_best and best.exists() and self.best_val is not None:
            ckpt.load_model_weights(self.model, best)
            log.info("final model: the best validated weights (step %s, val loss %.4f)", (best / "step.txt").read_text(), self.best_val)
        if acc.num_processes > 1:
            from ..models.local import params_fingerprint

            # Evidence that data-parallel ranks stayed in lockstep: every rank hashes its weights.
            (self.out / f"fingerprint-rank{acc.process_index}.txt").write_text(params_fingerprint(self.model))
        model_dir, adapter_dir = self.out / "model", None
        if self.is_main:
            # Never a directory audit did not create (finetune() refused such an out_dir before loading).
            remove_owned_dir(model_dir, what="final model")
            if is_peft(self.model):
                remove_owned_dir(self.out / "adapter", what="LoRA adapter")
                adapter_dir = save_adapter(self.model, make_owned_dir(self.out / "adapter"))
                self.tokenizer.save_pretrained(adapter_dir)
                if self.merge_lora:
                    ckpt.save_model_files(merged_copy(self.model), self.tokenizer, make_owned_dir(model_dir))
                else:
                    model_dir = adapter_dir
            else:
                ckpt.save_model_files(self.model, self.tokenizer, make_owned_dir(model_dir))
        elif is_peft(self.model):
            adapter_dir = self.out / "adapter"
            model_dir = model_dir if self.merge_lora else adapter_dir
        acc.wait_for_everyone()
        return model_dir, adapter_dir


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past the resumed step (an interrupted run logged them; they will be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
