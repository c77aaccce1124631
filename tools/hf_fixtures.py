#!/usr/bin/env python3
"""Build the Hugging Face parity fixtures under tests/fixtures/hf/<case>/.

Each case is a tiny randomly initialised transformers model (fixed seed, float32, every dropout 0,
eager attention) run on a batch of 2 sequences whose second row is right-padded. Per case it writes:

  config.json, model.safetensors   save_pretrained (safetensors; tied weights stored once, HF's choice)
  inputs.json                      input_ids, attention_mask and whatever the head consumed
                                   (token_type_ids, labels, next_sentence_label, decoder_input_ids)
  outputs.safetensors              logits, last hidden states, per-layer hidden states, loss, and
                                   `grad.<name>` for every entry of model.named_parameters()
  versions.json                    torch / transformers / safetensors / numpy versions, seed, case notes
  generate.json                    (gpt2_lm, t5_original, bart) greedy generation, use_cache=True
  trajectory.json                  (gpt2_trajectory) 10 AdamW steps on one fixed batch
and tests/fixtures/hf/t5_buckets.json (T5 relative-position buckets for rel = -300..300).

Every case is reloaded with `from_pretrained` and re-run; the script fails if the reloaded logits
differ from the stored ones by more than 1e-6, so the stored files are self-consistent.

Run with (from the repository root):
    /work/refenv/bin/python tools/hf_fixtures.py [--out tests/fixtures/hf]
Last run with: torch 2.15.0+cu132 (CPU), transformers 5.23.0, safetensors 0.8.0, numpy 2.4.6,
Python 3.11. See tests/fixtures/hf/NOTES.md for what the Rust side must reproduce.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from torch import nn
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

BATCH = 2
SEQ = 7  # encoder / decoder-only sequence length
DEC_SEQ = 5  # decoder length for T5 / BART
PAD_TAIL = 2  # zeros at the end of row 2 of the attention mask


def versions(seed, extra=None):
    v = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "seed": seed,
        "dtype": "float32",
        "attn_implementation": "eager",
    }
    if extra:
        v.update(extra)
    return v


def rand_ids(gen, lo, hi, shape):
    """Token ids uniform in [lo, hi)."""
    return torch.randint(lo, hi, shape, generator=gen, dtype=torch.long)


def padded_mask(seq=SEQ):
    m = torch.ones(BATCH, seq, dtype=torch.long)
    m[1, seq - PAD_TAIL :] = 0
    return m


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def tensors_to_lists(d):
    return {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in d.items()}


def save_case(out_dir, case, model, inputs, outputs, seed, notes, reload_cls, forward_inputs, logits_attr="logits"):
    """Write config/model/inputs/outputs/versions for one case and check the reload."""
    d = os.path.join(out_dir, case)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    write_json(os.path.join(d, "inputs.json"), tensors_to_lists(inputs))
    out = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in outputs.items()}
    safetensors.torch.save_file(out, os.path.join(d, "outputs.safetensors"))
    stored = safetensors.torch.load_file(os.path.join(d, "model.safetensors"))
    write_json(
        os.path.join(d, "versions.json"),
        versions(
            seed,
            {
                "case": case,
                "class": type(model).__name__,
                "notes": notes,
                "stored_tensors": sorted(stored.keys()),
            },
        ),
    )
    # Reload from disk exactly as a user would and check that the logits reproduce.
    re = reload_cls.from_pretrained(d, attn_implementation="eager")
    re.eval()
    with torch.no_grad():
        lo = getattr(re(**forward_inputs), logits_attr)
    diff = (lo - outputs["logits"]).abs().max().item()
    if diff > 1e-6:
        raise SystemExit(f"{case}: reloaded model differs from the fixture by {diff}")
    print(f"{case}: {len(stored)} stored tensors, reload max|diff| {diff:.2e}")
    return d


def grads(model):
    """grad.<name> for every named parameter (tied weights appear once, under HF's first name)."""
    g = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            raise SystemExit(f"parameter {name} got no gradient")
        g["grad." + name] = p.grad.detach().clone()
    return g


def hidden(prefix, hs):
    return {f"{prefix}.{i}": h for i, h in enumerate(hs)}


# ----------------------------------------------------------------------------------------- BERT


def bert_config(**kw):
    return BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=0.2,  # larger than HF's 0.02 so activations span the nonlinearities
        layer_norm_eps=1e-12,
        pad_token_id=0,
        attn_implementation="eager",
        **kw,
    )


