//! Finite-difference gradient checks of every differentiable op of the core, including the
//! broadcasting and strided cases: `gradcheck` compares the analytic ∂(Σ w ⊙ f)/∂x from
//! `backward()` with central differences for every element of every input.

use pretext::autograd::gradcheck::{gradcheck, GradCheck};
use pretext::autograd::Var;
use pretext::tensor::{AttentionMasks, AttnDropout, Rng, Tensor};
use pretext::Result;

/// N(0, 1) samples of `shape`, seeded.
fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

/// U[lo, hi) samples of `shape`, seeded.
fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut Rng::new(seed))
}

/// Distinct values 0.1·k (k a shuffled 1..=n), signs alternating: no ties closer than 0.1,
/// and no value within 0.1 of zero (keeps max and relu away from their kinks).
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (1..=n).map(|k| 0.1 * k as f32).collect();
    Rng::new(seed).shuffle(&mut v);
    for (i, x) in v.iter_mut().enumerate() {
        if i % 3 == 1 {
            *x = -*x;
        }
    }
    Tensor::from_vec(v, shape).unwrap()
}

fn ids(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn check(inputs: Vec<Tensor>, f: impl Fn(&[Var]) -> Result<Var>) {
    let report = gradcheck(&inputs, f).unwrap_or_else(|e| panic!("{e}"));
    let n: usize = inputs.iter().map(|t| t.numel()).sum();
    assert_eq!(report.checked, n, "every input element is checked");
}

// ---------------------------------------------------------------- binary with broadcasting

#[test]
fn add_sub_broadcast() {
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 1, 4], &[3, 1]),
        (&[4], &[2, 3, 4]),
        (&[2, 3], &[]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let (a, b) = (randn(sa, 1 + i as u64), randn(sb, 100 + i as u64));
        check(vec![a.clone(), b.clone()], |v| v[0].add(&v[1]));
        check(vec![a, b], |v| v[0].sub(&v[1]));
    }
}

#[test]
fn mul_div_broadcast() {
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3, 4], &[1, 4]),
        (&[3, 1], &[2, 1, 4]),
        (&[], &[2, 3]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let a = randn(sa, 10 + i as u64);
        // Denominators in [0.5, 1.5] keep 1/b smooth at the step size.
        let b = uniform(sb, 0.5, 1.5, 20 + i as u64);
        check(vec![a.clone(), b.clone()], |v| v[0].mul(&v[1]));
        check(vec![a, b], |v| v[0].div(&v[1]));
    }
}

#[test]
fn binary_on_strided_inputs() {
    // f(x, y) = xᵀ ⊙ y with x read through a transposed (non-contiguous) view.
    let (x, y) = (randn(&[3, 2], 1), randn(&[2, 3], 2));
    check(vec![x.clone(), y.clone()], |v| {
        let xt = v[0].transpose(0, 1)?;
        assert!(!xt.value().is_contiguous());
        xt.mul(&v[1])?.sum_all()
    });
    // A strided input broadcast against a stride-0 one, and a narrowed (offset) view.
    check(vec![x.clone(), y.clone()], |v| {
        let xt = v[0].transpose(0, 1)?; // (2, 3), strides (1, 2)
        let row = v[1].narrow(0, 1, 1)?; // (1, 3) at an offset
        xt.div(&row.mul(&row)?.add_scalar(1.0)?)
    });
    check(vec![x, y], |v| {
        v[0].broadcast_to(&[4, 3, 2])?.sub(&v[1].transpose(0, 1)?)
    });
}

// ---------------------------------------------------------------- unary and scalar ops

