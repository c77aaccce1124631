//! Every ISA path (AVX-512, AVX2, scalar; the levels this CPU has) of the fused row and
//! pointwise kernels against the scalar reference or a naive loop: softmax / log-softmax,
//! LayerNorm / RMSNorm, GELU (± bias), cross-entropy backward, AdamW, embedding backward,
//! and the error of the vectorised exp / erf / tanh against f64. Sizes are not multiples of
//! the vector widths; inputs include large logits, −∞ masks and constant rows. Levels are
//! passed explicitly (the `_isa` entry points), so tests do not race on `isa::force`.

use pretext::backend::cpu::activation::{self, Gelu};
use pretext::backend::cpu::adamw::{adamw_update_isa, AdamWStep};
use pretext::backend::cpu::cross_entropy::cross_entropy_rows_backward_isa;
use pretext::backend::cpu::embedding::embedding_backward;
use pretext::backend::cpu::isa::{self, Isa};
use pretext::backend::cpu::simd::{self, Func};
use pretext::backend::cpu::{norm, softmax};

const SIZES: &[usize] = &[1, 7, 15, 17, 33, 100, 1000];

fn levels() -> Vec<Isa> {
    let all = [Isa::Avx512, Isa::Avx2, Isa::Scalar];
    let have: Vec<Isa> = all.into_iter().filter(|&l| l <= isa::detected()).collect();
    if have.len() < all.len() {
        println!("this CPU lacks some levels; testing {have:?}");
    }
    have
}

/// Uniform values in [lo, hi) from a splitmix64 stream.
fn fill(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// Row sets for the softmax family: random, scaled ×1e4, −∞-masked, constant.
fn softmax_inputs(rows: usize, cols: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let base = fill(rows * cols, seed, -3.0, 3.0);
    let big: Vec<f32> = base.iter().map(|v| v * 1e4).collect();
    let mut masked = base.clone();
    for r in 0..rows {
        for c in 0..cols {
            if c > r % cols.max(1) {
                masked[r * cols + c] = f32::NEG_INFINITY;
            }
        }
    }
    let constant = vec![2.5; rows * cols];
    vec![
        ("random", base),
        ("large", big),
        ("masked", masked),
        ("constant", constant),
    ]
}

/// erf in f64: the Maclaurin series 2/√π·Σ (−1)ⁿ x^{2n+1} / (n!(2n+1)) for |x| < 4 (terms
/// summed until negligible; cancellation costs < 1e-9 there), ±1 beyond (|1 − erf| < 2e-8).
fn erf_f64(x: f64) -> f64 {
    if x.abs() >= 4.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0f64);
    while term.abs() > 1e-17 {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn vector_exp_erf_tanh_error_against_f64() {
    let xs: Vec<f32> = (0..200_001).map(|i| -110.0 + i as f32 * 0.001).collect();
    for level in levels() {
        let mut y = vec![0.0; xs.len()];
        simd::map(level, Func::Exp, &xs, &mut y);
        let mut worst = 0.0f64;
        for (&x, &v) in xs.iter().zip(&y) {
            let want = (x as f64).exp();
            if want >= f32::MIN_POSITIVE as f64 && want <= f32::MAX as f64 {
                worst = worst.max(((v as f64 - want) / want).abs());
            } else if want < f32::MIN_POSITIVE as f64 {
                assert!(
                    (v as f64 - want).abs() <= 1.5e-45,
                    "{level:?} exp({x}) = {v}"
                );
            }
        }
        assert!(worst <= 2.5e-7, "{level:?}: exp max relative error {worst}");
        let special = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            89.0,
            -120.0,
            0.0,
        ];
        let mut out = [0.0; 6];
        simd::map(level, Func::Exp, &special, &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], f32::INFINITY);
        assert!(out[2].is_nan());
        assert_eq!(out[3], f32::INFINITY);
        assert_eq!(out[4], 0.0);
        assert_eq!(out[5], 1.0);

        // The flushed form (attention): the same error down to −87, exactly 0 below.
        let neg: Vec<f32> = (0..110_001).map(|i| -110.0 + i as f32 * 0.001).collect();
        let mut f = vec![0.0; neg.len()];
        simd::map(level, Func::ExpFlushed, &neg, &mut f);
        for (&x, &v) in neg.iter().zip(&f) {
            if x < -87.0 {
                assert_eq!(v, 0.0, "{level:?} flushed exp({x})");
            } else {
                let want = (x as f64).exp();
                let rel = ((v as f64 - want) / want).abs();
                assert!(rel <= 2.5e-7, "{level:?} flushed exp({x}) = {v}: {rel}");
            }
        }
        let special = [f32::NEG_INFINITY, f32::MIN, f32::NAN, -87.0, 0.0];
        let mut out = [1.0; 5];
        simd::map(level, Func::ExpFlushed, &special, &mut out);
        assert_eq!(&out[..2], &[0.0, 0.0], "{level:?}");
        assert!(out[2].is_nan(), "{level:?}");
        assert!(out[3] > 0.0 && out[3].is_normal(), "{level:?}");
        assert_eq!(out[4], 1.0, "{level:?}");

        let xs: Vec<f32> = (0..40_001).map(|i| -10.0 + i as f32 * 0.0005).collect();
        let mut t = vec![0.0; xs.len()];
        simd::map(level, Func::Tanh, &xs, &mut t);
        let mut e = vec![0.0; xs.len()];
        simd::map(level, Func::Erf, &xs, &mut e);
        for (i, &x) in xs.iter().enumerate() {
            let tw = (x as f64).tanh();
            assert!(
                (t[i] as f64 - tw).abs() <= 3e-7,
                "{level:?} tanh({x}) = {}",
                t[i]
            );
            // A&S 7.1.26 (|x| ≥ 0.75) is within 1.5e-7 of erf, the series below within
            // 2e-8; f32 rounding of 1 − poly·e^{−x²} adds up to ~2e-7.
            let ew = erf_f64(x as f64);
            assert!(
                (e[i] as f64 - ew).abs() <= 4e-7,
                "{level:?} erf({x}) = {} vs {ew}",
                e[i]
            );
        }
    }
}