def bert_inputs(gen, vocab):
    ids = rand_ids(gen, 5, vocab, (BATCH, SEQ))
    ids[:, 0] = 2  # a [CLS]-like id
    mask = padded_mask()
    ids[1, SEQ - PAD_TAIL :] = 0  # pad id
    # A pad id at an attended position: nn.Embedding(padding_idx=0) gives it no embedding gradient.
    ids[0, 3] = 0
    tt = torch.zeros(BATCH, SEQ, dtype=torch.long)
    tt[0, 4:] = 1
    tt[1, 3 : SEQ - PAD_TAIL] = 1
    return ids, mask, tt


def case_bert_pretraining(out):
    seed = 1001
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = bert_config()
    model = BertForPreTraining(cfg).eval()
    # Random non-zero biases so that bias handling is tested (HF initialises them at zero).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
    ids, mask, tt = bert_inputs(gen, cfg.vocab_size)
    labels = torch.full((BATCH, SEQ), -100, dtype=torch.long)
    labels[0, 1] = 17
    labels[0, 5] = 99
    labels[1, 2] = 40
    labels[1, 4] = 3
    nsp = torch.tensor([0, 1])
    fin = dict(input_ids=ids, attention_mask=mask, token_type_ids=tt)
    o = model(**fin, labels=labels, next_sentence_label=nsp, output_hidden_states=True)
    o.loss.backward()
    with torch.no_grad():
        mlm = nn.functional.cross_entropy(o.prediction_logits.view(-1, cfg.vocab_size), labels.view(-1))
        nsp_loss = nn.functional.cross_entropy(o.seq_relationship_logits, nsp)
    outputs = {
        "logits": o.prediction_logits,
        "seq_relationship_logits": o.seq_relationship_logits,
        "last_hidden_state": o.hidden_states[-1],
        "loss": o.loss,
        "mlm_loss": mlm,
        "nsp_loss": nsp_loss,
        **hidden("hidden_states", o.hidden_states),
        **grads(model),
    }
    inputs = dict(fin, labels=labels, next_sentence_label=nsp)
    notes = (
        "loss = CE(prediction_logits, labels, ignore -100, mean) + CE(seq_relationship_logits, "
        "next_sentence_label, mean). hidden_states.0 = embeddings output (after LayerNorm), "
        "hidden_states.i = output of layer i-1. Biases were re-drawn N(0,0.02) after init."
    )
    save_case(
        out, "bert_pretraining", model, inputs, outputs, seed, notes, BertForPreTraining, fin, "prediction_logits"
    )


def case_bert_seqcls(out):
    seed = 1002
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = bert_config(num_labels=3)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
    ids, mask, tt = bert_inputs(gen, cfg.vocab_size)
    labels = torch.tensor([2, 0])
    fin = dict(input_ids=ids, attention_mask=mask, token_type_ids=tt)
    o = model(**fin, labels=labels, output_hidden_states=True)
    o.loss.backward()
    outputs = {
        "logits": o.logits,
        "last_hidden_state": o.hidden_states[-1],
        "loss": o.loss,
        **hidden("hidden_states", o.hidden_states),
        **grads(model),
    }
    notes = "logits = classifier(tanh(pooler.dense(h[:,0]))); loss = CE(logits, labels, mean)."
    save_case(
        out, "bert_seqcls", model, dict(fin, labels=labels), outputs, seed, notes, BertForSequenceClassification, fin
    )