#[test]
fn unary_ops() {
    let x = randn(&[2, 5], 3);
    let pos = uniform(&[2, 5], 0.5, 2.0, 4);
    check(vec![x.clone()], |v| v[0].neg());
    check(vec![x.clone()], |v| v[0].add_scalar(0.7));
    check(vec![x.clone()], |v| v[0].mul_scalar(-1.3));
    check(vec![x.clone()], |v| v[0].exp());
    check(vec![pos.clone()], |v| v[0].log());
    check(vec![pos.clone()], |v| v[0].sqrt());
    check(vec![pos.clone()], |v| v[0].rsqrt());
    check(vec![pos.clone()], |v| v[0].powf(2.5));
    check(vec![pos.clone()], |v| v[0].powf(-1.5));
    check(vec![x.clone()], |v| v[0].powf(3.0));
    check(vec![x.clone()], |v| v[0].tanh());
    check(vec![x.clone()], |v| v[0].sigmoid());
    check(vec![x.clone()], |v| v[0].gelu());
    check(vec![x.mul_scalar(2.0).unwrap()], |v| v[0].gelu_tanh());
    check(vec![distinct(&[2, 5], 5)], |v| v[0].relu());
}

#[test]
fn unary_on_strided_input() {
    let x = randn(&[3, 4], 6);
    check(vec![x], |v| {
        v[0].transpose(0, 1)?
            .narrow(0, 1, 2)?
            .tanh()?
            .mul_scalar(2.0)
    });
}

// ---------------------------------------------------------------- reductions

#[test]
fn sum_mean_over_dims() {
    let x = randn(&[2, 3, 4], 7);
    for keep in [false, true] {
        for dims in [&[0isize][..], &[1], &[-1], &[0, 2], &[2, 0], &[0, 1, 2]] {
            check(vec![x.clone()], |v| v[0].sum_dims(dims, keep));
            check(vec![x.clone()], |v| v[0].mean_dims(dims, keep));
        }
    }
    check(vec![x.clone()], |v| v[0].sum_all());
    check(vec![x], |v| v[0].mean_all());
}

#[test]
fn max_over_dims() {
    let x = distinct(&[2, 3, 4], 8);
    for keep in [false, true] {
        for dims in [&[0isize][..], &[1], &[-1], &[0, 2]] {
            check(vec![x.clone()], |v| v[0].max_dims(dims, keep));
        }
    }
}

