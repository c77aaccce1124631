#!/usr/bin/env python3
"""PyTorch side of the GPU benchmarks: the same problems as benches/cuda_kernels.rs
(torch.matmul = cuBLAS, F.scaled_dot_product_attention) plus a GPT-2 small training step,
timed on the GPU and written as JSON {name: milliseconds} for the Rust bench to compare.

Usage: python tools/cuda/bench_torch.py [out.json]    (no GPU: says so and exits 0)
"""
import json
import sys
import time


def timed(fn, iters):
    import torch
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3 / iters


def main():
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch GPU benchmarks")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device: skipping the PyTorch GPU benchmarks")
        return 0
    import torch.nn.functional as F
    torch.backends.cuda.matmul.allow_tf32 = False  # f32 matmul as f32, like gemm_f32
    dev = torch.device("cuda")
    out = {}
    for m, n, k in [(1024, 1024, 1024), (4096, 4096, 4096), (8192, 3072, 768)]:
        for dt, name in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
            a = torch.randn(m, k, device=dev, dtype=dt)
            b = torch.randn(k, n, device=dev, dtype=dt)
            out[f"matmul_{name}_{m}x{n}x{k}"] = timed(lambda: torch.matmul(a, b), 10)
    for b, h, t, d in [(8, 12, 1024, 64), (4, 16, 2048, 64)]:
        q, k, v = (torch.randn(b, h, t, d, device=dev, requires_grad=True) for _ in range(3))
        out[f"sdpa_fwd_causal_b{b}h{h}t{t}d{d}"] = timed(
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 5)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        g = torch.randn_like(o)
        out[f"sdpa_bwd_causal_b{b}h{h}t{t}d{d}"] = timed(
            lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True), 5)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)
        model = GPT2LMHeadModel(cfg).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
        ids = torch.randint(0, cfg.vocab_size, (8, 1024), device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            model(ids, labels=ids).loss.backward()
            opt.step()
        out["gpt2_small_train_step_b8_t1024_f32"] = timed(step, 3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out["gpt2_small_train_step_b8_t1024_bf16"] = timed(step, 3)
    except ImportError:
        print("transformers is not installed: skipping the GPT-2 training step")
    for k_, v_ in out.items():
        print(f"{k_:<40} {v_:9.3f} ms")
    if len(sys.argv) > 1:
        with open(sys.argv[1] + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        import os
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
