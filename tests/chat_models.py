"""Test helpers: a tiny Llama-architecture chat model built locally (no download) and its GGUF file.

The model mirrors SmolLM2-135M-Instruct's layout at toy size: a byte-level BPE tokenizer with the
ChatML special tokens ``<|im_start|>``/``<|im_end|>``, SmolLM2's ChatML chat template, rotary
grouped-query attention, and the same special-token mix-up as converted SmolLM2: the tokenizer's
eos is ``<|endoftext|>`` while the generation config ends a turn at ``<|im_end|>``.

:func:`write_gguf` writes it as llama.cpp's converter would (f32 tensors, q/k rows permuted, the
tokenizer as ``gpt2`` tokens + merges, special token ids and the chat template as metadata), so
transformers' GGUF loader can be tested on a file we made ourselves.
"""

from __future__ import annotations

import json
from pathlib import Path

# SmolLM2-135M-Instruct's template (as its GGUF carries it): a default system turn unless given one.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>"]


def build_chat_llama(path: Path, *, seed: int = 0, template: str | None = CHATML) -> Path:
    """Save a random-init tiny Llama chat model (~60k parameters) with its tokenizer into ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from audit.models.builtin import EOS, corpus_text, train_tokenizer

    tok = train_tokenizer(corpus_text()[:60_000].split("\n"), vocab_size=320)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    if template is not None:
        tok.chat_template = template
    eos, im_end = tok.convert_tokens_to_ids(EOS), tok.convert_tokens_to_ids("<|im_end|>")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                      tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=10000.0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    # Like converted SmolLM2: the turn ends at <|im_end|>, which the tokenizer does not call eos.
    model.generation_config.eos_token_id = [eos, im_end]
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def _permute(w, n_head: int):
    """llama.cpp's q/k row order (convert_hf_to_gguf.py LlamaModel.permute); transformers undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model_dir: Path, out: Path, *, architecture: str = "llama") -> Path:
    """Write the model in ``model_dir`` (from :func:`build_chat_llama`) as an f32 GGUF file."""
    import gguf
    import numpy as np
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir)
    cfg = model.config
    w = gguf.GGUFWriter(str(out), architecture)
    w.add_name("tiny chat llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    # The tokenizer as llama.cpp stores a byte-level BPE: tokens by id, their types, the merges.
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    special = set(tok.all_special_ids)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    w.add_bos_token_id(tok.convert_tokens_to_ids("<|im_start|>"))
    w.add_eos_token_id(tok.convert_tokens_to_ids("<|im_end|>"))  # what llama.cpp stops on for a chat model
    w.add_unk_token_id(eos)
    w.add_pad_token_id(eos)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    h, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", np.ascontiguousarray(_permute(sd[p + "self_attn.q_proj.weight"], h)))
        w.add_tensor(f"blk.{i}.attn_k.weight", np.ascontiguousarray(_permute(sd[p + "self_attn.k_proj.weight"], kv)))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