#[test]
fn reductions_on_strided_input() {
    let x = randn(&[3, 4], 9);
    check(vec![x.clone()], |v| {
        v[0].transpose(0, 1)?.sum_dims(&[1], false)
    });
    check(vec![distinct(&[3, 4], 10)], |v| {
        v[0].transpose(0, 1)?.max_dims(&[-1], true)
    });
    check(vec![x], |v| v[0].permute(&[1, 0])?.mean_dims(&[0], true));
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_plain_and_batched() {
    check(vec![randn(&[3, 4], 11), randn(&[4, 5], 12)], |v| {
        v[0].matmul(&v[1])
    });
    check(vec![randn(&[2, 3, 4], 13), randn(&[2, 4, 2], 14)], |v| {
        v[0].matmul(&v[1])
    });
}

#[test]
fn matmul_broadcast_batch() {
    // (2, 1, 3, 4) · (5, 4, 6) → (2, 5, 3, 6): dA sums over the 5, dB over the 2.
    check(vec![randn(&[2, 1, 3, 4], 15), randn(&[5, 4, 6], 16)], |v| {
        let y = v[0].matmul(&v[1])?;
        assert_eq!(y.value().shape().to_vec(), vec![2, 5, 3, 6]);
        Ok(y)
    });
    check(vec![randn(&[3, 4], 17), randn(&[2, 4, 2], 18)], |v| {
        v[0].matmul(&v[1])
    });
}

#[test]
fn matmul_transposed_operands() {
    // Aᵀ·B and A·Bᵀ with the transposes read through strides.
    check(vec![randn(&[4, 3], 19), randn(&[4, 5], 20)], |v| {
        v[0].transpose(0, 1)?.matmul(&v[1])
    });
    check(vec![randn(&[3, 4], 21), randn(&[5, 4], 22)], |v| {
        v[0].matmul(&v[1].transpose(0, 1)?)
    });
    check(vec![randn(&[2, 4, 3], 23), randn(&[2, 5, 4], 24)], |v| {
        v[0].transpose(-1, -2)?.matmul(&v[1].transpose(-1, -2)?)
    });
}

// ---------------------------------------------------------------- softmax family, norms

#[test]
fn softmax_and_log_softmax() {
    let x = randn(&[3, 5], 25).mul_scalar(2.0).unwrap();
    check(vec![x.clone()], |v| v[0].softmax_last());
    check(vec![x.clone()], |v| v[0].log_softmax_last());
    check(vec![randn(&[4, 3], 26)], |v| {
        v[0].transpose(0, 1)?.softmax_last()
    });
}

#[test]
fn softmax_gradients_at_large_logits() {
    // softmax(x + c) = softmax(x): the analytic gradients at logits ≈ 1e4 must equal those at
    // x (the row max is subtracted, nothing overflows). `big` is rounded to f32 first and `x`
    // recovered exactly from it, so both see the same logits up to the shift.
    let big = randn(&[3, 5], 25)
        .mul_scalar(2.0)
        .unwrap()
        .add_scalar(1e4)
        .unwrap();
    let x = big.add_scalar(-1e4).unwrap();
    for log in [false, true] {
        let grad_at = |t: &Tensor| {
            let v = Var::param(t.clone());
            let w = Var::constant(randn(&[3, 5], 99));
            let y = if log {
                v.log_softmax_last()
            } else {
                v.softmax_last()
            };
            y.unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            v.grad().unwrap().to_vec_f32().unwrap()
        };
        let (gb, gx) = (grad_at(&big), grad_at(&x));
        for (a, b) in gb.iter().zip(&gx) {
            assert!(
                a.is_finite() && (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                "log {log}: {a} vs {b}"
            );
        }
    }
    // Directly at 1e4 the f32 spacing (≈1e-3) quantises the finite-difference step, hence a
    // larger step and a looser tolerance there.
    let g = GradCheck {
        step: 0.1,
        atol: 2e-2,
        rtol: 5e-2,
        ..GradCheck::default()
    };
    g.run(std::slice::from_ref(&big), |v| v[0].log_softmax_last())
        .unwrap();
    g.run(&[big], |v| v[0].softmax_last()).unwrap();
}

#[test]
fn layer_norm_with_and_without_affine() {
    let x = randn(&[3, 5], 27);
    let (g, b) = (uniform(&[5], 0.5, 1.5, 28), randn(&[5], 29));
    check(vec![x.clone()], |v| v[0].layer_norm(None, None, 1e-5));
    check(vec![x.clone(), g.clone()], |v| {
        v[0].layer_norm(Some(&v[1]), None, 1e-5)
    });
    check(vec![x.clone(), g.clone(), b], |v| {
        v[0].layer_norm(Some(&v[1]), Some(&v[2]), 1e-5)
    });
    check(vec![randn(&[5, 2, 3], 30), g], |v| {
        v[0].permute(&[1, 2, 0])?
            .layer_norm(Some(&v[1]), None, 1e-5)
    });
}

#[test]
fn rms_norm_with_and_without_weight() {
    let x = randn(&[3, 5], 31);
    let g = uniform(&[5], 0.5, 1.5, 32);
    check(vec![x.clone()], |v| v[0].rms_norm(None, 1e-6));
    check(vec![x, g.clone()], |v| v[0].rms_norm(Some(&v[1]), 1e-6));
    check(vec![randn(&[5, 4], 33), g], |v| {
        v[0].transpose(0, 1)?.rms_norm(Some(&v[1]), 1e-6)
    });
}

// ---------------------------------------------------------------- indexing

#[test]
fn embedding_with_repeated_ids() {
    let table = randn(&[5, 3], 34);
    let i = ids(&[1, 4, 1, 0, 1, 4], &[2, 3]);
    check(vec![table.clone()], |v| v[0].embedding(&i));
    let u = Tensor::from_vec(vec![2u32, 2, 3], &[3]).unwrap();
    check(vec![table], |v| v[0].embedding(&u));
}

#[test]
fn index_select_and_gather() {
    let x = randn(&[3, 4], 35);
    check(vec![x.clone()], |v| {
        v[0].index_select(1, &ids(&[3, 0, 3], &[3]))
    });
    check(vec![x.clone()], |v| {
        v[0].index_select(0, &ids(&[2, 2], &[2]))
    });
    let idx = ids(&[0, 3, 3, 1, 2, 2], &[3, 2]);
    check(vec![x.clone()], |v| v[0].gather(1, &idx));
    let idx0 = ids(&[2, 0, 1, 2, 2, 0], &[2, 3]);
    check(vec![x.clone()], |v| v[0].gather(0, &idx0));
    check(vec![x], |v| {
        v[0].transpose(0, 1)?
            .gather(-1, &ids(&[1, 1, 0, 2], &[4, 1]))
    });
}

#[test]
fn cat_stack_split() {
    let (a, b, c) = (randn(&[2, 3], 36), randn(&[2, 1], 37), randn(&[2, 2], 38));
    check(vec![a.clone(), b.clone(), c.clone()], |v| {
        Var::cat(&[&v[0], &v[1], &v[2]], 1)
    });
    check(vec![a.clone(), randn(&[1, 3], 39)], |v| {
        Var::cat(&[&v[0], &v[1]], 0)
    });
    check(vec![a.clone(), randn(&[2, 3], 40)], |v| {
        Var::stack(&[&v[0], &v[1]], 1)
    });
    check(vec![a.clone(), randn(&[2, 3], 41)], |v| {
        Var::stack(&[&v[0], &v[1]], -1)
    });
    check(vec![randn(&[2, 6], 42)], |v| {
        let parts = v[0].split(&[1, 3, 2], 1)?;
        parts[0]
            .mul_scalar(2.0)?
            .add(&parts[2].sum_dims(&[1], true)?)?
            .mul(&parts[1].narrow(1, 0, 1)?)
    });
    // A cat of a transposed view and a constant: only the variable gets a gradient.
    let k = Var::constant(randn(&[3, 2], 43));
    check(vec![randn(&[2, 3], 44)], |v| {
        Var::cat(&[&v[0].transpose(0, 1)?, &k], 1)
    });
}

#[test]
fn masked_fill_and_where() {
    let x = randn(&[2, 3], 45);
    let mask = Tensor::from_vec(vec![1.0f32, 0.0, 1.0], &[3]).unwrap();
    check(vec![x.clone()], |v| v[0].masked_fill(&mask, -7.0));
    let cond = Tensor::from_vec(vec![1u32, 0, 0, 1, 1, 0], &[2, 3]).unwrap();
    check(vec![x.clone(), randn(&[2, 3], 46)], |v| {
        Var::where_cond(&cond, &v[0], &v[1])
    });
    // a broadcast over rows, b a scalar: their gradients sum the selected positions.
    check(vec![randn(&[3], 47), randn(&[], 48)], |v| {
        Var::where_cond(&cond, &v[0], &v[1])
    });
}

#[test]
fn dropout_gradient_is_the_mask() {
    let x = randn(&[4, 5], 49);
    // The same seed in every evaluation gives the same mask, so f is a fixed linear map.
    check(vec![x], |v| v[0].dropout(0.3, true, &mut Rng::new(77)));
}

// ---------------------------------------------------------------- losses

#[test]
fn cross_entropy_plain_ignore_and_smoothing() {
    let logits = randn(&[5, 4], 50);
    let t = ids(&[2, -100, 0, 3, -100], &[5]);
    check(vec![logits.clone()], |v| {
        v[0].cross_entropy(&ids(&[2, 1, 0, 3, 3], &[5]), -100, 0.0)
    });
    check(vec![logits.clone()], |v| v[0].cross_entropy(&t, -100, 0.0));
    check(vec![logits.clone()], |v| v[0].cross_entropy(&t, -100, 0.1));
    // (B, T, C) logits with (B, T) targets, upstream gradient not 1.
    let l3 = randn(&[2, 3, 4], 51);
    let t3 = ids(&[1, 2, -100, 0, 3, 3], &[2, 3]);
    check(vec![l3], |v| {
        v[0].cross_entropy(&t3, -100, 0.2)?.mul_scalar(3.0)
    });
}

// ---------------------------------------------------------------- attention

fn masks(causal: bool, key_padding: Option<Tensor>, scale: Option<f32>) -> AttentionMasks {
    AttentionMasks {
        causal,
        key_padding,
        scale,
        dropout: None,
    }
}

#[test]
fn attention_plain_and_causal() {
    let (q, k, v) = (
        randn(&[2, 2, 3, 4], 52),
        randn(&[2, 2, 3, 4], 53),
        randn(&[2, 2, 3, 2], 54),
    );
    for causal in [false, true] {
        let m = masks(causal, None, None);
        check(vec![q.clone(), k.clone(), v.clone()], |x| {
            Var::attention(&x[0], &x[1], &x[2], None, &m)
        });
    }
}

#[test]
fn attention_causal_with_fewer_queries_than_keys() {
    // Tq = 2, Tk = 4: query i sees keys j ≤ i + 2 (the KV-cache alignment).
    let (q, k, v) = (
        randn(&[1, 2, 2, 3], 55),
        randn(&[1, 2, 4, 3], 56),
        randn(&[1, 2, 4, 3], 57),
    );
    let m = masks(true, None, Some(0.8));
    check(vec![q, k, v], |x| {
        Var::attention(&x[0], &x[1], &x[2], None, &m)
    });
}

#[test]
fn attention_key_padding_and_scale() {
    let (q, k, v) = (
        randn(&[2, 2, 3, 4], 58),
        randn(&[2, 2, 4, 4], 59),
        randn(&[2, 2, 4, 3], 60),
    );
    let pad = Tensor::from_vec(vec![1i64, 1, 1, 0, 1, 0, 1, 0], &[2, 4]).unwrap();
    let m = masks(false, Some(pad), Some(1.0));
    check(vec![q, k, v], |x| {
        Var::attention(&x[0], &x[1], &x[2], None, &m)
    });
}

#[test]
fn attention_with_broadcast_bias() {
    // T5's relative bias (1, H, Tq, Tk): its gradient sums over the batch.
    let (q, k, v) = (
        randn(&[2, 2, 3, 4], 61),
        randn(&[2, 2, 3, 4], 62),
        randn(&[2, 2, 3, 4], 63),
    );
    let bias = randn(&[1, 2, 3, 3], 64);
    let m = masks(true, None, Some(1.0));
    check(vec![q.clone(), k.clone(), v.clone(), bias], |x| {
        Var::attention(&x[0], &x[1], &x[2], Some(&x[3]), &m)
    });
    // A bias broadcast over heads and queries (B, 1, 1, Tk), with key padding.
    let pad = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0], &[2, 3]).unwrap();
    let m = masks(false, Some(pad), None);
    check(vec![q, k, v, randn(&[2, 1, 1, 3], 65)], |x| {
        Var::attention(&x[0], &x[1], &x[2], Some(&x[3]), &m)
    });
}