def case_bert_tokcls(out):
    seed = 1003
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = bert_config(num_labels=5)
    model = BertForTokenClassification(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
    ids, mask, tt = bert_inputs(gen, cfg.vocab_size)
    labels = rand_ids(gen, 0, 5, (BATCH, SEQ))
    labels[:, 0] = -100  # [CLS]
    labels[0, 3] = -100  # a continuation sub-word
    labels[1, SEQ - PAD_TAIL :] = -100  # padding
    fin = dict(input_ids=ids, attention_mask=mask, token_type_ids=tt)
    o = model(**fin, labels=labels, output_hidden_states=True)
    o.loss.backward()
    outputs = {
        "logits": o.logits,
        "last_hidden_state": o.hidden_states[-1],
        "loss": o.loss,
        **hidden("hidden_states", o.hidden_states),
        **grads(model),
    }
    notes = "logits = classifier(h) per token; loss = CE over positions with label != -100, mean."
    save_case(
        out, "bert_tokcls", model, dict(fin, labels=labels), outputs, seed, notes, BertForTokenClassification, fin
    )


# ----------------------------------------------------------------------------------------- GPT-2


def gpt2_config(**kw):
    base = dict(
        vocab_size=99,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.2,  # larger than HF's 0.02: sharper logits, non-degenerate greedy output
        bos_token_id=98,
        eos_token_id=98,
        attn_implementation="eager",
    )
    base.update(kw)
    return GPT2Config(**base)


def gpt2_randomise_biases(model, gen):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
            if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def gpt2_lm_inputs(gen, vocab):
    ids = rand_ids(gen, 1, vocab - 1, (BATCH, SEQ))
    mask = padded_mask()
    ids[1, SEQ - PAD_TAIL :] = 0  # pad id 0 (any id works: it is masked and its label is -100)
    labels = ids.clone()
    labels[mask == 0] = -100
    return ids, mask, labels


def case_gpt2_lm(out):
    seed = 2001
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = gpt2_config()
    model = GPT2LMHeadModel(cfg).eval()
    gpt2_randomise_biases(model, gen)
    ids, mask, labels = gpt2_lm_inputs(gen, cfg.vocab_size)
    fin = dict(input_ids=ids, attention_mask=mask)
    o = model(**fin, labels=labels, output_hidden_states=True)
    o.loss.backward()
    outputs = {
        "logits": o.logits,
        "last_hidden_state": o.hidden_states[-1],
        "loss": o.loss,
        **hidden("hidden_states", o.hidden_states),
        **grads(model),
    }
    notes = (
        "loss = CE(logits[:, :-1], labels[:, 1:], ignore -100, mean over non-ignored). "
        "hidden_states.0 = wte+wpe; hidden_states.1 = output of block 0; the LAST entry is after ln_f "
        "(it equals last_hidden_state), i.e. the output of the last block itself is not stored."
    )
    d = save_case(out, "gpt2_lm", model, dict(fin, labels=labels), outputs, seed, notes, GPT2LMHeadModel, fin)

    # Greedy generation with the KV cache on one unpadded prompt.
    write_generation(d, model, lambda g: dict(input_ids=rand_ids(g, 1, cfg.vocab_size - 1, (1, 5))), is_encdec=False)


def case_gpt2_seqcls(out):
    seed = 2002
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = gpt2_config(num_labels=3, pad_token_id=0)
    model = GPT2ForSequenceClassification(cfg).eval()
    gpt2_randomise_biases(model, gen)
    ids, mask, _ = gpt2_lm_inputs(gen, cfg.vocab_size)  # content ids in [1, V-1), pads = 0 = pad_token_id
    labels = torch.tensor([1, 2])
    fin = dict(input_ids=ids, attention_mask=mask)
    o = model(**fin, labels=labels, output_hidden_states=True)
    o.loss.backward()
    with torch.no_grad():
        token_logits = model.score(o.hidden_states[-1])
    outputs = {
        "logits": o.logits,
        "token_logits": token_logits,
        "last_hidden_state": o.hidden_states[-1],
        "loss": o.loss,
        **hidden("hidden_states", o.hidden_states),
        **grads(model),
    }
    pooled_index = (torch.arange(SEQ) * (ids != cfg.pad_token_id).long()).argmax(-1)
    notes = (
        "score = Linear(n_embd, num_labels, bias=False) on every position (token_logits); logits = "
        "token_logits[b, argmax_t(t * (input_ids[b,t] != pad_token_id))] (transformers 5.x: last non-pad "
        f"token, here {pooled_index.tolist()}); loss = CE(logits, labels, mean)."
    )
    save_case(
        out, "gpt2_seqcls", model, dict(fin, labels=labels), outputs, seed, notes, GPT2ForSequenceClassification, fin
    )


def case_gpt2_trajectory(out):
    seed = 2003
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = gpt2_config()
    model = GPT2LMHeadModel(cfg)
    gpt2_randomise_biases(model, gen)
    ids, mask, labels = gpt2_lm_inputs(gen, cfg.vocab_size)
    fin = dict(input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        o = model(**fin, labels=labels, output_hidden_states=True)
    outputs = {"logits": o.logits, "loss": o.loss}
    d = save_case(
        out,
        "gpt2_trajectory",
        model,
        dict(fin, labels=labels),
        outputs,
        seed,
        "Initial weights for trajectory.json; outputs.safetensors holds only the step-0 logits and loss.",
        GPT2LMHeadModel,
        fin,
    )
    init_state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(groups_fn):
        model.load_state_dict(init_state)
        model.train()  # every dropout is 0, so train() and eval() compute the same thing
        opt = torch.optim.AdamW(groups_fn(model), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        losses = []
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            loss = model(**fin, labels=labels).loss
            losses.append(loss.item())
            loss.backward()
            opt.step()
        with torch.no_grad():
            final_loss = model(**fin, labels=labels).loss.item()
        final = {"final." + n: p.detach().clone() for n, p in model.named_parameters()}
        return losses, final_loss, final

    def all_params(m):
        return [{"params": list(m.parameters()), "weight_decay": 0.01}]

    def dim2_only(m):
        decay = [p for p in m.parameters() if p.dim() >= 2]
        no_decay = [p for p in m.parameters() if p.dim() < 2]
        return [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]

    losses_a, final_a, params_a = run(all_params)
    losses_b, final_b, params_b = run(dim2_only)
    named = list(model.named_parameters())
    traj = {
        "optimizer": "torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, amsgrad=False, "
        "foreach/fused = torch default on CPU)",
        "procedure": "for step in 0..10: zero_grad; loss = model(input_ids, attention_mask, labels).loss; "
        "record loss (BEFORE the update of that step); loss.backward(); opt.step(). No clipping, no schedule. "
        "final_loss is the loss after the 10th update. The model parameters are model.parameters() "
        "(wte is shared with lm_head and appears once).",
        "runs": {
            "wd_all": {
                "param_groups": [{"params": "all " + str(len(named)) + " parameters", "weight_decay": 0.01}],
                "losses": losses_a,
                "final_loss": final_a,
            },
            "wd_dim2": {
                "param_groups": [
                    {"params": [n for n, p in named if p.dim() >= 2], "weight_decay": 0.01},
                    {"params": [n for n, p in named if p.dim() < 2], "weight_decay": 0.0},
                ],
                "losses": losses_b,
                "final_loss": final_b,
            },
        },
        "final_params_file": "trajectory_params.safetensors: wd_all.final.<name> and wd_dim2.final.<name>",
    }
    write_json(os.path.join(d, "trajectory.json"), traj)
    fp = {"wd_all." + k: v.contiguous() for k, v in params_a.items()}
    fp.update({"wd_dim2." + k: v.contiguous() for k, v in params_b.items()})
    safetensors.torch.save_file(fp, os.path.join(d, "trajectory_params.safetensors"))
    print(f"gpt2_trajectory: wd_all {losses_a[0]:.6f} -> {final_a:.6f}, wd_dim2 -> {final_b:.6f}")


# ----------------------------------------------------------------------------------------- T5


def t5_config(**kw):
    base = dict(
        vocab_size=120,
        d_model=32,
        d_kv=6,  # inner_dim = 4*6 = 24 != d_model, so q/k/v/o layouts are tested
        d_ff=40,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer_factor=1.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        attn_implementation="eager",
    )
    base.update(kw)
    return T5Config(**base)


def t5_inputs(gen, vocab):
    ids = rand_ids(gen, 2, vocab, (BATCH, SEQ))
    mask = padded_mask()
    ids[1, SEQ - PAD_TAIL :] = 0
    labels = rand_ids(gen, 2, vocab, (BATCH, DEC_SEQ))
    labels[1, DEC_SEQ - 1 :] = -100
    return ids, mask, labels


def t5_perturb_norms(model, gen):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_norm" in n:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def case_t5(out, case, seed, gated):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if gated:
        cfg = t5_config(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    else:
        cfg = t5_config(feed_forward_proj="relu", tie_word_embeddings=True)
    model = T5ForConditionalGeneration(cfg)
    if gated:
        # transformers 5.23's T5Config forces tie_word_embeddings=True (it only keeps
        # `scale_decoder_outputs = (tie_word_embeddings is not False)`), so a model built from a
        # config is always tied. Untie by hand, as in a real v1.1 checkpoint, with HF's lm_head init.
        model.lm_head.weight = nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model, generator=gen) * 1.0)
        model.all_tied_weights_keys.pop("lm_head.weight", None)
        model.config.tie_word_embeddings = False
    model.eval()
    t5_perturb_norms(model, gen)
    assert (model.lm_head.weight is model.shared.weight) == (not gated)
    ids, mask, labels = t5_inputs(gen, cfg.vocab_size)
    dec_ids = model._shift_right(labels)
    fin = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids)
    o = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    o.loss.backward()
    with torch.no_grad():
        check = model(**fin).logits
    assert torch.equal(check, o.logits)
    outputs = {
        "logits": o.logits,
        "encoder_last_hidden_state": o.encoder_last_hidden_state,
        "decoder_last_hidden_state": o.decoder_hidden_states[-1],
        "loss": o.loss,
        **hidden("encoder_hidden_states", o.encoder_hidden_states),
        **hidden("decoder_hidden_states", o.decoder_hidden_states),
        **grads(model),
    }
    scale = cfg.scale_decoder_outputs
    notes = (
        f"feed_forward_proj={cfg.feed_forward_proj}; lm_head tied to shared: {not gated}; "
        f"scale_decoder_outputs={scale} (logits = lm_head(dec_out{' * d_model**-0.5' if scale else ''})). "
        "decoder_input_ids = _shift_right(labels) (start = pad = 0, -100 -> 0); the decoder gets NO "
        "padding mask (decoder_attention_mask=None), only the causal one; cross-attention uses the "
        "encoder attention_mask. loss = CE(logits, labels, ignore -100, mean), no shift. "
        "*_hidden_states.0 = token embeddings, .i = output of block i-1, last = after final_layer_norm."
    )
    inputs = dict(input_ids=ids, attention_mask=mask, labels=labels, decoder_input_ids=dec_ids)
    d = save_case(out, case, model, inputs, outputs, seed, notes, T5ForConditionalGeneration, fin)
    if not gated:

        def make(g):
            gi, gm, _ = t5_inputs(g, cfg.vocab_size)
            return dict(input_ids=gi, attention_mask=gm)

        write_generation(d, model, make, is_encdec=True)


# ----------------------------------------------------------------------------------------- BART


def case_bart(out):
    seed = 4001
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = BartConfig(
        vocab_size=111,
        max_position_embeddings=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=40,
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        init_std=0.2,  # larger than HF's 0.02: sharper logits, non-degenerate greedy output
        scale_embedding=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
        forced_bos_token_id=None,
        attn_implementation="eager",
    )
    model = BartForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
            if "layer_norm" in n or "layernorm" in n:
                if n.endswith("weight"):
                    p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        # final_logits_bias is a buffer (not a parameter, no gradient): make it non-zero so it is tested.
        model.final_logits_bias.normal_(0.0, 0.02, generator=gen)
    ids = rand_ids(gen, 3, cfg.vocab_size, (BATCH, SEQ))
    ids[:, 0] = 0  # <s>
    ids[0, SEQ - 1] = 2  # </s>
    ids[1, SEQ - PAD_TAIL - 1] = 2
    ids[1, SEQ - PAD_TAIL :] = 1  # <pad>
    ids[0, 3] = 1  # a pad id at an attended position: padding_idx=1 gives it no embedding gradient
    mask = padded_mask()
    labels = rand_ids(gen, 3, cfg.vocab_size, (BATCH, DEC_SEQ))
    labels[:, 0] = 0
    labels[1, DEC_SEQ - 1 :] = -100
    from transformers.models.bart.modeling_bart import shift_tokens_right

    dec_ids = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    fin = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids)
    o = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    o.loss.backward()
    with torch.no_grad():
        check = model(**fin).logits
    assert torch.equal(check, o.logits)
    outputs = {
        "logits": o.logits,
        "encoder_last_hidden_state": o.encoder_last_hidden_state,
        "decoder_last_hidden_state": o.decoder_hidden_states[-1],
        "final_logits_bias": model.final_logits_bias,
        "loss": o.loss,
        **hidden("encoder_hidden_states", o.encoder_hidden_states),
        **hidden("decoder_hidden_states", o.decoder_hidden_states),
        **grads(model),
    }
    notes = (
        "decoder_input_ids = shift_tokens_right(labels, pad=1, start=2) (-100 -> 1); decoder gets no padding "
        "mask; logits = lm_head(dec_out) + final_logits_bias (buffer, stored non-zero in model.safetensors); "
        "loss = CE(logits, labels, ignore -100, mean), no shift. *_hidden_states.0 = layernorm_embedding "
        "output, .i = output of layer i-1 (post-LN models: no final norm)."
    )
    inputs = dict(input_ids=ids, attention_mask=mask, labels=labels, decoder_input_ids=dec_ids)
    d = save_case(out, "bart", model, inputs, outputs, seed, notes, BartForConditionalGeneration, fin)

    def make(g):
        gi = rand_ids(g, 3, cfg.vocab_size, (BATCH, SEQ))
        gi[:, 0] = 0
        gi[0, SEQ - 1] = 2
        gi[1, SEQ - PAD_TAIL - 1] = 2
        gi[1, SEQ - PAD_TAIL :] = 1
        return dict(input_ids=gi, attention_mask=padded_mask())

    write_generation(d, model, make, is_encdec=True)


