//! Every CUDA kernel run through the CPU emulator (feature `emu`) against a plain-loop CPU
//! reference in f64, on small shapes that are not multiples of the tiles, under the
//! round-robin and warp-ordered schedules.

#![cfg(feature = "emu")]

#[path = "common/cuda_emu.rs"]
mod common;

use common::*;
use pretext::backend::cuda::launch::DSlice;
use pretext::backend::cuda::ops::{Act, AdamW, BinOp, Gemm, UnOp};
use pretext::error::Error;

fn gemm_ref(g: &Gemm, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f64> {
    let mut c: Vec<f64> = c0.iter().map(|&x| x as f64).collect();
    for bt in 0..g.batch {
        for m in 0..g.m {
            for n in 0..g.n {
                let mut s = 0.0f64;
                for k in 0..g.k {
                    let av = if g.trans_a {
                        a[bt * g.stride_a + k * g.lda + m]
                    } else {
                        a[bt * g.stride_a + m * g.lda + k]
                    };
                    let bv = if g.trans_b {
                        b[bt * g.stride_b + n * g.ldb + k]
                    } else {
                        b[bt * g.stride_b + k * g.ldb + n]
                    };
                    s += av as f64 * bv as f64;
                }
                let ci = bt * g.stride_c + m * g.ldc + n;
                c[ci] = g.alpha as f64 * s + g.beta as f64 * c[ci];
            }
        }
    }
    c
}

/// GEMM shapes off the 64x64x16 tile, every transpose combination, a padded leading dimension,
/// a broadcast (stride 0) B operand and beta != 0.
fn gemm_cases() -> Vec<Gemm> {
    let mut v = Vec::new();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (m, n, k, batch) = (70, 45, 33, 2);
        let lda = if ta { m + 3 } else { k + 3 };
        let ldb = if tb { k + 1 } else { n + 2 };
        let (ar, br) = (if ta { k } else { m }, if tb { n } else { k });
        v.push(Gemm {
            m,
            n,
            k,
            batch,
            trans_a: ta,
            trans_b: tb,
            lda,
            ldb,
            ldc: n + 5,
            stride_a: ar * lda,
            stride_b: if ta && tb { 0 } else { br * ldb },
            stride_c: m * (n + 5),
            alpha: 0.5,
            beta: if ta { 0.25 } else { 0.0 },
        });
    }
    v
}

fn operand_len(batch: usize, stride: usize, rows: usize, ld: usize) -> usize {
    (batch - 1) * stride + rows * ld
}

#[test]
fn gemm_f32_matches_reference() {
    let mut rng = Rng(1);
    for g in gemm_cases() {
        let a = rng.vec(operand_len(
            g.batch,
            g.stride_a,
            if g.trans_a { g.k } else { g.m },
            g.lda,
        ));
        let b = rng.vec(operand_len(
            g.batch,
            g.stride_b,
            if g.trans_b { g.n } else { g.k },
            g.ldb,
        ));
        let c0 = rng.vec(g.batch * g.stride_c);
        let want = gemm_ref(&g, &a, &b, &c0);
        each_schedule(|ops, s| {
            let mut c = c0.clone();
            ops.gemm_f32(
                &g,
                &DSlice::input(&a),
                &DSlice::input(&b),
                &DSlice::output(&mut c),
            )
            .unwrap();
            assert_close(&format!("gemm_f32 {g:?} {s:?}"), &c, &want, 1e-5, 1e-5);
        });
    }
}

#[test]
fn gemm_bf16_tensor_core_matches_reference() {
    let mut rng = Rng(2);
    for g in gemm_cases() {
        let a: Vec<u16> = rng
            .vec(operand_len(
                g.batch,
                g.stride_a,
                if g.trans_a { g.k } else { g.m },
                g.lda,
            ))
            .into_iter()
            .map(bf16_bits)
            .collect();
        let b: Vec<u16> = rng
            .vec(operand_len(
                g.batch,
                g.stride_b,
                if g.trans_b { g.n } else { g.k },
                g.ldb,
            ))
            .into_iter()
            .map(bf16_bits)
            .collect();
        let af: Vec<f32> = a.iter().map(|&x| bf16_value(x)).collect();
        let bf: Vec<f32> = b.iter().map(|&x| bf16_value(x)).collect();
        let c0 = rng.vec(g.batch * g.stride_c);
        let want = gemm_ref(&g, &af, &bf, &c0);
        each_schedule(|ops, s| {
            let mut c = c0.clone();
            ops.gemm_bf16(
                &g,
                &DSlice::input(&a),
                &DSlice::input(&b),
                &DSlice::output(&mut c),
            )
            .unwrap();
            // Products of bf16 values are exact in f32; only the f32 summation order differs.
            assert_close(&format!("gemm_bf16 {g:?} {s:?}"), &c, &want, 1e-5, 1e-5);
        });
    }
}

