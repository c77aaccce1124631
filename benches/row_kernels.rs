//! Criterion benches of the fused row and pointwise kernels (softmax, log-softmax, LayerNorm,
//! RMSNorm, GELU ± bias, AdamW, cross-entropy, embedding backward) on raw buffers,
//! single-threaded, at every ISA level this CPU has. The nanoGPT shakespeare_char shape
//! (768 × 128) and GPT-2 small's (4096 × 768, MLP 4096 × 3072 for GELU). Thread scaling and
//! the PyTorch comparison are in `pretext bench` and `tools/bench_vs_torch.py`.

mod common;

use common::{fill, levels, on, one_thread};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pretext::backend::cpu::activation::{self, Gelu};
use pretext::backend::cpu::adamw::{adamw_update_isa, AdamWStep};
use pretext::backend::cpu::cross_entropy;
use pretext::backend::cpu::embedding::embedding_backward;
use pretext::backend::cpu::isa::Isa;
use pretext::backend::cpu::{norm, softmax};

fn row_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(rows, cols) in &[(768usize, 128usize), (4096, 768)] {
        let n = rows * cols;
        let (x, dy) = (fill(n, 1), fill(n, 2));
        let (g, b) = (fill(cols, 3), fill(cols, 4));
        let mut grp = c.benchmark_group(format!("rows_{rows}x{cols}"));
        grp.throughput(Throughput::Elements(n as u64));
        grp.sample_size(20);
        for level in levels() {
            let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
            // Log-softmax outputs (≤ 0), the input of its backward.
            let mut ly = vec![0.0; n];
            softmax::log_softmax_rows_isa(level, &x, &mut ly, cols);
            let (mut mean, mut rstd) = (vec![0.0; rows], vec![0.0; rows]);
            let (mut dg, mut db) = (vec![0.0; cols], vec![0.0; cols]);
            let name = level.name();
            grp.bench_function(BenchmarkId::new("softmax_fwd", name), |bn| {
                on(&pool, bn, || {
                    softmax::softmax_rows_isa(level, &x, &mut y, cols)
                })
            });
            grp.bench_function(BenchmarkId::new("softmax_bwd", name), |bn| {
                on(&pool, bn, || {
                    softmax::softmax_rows_backward_isa(level, &x, &dy, &mut dx, cols)
                })
            });
            grp.bench_function(BenchmarkId::new("log_softmax_fwd", name), |bn| {
                on(&pool, bn, || {
                    softmax::log_softmax_rows_isa(level, &x, &mut y, cols)
                })
            });
            grp.bench_function(BenchmarkId::new("log_softmax_bwd", name), |bn| {
                on(&pool, bn, || {
                    softmax::log_softmax_rows_backward_isa(level, &ly, &dy, &mut dx, cols)
                })
            });
            grp.bench_function(BenchmarkId::new("layer_norm_fwd", name), |bn| {
                on(&pool, bn, || {
                    norm::layer_norm_rows_isa(
                        level,
                        &x,
                        Some(&g),
                        Some(&b),
                        1e-5,
                        &mut y,
                        &mut mean,
                        &mut rstd,
                        cols,
                    )
                })
            });
            grp.bench_function(BenchmarkId::new("layer_norm_bwd", name), |bn| {
                on(&pool, bn, || {
                    norm::norm_backward(
                        level,
                        &x,
                        Some(&g),
                        Some(&mean),
                        &rstd,
                        &dy,
                        &mut dx,
                        Some(&mut dg),
                        Some(&mut db),
                        cols,
                    )
                })
            });
            grp.bench_function(BenchmarkId::new("rms_norm_fwd", name), |bn| {
                on(&pool, bn, || {
                    norm::rms_norm_rows_isa(level, &x, Some(&g), 1e-6, &mut y, &mut rstd, cols)
                })
            });
        }
        grp.finish();
    }
}