# ----------------------------------------------------------------------------------------- generation


def greedy_reference(model, inputs, n, is_encdec, start_id):
    """Greedy decoding recomputing the whole prefix every step (no cache): what generate() must equal."""
    with torch.no_grad():
        if is_encdec:
            b = inputs["input_ids"].shape[0]
            seq = torch.full((b, 1), start_id, dtype=torch.long)
            for _ in range(n):
                lo = model(**inputs, decoder_input_ids=seq).logits[:, -1]
                seq = torch.cat([seq, lo.argmax(-1, keepdim=True)], 1)
            return seq
        seq = inputs["input_ids"]
        for _ in range(n):
            lo = model(input_ids=seq).logits[:, -1]
            seq = torch.cat([seq, lo.argmax(-1, keepdim=True)], 1)
        return seq


def greedy_margin(model, inputs, n, is_encdec, start):
    """(sequence, smallest top-1 minus top-2 logit gap over all steps) of the no-cache greedy loop."""
    seq = greedy_reference(model, inputs, n, is_encdec, start)
    with torch.no_grad():
        if is_encdec:
            lo = model(**inputs, decoder_input_ids=seq[:, :-1]).logits[:, -n:]
        else:
            lo = model(input_ids=seq[:, :-1]).logits[:, -n:]
    top2 = lo.topk(2, -1).values
    return seq, (top2[..., 0] - top2[..., 1]).min().item()