#[test]
fn attention_fully_masked_rows_get_no_score_gradient() {
    // Left padding with causal masking: query 0 of batch 1 sees no key. Its output is the mean
    // of v (uniform weights), which depends on neither q, k nor the bias.
    let (q, k, v) = (
        randn(&[2, 1, 3, 2], 66),
        randn(&[2, 1, 3, 2], 67),
        randn(&[2, 1, 3, 2], 68),
    );
    let pad = Tensor::from_vec(vec![1i64, 1, 1, 0, 1, 1], &[2, 3]).unwrap();
    let m = masks(true, Some(pad), None);
    check(vec![q, k, v, randn(&[1, 1, 3, 3], 69)], |x| {
        Var::attention(&x[0], &x[1], &x[2], Some(&x[3]), &m)
    });
}

#[test]
fn attention_with_probability_dropout() {
    // The mask is a function of (seed, position), so the dropped attention is a fixed
    // differentiable function: causal with key padding (a fully masked row, its skipped
    // keys dropped too), a bias, and Tq < Tk.
    let (q, k, v) = (
        randn(&[2, 2, 3, 4], 80),
        randn(&[2, 2, 5, 4], 81),
        randn(&[2, 2, 5, 3], 82),
    );
    let pad = Tensor::from_vec(vec![1i64, 1, 1, 1, 1, 0, 0, 0, 1, 1], &[2, 5]).unwrap();
    for (causal, seed) in [(false, 1), (true, 2), (true, 3)] {
        let mut m = masks(causal, Some(pad.clone()), None);
        m.dropout = Some(AttnDropout { p: 0.4, seed });
        check(
            vec![q.clone(), k.clone(), v.clone(), randn(&[1, 2, 3, 5], 83)],
            |x| Var::attention(&x[0], &x[1], &x[2], Some(&x[3]), &m),
        );
    }
}