#[test]
fn gemm_bf16_autocast_rounds_f32_operands_on_load() {
    let mut rng = Rng(13);
    for g in gemm_cases() {
        let a = rng.vec(operand_len(
            g.batch,
            g.stride_a,
            if g.trans_a { g.k } else { g.m },
            g.lda,
        ));
        let b = rng.vec(operand_len(
            g.batch,
            g.stride_b,
            if g.trans_b { g.n } else { g.k },
            g.ldb,
        ));
        let round =
            |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| bf16_value(bf16_bits(x))).collect() };
        let c0 = rng.vec(g.batch * g.stride_c);
        let want = gemm_ref(&g, &round(&a), &round(&b), &c0);
        each_schedule(|ops, s| {
            let mut c = c0.clone();
            ops.gemm_bf16_autocast(
                &g,
                &DSlice::input(&a),
                &DSlice::input(&b),
                &DSlice::output(&mut c),
            )
            .unwrap();
            assert_close(
                &format!("gemm_bf16_autocast {g:?} {s:?}"),
                &c,
                &want,
                1e-5,
                1e-5,
            );
        });
    }
}

#[test]
fn gemm_rejects_short_buffers() {
    let g = Gemm::contiguous(1, 4, 4, 4);
    let (a, b) = (vec![0.0f32; 15], vec![0.0f32; 16]);
    let mut c = vec![0.0f32; 16];
    each_schedule(|ops, _| {
        let e = ops
            .gemm_f32(
                &g,
                &DSlice::input(&a),
                &DSlice::input(&b),
                &DSlice::output(&mut c),
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().contains("`A`"),
            "{e}"
        );
    });
}

fn softmax_ref(
    rows: usize,
    cols: usize,
    x: &[f32],
    scale: f32,
    mask: Option<(&[f32], usize)>,
    causal_t: Option<usize>,
) -> Vec<f64> {
    let mut y = vec![0.0; rows * cols];
    for r in 0..rows {
        let logits: Vec<f64> = (0..cols)
            .map(|c| {
                if causal_t.is_some_and(|t| c > r % t) {
                    return f64::NEG_INFINITY;
                }
                let mut v = scale as f64 * x[r * cols + c] as f64;
                if let Some((m, mr)) = mask {
                    v += m[(r % mr) * cols + c] as f64;
                }
                v
            })
            .collect();
        let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if mx == f64::NEG_INFINITY {
            continue;
        }
        let s: f64 = logits.iter().map(|v| (v - mx).exp()).sum();
        for c in 0..cols {
            y[r * cols + c] = (logits[c] - mx).exp() / s;
        }
    }
    y
}

#[test]
fn softmax_warp_and_block_with_scale_mask_and_causal() {
    let mut rng = Rng(3);
    // 37 columns use a warp per row; 1500 columns a block per row.
    for (rows, cols) in [(19, 37), (3, 1500)] {
        let x = rng.vec(rows * cols);
        let mask_rows = 5;
        let mut mask = rng.vec(mask_rows * cols);
        mask[3] = f32::NEG_INFINITY;
        for (use_mask, causal) in [
            (false, None),
            (true, None),
            (false, Some(cols)),
            (true, Some(7)),
        ] {
            let m = use_mask.then_some((&mask[..], mask_rows));
            let want = softmax_ref(rows, cols, &x, 0.7, m, causal);
            each_schedule(|ops, s| {
                let mut y = vec![0.0f32; rows * cols];
                let md = if use_mask {
                    DSlice::input(&mask[..])
                } else {
                    DSlice::null(pretext::backend::cuda::Space::Host)
                };
                ops.softmax(
                    rows,
                    cols,
                    &DSlice::input(&x),
                    &DSlice::output(&mut y),
                    0.7,
                    &md,
                    mask_rows,
                    causal,
                )
                .unwrap();
                assert_close(
                    &format!("softmax {rows}x{cols} mask={use_mask} causal={causal:?} {s:?}"),
                    &y,
                    &want,
                    1e-6,
                    1e-5,
                );
            });
        }
    }
}

