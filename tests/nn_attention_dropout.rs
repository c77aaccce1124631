//! Attention-probability dropout (nn::attention_train): the op-by-op path equals the fused op at
//! p = 0 (values and gradients, every mask kind, fully masked rows, Tq < Tk), and at p > 0 the
//! fused op's own dropout equals the op-by-op path drawn from the same `Rng` (same mask), across
//! several tiles; dropout is unbiased (inverted dropout: the mean over many masks is the
//! undropped output), and GPT-2 applies `attn_pdrop` in training only.

use pretext::autograd::Var;
use pretext::models::config::Gpt2Config;
use pretext::models::gpt2::{Gpt2, Gpt2Head};
use pretext::nn::attention_train::{attend, attend_unfused, AttnMask};
use pretext::tensor::{AttentionMasks, AttnDropout, Rng, Tensor};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Two batches of Tq = 3 queries over Tk = 4 keys; batch 1 pads its last two keys, and with
/// causal masking its first query then sees no key at all (a fully masked row).
fn case(rng: &mut Rng) -> (Var, Var, Var, Var, Tensor) {
    let (b, h, tq, tk, d) = (2, 3, 3, 4, 5);
    let q = Var::param(Tensor::randn(&[b, h, tq, d], 0.0, 1.0, rng));
    let k = Var::param(Tensor::randn(&[b, h, tk, d], 0.0, 1.0, rng));
    let v = Var::param(Tensor::randn(&[b, h, tk, d], 0.0, 1.0, rng));
    let bias = Var::param(Tensor::randn(&[1, h, tq, tk], 0.0, 1.0, rng));
    let pad = Tensor::from_vec(vec![1i64, 1, 1, 1, 0, 0, 1, 1], &[b, tk]).unwrap();
    (q, k, v, bias, pad)
}

#[test]
fn unfused_path_equals_fused_op_at_p0() {
    let mut rng = Rng::new(7);
    let (q, k, v, bias, pad) = case(&mut rng);
    let w = Var::constant(Tensor::randn(&[2, 3, 3, 5], 0.0, 1.0, &mut rng));
    let leaves = [&q, &k, &v, &bias];
    for causal in [false, true] {
        for scale in [None, Some(1.0)] {
            let masks = AttentionMasks {
                causal,
                key_padding: Some(pad.clone()),
                scale,
                dropout: None,
            };
            let m = AttnMask::new(masks.clone(), 2, 3, 4).unwrap();
            let mut outs = Vec::new();
            let mut grads = Vec::new();
            for fused in [true, false] {
                leaves.iter().for_each(|x| x.zero_grad());
                let y = if fused {
                    Var::attention(&q, &k, &v, Some(&bias), &masks).unwrap()
                } else {
                    attend_unfused(&q, &k, &v, Some(&bias), &m, 0.0, &mut rng).unwrap()
                };
                y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
                outs.push(y.value().clone());
                grads.push(leaves.map(|x| x.grad().unwrap()));
            }
            let d = max_diff(&outs[0], &outs[1]);
            assert!(d < 1e-5, "causal {causal}: fused vs unfused differ by {d}");
            for (i, (a, c)) in grads[0].iter().zip(&grads[1]).enumerate() {
                let d = max_diff(a, c);
                assert!(d < 1e-4, "causal {causal}: gradient {i} differs by {d}");
            }
        }
    }
}

/// Outputs and gradients (q, k, v, bias) of `attend` on the host (the fused op with its
/// dropout) and of `attend_unfused`, each from an `Rng` seeded alike.
fn fused_and_unfused(
    (q, k, v, bias): (&Var, &Var, &Var, &Var),
    masks: &AttentionMasks,
    p: f32,
    w: &Var,
) -> [(Tensor, [Tensor; 4]); 2] {
    let (b, tq, tk) = (q.shape()[0], q.shape()[2], k.shape()[2]);
    let m = AttnMask::new(masks.clone(), b, tq, tk).unwrap();
    [true, false].map(|fused| {
        [q, k, v, bias].iter().for_each(|x| x.zero_grad());
        let mut rng = Rng::new(2024);
        let y = if fused {
            attend(q, k, v, Some(bias), &m, p, &mut Some(&mut rng)).unwrap()
        } else {
            attend_unfused(q, k, v, Some(bias), &m, p, &mut rng).unwrap()
        };
        y.mul(w).unwrap().sum_all().unwrap().backward().unwrap();
        let out = y.value().clone();
        (out, [q, k, v, bias].map(|x| x.grad().unwrap()))
    })
}