def pick_prompt(model, make_inputs, is_encdec, n=10, tries=20, min_margin=1e-2):
    """Deterministically choose, among prompts drawn with generator seeds 0..tries-1, the one whose
    greedy output has the most distinct tokens among those whose every argmax wins by >= min_margin
    (so float-rounding differences cannot flip a token). Returns (seed, inputs)."""
    start = model.config.decoder_start_token_id if is_encdec else None
    best = None
    for seed in range(tries):
        inputs = make_inputs(torch.Generator().manual_seed(seed))
        seq, margin = greedy_margin(model, inputs, n, is_encdec, start)
        if margin < min_margin:
            continue
        distinct = len(set(seq[:, -n:].flatten().tolist()))
        if best is None or distinct > best[0]:
            best = (distinct, seed, inputs)
    if best is None:
        raise SystemExit(f"no prompt with a greedy margin >= {min_margin} in {tries} tries")
    return best[1], best[2]


def write_generation(d, model, make_inputs, is_encdec):
    cfg = model.config
    n = 10
    start = cfg.decoder_start_token_id if is_encdec else None
    prompt_seed, inputs = pick_prompt(model, make_inputs, is_encdec, n)
    gen_kwargs = dict(
        do_sample=False,
        num_beams=1,
        max_new_tokens=n,
        min_new_tokens=0,
        use_cache=True,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id,
        output_scores=True,
        return_dict_in_generate=True,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        length_penalty=1.0,
    )
    if is_encdec:
        gen_kwargs["decoder_start_token_id"] = start
    ref = greedy_reference(model, inputs, n, is_encdec, start)
    ref_new = ref[:, -n:]
    eos_note = "the model's eos_token_id"
    if cfg.eos_token_id is not None and bool((ref_new == cfg.eos_token_id).any()):
        # The model's eos would stop generation early: use an id that greedy decoding never emits,
        # so that all 10 steps are produced (generate() only uses eos to stop and pad).
        used = set(ref.flatten().tolist()) | set(inputs["input_ids"].flatten().tolist())
        gen_kwargs["eos_token_id"] = min(set(range(cfg.vocab_size)) - used)
        eos_note = f"overridden: the model's eos {cfg.eos_token_id} is emitted by greedy decoding"
    with torch.no_grad():
        g = model.generate(**inputs, **gen_kwargs)
    seq = g.sequences
    scores = torch.stack(g.scores, 1)  # (batch, steps, vocab): processed logits of each step
    top2 = scores.topk(2, -1).values
    margin = (top2[..., 0] - top2[..., 1]).min().item()
    new = seq[:, -scores.shape[1] :] if not is_encdec else seq[:, 1:]
    eos = gen_kwargs["eos_token_id"]
    eos_hit = bool((new == eos).any().item())
    if eos_hit or not torch.equal(ref, seq):
        raise SystemExit(f"{d}: generate() differs from the no-cache greedy loop:\n{seq}\n{ref}")
    rec = {
        "generate_kwargs": {
            k: v for k, v in gen_kwargs.items() if k not in ("output_scores", "return_dict_in_generate")
        },
        "inputs": tensors_to_lists(inputs),
        "prompt_choice": f"torch.Generator seed {prompt_seed} (see pick_prompt in tools/hf_fixtures.py)",
        "sequences": seq.tolist(),
        "new_tokens": new.tolist(),
        "semantics": (
            "encoder-decoder: sequences = [decoder_start_token_id] + 10 greedy tokens per row; "
            if is_encdec
            else "decoder-only: sequences = prompt + 10 greedy tokens; "
        )
        + "each token = argmax of the last position's logits (first index on ties); the KV-cache path "
        "equals the full-recompute greedy loop (checked when building).",
        "eos_token_id": eos,
        "eos_token_id_note": eos_note,
        "model_eos_token_id": cfg.eos_token_id,
        "eos_generated": eos_hit,
        "min_top1_top2_logit_margin": margin,
        "step_logits_file": "generate_scores.safetensors: scores (batch, steps, vocab) = last-position logits per step",
        "generation_config": model.generation_config.to_dict(),
    }
    write_json(os.path.join(d, "generate.json"), rec)
    safetensors.torch.save_file({"scores": scores.contiguous()}, os.path.join(d, "generate_scores.safetensors"))
    print(f"  generate: {new.tolist()} (eos hit {eos_hit}, min margin {margin:.3g})")