fn gelu_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(rows, cols) in &[(768usize, 512usize), (4096, 3072)] {
        let n = rows * cols;
        let (x, dy, b) = (fill(n, 5), fill(n, 6), fill(cols, 7));
        let mut grp = c.benchmark_group(format!("gelu_{rows}x{cols}"));
        grp.throughput(Throughput::Elements(n as u64));
        grp.sample_size(10);
        for level in levels() {
            if level == Isa::Scalar && n > 1 << 20 {
                continue;
            }
            let (mut y, mut dx, mut db) = (vec![0.0; n], vec![0.0; n], vec![0.0; cols]);
            let name = level.name();
            for (kind, tag) in [(Gelu::Erf, "erf"), (Gelu::Tanh, "tanh")] {
                grp.bench_function(BenchmarkId::new(format!("{tag}_fwd"), name), |bn| {
                    on(&pool, bn, || activation::gelu_isa(level, kind, &x, &mut y))
                });
                grp.bench_function(BenchmarkId::new(format!("{tag}_bwd"), name), |bn| {
                    on(&pool, bn, || {
                        activation::gelu_backward_isa(level, kind, &x, &dy, &mut dx)
                    })
                });
            }
            grp.bench_function(BenchmarkId::new("bias_erf_fwd", name), |bn| {
                on(&pool, bn, || {
                    activation::bias_gelu_isa(level, Gelu::Erf, &x, &b, &mut y)
                })
            });
            grp.bench_function(BenchmarkId::new("bias_erf_bwd", name), |bn| {
                on(&pool, bn, || {
                    activation::bias_gelu_backward_isa(
                        level,
                        Gelu::Erf,
                        &x,
                        &b,
                        &dy,
                        &mut dx,
                        &mut db,
                    )
                })
            });
        }
        grp.finish();
    }
}

fn adamw_benches(c: &mut Criterion) {
    let pool = one_thread();
    let n = 1 << 20;
    let grad = fill(n, 8);
    let s = AdamWStep {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        decay: Some(1.0 - 1e-4),
        bc2_sqrt: 0.3,
        step_size: 1e-3,
    };
    let mut grp = c.benchmark_group("adamw_1M");
    grp.throughput(Throughput::Elements(n as u64));
    grp.sample_size(10);
    for level in levels() {
        let (mut w, mut m, mut v) = (fill(n, 9), vec![0.0; n], vec![0.0; n]);
        grp.bench_function(level.name(), |bn| {
            on(&pool, bn, || {
                adamw_update_isa(level, &s, &mut w, &grad, &mut m, &mut v)
            })
        });
    }
    grp.finish();
}

/// Cross-entropy fused with log-softmax over vocabulary rows: the forward (per-row loss and
/// log-sum-exp) and the backward dx = scale·(softmax − onehot), at the shakespeare_char
/// vocabulary (768 × 65) and GPT-2's (512 × 50257).
fn cross_entropy_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(rows, vocab) in &[(768usize, 65usize), (512, 50257)] {
        let n = rows * vocab;
        let logits = fill(n, 10);
        let targets: Vec<i64> = (0..rows).map(|r| ((r * 7919) % vocab) as i64).collect();
        let (mut loss, mut lse, mut dx) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; n]);
        let mut grp = c.benchmark_group(format!("cross_entropy_{rows}x{vocab}"));
        grp.throughput(Throughput::Elements(n as u64));
        grp.sample_size(10);
        grp.bench_function("fwd", |bn| {
            on(&pool, bn, || {
                cross_entropy::cross_entropy_rows(
                    &logits, &targets, vocab, -100, 0.0, &mut loss, &mut lse,
                )
                .unwrap()
            })
        });
        for level in levels() {
            grp.bench_function(BenchmarkId::new("bwd", level.name()), |bn| {
                on(&pool, bn, || {
                    cross_entropy::cross_entropy_rows_backward_isa(
                        level, &logits, &targets, &lse, vocab, -100, 0.0, 1.0, &mut dx,
                    )
                })
            });
        }
        grp.finish();
    }
}

/// Embedding backward, the scatter-add dW[ids[j]] += dy[j]: shakespeare_char (768 tokens,
/// vocabulary 65, width 128) and GPT-2 small (4096 tokens, 50257, 768).
fn embedding_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(tokens, vocab, cols) in &[(768usize, 65usize, 128usize), (4096, 50257, 768)] {
        let dy = fill(tokens * cols, 11);
        let ids: Vec<usize> = (0..tokens).map(|j| (j * 7919) % vocab).collect();
        let mut table = vec![0.0; vocab * cols];
        let mut grp = c.benchmark_group(format!("embedding_bwd_{tokens}x{vocab}x{cols}"));
        grp.throughput(Throughput::Elements((tokens * cols) as u64));
        grp.sample_size(10);
        grp.bench_function("scatter_add", |bn| {
            on(&pool, bn, || {
                embedding_backward(&dy, &ids, None, cols, &mut table)
            })
        });
        grp.finish();
    }
}

criterion_group!(
    benches,
    row_benches,
    gelu_benches,
    adamw_benches,
    cross_entropy_benches,
    embedding_benches
);
criterion_main!(benches);