#[test]
fn softmax_backward() {
    let mut rng = Rng(4);
    let (rows, cols) = (11, 45);
    let x = rng.vec(rows * cols);
    let dy = rng.vec(rows * cols);
    let y64 = softmax_ref(rows, cols, &x, 1.0, None, None);
    let y: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
    let mut want = vec![0.0; rows * cols];
    for r in 0..rows {
        let dot: f64 = (0..cols)
            .map(|c| y[r * cols + c] as f64 * dy[r * cols + c] as f64)
            .sum();
        for c in 0..cols {
            want[r * cols + c] = 0.5 * y[r * cols + c] as f64 * (dy[r * cols + c] as f64 - dot);
        }
    }
    each_schedule(|ops, s| {
        let mut dx = vec![0.0f32; rows * cols];
        ops.softmax_bwd(
            rows,
            cols,
            &DSlice::input(&y),
            &DSlice::input(&dy),
            &DSlice::output(&mut dx),
            0.5,
        )
        .unwrap();
        assert_close(&format!("softmax_bwd {s:?}"), &dx, &want, 1e-6, 1e-5);
    });
}

struct NormRef {
    y: Vec<f64>,
    mean: Vec<f64>,
    rstd: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

/// LayerNorm (rms = false) or RMSNorm (rms = true) forward and backward in f64.
#[allow(clippy::too_many_arguments)]
fn norm_ref(
    rows: usize,
    c: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    eps: f64,
    rms: bool,
) -> NormRef {
    let mut r = NormRef {
        y: vec![0.0; rows * c],
        mean: vec![0.0; rows],
        rstd: vec![0.0; rows],
        dx: vec![0.0; rows * c],
        dgamma: vec![0.0; c],
        dbeta: vec![0.0; c],
    };
    for i in 0..rows {
        let xr: Vec<f64> = x[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
        let mean = if rms {
            0.0
        } else {
            xr.iter().sum::<f64>() / c as f64
        };
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        r.mean[i] = mean;
        r.rstd[i] = rstd;
        let xh: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..c)
            .map(|j| dy[i * c + j] as f64 * gamma[j] as f64)
            .collect();
        let mg = g.iter().sum::<f64>() / c as f64;
        let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for j in 0..c {
            r.y[i * c + j] = xh[j] * gamma[j] as f64 + if rms { 0.0 } else { beta[j] as f64 };
            r.dx[i * c + j] = rstd * (g[j] - if rms { 0.0 } else { mg } - xh[j] * mgx);
            r.dgamma[j] += dy[i * c + j] as f64 * xh[j];
            r.dbeta[j] += dy[i * c + j] as f64;
        }
    }
    r
}

#[test]
fn layernorm_forward_and_backward() {
    let mut rng = Rng(5);
    let (rows, c) = (13, 77);
    let x: Vec<f32> = rng.vec(rows * c).iter().map(|v| v * 3.0 + 0.5).collect();
    let gamma = rng.vec(c);
    let beta = rng.vec(c);
    let dy = rng.vec(rows * c);
    let want = norm_ref(rows, c, &x, &gamma, &beta, &dy, 1e-5, false);
    each_schedule(|ops, s| {
        let (mut y, mut mean, mut rstd) = (
            vec![0.0f32; rows * c],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
        );
        ops.layernorm(
            rows,
            c,
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::input(&beta),
            &DSlice::output(&mut y),
            &DSlice::output(&mut mean),
            &DSlice::output(&mut rstd),
            1e-5,
        )
        .unwrap();
        assert_close(&format!("layernorm y {s:?}"), &y, &want.y, 1e-5, 1e-4);
        assert_close(
            &format!("layernorm mean {s:?}"),
            &mean,
            &want.mean,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("layernorm rstd {s:?}"),
            &rstd,
            &want.rstd,
            1e-5,
            1e-4,
        );
        let (mut dx, mut dg, mut db) = (vec![0.0f32; rows * c], vec![0.0f32; c], vec![0.0f32; c]);
        ops.layernorm_bwd(
            rows,
            c,
            &DSlice::input(&dy),
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::input(&mean),
            &DSlice::input(&rstd),
            &DSlice::output(&mut dx),
            &DSlice::output(&mut dg),
            &DSlice::output(&mut db),
        )
        .unwrap();
        assert_close(&format!("layernorm dx {s:?}"), &dx, &want.dx, 1e-5, 1e-4);
        assert_close(
            &format!("layernorm dgamma {s:?}"),
            &dg,
            &want.dgamma,
            1e-4,
            1e-4,
        );
        assert_close(
            &format!("layernorm dbeta {s:?}"),
            &db,
            &want.dbeta,
            1e-4,
            1e-4,
        );
    });
}

#[test]
fn rmsnorm_forward_and_backward() {
    let mut rng = Rng(6);
    let (rows, c) = (9, 50);
    let x = rng.vec(rows * c);
    let gamma = rng.vec(c);
    let dy = rng.vec(rows * c);
    let want = norm_ref(rows, c, &x, &gamma, &gamma, &dy, 1e-6, true);
    each_schedule(|ops, s| {
        let (mut y, mut rstd) = (vec![0.0f32; rows * c], vec![0.0f32; rows]);
        ops.rmsnorm(
            rows,
            c,
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::output(&mut y),
            &DSlice::output(&mut rstd),
            1e-6,
        )
        .unwrap();
        assert_close(&format!("rmsnorm y {s:?}"), &y, &want.y, 1e-5, 1e-4);
        assert_close(
            &format!("rmsnorm rstd {s:?}"),
            &rstd,
            &want.rstd,
            1e-5,
            1e-4,
        );
        let (mut dx, mut dg) = (vec![0.0f32; rows * c], vec![0.0f32; c]);
        ops.rmsnorm_bwd(
            rows,
            c,
            &DSlice::input(&dy),
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::input(&rstd),
            &DSlice::output(&mut dx),
            &DSlice::output(&mut dg),
        )
        .unwrap();
        assert_close(&format!("rmsnorm dx {s:?}"), &dx, &want.dx, 1e-5, 1e-4);
        assert_close(
            &format!("rmsnorm dgamma {s:?}"),
            &dg,
            &want.dgamma,
            1e-4,
            1e-4,
        );
    });
}

fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse for 1e-6; integrate the series instead.
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0;
    while term.abs() > 1e-17 && n < 200 {
        sum += term / (2 * n + 1) as f64;
        n += 1;
        term *= -x * x / n as f64;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

fn act_ref(act: Act, x: f64) -> (f64, f64) {
    match act {
        Act::Identity => (x, 1.0),
        Act::Relu => (x.max(0.0), if x > 0.0 { 1.0 } else { 0.0 }),
        Act::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let u = k * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            (
                0.5 * x * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x),
            )
        }
        Act::GeluErf => {
            let cdf = 0.5 * (1.0 + erf(x / 2f64.sqrt()));
            (
                x * cdf,
                cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt(),
            )
        }
    }
}

