"""Each training loss against a value computed by hand on a tiny tensor, plus conformance on the micro model."""

from __future__ import annotations

import math

import pytest
import torch

from audit.finetune.data import Example, collate
from audit.finetune.losses import LOSSES, LossInputs
from audit.finetune.losses.consistency import paired_kl
from audit.finetune.losses.ce import cross_entropy
from audit.finetune.losses.pgd import EmbeddingPGD, PerturbationOptions, adversarial_delta, project
from audit.finetune.losses.simctg import simctg_loss
from audit.finetune.losses.smart import symmetric_kl
from audit.finetune.losses.unlikelihood import candidate_mask, token_unlikelihood
from audit.finetune.losses.unlikelihood_seq import repeated_ngram_mask, sequence_unlikelihood


def test_ce_hand_value():
    # Two scored steps. Step 0 predicts token 1 from logits [0, ln 3] -> p = 3/4; step 1 predicts
    # token 0 from logits [0, 0] -> p = 1/2. The prompt position (label -100) is skipped.
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    expected = (-math.log(3 / 4) - math.log(1 / 2)) / 2
    assert float(cross_entropy(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_unlikelihood_hand_value():
    # Sequence 2 0 2 1 over V=3, every position scored. Logits uniform except where stated.
    ids = torch.tensor([[2, 0, 2, 1]])
    logits = torch.zeros(1, 4, 3)
    logits[0, 1] = torch.tensor([math.log(2), 0.0, 0.0])   # step predicting x2=2: p = [1/2, 1/4, 1/4]
    logits[0, 2] = torch.tensor([0.0, 0.0, math.log(2)])   # step predicting x3=1: p = [1/4, 1/4, 1/2]
    mask = torch.ones_like(ids)
    # Step 0 (target 0, context {2}): candidate 2, p = 1/3.
    # Step 1 (target 2, context {2, 0}): candidate 0 only (2 is the target), p = 1/2.
    # Step 2 (target 1, context {2, 0, 2}): candidates {0, 2}, p = 1/4 and 1/2.
    expected = -(math.log(1 - 1 / 3) + math.log(1 - 1 / 2) + math.log(1 - 1 / 4) + math.log(1 - 1 / 2)) / 3
    assert float(token_unlikelihood(logits, ids, mask, ids)) == pytest.approx(expected, abs=1e-6)


def test_unlikelihood_candidates_exclude_target_padding_and_unscored():
    ids = torch.tensor([[4, 4, 1, 4, 0]])                  # last position is padding (id 0)
    attn = torch.tensor([[1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, 1, 4, -100]])      # prompt "4 4", target "1 4"
    m = candidate_mask(ids, attn, labels, vocab_size=6)
    assert m.shape == (1, 4, 6)
    assert not m[0, 0].any()                               # step predicting a prompt token: no candidates
    assert m[0, 1].nonzero().flatten().tolist() == [4]     # predicting 1 after "4 4": the repeated 4
    assert m[0, 2].nonzero().flatten().tolist() == [1]     # predicting 4: 4 is the target, so only 1
    assert not m[0, 3].any()                               # predicting padding: not scored
    assert not m[0, :, 0].any()                            # the padding id is never a candidate


def test_sequence_unlikelihood_hand_value():
    seq = [5, 6, 5, 6, 5, 7]
    flags = repeated_ngram_mask(seq, 2, 2)                 # continuation 5 6 5 7: "5 6" and "6 5" repeat
    assert flags == [True, True, True, False]
    logits = torch.zeros(1, 4, 8)
    logits[0, 0, 5] = math.log(7)                          # p(5) = 7 / 14 = 1/2 at step 0
    toks = torch.tensor([seq[2:]])
    # Flagged steps: 0 (p=1/2), 1 (p=1/8), 2 (p=1/8); mean over the 4 continuation tokens.
    expected = -(math.log(1 / 2) + 2 * math.log(7 / 8)) / 4
    got = sequence_unlikelihood(logits, toks, torch.tensor([flags]))
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_simctg_hand_value():
    # Three real tokens and one pad: h0 = h1 (cos 1), h2 orthogonal to both (cos 0).
    h = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])
    attn = torch.tensor([[1, 1, 1, 0]])
    # Ordered pairs (i != j) over 3 tokens: 6. hinge = max(0, rho - 1 + cos), rho = 0.5:
    # (0,1) and (1,0): 0.5; the four pairs with token 2: 0. -> 1.0 / 6.
    assert float(simctg_loss(h, attn, margin=0.5)) == pytest.approx(1.0 / 6, abs=1e-6)
    # With rho = 1: identical pair 1 each, orthogonal pairs 0 each -> 2 / 6.
    assert float(simctg_loss(h, attn, margin=1.0)) == pytest.approx(2.0 / 6, abs=1e-6)


