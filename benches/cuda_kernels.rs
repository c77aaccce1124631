//! GPU benchmarks of pretext's CUDA kernels: GEMM (f32 SIMT, bf16 tensor cores) and flash
//! attention forward/backward, in TFLOP/s. With `PRETEXT_TORCH_BENCH=path.json` (written by
//! `tools/cuda/bench_torch.py` on the same machine) it prints the ratio to PyTorch (cuBLAS for
//! matmul, scaled_dot_product_attention for attention). Without a GPU it says so and exits 0.
//!
//! Run: `cargo bench --bench cuda_kernels` (or tools/cuda/bench_all.sh for both sides).

use std::collections::HashMap;
use std::time::Instant;

use pretext::backend::cuda::launch::Space;
use pretext::backend::cuda::ops::{Attn, Gemm};
use pretext::backend::cuda::{CudaDevice, DSlice, Ops};

fn time_ms(dev: &CudaDevice, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    dev.synchronize().expect("synchronize");
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    dev.synchronize().expect("synchronize");
    t.elapsed().as_secs_f64() * 1e3 / iters as f64
}

fn torch_results() -> HashMap<String, f64> {
    let Ok(path) = std::env::var("PRETEXT_TORCH_BENCH") else {
        return HashMap::new();
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn report(torch: &HashMap<String, f64>, key: &str, ms: f64, flops: f64) {
    let tflops = flops / ms / 1e9;
    match torch.get(key) {
        Some(t) => println!("{key:<34} {ms:>9.3} ms {tflops:>7.1} TFLOP/s   torch {t:>9.3} ms   ratio (torch/ours) {:.2}", t / ms),
        None => println!("{key:<34} {ms:>9.3} ms {tflops:>7.1} TFLOP/s"),
    }
}

fn main() {
    let dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            println!("no CUDA device, skipping GPU benchmarks: {e}");
            return;
        }
    };
    println!("device: {} ({})", dev.name(), dev.arch());
    let torch = torch_results();
    let ops = Ops::new(&dev);
    for (m, n, k) in [(1024, 1024, 1024), (4096, 4096, 4096), (8192, 3072, 768)] {
        let a = dev.upload(&vec![0.01f32; m * k]).unwrap();
        let b = dev.upload(&vec![0.02f32; k * n]).unwrap();
        let c = dev.alloc::<f32>(m * n).unwrap();
        let g = Gemm::contiguous(1, m, n, k);
        let flops = 2.0 * (m * n * k) as f64;
        let ms = time_ms(&dev, 10, || {
            ops.gemm_f32(&g, &a.slice(), &b.slice(), &c.slice())
                .unwrap()
        });
        report(&torch, &format!("matmul_f32_{m}x{n}x{k}"), ms, flops);
        let ah = dev.upload(&vec![0x3c23u16; m * k]).unwrap();
        let bh = dev.upload(&vec![0x3ca3u16; k * n]).unwrap();
        let ms = time_ms(&dev, 10, || {
            ops.gemm_bf16(&g, &ah.slice(), &bh.slice(), &c.slice())
                .unwrap()
        });
        report(&torch, &format!("matmul_bf16_{m}x{n}x{k}"), ms, flops);
        let ms = time_ms(&dev, 10, || {
            ops.gemm_bf16_autocast(&g, &a.slice(), &b.slice(), &c.slice())
                .unwrap()
        });
        report(
            &torch,
            &format!("matmul_bf16_autocast_{m}x{n}x{k}"),
            ms,
            flops,
        );
    }
    for (b, h, t, d) in [(8, 12, 1024, 64), (4, 16, 2048, 64)] {
        let a = Attn::contiguous(b, h, t, t, d, true);
        let n = b * h * t * d;
        let up = |v: f32| dev.upload(&vec![v; n]).unwrap();
        let (q, k, v, dout) = (up(0.01), up(0.02), up(0.03), up(0.04));
        let (o, dq, dk, dv) = (up(0.0), up(0.0), up(0.0), up(0.0));
        let (lse, delta) = (
            dev.alloc::<f32>(b * h * t).unwrap(),
            dev.alloc::<f32>(b * h * t).unwrap(),
        );
        let nul = DSlice::<f32>::null(Space::Device(0));
        let nulm = DSlice::<u8>::null(Space::Device(0));
        // Causal: half of the 4 B H T^2 D multiply-adds of QK^T and PV.
        let flops = 2.0 * (b * h * t * t * d) as f64;
        let ms = time_ms(&dev, 5, || {
            ops.attention(
                &a,
                &q.slice(),
                &k.slice(),
                &v.slice(),
                &nul,
                &nulm,
                &o.slice(),
                &lse.slice(),
            )
            .unwrap()
        });
        report(
            &torch,
            &format!("sdpa_fwd_causal_b{b}h{h}t{t}d{d}"),
            ms,
            flops,
        );
        let ms = time_ms(&dev, 5, || {
            ops.attention_bwd(
                &a,
                &q.slice(),
                &k.slice(),
                &v.slice(),
                &nul,
                &nulm,
                &o.slice(),
                &lse.slice(),
                &dout.slice(),
                &delta.slice(),
                &dq.slice(),
                &dk.slice(),
                &dv.slice(),
                &nul,
            )
            .unwrap()
        });
        report(
            &torch,
            &format!("sdpa_bwd_causal_b{b}h{h}t{t}d{d}"),
            ms,
            2.5 * flops,
        );
    }
    let (used, cached) = dev.allocator().stats();
    println!("allocator: {used} bytes live, {cached} bytes cached");
}