#[test]
fn activations_and_fused_bias_activation() {
    let mut rng = Rng(7);
    let (rows, cols) = (7, 93);
    let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 4.0).collect();
    let bias = rng.vec(cols);
    let dy = rng.vec(rows * cols);
    for act in [Act::Identity, Act::GeluTanh, Act::GeluErf, Act::Relu] {
        let h: Vec<f64> = (0..rows * cols)
            .map(|i| x[i] as f64 + bias[i % cols] as f64)
            .collect();
        let want_y: Vec<f64> = x.iter().map(|&v| act_ref(act, v as f64).0).collect();
        let want_dx: Vec<f64> = x
            .iter()
            .zip(&dy)
            .map(|(&v, &g)| g as f64 * act_ref(act, v as f64).1)
            .collect();
        let want_by: Vec<f64> = h.iter().map(|&v| act_ref(act, v).0).collect();
        let want_bdx: Vec<f64> = h
            .iter()
            .zip(&dy)
            .map(|(&v, &g)| g as f64 * act_ref(act, v).1)
            .collect();
        each_schedule(|ops, s| {
            let n = rows * cols;
            let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
            ops.act(act, n, &DSlice::input(&x), &DSlice::output(&mut y))
                .unwrap();
            assert_close(&format!("{act:?} fwd {s:?}"), &y, &want_y, 1e-5, 1e-5);
            ops.act_bwd(
                act,
                n,
                &DSlice::input(&x),
                &DSlice::input(&dy),
                &DSlice::output(&mut dx),
            )
            .unwrap();
            assert_close(&format!("{act:?} bwd {s:?}"), &dx, &want_dx, 1e-5, 1e-5);
            ops.bias_act(
                act,
                rows,
                cols,
                &DSlice::input(&x),
                &DSlice::input(&bias),
                &DSlice::output(&mut y),
            )
            .unwrap();
            assert_close(&format!("bias+{act:?} fwd {s:?}"), &y, &want_by, 1e-5, 1e-5);
            ops.bias_act_bwd(
                act,
                rows,
                cols,
                &DSlice::input(&x),
                &DSlice::input(&bias),
                &DSlice::input(&dy),
                &DSlice::output(&mut dx),
            )
            .unwrap();
            assert_close(
                &format!("bias+{act:?} bwd {s:?}"),
                &dx,
                &want_bdx,
                1e-5,
                1e-5,
            );
        });
    }
}

