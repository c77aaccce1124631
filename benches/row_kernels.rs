//! Criterion benches of the fused row and pointwise kernels (softmax, log-softmax, LayerNorm,
//! RMSNorm, GELU ± bias, AdamW) on raw buffers, single-threaded, at every ISA level this CPU
//! has. The nanoGPT shakespeare_char shape (768 × 128) and GPT-2 small's (4096 × 768,
//! MLP 4096 × 3072 for GELU). Thread scaling and the PyTorch comparison are in
//! `pretext bench` and `tools/bench_vs_torch.py`.

use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, Throughput};
use pretext::backend::cpu::activation::{self, Gelu};
use pretext::backend::cpu::adamw::{adamw_update_isa, AdamWStep};
use pretext::backend::cpu::isa::{self, Isa};
use pretext::backend::cpu::{norm, softmax};

fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn levels() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Scalar]
        .into_iter()
        .filter(|&l| l <= isa::detected())
        .collect()
}

/// Times `f` on a one-thread pool (the kernels' rayon calls stay in that pool).
fn on<F: FnMut() + Send>(pool: &rayon::ThreadPool, bn: &mut Bencher, mut f: F) {
    pool.install(|| bn.iter(&mut f))
}

fn row_benches(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for &(rows, cols) in &[(768usize, 128usize), (4096, 768)] {
        let n = rows * cols;
        let (x, dy) = (fill(n, 1), fill(n, 2));
        let (g, b) = (fill(cols, 3), fill(cols, 4));
        let mut grp = c.benchmark_group(format!("rows_{rows}x{cols}"));
        grp.throughput(Throughput::Elements(n as u64));
        grp.sample_size(20);
        for level in levels() {
            let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
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
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
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
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
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

criterion_group!(benches, row_benches, gelu_benches, adamw_benches);
criterion_main!(benches);