#[test]
fn fused_dropout_equals_the_op_by_op_path() {
    let mut rng = Rng::new(17);
    // The small case (fully masked rows, Tq < Tk), then several 64 × 64 tiles each way with
    // ragged edges (the counters cross tile boundaries), Tq < Tk.
    let small = case(&mut rng);
    let (b, h, tq, tk, d) = (2, 2, 70, 133, 8);
    let big = (
        Var::param(Tensor::randn(&[b, h, tq, d], 0.0, 1.0, &mut rng)),
        Var::param(Tensor::randn(&[b, h, tk, d], 0.0, 1.0, &mut rng)),
        Var::param(Tensor::randn(&[b, h, tk, d], 0.0, 1.0, &mut rng)),
        Var::param(Tensor::randn(&[1, h, tq, tk], 0.0, 1.0, &mut rng)),
        Tensor::from_vec(
            // Batch 0 pads its last keys; batch 1 its first 100, so with causal masking its
            // queries 0..37 see no key and weight every key, those of skipped tiles too.
            (0..b * tk)
                .map(|i| if i < tk { i < 120 } else { i % tk >= 100 } as i64)
                .collect(),
            &[b, tk],
        )
        .unwrap(),
    );
    for (q, k, v, bias, pad) in [small, big] {
        let shape = [q.shape()[0], q.shape()[1], q.shape()[2], v.shape()[3]];
        let w = Var::constant(Tensor::randn(&shape, 0.0, 1.0, &mut rng));
        for (causal, key_padding, p) in [
            (false, None, 0.3),
            (true, None, 0.5),
            (true, Some(pad.clone()), 0.2),
            (false, Some(pad.clone()), 0.1),
        ] {
            let masks = AttentionMasks {
                causal,
                key_padding,
                scale: None,
                dropout: None,
            };
            let [(y0, g0), (y1, g1)] = fused_and_unfused((&q, &k, &v, &bias), &masks, p, &w);
            let dy = max_diff(&y0, &y1);
            assert!(dy < 1e-5, "causal {causal} p {p}: outputs differ by {dy}");
            for (i, (a, c)) in g0.iter().zip(&g1).enumerate() {
                let d = max_diff(a, c);
                assert!(
                    d < 1e-4,
                    "causal {causal} p {p}: gradient {i} differs by {d}"
                );
            }
            // It did drop something: the undropped output differs.
            let plain = Var::attention(&q, &k, &v, Some(&bias), &masks).unwrap();
            assert!(
                max_diff(&y0, &plain.value()) > 1e-3,
                "p {p} dropped nothing"
            );
        }
    }
}

#[test]
fn dropout_path_is_unbiased_and_masks_differ() {
    let mut rng = Rng::new(11);
    let (q, k, v, _, pad) = case(&mut rng);
    let masks = AttentionMasks {
        causal: true,
        key_padding: Some(pad),
        scale: None,
        dropout: None,
    };
    let m = AttnMask::new(masks.clone(), 2, 3, 4).unwrap();
    let fused = Var::attention(&q, &k, &v, None, &masks)
        .unwrap()
        .value()
        .clone();
    let n = 2000;
    let mut mean = vec![0.0f64; fused.numel()];
    let mut first: Option<Tensor> = None;
    let mut distinct = false;
    for _ in 0..n {
        let y = attend(&q, &k, &v, None, &m, 0.3, &mut Some(&mut rng)).unwrap();
        let y = y.value().clone();
        for (s, x) in mean.iter_mut().zip(y.to_vec_f32().unwrap()) {
            *s += x as f64 / n as f64;
        }
        match &first {
            None => first = Some(y),
            Some(f) => distinct |= max_diff(f, &y) > 1e-3,
        }
    }
    assert!(distinct, "every dropout draw gave the same output");
    // Each element's standard deviation is below 1 here, so the mean of 2000 draws is within
    // 0.1 of its expectation by a wide margin (≈ 4.5σ).
    let fused = fused.to_vec_f32().unwrap();
    let worst = mean
        .iter()
        .zip(&fused)
        .map(|(m, f)| (m - *f as f64).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 0.1,
        "mean of dropped attention is {worst} from the fused output"
    );
    // In evaluation the dropout path is not taken.
    let y = attend(&q, &k, &v, None, &m, 0.3, &mut None).unwrap();
    assert_eq!(
        max_diff(&y.value(), &Tensor::from_vec(fused, &[2, 3, 3, 5]).unwrap()),
        0.0
    );
}

#[test]
fn gpt2_applies_attn_pdrop_in_training_only() {
    let ids = Tensor::from_vec((0..16i64).map(|i| (i * 7) % 50).collect(), &[2, 8]).unwrap();
    let loss = |attn_pdrop: f64, train: bool| -> f32 {
        let mut c = Gpt2Config::tiny();
        c.vocab_size = 50;
        c.n_embd = 32;
        c.n_head = 2;
        c.resid_pdrop = 0.0;
        c.embd_pdrop = 0.0;
        c.attn_pdrop = attn_pdrop;
        let model = Gpt2::new(c, Gpt2Head::Lm, &mut Rng::new(5)).unwrap();
        let mut rng = Rng::new(9);
        let train = if train { Some(&mut rng) } else { None };
        let (_, loss) = model.lm_loss(&ids, None, &ids, train).unwrap();
        loss.backward().unwrap();
        let v = loss.value().to_vec_f32().unwrap()[0];
        v
    };
    assert_eq!(
        loss(0.5, false),
        loss(0.0, false),
        "eval must ignore attn_pdrop"
    );
    assert_eq!(
        loss(0.0, true),
        loss(0.0, false),
        "no dropout: train equals eval"
    );
    let dropped = loss(0.5, true);
    assert!(
        (dropped - loss(0.0, true)).abs() > 1e-4,
        "attn_pdrop changed nothing"
    );
    assert!(dropped.is_finite());
}

#[test]
fn a_dropout_probability_outside_0_1_is_refused_by_name() {
    let mut rng = Rng::new(5);
    let (q, k, v, _, _) = case(&mut rng);
    for p in [1.0, 1.5, -0.1, f32::NAN] {
        let masks = AttentionMasks {
            dropout: Some(AttnDropout { p, seed: 0 }),
            ..Default::default()
        };
        let err = Tensor::attention(&q.value(), &k.value(), &v.value(), None, &masks).unwrap_err();
        assert!(
            err.to_string().contains("attention dropout: probability"),
            "{err}"
        );
        let m = AttnMask::new(AttentionMasks::default(), 2, 3, 4).unwrap();
        let err = attend(&q, &k, &v, None, &m, p, &mut Some(&mut rng)).unwrap_err();
        assert!(
            err.to_string().contains("attention dropout: probability"),
            "{err}"
        );
    }
}