#[test]
fn embedding_forward_backward_and_bad_id() {
    let mut rng = Rng(8);
    let (n, c, vocab) = (23, 37, 11);
    let table = rng.vec(vocab * c);
    let ids: Vec<i32> = (0..n)
        .map(|i| {
            if i % 5 == 0 {
                3
            } else {
                rng.below(vocab) as i32
            }
        })
        .collect();
    let dout = rng.vec(n * c);
    let mut want_out = vec![0.0; n * c];
    let mut want_dt = vec![0.0; vocab * c];
    for i in 0..n {
        for j in 0..c {
            want_out[i * c + j] = table[ids[i] as usize * c + j] as f64;
            want_dt[ids[i] as usize * c + j] += dout[i * c + j] as f64;
        }
    }
    each_schedule(|ops, s| {
        let (mut out, mut dt, mut flag) =
            (vec![0.0f32; n * c], vec![0.0f32; vocab * c], vec![7i32]);
        ops.embedding(
            n,
            c,
            vocab,
            &DSlice::input(&ids),
            &DSlice::input(&table),
            &DSlice::output(&mut out),
            &DSlice::output(&mut flag),
        )
        .unwrap();
        assert_close(&format!("embedding fwd {s:?}"), &out, &want_out, 0.0, 0.0);
        ops.embedding_bwd(
            n,
            c,
            vocab,
            &DSlice::input(&ids),
            &DSlice::input(&dout),
            &DSlice::output(&mut dt),
        )
        .unwrap();
        assert_close(&format!("embedding bwd {s:?}"), &dt, &want_dt, 1e-5, 1e-5);
        let mut bad = ids.clone();
        bad[17] = vocab as i32;
        let e = ops
            .embedding(
                n,
                c,
                vocab,
                &DSlice::input(&bad),
                &DSlice::input(&table),
                &DSlice::output(&mut out),
                &DSlice::output(&mut flag),
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::Index { .. }) && e.to_string().contains("position 17"),
            "{e}"
        );
    });
}