#[test]
fn attention_on_strided_inputs() {
    // q, k, v as (B, T, H, D) → (B, H, T, D) permuted views, as a model produces them.
    let x = randn(&[1, 3, 2, 2], 70);
    let m = masks(true, None, None);
    check(vec![x.clone(), x.add_scalar(0.5).unwrap()], |v| {
        let q = v[0].permute(&[0, 2, 1, 3])?;
        let k = v[1].permute(&[0, 2, 1, 3])?;
        Var::attention(&q, &k, &k, None, &m)
    });
}

// ---------------------------------------------------------------- views

#[test]
fn views_reshape_permute_narrow() {
    let x = randn(&[2, 3, 4], 71);
    let w = Var::constant(randn(&[4, 6], 72));
    check(vec![x.clone()], |v| v[0].reshape(&[6, 4])?.matmul(&w));
    check(vec![x.clone()], |v| {
        v[0].permute(&[2, 0, 1])?.reshape(&[4, 6])
    });
    check(vec![x.clone()], |v| {
        v[0].transpose(0, 2)?.narrow(1, 1, 2)?.exp()
    });
    check(vec![x.clone()], |v| {
        v[0].narrow(-1, 1, 3)?.narrow(0, 1, 1)?.mul_scalar(2.0)
    });
    check(vec![x], |v| v[0].narrow(2, 0, 4)?.narrow(1, 2, 1)?.tanh());
    // Several narrows of one input add their gradients into slices of one accumulated
    // gradient (`Tensor::narrow_backward_add`): a q | k | v split along the last dim, a slice
    // overlapping two of them, one along a middle dim, and the input also used whole.
    check(vec![randn(&[2, 3, 6], 75)], |v| {
        let x = &v[0];
        let (q, k, w) = (x.narrow(2, 0, 2)?, x.narrow(2, 2, 2)?, x.narrow(2, 4, 2)?);
        let overlap = x.narrow(2, 1, 2)?.mul_scalar(3.0)?;
        let mid = x.narrow(1, 1, 2)?.tanh()?.sum_all()?;
        q.mul(&k)?
            .add(&w.exp()?)?
            .add(&overlap)?
            .add(&x.narrow(2, 3, 2)?)?
            .sum_all()?
            .add(&mid)?
            .add(&x.mul(x)?.sum_all()?)
    });
}

