//! Flash attention forward and backward through the CPU emulator against a naive f64
//! reference (full score matrix), under both schedules: sequence lengths and head sizes off the
//! 16/32 tiles, causal masking, a key-padding mask, a broadcast additive bias with its gradient,
//! and a [B, T, H, D] (strided) layout.

#![cfg(feature = "emu")]

#[path = "common/cuda_emu.rs"]
mod common;

use common::*;
use pretext::backend::cuda::launch::{DSlice, Space};
use pretext::backend::cuda::ops::Attn;

struct Case {
    a: Attn,
    bias: Option<Vec<f32>>,
    mask: Option<Vec<u8>>,
}

struct Ref {
    o: Vec<f64>,
    lse: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
    dbias: Vec<f64>,
}

fn idx(s: [usize; 3], b: usize, h: usize, t: usize) -> usize {
    b * s[0] + h * s[1] + t * s[2]
}

/// Naive attention in f64; gradients in contiguous [B, H, T, D] (dq, dk, dv) and the bias
/// layout (dbias, accumulated over broadcast dimensions).
fn attn_ref(c: &Case, q: &[f32], k: &[f32], v: &[f32], dout: &[f32], bias_len: usize) -> Ref {
    let a = &c.a;
    let (d, tq, tk) = (a.d, a.tq, a.tk);
    let mut r = Ref {
        o: vec![0.0; dout.len()],
        lse: vec![0.0; a.b * a.h * tq],
        dq: vec![0.0; a.b * a.h * tq * d],
        dk: vec![0.0; a.b * a.h * tk * d],
        dv: vec![0.0; a.b * a.h * tk * d],
        dbias: vec![0.0; bias_len],
    };
    for b in 0..a.b {
        for h in 0..a.h {
            let bh = b * a.h + h;
            for i in 0..tq {
                let mut s = vec![f64::NEG_INFINITY; tk];
                for (j, sj) in s.iter_mut().enumerate() {
                    if (a.causal && j > i) || c.mask.as_ref().is_some_and(|m| m[b * tk + j] == 0) {
                        continue;
                    }
                    let mut dot = 0.0;
                    for e in 0..d {
                        dot += q[idx(a.q_strides, b, h, i) + e] as f64
                            * k[idx(a.k_strides, b, h, j) + e] as f64;
                    }
                    *sj = a.scale as f64 * dot
                        + c.bias
                            .as_ref()
                            .map_or(0.0, |bb| bb[idx(a.bias_strides, b, h, i) + j] as f64);
                }
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let oi = idx(a.o_strides, b, h, i);
                if m == f64::NEG_INFINITY {
                    r.lse[bh * tq + i] = f64::INFINITY;
                    continue;
                }
                let l: f64 = s.iter().map(|x| (x - m).exp()).sum();
                r.lse[bh * tq + i] = m + l.ln();
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / l).collect();
                for e in 0..d {
                    r.o[oi + e] = (0..tk)
                        .map(|j| p[j] * v[idx(a.v_strides, b, h, j) + e] as f64)
                        .sum();
                }
                // Backward: dp_j = do . v_j, ds_j = p_j (dp_j - sum_j' p_j' dp_j').
                let dp: Vec<f64> = (0..tk)
                    .map(|j| {
                        (0..d)
                            .map(|e| dout[oi + e] as f64 * v[idx(a.v_strides, b, h, j) + e] as f64)
                            .sum()
                    })
                    .collect();
                let delta: f64 = (0..tk).map(|j| p[j] * dp[j]).sum();
                for j in 0..tk {
                    let ds = p[j] * (dp[j] - delta);
                    if c.bias.is_some() {
                        r.dbias[idx(a.bias_strides, b, h, i) + j] += ds;
                    }
                    for e in 0..d {
                        r.dq[(bh * tq + i) * d + e] +=
                            a.scale as f64 * ds * k[idx(a.k_strides, b, h, j) + e] as f64;
                        r.dk[(bh * tk + j) * d + e] +=
                            a.scale as f64 * ds * q[idx(a.q_strides, b, h, i) + e] as f64;
                        r.dv[(bh * tk + j) * d + e] += p[j] * dout[oi + e] as f64;
                    }
                }
            }
        }
    }
    r
}

fn run_case(name: &str, c: Case, seed: u64) {
    run_case_typed::<f32>(name, &c, seed, |x| x, |x| x);
    run_case_typed::<u16>(
        &format!("{name} (bf16 q/k/v)"),
        &c,
        seed,
        bf16_bits,
        bf16_value,
    );
}

