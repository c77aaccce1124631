#!/usr/bin/env python3
"""Check a pretext-saved model directory against Hugging Face transformers.

    /work/refenv/bin/python tools/hf_roundtrip.py MODEL_DIR INPUTS_JSON [--logits FILE] [--tol 1e-4]

MODEL_DIR holds config.json + model.safetensors written by pretext (HF names and layouts) and
pretext_logits.safetensors (key `logits`): the logits pretext computed for INPUTS_JSON (the
`inputs.json` format of tests/fixtures/hf: input_ids, attention_mask, token_type_ids,
decoder_input_ids; labels are used only to derive decoder_input_ids when those are absent).
The model class is `config.json["architectures"][0]`, loaded with `from_pretrained` (eager
attention, float32); the load must report no missing, unexpected or mismatched weights. Prints the
max |HF - pretext| and exits 1 when it exceeds --tol (default 1e-4), 2 on a loading problem.

`examples/checkpoint_roundtrip.rs` makes such a directory from a fixture case: it loads the case into
pretext's model, trains it a few AdamW steps, saves it and writes pretext's logits, e.g.

    cargo run --release --example checkpoint_roundtrip -- tests/fixtures/hf/gpt2_lm /tmp/rt/gpt2_lm
    /work/refenv/bin/python tools/hf_roundtrip.py /tmp/rt/gpt2_lm tests/fixtures/hf/gpt2_lm/inputs.json

Run with torch 2.15.0+cu132 (CPU), transformers 5.23.0.
"""

import argparse
import json
import os
import sys

import safetensors.torch
import torch
import transformers

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("inputs_json")
    ap.add_argument("--logits", help="default: MODEL_DIR/pretext_logits.safetensors")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    cfg_path = os.path.join(args.model_dir, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    archs = cfg.get("architectures") or []
    if not archs:
        print(f"{cfg_path}: no `architectures` entry; cannot choose the model class", file=sys.stderr)
        sys.exit(2)
    cls = getattr(transformers, archs[0], None)
    if cls is None:
        print(f"{cfg_path}: transformers {transformers.__version__} has no class {archs[0]}", file=sys.stderr)
        sys.exit(2)
    model, info = cls.from_pretrained(
        args.model_dir, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        print(f"{args.model_dir}: loading problems: {problems}", file=sys.stderr)
        sys.exit(2)
    model.eval()

    with open(args.inputs_json) as f:
        raw = json.load(f)
    inputs = {}
    for k in ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids"):
        if k in raw:
            inputs[k] = torch.tensor(raw[k], dtype=torch.long)
    if model.config.is_encoder_decoder and "decoder_input_ids" not in inputs:
        if "labels" not in raw:
            print(f"{args.inputs_json}: an encoder-decoder needs decoder_input_ids or labels", file=sys.stderr)
            sys.exit(2)
        inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(
            torch.tensor(raw["labels"], dtype=torch.long)
        )
    with torch.no_grad():
        out = model(**inputs)
    hf = out.logits if hasattr(out, "logits") else out.prediction_logits

    logits_path = args.logits or os.path.join(args.model_dir, "pretext_logits.safetensors")
    ours = safetensors.torch.load_file(logits_path)["logits"]
    if tuple(ours.shape) != tuple(hf.shape):
        print(f"shape mismatch: pretext {tuple(ours.shape)} vs HF {tuple(hf.shape)}", file=sys.stderr)
        sys.exit(1)
    diff = (hf - ours).abs().max().item()
    verdict = "OK" if diff <= args.tol else "FAIL"
    print(f"{archs[0]} {args.model_dir}: max |HF - pretext| = {diff:.3e} (tol {args.tol:g}) {verdict}")
    sys.exit(0 if diff <= args.tol else 1)


if __name__ == "__main__":
    main()