#[test]
fn views_broadcast_squeeze_contiguous() {
    let x = randn(&[3, 1], 73);
    check(vec![x.clone()], |v| v[0].broadcast_to(&[2, 3, 4])?.tanh());
    check(vec![x.clone()], |v| {
        v[0].squeeze(1)?.unsqueeze(0)?.broadcast_to(&[2, 3])?.exp()
    });
    check(vec![x], |v| v[0].unsqueeze(-1)?.squeeze(1)?.mul_scalar(3.0));
    check(vec![randn(&[3, 4], 74)], |v| {
        let c = v[0].transpose(0, 1)?.contiguous()?;
        assert!(c.value().is_contiguous());
        c.reshape(&[2, 6])?.sigmoid()
    });
}

#[test]
fn transposed_times_constant_sum() {
    // The case the issue names: f(x) = Σ (xᵀ ⊙ y) over a strided input; ∂f/∂x = yᵀ.
    let (x, y) = (randn(&[3, 2], 75), randn(&[2, 3], 76));
    let yc = Var::constant(y.clone());
    check(vec![x.clone()], |v| {
        v[0].transpose(0, 1)?.mul(&yc)?.sum_all()
    });
    let xv = Var::param(x);
    xv.transpose(0, 1)
        .unwrap()
        .mul(&yc)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let yt = y.transpose(0, 1).unwrap().to_vec_f32().unwrap();
    assert_eq!(xv.grad().unwrap().to_vec_f32().unwrap(), yt);
}