def test_symmetric_kl_hand_value():
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.1, 0.9]]]))
    mask = torch.tensor([[True, False]])                   # only the first position counts
    kl_pq = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_qp = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(symmetric_kl(p, q, mask)) == pytest.approx(kl_pq + kl_qp, abs=1e-6)
    assert float(symmetric_kl(p, p, torch.ones(1, 2, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-7)


def test_paired_kl_hand_value_aligns_targets_after_prompts_of_different_length():
    # Row 0: clean prompt of 2 tokens, perturbed prompt of 1, target of 2 tokens (V = 2).
    # Row 1: both prompts 1 token, target of 1 token. Only target positions count, k-th with k-th.
    nan = float("nan")                                     # unscored positions must never be read
    clean = torch.log(torch.tensor([[[nan, nan], [0.5, 0.5], [0.9, 0.1], [nan, nan]],
                                    [[0.2, 0.8], [nan, nan], [nan, nan], [nan, nan]]]))
    pert = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5], [nan, nan]],
                                   [[0.2, 0.8], [nan, nan], [nan, nan]]]))
    clean_labels = torch.tensor([[-100, -100, 1, 0], [-100, 1, -100, -100]])
    pert_labels = torch.tensor([[-100, 1, 0], [-100, 1, -100]])
    kl_a = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)   # KL(clean || pert), first target token of row 0
    kl_b = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)     # second target token of row 0
    expected = (kl_a + kl_b + 0.0) / 3                                 # row 1: identical distributions
    assert float(paired_kl(clean, clean_labels, pert, pert_labels)) == pytest.approx(expected, abs=1e-6)
    # KL, not its symmetric form: swapping the sides changes the value.
    assert float(paired_kl(pert, pert_labels, clean, clean_labels)) != pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="same number of target tokens"):
        paired_kl(clean, clean_labels, pert, torch.tensor([[-100, 1, -100], [-100, 1, -100]]))