def write_t5_buckets(out):
    """t5_buckets.json: T5Attention._relative_position_bucket for rel = -300..300 in six settings."""
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)
    rec = {
        "generator": f"transformers {transformers.__version__} T5Attention._relative_position_bucket, rel = arange(-300, 301)",
        "rel_start": -300,
        "rel_end_inclusive": 300,
        "cases": [],
    }
    for nb, md in [(32, 128), (16, 64), (8, 20)]:  # max_distance > max_exact in both modes
        for bi in (True, False):
            b = T5Attention._relative_position_bucket(rel, bidirectional=bi, num_buckets=nb, max_distance=md)
            rec["cases"].append({"num_buckets": nb, "max_distance": md, "bidirectional": bi, "buckets": b.tolist()})
    with open(os.path.join(out, "t5_buckets.json"), "w") as f:
        json.dump(rec, f, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/hf")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    case_bert_pretraining(args.out)
    case_bert_seqcls(args.out)
    case_bert_tokcls(args.out)
    case_gpt2_lm(args.out)
    case_gpt2_seqcls(args.out)
    case_gpt2_trajectory(args.out)
    case_t5(args.out, "t5_original", 3001, gated=False)
    case_t5(args.out, "t5_v11", 3002, gated=True)
    case_bart(args.out)
    write_t5_buckets(args.out)
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"fixture tree {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