#[test]
fn composite_gelu_mlp_block() {
    // A small model-shaped composite: LayerNorm → Linear → GELU → Linear with biases.
    let x = randn(&[2, 3, 4], 77);
    let w1 = randn(&[4, 5], 78).mul_scalar(0.5).unwrap();
    let b1 = randn(&[5], 79);
    let w2 = randn(&[5, 4], 80).mul_scalar(0.5).unwrap();
    check(vec![x, w1, b1, w2], |v| {
        let h = v[0]
            .layer_norm(None, None, 1e-5)?
            .matmul(&v[1])?
            .add(&v[2])?
            .gelu()?;
        h.matmul(&v[3])
    });
}

// ---------------------------------------------------------------- the checker and big shapes

#[test]
fn gradcheck_rejects_a_wrong_gradient() {
    // At a kink the rule's one-sided choice differs from the central difference: relu'(0) is
    // taken as 0 but the difference quotient is ½; max with a tie sends the whole gradient to
    // the first element but the quotient splits it. The checker must catch both.
    let zero = Tensor::zeros(&[3]);
    let e = gradcheck(&[zero], |v| v[0].relu()).unwrap_err();
    assert!(format!("{e}").contains("gradcheck"), "{e}");
    let tie = Tensor::from_vec(vec![1.0f32, 1.0, 0.0], &[3]).unwrap();
    assert!(gradcheck(&[tie], |v| v[0].max_dims(&[0], false)).is_err());
    // A non-finite gradient (√x at 0) fails rather than passing as NaN comparisons do.
    assert!(gradcheck(&[Tensor::zeros(&[2])], |v| v[0].sqrt()).is_err());
}

