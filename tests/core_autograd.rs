//! Behaviour of the autograd engine: accumulation, zero_grad, no_grad, detach, freed graphs,
//! diamonds, that no gradient is computed off the path to the parameters (BackwardStats),
//! the parameter store, and a two-layer MLP trained with plain SGD on a non-linear task.

use pretext::autograd::{is_grad_enabled, no_grad, BackwardStats, NoGradGuard, ParamStore, Var};
use pretext::tensor::{Rng, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn grad(v: &Var) -> Vec<f32> {
    v.grad().expect("a gradient").to_vec_f32().unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn gradients_accumulate_until_zero_grad() {
    let x = Var::param(t(&[1.0, -2.0, 3.0], &[3]));
    let c = Var::constant(t(&[0.5, 4.0, -1.0], &[3]));
    let step = || x.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
    step();
    assert_eq!(grad(&x), vec![0.5, 4.0, -1.0]);
    step(); // a second graph over the same leaf adds to its gradient
    assert_eq!(grad(&x), vec![1.0, 8.0, -2.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    step();
    assert_eq!(grad(&x), vec![0.5, 4.0, -1.0]);
    // set_grad replaces it (clipping, optimizers).
    x.set_grad(Some(Tensor::zeros(&[3])));
    step();
    assert_eq!(grad(&x), vec![0.5, 4.0, -1.0]);
    assert!(c.grad().is_none(), "a constant never gets a gradient");
}

#[test]
fn no_grad_records_nothing() {
    let p = Var::param(t(&[1.0, 2.0], &[2]));
    assert!(is_grad_enabled());
    let y = no_grad(|| p.mul(&p).unwrap().exp().unwrap());
    assert!(!y.requires_grad() && y.is_leaf() && !y.has_grad_fn());
    assert_eq!(
        y.value().to_vec_f32().unwrap(),
        vec![1f32.exp(), 4f32.exp()]
    );
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "nothing to differentiate"
    );
    assert!(is_grad_enabled(), "the previous state is restored");
    {
        let _g = NoGradGuard::new();
        assert!(!is_grad_enabled());
        let inner = no_grad(|| p.add(&p).unwrap());
        assert!(!inner.requires_grad());
        assert!(
            !is_grad_enabled(),
            "a nested scope restores the outer (disabled) state"
        );
        assert!(!p.tanh().unwrap().requires_grad());
    }
    assert!(is_grad_enabled());
    let z = p.mul(&p).unwrap();
    assert!(z.requires_grad() && !z.is_leaf() && z.has_grad_fn());
}

#[test]
fn detach_cuts_the_graph() {
    let x = Var::param(t(&[1.0, 2.0, 3.0], &[3]));
    let p = Var::param(t(&[1.0, 1.0, 2.0], &[3]));
    let y = x.mul(&x).unwrap();
    let d = y.detach();
    assert!(!d.requires_grad() && d.is_leaf());
    assert_eq!(d.value().to_vec_f32().unwrap(), vec![1.0, 4.0, 9.0]);
    // L = Σ d ⊙ p + Σ y: p gets d; x gets only the gradient of the undetached Σ y.
    d.mul(&p)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&y.sum_all().unwrap())
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(grad(&p), vec![1.0, 4.0, 9.0]);
    assert_eq!(grad(&x), vec![2.0, 4.0, 6.0]);
}

#[test]
fn second_backward_through_a_freed_graph_is_an_error() {
    let x = Var::param(t(&[1.0, 2.0], &[2]));
    let h = x.exp().unwrap();
    let loss = h.sum_all().unwrap();
    loss.backward().unwrap();
    assert!(
        !loss.has_grad_fn() && !h.has_grad_fn(),
        "saved state is freed"
    );
    let e = loss.backward().unwrap_err();
    assert!(format!("{e}").contains("freed"), "{e}");
    // A new loss through the freed intermediate fails the same way.
    let e = h
        .mul_scalar(2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap_err();
    assert!(format!("{e}").contains("freed"), "{e}");
    // The leaf's gradient from the first backward is intact.
    assert!(close(&grad(&x), &[1f32.exp(), 2f32.exp()], 1e-6));
}

#[test]
fn backward_needs_a_scalar_that_requires_grad() {
    let x = Var::param(t(&[1.0, 2.0], &[2]));
    let e = x.mul_scalar(2.0).unwrap().backward().unwrap_err();
    assert!(
        format!("{e}").contains("scalar") && format!("{e}").contains("[2]"),
        "{e}"
    );
    let c = Var::constant(t(&[1.0], &[]));
    assert!(c.backward().is_err());
    // A one-element parameter is its own root: ∂x/∂x = 1.
    let s = Var::param(t(&[3.0], &[1]));
    let stats = s.backward().unwrap();
    assert_eq!(grad(&s), vec![1.0]);
    assert_eq!(
        stats,
        BackwardStats {
            nodes: 1,
            grads_computed: 0
        }
    );
}

#[test]
fn diamond_graph_sums_both_paths() {
    // h = eˣ used twice: L = Σ (h ⊙ h + h) ⇒ ∂L/∂x = (2h + 1)·h.
    let xv = [0.5f32, -1.0, 2.0];
    let x = Var::param(t(&xv, &[3]));
    let h = x.exp().unwrap();
    let loss = h.mul(&h).unwrap().add(&h).unwrap().sum_all().unwrap();
    let stats = loss.backward().unwrap();
    let want: Vec<f32> = xv.iter().map(|v| (2.0 * v.exp() + 1.0) * v.exp()).collect();
    assert!(close(&grad(&x), &want, 1e-6));
    // Edges: sum→add, add→mul, add→h, mul→h (×2, one per operand), h→x.
    assert_eq!(
        stats,
        BackwardStats {
            nodes: 5,
            grads_computed: 6
        }
    );
    // x used directly twice in one op and again in another: y = x·x + x ⇒ 2x + 1.
    let x = Var::param(t(&xv, &[3]));
    x.mul(&x)
        .unwrap()
        .add(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want: Vec<f32> = xv.iter().map(|v| 2.0 * v + 1.0).collect();
    assert!(close(&grad(&x), &want, 1e-6));
}

#[test]
fn no_gradient_off_the_path_to_the_parameters() {
    let mut rng = Rng::new(3);
    let w = Var::param(Tensor::randn(&[4, 3], 0.0, 1.0, &mut rng));
    let unused = Var::param(Tensor::randn(&[3], 0.0, 1.0, &mut rng));
    let x = Var::constant(Tensor::randn(&[5, 4], 0.0, 1.0, &mut rng));
    // A big branch that depends only on constants: never recorded, never differentiated.
    let c = Var::constant(Tensor::randn(&[64, 64], 0.0, 0.1, &mut rng));
    let mut big = c.clone();
    for _ in 0..5 {
        big = big.matmul(&c).unwrap().tanh().unwrap();
    }
    let big = big.sum_all().unwrap();
    assert!(!big.requires_grad() && !big.has_grad_fn());
    // The unused parameter feeds a branch that the loss never reads.
    let dead = unused.mul_scalar(2.0).unwrap().sum_all().unwrap();
    assert!(dead.requires_grad());
    // loss = Σ relu(x·w) + big: on-path edges are add→sum, sum→relu, relu→matmul, matmul→w
    // (matmul→x is not computed: x is a constant).
    let h = x.matmul(&w).unwrap().relu().unwrap();
    let loss = h.sum_all().unwrap().add(&big).unwrap();
    let stats = loss.backward().unwrap();
    assert_eq!(
        stats,
        BackwardStats {
            nodes: 5,
            grads_computed: 4
        }
    );
    assert!(w.grad().is_some());
    assert!(
        unused.grad().is_none(),
        "a parameter that does not influence the loss gets no gradient"
    );
    assert!(
        x.grad().is_none() && c.grad().is_none(),
        "constants get none"
    );
    assert!(h.grad().is_none(), "intermediates keep no gradient buffer");
    assert!(dead.has_grad_fn(), "the dead branch was not visited");
    // Σ relu(x·w) w.r.t. w = xᵀ·[x·w > 0].
    let wv = w.value().clone();
    let mask = x.value().matmul(&wv).unwrap().relu().unwrap();
    let mask = mask
        .to_vec_f32()
        .unwrap()
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let want = x
        .value()
        .transpose(0, 1)
        .unwrap()
        .matmul(&Tensor::from_vec(mask, &[5, 3]).unwrap())
        .unwrap();
    assert!(close(&grad(&w), &want.to_vec_f32().unwrap(), 1e-5));
}

#[test]
fn gradients_only_for_inputs_that_need_them() {
    // A two-input op with one constant operand computes one input gradient, not two.
    let p = Var::param(t(&[1.0, 2.0], &[2]));
    let c = Var::constant(t(&[3.0, 4.0], &[2]));
    let stats = c.div(&p).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(
        stats,
        BackwardStats {
            nodes: 3,
            grads_computed: 2
        }
    );
    assert!(close(&grad(&p), &[-3.0, -1.0], 1e-6)); // ∂(c/p)/∂p = −c/p²
                                                    // Attention with constant k, v and a parameter bias: only dq and dbias are produced.
    let mut rng = Rng::new(4);
    let q = Var::param(Tensor::randn(&[1, 1, 2, 2], 0.0, 1.0, &mut rng));
    let kv = Var::constant(Tensor::randn(&[1, 1, 2, 2], 0.0, 1.0, &mut rng));
    let b = Var::param(Tensor::zeros(&[1, 1, 2, 2]));
    let y = Var::attention(&q, &kv, &kv, Some(&b), &Default::default()).unwrap();
    let stats = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(stats.grads_computed, 3);
    assert!(q.grad().is_some() && b.grad().is_some() && kv.grad().is_none());
}

#[test]
fn param_store_registers_and_clears() {
    let mut store = ParamStore::new();
    let a = store.add("layer.0.weight", Tensor::ones(&[2, 3])).unwrap();
    store.add("layer.0.bias", Tensor::zeros(&[3])).unwrap();
    assert!(
        store.add("layer.0.bias", Tensor::zeros(&[3])).is_err(),
        "duplicate name"
    );
    // A tied weight: the same Var under a second name.
    store.insert("lm_head.weight", a.clone()).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.num_elements(), 6 + 3 + 6);
    let names: Vec<&str> = store.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["layer.0.weight", "layer.0.bias", "lm_head.weight"]);
    assert!(store
        .require("nope")
        .unwrap_err()
        .to_string()
        .contains("nope"));
    let w = store.require("lm_head.weight").unwrap();
    assert_eq!(w.id(), a.id());
    a.sum_all().unwrap().backward().unwrap();
    assert!(store.get("layer.0.weight").unwrap().grad().is_some());
    store.zero_grad();
    assert!(store.vars().iter().all(|v| v.grad().is_none()));
}

#[test]
fn update_value_is_copy_on_write_and_guarded() {
    let p = Var::param(t(&[1.0, 2.0, 3.0], &[3]));
    let snapshot = p.value().clone(); // shares p's storage
    p.update_value(|v| -> pretext::Result<()> {
        v.f32s_mut()?.iter_mut().for_each(|w| *w *= 10.0);
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(p.value().to_vec_f32().unwrap(), vec![10.0, 20.0, 30.0]);
    assert_eq!(
        snapshot.to_vec_f32().unwrap(),
        vec![1.0, 2.0, 3.0],
        "copy on write"
    );
    // A graph recorded before an update would read the new value in its backward: error.
    let c = Var::constant(t(&[1.0, 1.0, 1.0], &[3]));
    let loss = p.mul(&p).unwrap().mul(&c).unwrap().sum_all().unwrap();
    p.update_value(|v| *v = Tensor::zeros(&[3])).unwrap();
    let e = loss.backward().unwrap_err();
    assert!(
        format!("{e}").contains("update_value") && format!("{e}").contains("mul"),
        "{e}"
    );
    // Forward, backward, then update (the training loop order) is fine.
    let loss = p
        .add_scalar(1.0)
        .unwrap()
        .mul(&p)
        .unwrap()
        .sum_all()
        .unwrap();
    loss.backward().unwrap();
    p.update_value(|v| *v = Tensor::ones(&[3])).unwrap();
    assert_eq!(grad(&p), vec![1.0, 1.0, 1.0]); // ∂Σ(p+1)p/∂p = 2p + 1 at p = 0
                                               // Only leaves can be updated.
    let e = p.exp().unwrap().update_value(|_| ()).unwrap_err();
    assert!(format!("{e}").contains("non-leaf"), "{e}");
}

#[test]
fn embedding_padding_row_gets_no_gradient() {
    let w = Var::param(Tensor::randn(&[4, 2], 0.0, 1.0, &mut Rng::new(6)));
    let ids = Tensor::from_vec(vec![0i64, 2, 0, 3], &[2, 2]).unwrap();
    let y = w.embedding_padded(&ids, Some(0)).unwrap();
    // The forward still looks the padding row up.
    let wv = w.value().to_vec_f32().unwrap();
    assert_eq!(y.value().to_vec_f32().unwrap()[..2], wv[..2]);
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&w), vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    // Without padding_idx the repeated id 0 accumulates two rows.
    let w2 = Var::param(w.value().clone());
    w2.embedding(&ids)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(grad(&w2), vec![2.0, 2.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
}

// ---------------------------------------------------------------- MLP trained with SGD

/// XOR-like blobs: 4 Gaussian clusters at (±1, ±1) with s.d. 0.25; class 1 when the two
/// coordinates have the same sign. No linear classifier separates them (its best loss is
/// ln 2 ≈ 0.693 with balanced classes).
fn xor_blobs(n: usize, rng: &mut Rng) -> (Tensor, Tensor) {
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let (sx, sy) = (
            if i % 2 == 0 { 1.0 } else { -1.0 },
            if (i / 2) % 2 == 0 { 1.0 } else { -1.0 },
        );
        xs.push(sx + 0.25 * rng.normal() as f32);
        xs.push(sy + 0.25 * rng.normal() as f32);
        ys.push(if sx * sy > 0.0 { 1i64 } else { 0 });
    }
    (
        Tensor::from_vec(xs, &[n, 2]).unwrap(),
        Tensor::from_vec(ys, &[n]).unwrap(),
    )
}

/// Train x·W1 + b1 → act → ·W2 + b2 → cross-entropy with plain SGD; returns (first loss,
/// last loss, training accuracy).
fn train_mlp(gelu: bool, seed: u64) -> (f32, f32, f32) {
    let mut rng = Rng::new(seed);
    let (x, y) = xor_blobs(200, &mut rng);
    let x = Var::constant(x);
    let hidden = 16;
    let mut params = [
        Tensor::randn(&[2, hidden], 0.0, 0.7, &mut rng),
        Tensor::zeros(&[hidden]),
        Tensor::randn(&[hidden, 2], 0.0, 0.25, &mut rng),
        Tensor::zeros(&[2]),
    ];
    let lr = 0.5;
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    let forward = |p: &[Var]| -> pretext::Result<Var> {
        let h = x.matmul(&p[0])?.add(&p[1])?;
        let h = if gelu { h.gelu()? } else { h.relu()? };
        h.matmul(&p[2])?.add(&p[3])
    };
    for step in 0..300 {
        let vars: Vec<Var> = params.iter().map(|t| Var::param(t.clone())).collect();
        let loss = forward(&vars)
            .unwrap()
            .cross_entropy(&y, -100, 0.0)
            .unwrap();
        let l = loss.value().scalar().unwrap();
        if step == 0 {
            first = l;
        }
        last = l;
        loss.backward().unwrap();
        // θ ← θ − η·∂L/∂θ
        for (p, v) in params.iter_mut().zip(&vars) {
            *p = p.sub(&v.grad().unwrap().mul_scalar(lr).unwrap()).unwrap();
        }
    }
    let vars: Vec<Var> = params.iter().map(|t| Var::constant(t.clone())).collect();
    let logits = forward(&vars).unwrap().value().to_vec_f32().unwrap();
    let labels = y.to_vec::<i64>().unwrap();
    let correct = logits
        .chunks(2)
        .zip(&labels)
        .filter(|(l, &t)| (l[1] > l[0]) == (t == 1))
        .count();
    (first, last, correct as f32 / labels.len() as f32)
}

#[test]
fn two_layer_mlp_learns_xor_blobs_with_sgd() {
    for gelu in [false, true] {
        let (first, last, acc) = train_mlp(gelu, 11);
        eprintln!("MLP (gelu {gelu}): loss {first:.4} → {last:.4}, accuracy {acc:.3}");
        // Untrained (and any linear) model: ≈ ln 2 = 0.693. Trained: far below.
        assert!(first > 0.5, "gelu {gelu}: initial loss {first}");
        assert!(
            last < 0.1,
            "gelu {gelu}: final loss {last} (initial {first})"
        );
        assert!(last < first / 5.0, "gelu {gelu}: {first} → {last}");
        assert!(acc >= 0.97, "gelu {gelu}: accuracy {acc}");
    }
}

/// torch's mm_mat{1,2}_backward rule: an operand stored column-major (a transposed view, as
/// Linear's Wᵀ) gets its gradient in its own memory order, so the parameter behind the view
/// receives a contiguous gradient. Values against the plain products dA = g·Bᵀ, dB = Aᵀ·g.
#[test]
fn matmul_gradients_follow_their_operands_memory_order() {
    let mut rng = Rng::new(3);
    let (m, k, n) = (5, 4, 3);
    let a = Var::param(Tensor::randn(&[m, k], 0.0, 1.0, &mut rng));
    let w = Var::param(Tensor::randn(&[n, k], 0.0, 1.0, &mut rng)); // B = Wᵀ (k, n)
    let at = Var::param(Tensor::randn(&[k, m], 0.0, 1.0, &mut rng)); // A' = atᵀ (m, k)
    let g = Tensor::randn(&[m, n], 0.0, 1.0, &mut rng);
    let wt = || w.transpose(0, 1).unwrap();
    let loss = |y: Var| {
        y.mul(&Var::constant(g.clone()))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    };
    loss(a.matmul(&wt()).unwrap());
    loss(at.transpose(0, 1).unwrap().matmul(&wt()).unwrap());
    let (av, wv, atv) = (a.value().clone(), w.value().clone(), at.value().clone());
    // dA = g·W (m, k); dW = (Aᵀ·g)ᵀ = gᵀ·A summed over both products; d(at) = (g·W)ᵀ.
    let da = g.matmul(&wv).unwrap();
    let dw = g
        .transpose(0, 1)
        .unwrap()
        .matmul(&av.add(&atv.transpose(0, 1).unwrap()).unwrap())
        .unwrap();
    for (name, v, want) in [
        ("a", &a, da.clone()),
        ("w", &w, dw),
        ("at", &at, da.transpose(0, 1).unwrap()),
    ] {
        let got = v.grad().unwrap();
        assert!(
            got.is_contiguous(),
            "{name}: gradient strides {:?}",
            got.strides()
        );
        assert_eq!(got.shape(), want.shape(), "{name}");
        assert!(
            close(
                &got.to_vec_f32().unwrap(),
                &want.to_vec_f32().unwrap(),
                1e-5
            ),
            "{name}"
        );
    }
}
