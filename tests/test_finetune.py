"""The trainer on the micro model: exact resume, LoRA, freezing, NaN stop, early stopping, data, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audit.finetune.data import LengthGroupedBatches, TextPair, collate, read_adversarial, tokenize_pairs
from audit.finetune.run import finetune
from audit.finetune.trainer import TrainingDiverged


@pytest.fixture
def train_file(tmp_path) -> Path:
    words = ["password", "order", "refund", "invoice", "account", "delivery"]
    rows = [{"id": f"r{i}", "prompt": f"Customer: where is my {words[i % 6]} number {i}?\nAgent:",
             "reference": f" Your {words[i % 6]} is on its way" + " today" * (i % 3) + ".",
             "split": "test" if i % 5 == 0 else "train"} for i in range(30)]
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _cfg(micro_path, data, out, **kw):
    cfg = {"model": str(micro_path), "data": str(data), "train_split": "train", "val_split": "test", "batch_size": 4,
           "lr": 2e-3, "max_steps": 8, "eval_every": 4, "save_every": 4, "out_dir": str(out), "progress": False, "seed": 3,
           "warmup_steps": 2}
    cfg.update(kw)
    return cfg


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_exact_resume_matches_uninterrupted_run(micro_path, train_file, tmp_path):
    # Dropout on, PGD with random init, gradient accumulation: every RNG and state must be restored.
    common = dict(losses={"ce": 1.0, "pgd": {"weight": 0.5, "init": "uniform"}}, grad_accum=2, load_best=False)
    full = finetune(_cfg(micro_path, train_file, tmp_path / "full", **common))

    class Interrupt(Exception):
        pass

    def stop_at_4(trainer, rec):
        if trainer.step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        finetune(_cfg(micro_path, train_file, tmp_path / "cut", **common), callbacks=[stop_at_4])
    assert (tmp_path / "cut" / "checkpoints" / "step-000004").is_dir()
    resumed = finetune(_cfg(micro_path, train_file, tmp_path / "cut", resume="auto", **common))
    assert resumed.steps == full.steps == 8
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The metrics log of the resumed run is the uninterrupted run's, step for step.
    la = [json.loads(x) for x in full.metrics_path.read_text().splitlines()]
    lb = [json.loads(x) for x in resumed.metrics_path.read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]  # noqa: E731
    assert strip(la) == strip(lb)
    # And the run really trained: the weights moved from the start.
    base = load_file(str(micro_path / "model.safetensors"))
    assert not torch.equal(a["transformer.h.0.attn.c_attn.weight"], base["transformer.h.0.attn.c_attn.weight"])


def test_lora_trains_only_adapter_weights(micro_path, train_file, tmp_path):
    from audit.finetune.run import load_for_training, prepare_data
    from audit.finetune.config import load_finetune_config
    from audit.finetune.trainer import Trainer

    cfg = load_finetune_config(_cfg(micro_path, train_file, tmp_path / "lora", lora={"r": 2, "alpha": 4}, lr=1e-2))
    net, tok = load_for_training(cfg)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    train, val, _ = prepare_data(cfg, tok)
    result = Trainer(cfg, net, tok, train, val).train()
    after = dict(net.named_parameters())
    for n, p in after.items():
        if n not in trainable:  # every base weight is bit-identical after training
            assert torch.equal(before[n], p.detach()), n
    assert any(not torch.equal(before[n], after[n].detach()) for n in trainable if "lora_B" in n)
    # The adapter is saved alone, and the merged model loads without peft and differs from the base.
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
    merged = _weights(result.model_dir)
    base = load_file(str(micro_path / "model.safetensors"))
    assert set(merged) == set(base)
    assert any(not torch.equal(merged[k], base[k]) for k in base)
    assert torch.equal(merged["transformer.wte.weight"], base["transformer.wte.weight"])  # not adapted


def test_freeze_all_but_top_k(micro_path, train_file, tmp_path):
    r = finetune(_cfg(micro_path, train_file, tmp_path / "frozen", freeze_all_but_top_k=1, load_best=False))
    new, base = _weights(r.model_dir), load_file(str(micro_path / "model.safetensors"))
    for k in base:
        moved = not torch.equal(new[k], base[k])
        assert moved == (k.startswith("transformer.h.1.") or k.startswith("transformer.ln_f.")), k


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(micro_path, train_file, tmp_path):
    def corrupt(trainer, rec):
        if trainer.step == 4:  # after the step-4 checkpoint: poison a weight
            with torch.no_grad():
                trainer.model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")

    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 5 .*last good checkpoint: .*step-000004"):
        finetune(_cfg(micro_path, train_file, tmp_path / "nan", save_every=4), callbacks=[corrupt])
    kept = _weights(tmp_path / "nan" / "checkpoints" / "step-000004")
    assert all(torch.isfinite(v).all() for v in kept.values())
    assert not (tmp_path / "nan" / "model").exists()
    last = json.loads((tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["step"] == 5


def test_early_stopping_with_patience(micro_path, train_file, tmp_path):
    # min_delta larger than any possible improvement: every validation after the first is "no better".
    r = finetune(_cfg(micro_path, train_file, tmp_path / "es", max_steps=50, eval_every=2, patience=2, min_delta=100.0))
    assert r.stopped == "early_stopping" and r.steps == 6
    vals = [json.loads(x) for x in r.metrics_path.read_text().splitlines() if "val_loss" in x]
    assert [v["step"] for v in vals] == [2, 4, 6]
    # load_best: the final model is the step-2 weights.
    assert (tmp_path / "es" / "best" / "step.txt").read_text() == "2"
    best = _weights(tmp_path / "es" / "best")
    final = _weights(r.model_dir)
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_prompt_tokens_are_not_learned_and_padding_is_dynamic(micro_lm):
    tok = micro_lm.tokenizer
    ex = tokenize_pairs([TextPair("Customer: hi\nAgent:", " hello"), TextPair("Q:", " a much longer answer here")], tok,
                        max_length=64)
    n_prompt = len(tok("Customer: hi\nAgent:", add_special_tokens=False)["input_ids"])
    assert ex[0].labels[:n_prompt] == [-100] * n_prompt
    assert ex[0].labels[n_prompt:] == ex[0].input_ids[n_prompt:]
    assert ex[0].input_ids[-1] == tok.eos_token_id
    batch = collate(ex, tok.pad_token_id)
    assert batch["input_ids"].shape[1] == max(len(e) for e in ex) < 64
    # Plain text: every token learned, cut into max_length blocks.
    blocks = tokenize_pairs([TextPair("", "word " * 40)], tok, max_length=16)
    assert all(len(b) <= 16 and b.labels == b.input_ids for b in blocks) and len(blocks) >= 3
    # Over-long prompt/target: the prompt loses tokens from the left.
    long = tokenize_pairs([TextPair("x " * 100, " end")], tok, max_length=10)[0]
    assert len(long) == 10 and long.input_ids[-1] == tok.eos_token_id


def test_length_grouped_batches_shard_and_group():
    lengths = [(i * 37) % 50 + 1 for i in range(64)]
    full = LengthGroupedBatches(lengths, batch_size=4, seed=1, group=4)
    r0 = LengthGroupedBatches(lengths, batch_size=4, seed=1, group=4, rank=0, world=2)
    r1 = LengthGroupedBatches(lengths, batch_size=4, seed=1, group=4, rank=1, world=2)
    assert full.batches(0) == full.batches(0) and full.batches(0) != full.batches(1)
    seen = [i for b in r0.batches(0) + r1.batches(0) for i in b]
    assert sorted(seen) == list(range(64)) and len(r0.batches(0)) == len(r1.batches(0)) == 8
    # Grouping cuts padding: widths of grouped batches beat random batches.
    pad = lambda bs: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert pad(full.batches(0)) < pad(LengthGroupedBatches(lengths, batch_size=4, seed=1, grouped=False).batches(0)) / 2


def test_adversarial_records_join_training(tmp_path, micro_path, train_file):
    adv = tmp_path / "adversarial.jsonl"
    adv.write_text(json.dumps({"id": "r1", "prompt": "Custmer: whre is my order?\nAgent:", "original_prompt": "x",
                               "target": " On its way.", "reference": None, "recipe": "deepwordbug"}) + "\n")
    pairs = read_adversarial(adv)
    assert pairs[0].prompt.startswith("Custmer") and pairs[0].target == " On its way." and pairs[0].source == "adversarial"
    r = finetune(_cfg(micro_path, train_file, tmp_path / "adv", adversarial=[str(adv)], max_steps=2))
    assert json.loads((tmp_path / "adv" / "data.json").read_text())["adversarial"] == 1
    assert r.steps == 2


def test_paired_records_tokenise_one_continuation_after_both_prompts(micro_lm, tmp_path):
    # A harden train.jsonl row: CE target = the reference; the consistency pair compares the
    # perturbed and the clean prompt on the model's clean output (pair_target).
    from audit.finetune.data import read_pairs

    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"prompt": "Custmer: whre is it?\nAgent:", "target": " Shipped today.", "source": "adversarial",
                                "original_prompt": "Customer: where is it?\nAgent:", "pair_target": " Yes yes"}) + "\n"
                    + json.dumps({"prompt": "Customer: hi\nAgent:", "target": " Hello."}) + "\n")
    pairs, _ = read_pairs(data, target_field="target")
    assert pairs[0].source == "adversarial" and pairs[0].meta["pair_target"] == " Yes yes"
    tok = micro_lm.tokenizer
    ex = tokenize_pairs(pairs, tok, max_length=64)
    assert ex[1].pair is None
    (p_ids, p_labels), (o_ids, o_labels) = ex[0].pair
    cont = tok(" Yes yes", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [t for t in p_labels if t != -100] == cont == [t for t in o_labels if t != -100]
    assert tok.decode(p_ids[:len(p_ids) - len(cont)]) == "Custmer: whre is it?\nAgent:"
    assert tok.decode(o_ids[:len(o_ids) - len(cont)]) == "Customer: where is it?\nAgent:"
    assert [t for t in ex[0].labels if t != -100] == tok(" Shipped today.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    b = collate(ex, tok.pad_token_id, pairs=True)
    assert b["pair_input_ids"].shape[0] == 1 and b["orig_input_ids"].tolist()[0][:len(o_ids)] == o_ids
    assert "pair_input_ids" not in collate(ex, tok.pad_token_id)


def test_consistency_training_reads_pairs(tmp_path, micro_path, train_file):
    adv = tmp_path / "adversarial.jsonl"
    adv.write_text(json.dumps({"id": "r1", "prompt": "Custmer: whre is my order number 1?\nAgent:",
                               "original_prompt": "Customer: where is my order number 1?\nAgent:",
                               "target": " On its way.", "reference": " Your order is on its way.", "recipe": "deepwordbug"}) + "\n")
    r = finetune(_cfg(micro_path, train_file, tmp_path / "c", adversarial=[str(adv)], max_steps=3, batch_size=32,
                      losses={"ce": 1.0, "consistency": 1.0}))
    logged = [h for h in r.history if "loss.consistency" in h]
    # One batch holds every example, the paired one included: its KL is measured at each step.
    assert logged and all(h["loss.consistency"] > 0 for h in logged)


def test_textattack_augmentation_perturbs_prompts_keeps_targets():
    from audit.finetune.augment import augment_pairs
    from audit.finetune.config import AugmentOptions

    pairs = [TextPair("Customer: where is my delivery package?\nAgent:", " Tomorrow.")]
    out = augment_pairs(pairs, AugmentOptions(transformations=["char_swap", "qwerty"], per_prompt=3, pct_words_to_swap=0.3), seed=0)
    again = augment_pairs(pairs, AugmentOptions(transformations=["char_swap", "qwerty"], per_prompt=3, pct_words_to_swap=0.3), seed=0)
    assert out and [p.prompt for p in out] == [p.prompt for p in again]          # seeded
    assert all(p.prompt != pairs[0].prompt and p.target == " Tomorrow." and p.source == "augment" for p in out)


def test_cli_finetune_flags_and_one_line_errors(micro_path, train_file, tmp_path):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"model: {micro_path}\ndata: {train_file.name}\ntrain_split: train\nval_split: test\nbatch_size: 4\n"
                   f"losses:\n  ce: 1.0\n  unlikelihood: 0.5\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "audit", "finetune", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=tmp_path, timeout=120)
    p = run(str(cfg), "--max-steps", "2", "--lr", "3e-3", "--out-dir", "o", "--set", "losses.unlikelihood.window=4", "-q")
    assert p.returncode == 0, p.stderr
    assert "model: o/model" in p.stdout
    saved = (tmp_path / "o" / "finetune.yaml").read_text()
    assert "lr: 0.003" in saved and "window: 4" in saved
    p = run(str(cfg), "--set", "losses.simctg.margn=1")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "losses.simctg: unknown field 'margn' (did you mean 'margin'?)" in p.stderr


def test_resume_from_a_checkpoint_of_a_different_config_is_a_clear_error(micro_path, train_file, tmp_path):
    from audit.finetune.checkpoint import CheckpointError

    out = tmp_path / "full"
    finetune(_cfg(micro_path, train_file, out, max_steps=2, save_every=2, val_split=None, val_fraction=0.0))
    step = out / "checkpoints" / "step-000002"
    # Frozen layers: the optimizer's parameter groups differ; LoRA: the weights' names differ.
    for change, field in (({"freeze_all_but_top_k": 1}, "freeze_all_but_top_k"), ({"lora": {"r": 2}}, "lora")):
        with pytest.raises(CheckpointError, match=rf"cannot resume.*{field}") as e:
            finetune(_cfg(micro_path, train_file, tmp_path / field, max_steps=4, resume=str(step), **change))
        assert "\n" not in str(e.value)
    # A LoRA checkpoint resumed with another rank: the adapter shapes differ.
    lora = tmp_path / "lora"
    finetune(_cfg(micro_path, train_file, lora, max_steps=2, save_every=2, lora={"r": 2}))
    with pytest.raises(CheckpointError, match=r"cannot resume.*lora") as e:
        finetune(_cfg(micro_path, train_file, tmp_path / "r4", max_steps=4, lora={"r": 4},
                      resume=str(lora / "checkpoints" / "step-000002")))
    assert "\n" not in str(e.value)


def test_saved_config_names_the_model_that_was_trained(micro_path, train_file, tmp_path):
    import yaml

    from audit.models.local import LanguageModel

    cfg = _cfg(micro_path, train_file, tmp_path / "spec", max_steps=1)
    del cfg["model"]  # the model comes from the `model=` argument (as `audit harden` passes it), not the config
    r = finetune(cfg, model=str(micro_path))
    saved = yaml.safe_load((r.out_dir / "finetune.yaml").read_text())
    assert saved["model"] == str(micro_path)
    r = finetune(cfg, model=LanguageModel.load("builtin:micro"), out_dir=str(tmp_path / "lm"))
    assert yaml.safe_load((r.out_dir / "finetune.yaml").read_text())["model"] == "builtin:micro"
    assert yaml.safe_load((r.out_dir / "checkpoints" / "step-000001" / "finetune.yaml").read_text())["model"] == "builtin:micro"


def test_val_split_that_matches_no_rows_is_an_error_not_a_silent_run_without_validation(micro_path, train_file, tmp_path):
    from audit.data import DataError

    with pytest.raises(DataError, match=r"train\.jsonl: no records with split='valid' \(val_split\)"):
        finetune(_cfg(micro_path, train_file, tmp_path / "o", val_split="valid"))


def test_warmup_longer_than_the_run_warns(micro_path, train_file, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="audit"):
        r = finetune(_cfg(micro_path, train_file, tmp_path / "w", max_steps=2, warmup_steps=10, eval_every=100))
    # The schedule never leaves warm-up: the peak lr is never used.
    assert max(h["lr"] for h in r.history if "lr" in h) < 2e-3
    assert any("warmup_steps (10) >= the run's 2 optimizer steps" in m for m in caplog.messages), caplog.messages


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A random 2-layer Llama (rotary positions, RMSNorm, untied head) with a byte-level BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from audit.models.builtin import train_tokenizer

    tok = train_tokenizer(["Customer: where is my order? Agent: Your order is on its way today."] * 20, vocab_size=300)
    eos = tok.eos_token_id
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos))
    path = tmp_path_factory.mktemp("llama") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_lora_and_pgd_on_a_llama_then_explain_it(tiny_llama, train_file, tmp_path):
    from audit.explain import explain
    from audit.models.local import LanguageModel

    # peft's default target modules for Llama (q_proj, v_proj); PGD perturbs the embeddings rotary models read.
    r = finetune(_cfg(tiny_llama, train_file, tmp_path / "llama", max_steps=2, lora={"r": 2},
                      losses={"ce": 1.0, "pgd": 0.5}))
    assert r.steps == 2 and r.best_val_loss is not None
    adapter = json.loads((r.adapter_dir / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    lm = LanguageModel.load(str(r.model_dir))
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    e = explain(lm, "Customer: where is my order?", target=" Your order", n_steps=8)
    assert e.completeness_error() < 0.01 and len(e.attributions) == len(e.target_tokens)
    # A prompt longer than the 64-token window keeps its end; an empty prompt conditions on bos.
    long = explain(lm, "where is my order " * 40, target=" Your", method="saliency")
    assert long.n_prompt + len(long.target_tokens) == 64
    assert explain(lm, "", target=" order", method="saliency").n_prompt == 1


def test_two_runs_in_one_process_may_use_different_precisions(micro_path, train_file, tmp_path):
    """Accelerate's process-wide state used to refuse the second run ("cannot be changed")."""
    a = finetune(_cfg(micro_path, train_file, tmp_path / "fp32", max_steps=2, precision="no", val_split=None, val_fraction=0.0))
    b = finetune(_cfg(micro_path, train_file, tmp_path / "bf16", max_steps=2, precision="bf16", val_split=None, val_fraction=0.0))
    c = finetune(_cfg(micro_path, train_file, tmp_path / "fp32b", max_steps=2, precision="no", val_split=None, val_fraction=0.0))
    assert a.steps == b.steps == c.steps == 2
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.model_dir).values(), _weights(c.model_dir).values()))