#[test]
fn layer_norm_backward_on_many_rows_matches_closed_form() {
    // 150 rows span three parallel tasks of the backward kernel, whose partial dγ, dβ are
    // summed: check them, and dx, against the closed forms in f64 with upstream gradient w.
    let (rows, cols) = (150, 8);
    let x = randn(&[rows, cols], 81);
    let g = uniform(&[cols], 0.5, 1.5, 82);
    let b = randn(&[cols], 83);
    let w = randn(&[rows, cols], 84);
    let (xv, gv, wv) = (
        x.to_vec_f32().unwrap(),
        g.to_vec_f32().unwrap(),
        w.to_vec_f32().unwrap(),
    );
    let (vx, vg, vb) = (Var::param(x), Var::param(g), Var::param(b));
    let y = vx.layer_norm(Some(&vg), Some(&vb), 1e-5).unwrap();
    y.mul(&Var::constant(w))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (dx, dg, db) = (
        vx.grad().unwrap().to_vec_f32().unwrap(),
        vg.grad().unwrap().to_vec_f32().unwrap(),
        vb.grad().unwrap().to_vec_f32().unwrap(),
    );
    let (mut dg_ref, mut db_ref) = (vec![0.0f64; cols], vec![0.0f64; cols]);
    for r in 0..rows {
        let xr: Vec<f64> = xv[r * cols..][..cols].iter().map(|&v| v as f64).collect();
        let mu = xr.iter().sum::<f64>() / cols as f64;
        let var = xr.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / cols as f64;
        let rs = 1.0 / (var + 1e-5).sqrt();
        let xh: Vec<f64> = xr.iter().map(|v| (v - mu) * rs).collect();
        let dy: Vec<f64> = wv[r * cols..][..cols].iter().map(|&v| v as f64).collect();
        let gg: Vec<f64> = (0..cols).map(|c| dy[c] * gv[c] as f64).collect();
        let mean_g = gg.iter().sum::<f64>() / cols as f64;
        let mean_gx = (0..cols).map(|c| gg[c] * xh[c]).sum::<f64>() / cols as f64;
        for c in 0..cols {
            // dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)), g = dy ⊙ γ
            let want = rs * (gg[c] - mean_g - xh[c] * mean_gx);
            let got = dx[r * cols + c] as f64;
            assert!(
                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                "dx[{r}, {c}]"
            );
            dg_ref[c] += dy[c] * xh[c];
            db_ref[c] += dy[c];
        }
    }
    for c in 0..cols {
        assert!(
            (dg[c] as f64 - dg_ref[c]).abs() < 1e-3 * (1.0 + dg_ref[c].abs()),
            "dγ[{c}]"
        );
        assert!(
            (db[c] as f64 - db_ref[c]).abs() < 1e-3 * (1.0 + db_ref[c].abs()),
            "dβ[{c}]"
        );
    }
}

#[test]
fn pointwise_parallel_path_matches_serial() {
    // Tensors of ≥ 2¹⁶ elements take the parallel branch of unary and binary ops; their
    // gradients too. Compare with the element formulas.
    let n = 70_000;
    let x = randn(&[n], 85);
    let y = uniform(&[n], 0.5, 1.5, 86);
    let (xv, yv) = (x.to_vec_f32().unwrap(), y.to_vec_f32().unwrap());
    let (vx, vy) = (Var::param(x), Var::param(y));
    let out = vx.tanh().unwrap().div(&vy).unwrap();
    let ov = out.value().to_vec_f32().unwrap();
    out.sum_all().unwrap().backward().unwrap();
    let (gx, gy) = (
        vx.grad().unwrap().to_vec_f32().unwrap(),
        vy.grad().unwrap().to_vec_f32().unwrap(),
    );
    for i in (0..n).step_by(997).chain([n - 1]) {
        let (a, b) = (xv[i], yv[i]);
        assert!((ov[i] - a.tanh() / b).abs() < 1e-6, "out[{i}]");
        assert!(
            (gx[i] - (1.0 - a.tanh().powi(2)) / b).abs() < 1e-5,
            "dx[{i}]"
        );
        assert!((gy[i] + a.tanh() / (b * b)).abs() < 1e-5, "dy[{i}]");
    }
}

#[test]
fn inputs_used_twice_and_negative_dims() {
    // x·xᵀ: both operands are the same variable, so its gradient sums the two rules.
    check(vec![randn(&[3, 4], 87)], |v| {
        v[0].matmul(&v[0].transpose(0, 1)?)
    });
    // Self-attention with q = k = v the same variable.
    let m = AttentionMasks::default();
    check(vec![randn(&[1, 2, 3, 2], 88)], |v| {
        Var::attention(&v[0], &v[0], &v[0], None, &m)
    });
    // Several negative dims, unsorted, without keepdim; a reduction of a stride-0 view.
    let x = randn(&[2, 3, 4], 89);
    check(vec![x.clone()], |v| v[0].sum_dims(&[-1, -3], false));
    check(vec![x.clone()], |v| v[0].mean_dims(&[-1, 0], false));
    check(vec![x], |v| v[0].mean_dims(&[], false));
    check(vec![randn(&[3, 1], 90)], |v| {
        v[0].broadcast_to(&[2, 3, 4])?.sum_dims(&[0, 2], true)
    });
}
