//! Criterion benches of the tiled (flash-style) CPU attention on raw buffers, single-threaded:
//! forward, and forward + backward, causal and not, at the shapes of the PyTorch comparison
//! (nanoGPT shakespeare_char: batch 12, 4 heads, T 64, d 32; GPT-2 small: 8 × 12 × 512 × 64;
//! one long sequence: 1 × 12 × 2048 × 64). The kernels run at the active ISA level (the best
//! this CPU has, or `PRETEXT_ISA`); throughput counts the 4·B·H·T²·d flops of the two
//! products (halved when causal), ×3.5 with the backward. Thread scaling and the PyTorch
//! comparison are in `pretext bench attention` and `tools/bench_vs_torch.py`.

mod common;

use common::{fill, on, one_thread};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pretext::backend::cpu::attention::{
    attention_backward, attention_forward, AttnDims, AttnStats, Heads, HeadsMut,
};

fn attention_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(batch, heads, t, d) in &[
        (12usize, 4usize, 64usize, 32usize),
        (8, 12, 512, 64),
        (1, 12, 2048, 64),
    ] {
        let n = batch * heads * t * d;
        let (q, k, v, dout) = (fill(n, 1), fill(n, 2), fill(n, 3), fill(n, 4));
        let mut grp = c.benchmark_group(format!("attention_{batch}x{heads}x{t}x{d}"));
        grp.sample_size(10);
        for causal in [false, true] {
            let dims = AttnDims {
                batch,
                heads,
                tq: t,
                tk: t,
                d,
                dv: d,
                scale: 1.0 / (d as f32).sqrt(),
                causal,
                dropout: None,
            };
            let flops = 4 * batch * heads * t * t * d / if causal { 2 } else { 1 };
            let tag = if causal { "causal" } else { "full" };
            let mut out = vec![0.0; n];
            let mut stats = AttnStats::new(dims.rows());
            let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            grp.throughput(Throughput::Elements(flops as u64));
            let (qh, kh, vh, dh) = (
                Heads::contiguous(&q, heads, t, d),
                Heads::contiguous(&k, heads, t, d),
                Heads::contiguous(&v, heads, t, d),
                Heads::contiguous(&dout, heads, t, d),
            );
            let rows = [batch, heads, t];
            grp.bench_function(BenchmarkId::new("fwd", tag), |bn| {
                on(&pool, bn, || {
                    let o = HeadsMut::contiguous(&mut out, rows, d);
                    attention_forward(&dims, qh, kh, vh, None, None, &o, &mut stats)
                })
            });
            grp.throughput(Throughput::Elements((flops as f64 * 3.5) as u64));
            grp.bench_function(BenchmarkId::new("fwd+bwd", tag), |bn| {
                on(&pool, bn, || {
                    {
                        let o = HeadsMut::contiguous(&mut out, rows, d);
                        attention_forward(&dims, qh, kh, vh, None, None, &o, &mut stats);
                    }
                    attention_backward(
                        &dims,
                        qh,
                        kh,
                        vh,
                        None,
                        None,
                        Heads::contiguous(&out, heads, t, d),
                        &stats,
                        dh,
                        &HeadsMut::contiguous(&mut dq, rows, d),
                        &HeadsMut::contiguous(&mut dk, rows, d),
                        &HeadsMut::contiguous(&mut dv, rows, d),
                        None,
                    )
                })
            });
        }
        grp.finish();
    }
}

criterion_group!(benches, attention_benches);
criterion_main!(benches);