#[test]
fn cross_entropy_with_ignore_index() {
    let mut rng = Rng(9);
    let (rows, vocab, ignore) = (9, 301, -100);
    let logits: Vec<f32> = rng.vec(rows * vocab).iter().map(|v| v * 5.0).collect();
    let targets: Vec<i32> = (0..rows)
        .map(|r| {
            if r % 4 == 1 {
                ignore
            } else {
                rng.below(vocab) as i32
            }
        })
        .collect();
    let count = targets.iter().filter(|&&t| t != ignore).count() as f64;
    let (mut want_loss, mut want_lse, mut want_valid, mut want_d) = (
        vec![0.0; rows],
        vec![0.0; rows],
        vec![0.0; rows],
        vec![0.0; rows * vocab],
    );
    let dloss = 0.8f32;
    for r in 0..rows {
        let row: Vec<f64> = logits[r * vocab..(r + 1) * vocab]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        want_lse[r] = lse;
        let t = targets[r];
        if t != ignore {
            want_loss[r] = lse - row[t as usize];
            want_valid[r] = 1.0;
            for c in 0..vocab {
                want_d[r * vocab + c] =
                    ((row[c] - lse).exp() - if c == t as usize { 1.0 } else { 0.0 }) * dloss as f64
                        / count;
            }
        }
    }
    each_schedule(|ops, s| {
        let (mut loss, mut lse, mut valid, mut flag) = (
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0i32],
        );
        ops.cross_entropy(
            rows,
            vocab,
            &DSlice::input(&logits),
            &DSlice::input(&targets),
            ignore,
            &DSlice::output(&mut loss),
            &DSlice::output(&mut lse),
            &DSlice::output(&mut valid),
            &DSlice::output(&mut flag),
        )
        .unwrap();
        assert_close(&format!("ce loss {s:?}"), &loss, &want_loss, 1e-5, 1e-5);
        assert_close(&format!("ce lse {s:?}"), &lse, &want_lse, 1e-5, 1e-5);
        assert_close(&format!("ce valid {s:?}"), &valid, &want_valid, 0.0, 0.0);
        let (dl, cnt) = ([dloss], [count as f32]);
        let mut d = vec![0.0f32; rows * vocab];
        ops.cross_entropy_bwd(
            rows,
            vocab,
            &DSlice::input(&logits),
            &DSlice::input(&targets),
            ignore,
            &DSlice::input(&lse),
            &DSlice::input(&dl),
            &DSlice::input(&cnt),
            &DSlice::output(&mut d),
        )
        .unwrap();
        assert_close(&format!("ce dlogits {s:?}"), &d, &want_d, 1e-6, 1e-4);
        let mut bad = targets.clone();
        bad[2] = vocab as i32 + 4;
        let e = ops
            .cross_entropy(
                rows,
                vocab,
                &DSlice::input(&logits),
                &DSlice::input(&bad),
                ignore,
                &DSlice::output(&mut loss),
                &DSlice::output(&mut lse),
                &DSlice::output(&mut valid),
                &DSlice::output(&mut flag),
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::Index { .. }) && e.to_string().contains("row 2"),
            "{e}"
        );
    });
}

#[test]
fn adamw_two_steps() {
    let mut rng = Rng(10);
    let n = 300;
    let p0 = rng.vec(n);
    let g1 = rng.vec(n);
    let g2 = rng.vec(n);
    let hp = AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let (mut p, mut m, mut v): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        p0.iter().map(|&x| x as f64).collect(),
        vec![0.0; n],
        vec![0.0; n],
    );
    for (t, g) in [(1, &g1), (2, &g2)] {
        for i in 0..n {
            let gi = g[i] as f64 * 0.5;
            p[i] -= hp.lr as f64 * hp.weight_decay as f64 * p[i];
            m[i] = hp.beta1 as f64 * m[i] + (1.0 - hp.beta1 as f64) * gi;
            v[i] = hp.beta2 as f64 * v[i] + (1.0 - hp.beta2 as f64) * gi * gi;
            let mh = m[i] / (1.0 - (hp.beta1 as f64).powi(t));
            let vh = v[i] / (1.0 - (hp.beta2 as f64).powi(t));
            p[i] -= hp.lr as f64 * mh / (vh.sqrt() + hp.eps as f64);
        }
    }
    each_schedule(|ops, s| {
        let (mut pp, mut mm, mut vv) = (p0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        for (t, g) in [(1, &g1), (2, &g2)] {
            ops.adamw(
                n,
                &DSlice::output(&mut pp),
                &DSlice::input(g),
                &DSlice::output(&mut mm),
                &DSlice::output(&mut vv),
                &hp,
                t,
                0.5,
            )
            .unwrap();
        }
        assert_close(&format!("adamw p {s:?}"), &pp, &p, 1e-6, 1e-5);
        assert_close(&format!("adamw m {s:?}"), &mm, &m, 1e-6, 1e-5);
        assert_close(&format!("adamw v {s:?}"), &vv, &v, 1e-7, 1e-4);
    });
}