/// Run one case with q, k, v stored as `T` (`to` converts from f32, `from` back); the
/// reference sees the stored values.
fn run_case_typed<T: pretext::backend::cuda::launch::Elem>(
    name: &str,
    c: &Case,
    seed: u64,
    to: fn(f32) -> T,
    from: fn(T) -> f32,
) {
    let a = c.a;
    let mut rng = Rng(seed);
    let len = |s: [usize; 3], t: usize| (a.b - 1) * s[0] + (a.h - 1) * s[1] + (t - 1) * s[2] + a.d;
    let store = |v: Vec<f32>| -> (Vec<T>, Vec<f32>) {
        let t: Vec<T> = v.into_iter().map(to).collect();
        let back = t.iter().map(|&x| from(x)).collect();
        (t, back)
    };
    let (qs, q) = store(rng.vec(len(a.q_strides, a.tq)));
    let (ks, k) = store(rng.vec(len(a.k_strides, a.tk)));
    let (vs, v) = store(rng.vec(len(a.v_strides, a.tk)));
    let dout = rng.vec(len(a.o_strides, a.tq));
    let bias_len = c.bias.as_ref().map_or(0, |b| b.len());
    let want = attn_ref(c, &q, &k, &v, &dout, bias_len);
    each_schedule(|ops, s| {
        let mut o = vec![0.0f32; dout.len()];
        let mut lse = vec![0.0f32; a.b * a.h * a.tq];
        let bias = c
            .bias
            .as_ref()
            .map_or(DSlice::null(Space::Host), |b| DSlice::input(&b[..]));
        let mask = c
            .mask
            .as_ref()
            .map_or(DSlice::null(Space::Host), |m| DSlice::input(&m[..]));
        ops.attention(
            &a,
            &DSlice::input(&qs),
            &DSlice::input(&ks),
            &DSlice::input(&vs),
            &bias,
            &mask,
            &DSlice::output(&mut o),
            &DSlice::output(&mut lse),
        )
        .unwrap();
        assert_close(&format!("{name} o {s:?}"), &o, &want.o, 1e-5, 1e-4);
        let lse_fin: Vec<f32> = lse
            .iter()
            .map(|&x| if x.is_infinite() { 1e30 } else { x })
            .collect();
        let want_lse: Vec<f64> = want
            .lse
            .iter()
            .map(|&x| if x.is_infinite() { 1e30 } else { x })
            .collect();
        assert_close(
            &format!("{name} lse {s:?}"),
            &lse_fin,
            &want_lse,
            1e-5,
            1e-5,
        );
        let n_q = a.b * a.h * a.tq * a.d;
        let n_k = a.b * a.h * a.tk * a.d;
        let (mut dq, mut dk, mut dv, mut delta) = (
            vec![f32::NAN; n_q],
            vec![f32::NAN; n_k],
            vec![f32::NAN; n_k],
            vec![0.0f32; a.b * a.h * a.tq],
        );
        let mut dbias = vec![0.0f32; bias_len];
        let dbias_s = if c.bias.is_some() {
            DSlice::output(&mut dbias[..])
        } else {
            DSlice::null(Space::Host)
        };
        ops.attention_bwd(
            &a,
            &DSlice::input(&qs),
            &DSlice::input(&ks),
            &DSlice::input(&vs),
            &bias,
            &mask,
            &DSlice::input(&o),
            &DSlice::input(&lse),
            &DSlice::input(&dout),
            &DSlice::output(&mut delta),
            &DSlice::output(&mut dq),
            &DSlice::output(&mut dk),
            &DSlice::output(&mut dv),
            &dbias_s,
        )
        .unwrap();
        assert_close(&format!("{name} dq {s:?}"), &dq, &want.dq, 1e-5, 1e-4);
        assert_close(&format!("{name} dk {s:?}"), &dk, &want.dk, 1e-5, 1e-4);
        assert_close(&format!("{name} dv {s:?}"), &dv, &want.dv, 1e-5, 1e-4);
        if c.bias.is_some() {
            assert_close(
                &format!("{name} dbias {s:?}"),
                &dbias,
                &want.dbias,
                1e-5,
                1e-4,
            );
        }
    });
}

#[test]
fn attention_plain_and_causal() {
    run_case(
        "plain",
        Case {
            a: Attn::contiguous(2, 2, 37, 37, 24, false),
            bias: None,
            mask: None,
        },
        21,
    );
    run_case(
        "causal",
        Case {
            a: Attn::contiguous(1, 3, 41, 41, 40, true),
            bias: None,
            mask: None,
        },
        22,
    );
}

#[test]
fn attention_cross_with_key_mask_and_broadcast_bias() {
    // Cross attention Tq != Tk; a [1, H, Tq, Tk] bias broadcast over the batch (stride 0), as
    // T5's relative position bias; the second batch element masks its last 9 keys.
    let (b, h, tq, tk, d) = (2, 2, 19, 45, 16);
    let mut a = Attn::contiguous(b, h, tq, tk, d, false);
    a.bias_strides = [0, tq * tk, tk];
    let mut rng = Rng(23);
    let bias = rng.vec(h * tq * tk);
    let mut mask = vec![1u8; b * tk];
    for j in tk - 9..tk {
        mask[tk + j] = 0;
    }
    run_case(
        "cross+mask+bias",
        Case {
            a,
            bias: Some(bias),
            mask: Some(mask),
        },
        24,
    );
}

#[test]
fn attention_strided_bthd_layout_and_fully_masked_rows() {
    // q, k, v as views of one [B, T, 3, H, D] fused projection; o as [B, T, H, D].
    let (b, h, t, d) = (2, 2, 21, 33);
    let mut a = Attn::contiguous(b, h, t, t, d, true);
    let row = 3 * h * d;
    a.q_strides = [t * row, d, row];
    a.k_strides = [t * row, d, row];
    a.v_strides = [t * row, d, row];
    a.o_strides = [t * h * d, d, h * d];
    // Key 0 of batch 1 masked: with causal masking, query 0 of batch 1 sees no key at all.
    let mut mask = vec![1u8; b * t];
    mask[t] = 0;
    run_case(
        "strided+empty rows",
        Case {
            a,
            bias: None,
            mask: Some(mask),
        },
        25,
    );
}