#[test]
fn softmax_family_matches_scalar_on_every_level() {
    for &cols in SIZES {
        for &rows in &[1usize, 3, 37] {
            for (kind, x) in softmax_inputs(rows, cols, cols as u64 * 31 + rows as u64) {
                let dy = fill(rows * cols, 7 + cols as u64, -1.0, 1.0);
                let n = rows * cols;
                let (mut w0, mut w1, mut w2, mut w3) =
                    (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                softmax::softmax_rows_isa(Isa::Scalar, &x, &mut w0, cols);
                softmax::log_softmax_rows_isa(Isa::Scalar, &x, &mut w1, cols);
                softmax::softmax_rows_backward_isa(Isa::Scalar, &w0, &dy, &mut w2, cols);
                softmax::log_softmax_rows_backward_isa(Isa::Scalar, &w1, &dy, &mut w3, cols);
                let want = [w0, w1, w2, w3];
                for level in levels() {
                    let what = |op: &str| format!("{op} {kind} {rows}×{cols} {level:?}");
                    let mut got = vec![0.0; n];
                    softmax::softmax_rows_isa(level, &x, &mut got, cols);
                    close(&what("softmax"), &got, &want[0], 2e-6, 1e-7);
                    softmax::log_softmax_rows_isa(level, &x, &mut got, cols);
                    // log-softmax of ×1e4 logits is O(1e4): absolute error scales with it.
                    close(&what("log_softmax"), &got, &want[1], 1e-6, 2e-6);
                    softmax::softmax_rows_backward_isa(level, &want[0], &dy, &mut got, cols);
                    close(&what("softmax_backward"), &got, &want[2], 1e-5, 1e-6);
                    softmax::log_softmax_rows_backward_isa(level, &want[1], &dy, &mut got, cols);
                    // dy − e^y·Σdy: a 2-ulp e^y times |Σdy| ≈ 20 is ≈ 1e-5 absolute.
                    close(&what("log_softmax_backward"), &got, &want[3], 1e-5, 3e-5);
                    for r in 0..rows {
                        let (m, l) = softmax::max_and_log_sum_isa(level, &x[r * cols..][..cols]);
                        let (mw, lw) =
                            softmax::max_and_log_sum_isa(Isa::Scalar, &x[r * cols..][..cols]);
                        assert_eq!(m, mw, "{}", what("max"));
                        assert!((l - lw).abs() <= 1e-6 * (1.0 + lw.abs()), "{}", what("lse"));
                    }
                }
            }
        }
    }
}

#[test]
fn norms_match_scalar_on_every_level_and_any_thread_count() {
    for &cols in SIZES {
        for &rows in &[1usize, 5, 300] {
            for offset in [0.0f32, 1000.0] {
                let x: Vec<f32> = fill(rows * cols, cols as u64 + 3, -2.0, 2.0)
                    .iter()
                    .map(|v| v + offset)
                    .collect();
                let g = fill(cols, 11, 0.5, 1.5);
                let b = fill(cols, 12, -0.5, 0.5);
                let dy = fill(rows * cols, 13, -1.0, 1.0);
                for affine in [true, false] {
                    let (gm, bt) = if affine {
                        (Some(&g[..]), Some(&b[..]))
                    } else {
                        (None, None)
                    };
                    let run = |level: Isa, rms: bool| {
                        let n = rows * cols;
                        let (mut y, mut mean, mut rstd) =
                            (vec![0.0; n], vec![0.0; rows], vec![0.0; rows]);
                        if rms {
                            norm::rms_norm_rows_isa(level, &x, gm, 1e-5, &mut y, &mut rstd, cols);
                        } else {
                            norm::layer_norm_rows_isa(
                                level, &x, gm, bt, 1e-5, &mut y, &mut mean, &mut rstd, cols,
                            );
                        }
                        let (mut dx, mut dg, mut db) =
                            (vec![0.0; n], vec![0.0; cols], vec![0.0; cols]);
                        norm::norm_backward(
                            level,
                            &x,
                            gm,
                            (!rms).then_some(&mean[..]),
                            &rstd,
                            &dy,
                            &mut dx,
                            Some(&mut dg),
                            (!rms).then_some(&mut db[..]),
                            cols,
                        );
                        (y, mean, rstd, dx, dg, db)
                    };
                    for rms in [false, true] {
                        let want = run(Isa::Scalar, rms);
                        for level in levels() {
                            let what = |op: &str| {
                                format!("{op} rms={rms} affine={affine} {rows}×{cols}+{offset} {level:?}")
                            };
                            let got = run(level, rms);
                            // With a 1000 offset the scalar statistics are f64 while the
                            // SIMD μ is f32 (spacing 6e-5 at 1000): ~3e-5 absolute in x − μ.
                            let tol = if offset > 0.0 && !rms { 1e-4 } else { 2e-6 };
                            close(&what("y"), &got.0, &want.0, tol, tol);
                            close(&what("mean"), &got.1, &want.1, 1e-6, 1e-6);
                            close(&what("rstd"), &got.2, &want.2, tol, 0.0);
                            close(&what("dx"), &got.3, &want.3, 1e-4, tol * 10.0);
                            close(&what("dgamma"), &got.4, &want.4, 1e-4, 1e-4);
                            close(&what("dbeta"), &got.5, &want.5, 1e-5, 1e-5);
                            // dγ, dβ partials are per fixed row block: same bits on 1 and 2 threads.
                            let one = rayon::ThreadPoolBuilder::new()
                                .num_threads(1)
                                .build()
                                .unwrap();
                            let two = rayon::ThreadPoolBuilder::new()
                                .num_threads(2)
                                .build()
                                .unwrap();
                            let a = one.install(|| run(level, rms));
                            let c = two.install(|| run(level, rms));
                            assert_eq!(a.4, c.4, "{}", what("dgamma thread count"));
                            assert_eq!(a.5, c.5, "{}", what("dbeta thread count"));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn gelu_forms_and_bias_fusion_match_scalar() {
    for &cols in SIZES {
        let rows = 9;
        let n = rows * cols;
        let mut x = fill(n, cols as u64, -6.0, 6.0);
        if n > 4 {
            x[0] = 0.0;
            x[1] = 1e-4;
            x[2] = -30.0;
            x[3] = 30.0;
        }
        let b = fill(cols, 5, -1.0, 1.0);
        let dy = fill(n, 6, -1.0, 1.0);
        for kind in [Gelu::Erf, Gelu::Tanh] {
            // The scalar tanh-form derivative forms 1 − t² (cancelling near |u| ≈ 1); the
            // SIMD form uses σ(2u) and differs from it by up to ~2e-6 relative; in the far
            // negative tail the scalar's tanh rounds to −1 and its derivative to 0 while σ
            // keeps the true ~1e-7 values.
            let (rtol, atol) = if kind == Gelu::Tanh {
                (4e-6, 1e-6)
            } else {
                (1e-6, 4e-7)
            };
            let (mut yw, mut dxw) = (vec![0.0; n], vec![0.0; n]);
            activation::gelu_isa(Isa::Scalar, kind, &x, &mut yw);
            activation::gelu_backward_isa(Isa::Scalar, kind, &x, &dy, &mut dxw);
            // Naive bias form: add, then the scalar GELU; db = column sums of dx.
            let xb: Vec<f32> = (0..n).map(|i| x[i] + b[i % cols]).collect();
            let (mut ybw, mut dxbw) = (vec![0.0; n], vec![0.0; n]);
            activation::gelu_isa(Isa::Scalar, kind, &xb, &mut ybw);
            activation::gelu_backward_isa(Isa::Scalar, kind, &xb, &dy, &mut dxbw);
            let mut dbw = vec![0.0f32; cols];
            for i in 0..n {
                dbw[i % cols] += dxbw[i];
            }
            for level in levels() {
                let what = |op: &str| format!("{op} {kind:?} {rows}×{cols} {level:?}");
                let mut got = vec![0.0; n];
                activation::gelu_isa(level, kind, &x, &mut got);
                close(&what("gelu"), &got, &yw, rtol, atol);
                activation::gelu_backward_isa(level, kind, &x, &dy, &mut got);
                close(&what("gelu_backward"), &got, &dxw, rtol, atol);
                activation::bias_gelu_isa(level, kind, &x, &b, &mut got);
                close(&what("bias_gelu"), &got, &ybw, rtol, atol);
                let mut db = vec![0.0; cols];
                activation::bias_gelu_backward_isa(level, kind, &x, &b, &dy, &mut got, &mut db);
                close(&what("bias_gelu_backward dx"), &got, &dxbw, rtol, atol);
                close(&what("bias_gelu_backward db"), &db, &dbw, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn cross_entropy_backward_matches_scalar() {
    for &cols in SIZES {
        let rows = 13;
        let x = fill(rows * cols, cols as u64 + 1, -8.0, 8.0);
        let targets: Vec<i64> = (0..rows as i64)
            .map(|r| {
                if r % 4 == 3 {
                    -100
                } else {
                    (r * 7) % cols as i64
                }
            })
            .collect();
        let lse: Vec<f32> = x.chunks(cols).map(softmax::logsumexp).collect();
        for smoothing in [0.0, 0.1] {
            let mut want = vec![0.0; rows * cols];
            cross_entropy_rows_backward_isa(
                Isa::Scalar,
                &x,
                &targets,
                &lse,
                cols,
                -100,
                smoothing,
                0.25,
                &mut want,
            );
            for level in levels() {
                let mut got = vec![1.0; rows * cols];
                cross_entropy_rows_backward_isa(
                    level, &x, &targets, &lse, cols, -100, smoothing, 0.25, &mut got,
                );
                close(
                    &format!("ce {cols} ε={smoothing} {level:?}"),
                    &got,
                    &want,
                    2e-6,
                    1e-8,
                );
                assert!(
                    got[3 * cols..4 * cols].iter().all(|&v| v == 0.0),
                    "ignored row"
                );
            }
        }
    }
}

#[test]
fn adamw_is_bit_identical_on_every_level() {
    for &n in SIZES {
        for decay in [None, Some(1.0 - 1e-3 * 0.1)] {
            let s = AdamWStep {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                decay,
                bc2_sqrt: (1.0f32 - 0.95f32.powi(3)).sqrt(),
                step_size: 1e-3 / (1.0 - 0.9f32.powi(3)),
            };
            let g = fill(n, 1, -1.0, 1.0);
            let init = (
                fill(n, 2, -1.0, 1.0),
                fill(n, 3, -0.1, 0.1),
                fill(n, 4, 0.0, 0.01),
            );
            let mut want = init.clone();
            adamw_update_isa(Isa::Scalar, &s, &mut want.0, &g, &mut want.1, &mut want.2);
            for level in levels() {
                let mut got = init.clone();
                adamw_update_isa(level, &s, &mut got.0, &g, &mut got.1, &mut got.2);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.0), bits(&want.0), "w n={n} {level:?}");
                assert_eq!(bits(&got.1), bits(&want.1), "m n={n} {level:?}");
                assert_eq!(bits(&got.2), bits(&want.2), "v n={n} {level:?}");
            }
        }
    }
}

#[test]
fn embedding_backward_is_the_serial_scatter_add_on_any_pool() {
    let (vocab, cols, n) = (97, 65, 3000);
    let ids: Vec<usize> = (0..n).map(|j| (j * 31 + j / 7) % vocab).collect();
    let dy = fill(n * cols, 9, -1.0, 1.0);
    for padding in [None, Some(5)] {
        let mut want = vec![0.0f32; vocab * cols];
        for (j, &id) in ids.iter().enumerate() {
            if Some(id) != padding {
                for c in 0..cols {
                    want[id * cols + c] += dy[j * cols + c];
                }
            }
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut got = vec![0.0f32; vocab * cols];
            pool.install(|| embedding_backward(&dy, &ids, padding, cols, &mut got));
            assert_eq!(got, want, "padding {padding:?}, {threads} threads");
        }
    }
}
