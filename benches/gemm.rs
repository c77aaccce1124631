//! Criterion benches of single-threaded f32 GEMM C = A·B on the project's shapes:
//! pretext at each ISA level, at the "high" precision (three bf16 products where AMX takes
//! them, else f32) and its bf16 path (into an f32 and a bf16 C), against `matrixmultiply` (through
//! `ndarray::dot`) and the `gemm` crate. Thread scaling and PyTorch comparisons are in
//! `pretext bench gemm` and `tools/bench_vs_torch.py`.

mod common;

use common::{fill, levels, one_thread};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::bf16;
use ndarray::Array2;
use pretext::backend::cpu::gemm::{
    bgemm_batched, bgemm_batched_to_bf16, high_kernel_name, sgemm_batched_high_isa,
    sgemm_batched_isa, GemmLayout,
};
use pretext::backend::cpu::isa::Isa;

/// (m, k, n): squares, shakespeare_char MLP, an attention head, GPT-2 small's MLP for one
/// and eight decoded tokens.
const SHAPES: &[(usize, usize, usize)] = &[
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (768, 128, 512),
    (768, 512, 128),
    (64, 32, 64),
    (512, 64, 512),
    (1, 768, 3072),
    (8, 768, 3072),
];

fn gemm_benches(c: &mut Criterion) {
    let pool = one_thread();
    for &(m, k, n) in SHAPES {
        let mut g = c.benchmark_group(format!("gemm_{m}x{k}x{n}"));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.sample_size(20);
        let a = fill(m * k, 1);
        let b = fill(k * n, 2);
        let l = GemmLayout::row_major(m, n, k);
        let mut out = vec![0.0f32; m * n];
        for level in levels() {
            if level == Isa::Scalar && m * n * k > 1 << 24 {
                continue;
            }
            g.bench_function(BenchmarkId::new("pretext", level.name()), |bn| {
                pool.install(|| {
                    bn.iter(|| {
                        sgemm_batched_isa(level, &l, &a, &[0], &b, &[0], 0.0, &mut out, &[0])
                            .unwrap()
                    })
                })
            });
        }
        let best = levels()[0];
        let high = format!("pretext_high ({})", high_kernel_name(best, &l));
        g.bench_function(high, |bn| {
            pool.install(|| {
                bn.iter(|| {
                    sgemm_batched_high_isa(best, &l, &a, &[0], &b, &[0], 0.0, &mut out, &[0])
                        .unwrap()
                })
            })
        });
        let (a16, b16): (Vec<bf16>, Vec<bf16>) = (
            a.iter().map(|&x| bf16::from_f32(x)).collect(),
            b.iter().map(|&x| bf16::from_f32(x)).collect(),
        );
        g.bench_function("pretext_bf16", |bn| {
            pool.install(|| {
                bn.iter(|| bgemm_batched(&l, &a16, &[0], &b16, &[0], 0.0, &mut out, &[0]).unwrap())
            })
        });
        // The same into a bf16 C (as `torch.matmul` on bf16 tensors).
        let mut out16 = vec![bf16::ZERO; m * n];
        g.bench_function("pretext_bf16_c_bf16", |bn| {
            pool.install(|| {
                bn.iter(|| {
                    bgemm_batched_to_bf16(&l, &a16, &[0], &b16, &[0], 0.0, &mut out16, &[0])
                        .unwrap()
                })
            })
        });
        let an = Array2::from_shape_vec((m, k), a.clone()).unwrap();
        let bn_ = Array2::from_shape_vec((k, n), b.clone()).unwrap();
        g.bench_function("matrixmultiply", |bn| bn.iter(|| an.dot(&bn_)));
        g.bench_function("gemm_crate", |bn| {
            bn.iter(|| {
                // SAFETY: the three buffers are row-major m×k, k×n, m×n as described by
                // the strides, and `out` is not aliased.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, gemm_benches);
criterion_main!(benches);