def test_consistency_moves_the_perturbed_prediction_only(micro_lm):
    # Detached clean side: the gradient reaches the parameters only through the perturbed pass, and a
    # pair whose prompts are identical gives exactly 0.
    tok = micro_lm.tokenizer
    model = micro_lm.model
    model.eval()
    cont = tok(" shipped", add_special_tokens=False)["input_ids"]
    orig = tok("Customer: where is my order?\nAgent:", add_special_tokens=False)["input_ids"]
    pert = tok("Customer: whree is my order?\nAgent:", add_special_tokens=False)["input_ids"]
    loss = LOSSES.get("consistency")()

    def value(p_ids):
        ex = Example(p_ids + cont, [-100] * len(p_ids) + cont,
                     pair=((p_ids + cont, [-100] * len(p_ids) + cont), (orig + cont, [-100] * len(orig) + cont)))
        b = collate([ex], tok.pad_token_id, pairs=True)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        return loss(LossInputs(model=model, input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"],
                               embeds=None, logits=logits, pair={k: v for k, v in b.items() if k.startswith(("pair_", "orig_"))}))

    assert float(value(orig).detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(value(pert).detach()) > 1e-4
    model.zero_grad()


@pytest.mark.parametrize("norm", ["l2", "l2_token", "linf"])
@pytest.mark.parametrize("init", ["zero", "uniform", "normal"])
def test_pgd_perturbation_respects_norm_bound(norm, init):
    torch.manual_seed(0)
    emb = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    w = torch.randn(4)
    o = PerturbationOptions(steps=4, epsilon=0.3, step_size=1.0, norm=norm, init=init, init_scale=1.0)
    # A big step size pushes every iterate against the boundary: projection must hold it.
    delta = adversarial_delta(emb, mask, lambda x: ((x @ w) ** 2).sum(), o)
    tol = 1e-5
    if norm == "l2":
        assert (delta.flatten(1).norm(dim=1) <= 0.3 + tol).all()
        assert delta.flatten(1).norm(dim=1).max() > 0.29   # and the ascent reached the boundary
    elif norm == "l2_token":
        assert (delta.norm(dim=-1) <= 0.3 + tol).all()
    else:
        assert delta.abs().max() <= 0.3 + tol
        assert delta.abs().max() > 0.29
    assert (delta[mask == 0] == 0).all()                   # padding is never perturbed


def test_pgd_ascent_increases_the_loss():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 3)
    mask = torch.ones(2, 4)
    f = lambda x: (x.sum(-1) ** 2).sum()  # noqa: E731
    o = PerturbationOptions(steps=3, epsilon=0.5, step_size=0.2, init="zero")
    delta = adversarial_delta(emb, mask, f, o)
    assert f(emb + delta) > f(emb)
    assert float(project(torch.full((1, 2, 2), 10.0), torch.ones(1, 2), 1.0, "l2").flatten().norm()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def batch(micro_lm):
    tok = micro_lm.tokenizer
    rows = [tok("Customer: hi\nAgent: hello hello", add_special_tokens=False)["input_ids"],
            tok("Customer: where is my order?\nAgent: shipped", add_special_tokens=False)["input_ids"]]
    width = max(map(len, rows))
    ids = torch.full((2, width), tok.pad_token_id)
    attn = torch.zeros(2, width, dtype=torch.long)
    labels = torch.full((2, width), -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        attn[i, :len(r)] = 1
        labels[i, 4:len(r)] = torch.tensor(r[4:])
    return ids, attn, labels


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_a_finite_differentiable_scalar(name, micro_lm, batch):
    ids, attn, labels = batch
    model = micro_lm.model
    model.train()
    torch.manual_seed(0)
    cls = LOSSES.get(name)
    opts = cls.Options()
    if name == "unlikelihood_seq":
        opts = cls.Options(prefix_length=4, continuation_length=6, ngram=2)
    pair = None
    if cls.needs_pairs:
        # Row 1 as a "perturbed" prompt paired with a clean one: same continuation after both.
        tok = micro_lm.tokenizer
        cont = tok(" shipped", add_special_tokens=False)["input_ids"]
        pert = tok("Customer: whree is my order?\nAgent:", add_special_tokens=False)["input_ids"]
        orig = tok("Customer: where is my order?\nAgent:", add_special_tokens=False)["input_ids"]
        pair = collate([Example(pert + cont, [-100] * len(pert) + cont,
                                pair=((pert + cont, [-100] * len(pert) + cont), (orig + cont, [-100] * len(orig) + cont)))],
                       tok.pad_token_id, pairs=True)
        pair = {k: v for k, v in pair.items() if k.startswith(("pair_", "orig_"))}
    embeds = model.get_input_embeddings()(ids)
    out = model(inputs_embeds=embeds, attention_mask=attn, output_hidden_states=cls.needs_hidden, use_cache=False)
    inputs = LossInputs(model=model, input_ids=ids, attention_mask=attn, labels=labels, embeds=embeds, logits=out.logits,
                        hidden=out.hidden_states[-1] if cls.needs_hidden else None, pair=pair)
    model.zero_grad()
    loss = cls(opts)(inputs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    model.zero_grad()
    model.eval()


def test_pgd_loss_is_at_least_the_clean_loss_on_average(micro_lm, batch):
    ids, attn, labels = batch
    model = micro_lm.model
    model.eval()  # no dropout: the only difference is the perturbation
    embeds = model.get_input_embeddings()(ids)
    logits = model(inputs_embeds=embeds, attention_mask=attn).logits
    inputs = LossInputs(model=model, input_ids=ids, attention_mask=attn, labels=labels, embeds=embeds, logits=logits)
    clean = float(cross_entropy(logits.detach(), labels))
    adv = float(EmbeddingPGD(EmbeddingPGD.Options(steps=3, epsilon=2.0, step_size=1.0, init="zero"))(inputs).detach())
    assert adv > clean


def test_unknown_loss_and_option_errors_name_the_field():
    from audit.finetune.config import load_finetune_config
    from audit.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown loss 'pgdd' \(did you mean 'pgd'\?\)"):
        load_finetune_config({"losses": {"pgdd": 1.0}})
    with pytest.raises(ConfigError, match=r"losses.pgd: unknown field 'epsilno' \(did you mean 'epsilon'\?\)"):
        load_finetune_config({"losses": {"pgd": {"epsilno": 0.1}}})
    with pytest.raises(ConfigError, match="norm must be"):
        load_finetune_config({"losses": {"smart": {"norm": "l3"}}})


def test_pgd_zero_init_shortcut_equals_an_explicit_first_ascent(micro_lm, batch):
    # With init: zero the first ascent step reuses the clean pass's gradient; it must be the same step.
    ids, attn, labels = batch
    model = micro_lm.model
    model.eval()
    embeds = model.get_input_embeddings()(ids)
    logits = model(inputs_embeds=embeds, attention_mask=attn).logits
    objective = lambda x: cross_entropy(model(inputs_embeds=x, attention_mask=attn).logits, labels)  # noqa: E731
    o = PerturbationOptions(steps=2, epsilon=0.5, step_size=0.3, init="zero")
    (g,) = torch.autograd.grad(cross_entropy(logits, labels), embeds)
    fast = adversarial_delta(embeds, attn, objective, o, first_grad=g)
    slow = adversarial_delta(embeds, attn, objective, o)
    assert torch.allclose(fast, slow, atol=1e-5)
    model.zero_grad()


def test_pgd_from_zero_under_lora_reuses_the_clean_pass(micro_path, batch):
    """Under LoRA the embedding matrix is frozen; the trainer still lets PGD read d(loss)/d(embeds) off the
    clean pass: two forwards per step instead of three, and the same loss and adapter gradients."""
    import copy

    from audit.finetune.config import LoraOptions, load_finetune_config
    from audit.finetune.lora import apply_lora, transformer_blocks
    from audit.finetune.trainer import LossModule
    from audit.models.local import LanguageModel

    ids, attn, labels = batch
    torch.manual_seed(0)
    net = apply_lora(LanguageModel.load(str(micro_path)).model, LoraOptions(r=2))
    for n, p in net.named_parameters():          # adapters away from their zero init: a real gradient
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    net.eval()
    spec = load_finetune_config({"losses": {"ce": 1.0, "pgd": {"init": "zero", "steps": 1, "epsilon": 0.5}}}).loss_specs()

    def run(module):
        calls = []
        hook = module.lm.get_input_embeddings().register_forward_hook(lambda *a: calls.append(1))
        inner = transformer_blocks(module.lm)[0].register_forward_hook(lambda *a: calls.append(2))
        try:
            total, _ = module(ids, attn, labels)
            total.backward()
        finally:
            hook.remove()
            inner.remove()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        module.zero_grad()
        return float(total), grads, calls.count(2)

    fast = LossModule(net, spec)
    slow = LossModule(copy.deepcopy(net), spec)
    slow.needs_embed_grad = False                 # the path without the reuse: a forward of its own at delta = 0
    (lf, gf, nf), (ls, gs, ns) = run(fast), run(slow)
    assert (nf, ns) == (2, 3)
    assert lf == pytest.approx(ls, rel=1e-5)
    assert gf.keys() == gs.keys() and gf and all(torch.allclose(gf[k], gs[k], atol=1e-5) for k in gf)