#[test]
fn dropout_is_counter_based_and_regenerable() {
    let n = 4000;
    let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
    let p = 0.3f32;
    each_schedule(|ops, s| {
        let (mut y, mut y2, mut y3) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        ops.dropout(n, &DSlice::input(&x), &DSlice::output(&mut y), p, 42, 1000)
            .unwrap();
        let kept = y.iter().filter(|v| **v != 0.0).count();
        let frac = kept as f64 / n as f64;
        assert!((frac - 0.7).abs() < 0.03, "{s:?}: kept fraction {frac}");
        for i in 0..n {
            assert!(
                y[i] == 0.0 || (y[i] - x[i] / (1.0 - p)).abs() < 1e-6,
                "{s:?}: element {i} = {}",
                y[i]
            );
        }
        // Backward on the same (seed, offset) drops exactly the same elements.
        ops.dropout(n, &DSlice::input(&x), &DSlice::output(&mut y2), p, 42, 1000)
            .unwrap();
        assert_eq!(
            y, y2,
            "{s:?}: same seed and offset must regenerate the mask"
        );
        ops.dropout(
            n,
            &DSlice::input(&x),
            &DSlice::output(&mut y3),
            p,
            42,
            1000 + n as u64,
        )
        .unwrap();
        assert_ne!(
            y, y3,
            "{s:?}: a different offset must give a different mask"
        );
    });
}

/// A unary op and its f64 reference.
type UnaryCase = (UnOp, fn(f64) -> f64);

#[test]
fn elementwise_broadcast_strided_unary_and_casts() {
    let mut rng = Rng(11);
    let (d0, d1, d2) = (3, 5, 34);
    let a = rng.vec(d0 * d1 * d2);
    let b = rng.vec(d1); // broadcast over d0 and d2: strides [0, 1, 0]
    let shape = [d0, d1, d2];
    for op in [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Max,
        BinOp::Min,
    ] {
        let want: Vec<f64> = (0..a.len())
            .map(|i| {
                let (x, z) = (a[i] as f64, b[(i / d2) % d1] as f64);
                match op {
                    BinOp::Add => x + z,
                    BinOp::Sub => x - z,
                    BinOp::Mul => x * z,
                    BinOp::Div => x / z,
                    BinOp::Max => x.max(z),
                    BinOp::Min => x.min(z),
                }
            })
            .collect();
        each_schedule(|ops, s| {
            let mut y = vec![0.0f32; a.len()];
            ops.binary(
                op,
                &shape,
                &DSlice::input(&a),
                &[d1 * d2, d2, 1],
                &DSlice::input(&b),
                &[0, 1, 0],
                &DSlice::output(&mut y),
            )
            .unwrap();
            assert_close(&format!("{op:?} {s:?}"), &y, &want, 1e-6, 1e-6);
        });
    }
    // Transpose [d0, d1, d2] -> [d2, d0, d1] through copy_strided.
    let want_t: Vec<f64> = (0..a.len())
        .map(|i| {
            let (k, rest) = (i / (d0 * d1), i % (d0 * d1));
            let (ii, j) = (rest / d1, rest % d1);
            a[ii * d1 * d2 + j * d2 + k] as f64
        })
        .collect();
    let xs: Vec<f32> = a.iter().map(|v| v.abs() + 0.1).collect();
    let unary_cases: [UnaryCase; 10] = [
        (UnOp::Neg, |v| -v),
        (UnOp::Exp, f64::exp),
        (UnOp::Log, f64::ln),
        (UnOp::Sqrt, f64::sqrt),
        (UnOp::Scale, |v| 2.5 * v),
        (UnOp::Relu, |v| v.max(0.0)),
        (UnOp::Tanh, f64::tanh),
        (UnOp::AddScalar, |v| v + 2.5),
        (UnOp::Square, |v| v * v),
        (UnOp::Recip, |v| 1.0 / v),
    ];
    let bits: Vec<f32> = vec![
        1.0,
        f32::from_bits(0x3f80_8000), // 1 + 2^-8: a tie, rounds to even (1.0)
        f32::from_bits(0x3f81_8000), // 1 + 3 * 2^-8: a tie, rounds up to even
        -3.3e38,
        3.4e38,
        1e-40,
        f32::NAN,
        0.1,
    ];
    each_schedule(|ops, s| {
        let mut y = vec![0.0f32; a.len()];
        ops.copy_strided(
            &[d2, d0, d1],
            &DSlice::input(&a),
            &[1, d1 * d2, d2],
            &DSlice::output(&mut y),
        )
        .unwrap();
        assert_close(&format!("copy_strided {s:?}"), &y, &want_t, 0.0, 0.0);
        for (op, f) in unary_cases {
            ops.unary(
                op,
                xs.len(),
                &DSlice::input(&xs),
                &DSlice::output(&mut y),
                2.5,
            )
            .unwrap();
            let want: Vec<f64> = xs.iter().map(|&v| f(v as f64)).collect();
            assert_close(&format!("{op:?} {s:?}"), &y, &want, 1e-6, 1e-6);
        }
        let mut z = xs.clone();
        ops.axpby(
            xs.len(),
            2.0,
            &DSlice::input(&a),
            -0.5,
            &DSlice::output(&mut z),
        )
        .unwrap();
        let want: Vec<f64> = a
            .iter()
            .zip(&xs)
            .map(|(&p, &q)| 2.0 * p as f64 - 0.5 * q as f64)
            .collect();
        assert_close(&format!("axpby {s:?}"), &z, &want, 1e-6, 1e-6);
        ops.fill(17, &DSlice::output(&mut z), 3.25).unwrap();
        assert!(
            z[..17].iter().all(|&v| v == 3.25) && z[17] != 3.25,
            "fill {s:?}"
        );
        let mut h = vec![0u16; bits.len()];
        ops.cast_to_bf16(bits.len(), &DSlice::input(&bits), &DSlice::output(&mut h))
            .unwrap();
        for (i, (&got, &v)) in h.iter().zip(&bits).enumerate() {
            if v.is_nan() {
                assert!(bf16_value(got).is_nan(), "cast NaN {s:?}");
            } else {
                assert_eq!(got, bf16_bits(v), "cast_f32_bf16 element {i} ({v}) {s:?}");
            }
        }
        let mut back = vec![0.0f32; bits.len()];
        ops.cast_from_bf16(bits.len(), &DSlice::input(&h), &DSlice::output(&mut back))
            .unwrap();
        for i in 0..bits.len() {
            assert!(
                back[i] == bf16_value(h[i]) || back[i].is_nan(),
                "cast_bf16_f32 {i} {s:?}"
            );
        }
    });
}