def test_max_length_beyond_the_models_positions_is_refused_before_any_data_work(micro_path, micro_lm, train_file, tmp_path):
    # builtin:micro has 128 positions; a longer max_length failed with an IndexError after loading.
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"model: {micro_path}\ndata: missing.jsonl\nmax_steps: 1\nmax_length: 4096\nprogress: false\n")
    p = subprocess.run([sys.executable, "-m", "audit", "finetune", str(cfg), "--out-dir", "o", "-q"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    # Refused on the model's config, before the data is read (the data file does not even exist).
    assert "max_length 4096" in p.stderr and "128 positions" in p.stderr and "missing.jsonl" not in p.stderr, p.stderr
    # A model already loaded (no config.json to read first): refused as soon as it is known.
    from audit.config import ConfigError

    with pytest.raises(ConfigError, match=r"max_length 129: .* 128 positions"):
        finetune(_cfg(micro_path, tmp_path / "missing.jsonl", tmp_path / "o2", max_length=129), model=micro_lm)
    # The default (256) is lowered to the model's window; the window itself is fine.
    r = finetune(_cfg(micro_path, train_file, tmp_path / "o3", max_steps=1))
    assert "max_length: 128" in (r.out_dir / "finetune.yaml").read_text()
    finetune(_cfg(micro_path, train_file, tmp_path / "o4", max_steps=1, max_length=128))


def test_a_negative_adam_eps_is_refused_at_config_validation(micro_path, train_file, tmp_path):
    from audit.config import ConfigError
    from audit.finetune.config import load_finetune_config

    for bad in (-1e-8, 0.0):
        with pytest.raises(ConfigError, match="adam_eps must be > 0") as e:
            load_finetune_config(_cfg(micro_path, train_file, tmp_path / "o", adam_eps=bad))
        assert "\n" not in str(e.value)
    p = subprocess.run([sys.executable, "-m", "audit", "finetune", "--model", str(micro_path), "--data", str(train_file),
                        "--adam-eps=-1e-8", "--out-dir", "o", "-q"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "adam_eps must be > 0" in p.stderr, p.stderr
    assert not (tmp_path / "o").exists()   # nothing ran