#[test]
fn reductions_rows_cols_all() {
    let mut rng = Rng(12);
    let (rows, cols) = (37, 45);
    let x = rng.vec(rows * cols);
    let y0 = rng.vec(rows.max(cols));
    let want_r: Vec<f64> = (0..rows)
        .map(|r| 2.0 * (0..cols).map(|c| x[r * cols + c] as f64).sum::<f64>() + 0.5 * y0[r] as f64)
        .collect();
    let want_c: Vec<f64> = (0..cols)
        .map(|c| 2.0 * (0..rows).map(|r| x[r * cols + c] as f64).sum::<f64>() + 0.5 * y0[c] as f64)
        .collect();
    let want_all = vec![-1.5 * x.iter().map(|&v| v as f64).sum::<f64>()];
    each_schedule(|ops, s| {
        let mut yr = y0[..rows].to_vec();
        ops.sum_rows(
            rows,
            cols,
            &DSlice::input(&x),
            &DSlice::output(&mut yr),
            2.0,
            0.5,
        )
        .unwrap();
        assert_close(&format!("sum_rows {s:?}"), &yr, &want_r, 1e-5, 1e-5);
        let mut yc = y0[..cols].to_vec();
        ops.sum_cols(
            rows,
            cols,
            &DSlice::input(&x),
            &DSlice::output(&mut yc),
            2.0,
            0.5,
        )
        .unwrap();
        assert_close(&format!("sum_cols {s:?}"), &yc, &want_c, 1e-5, 1e-5);
        let mut out = vec![123.0f32];
        ops.sum_all(x.len(), &DSlice::input(&x), &DSlice::output(&mut out), -1.5)
            .unwrap();
        assert_close(&format!("sum_all {s:?}"), &out, &want_all, 1e-4, 1e-5);
    });
}
