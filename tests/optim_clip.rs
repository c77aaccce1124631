//! Global-norm gradient clipping (`optim::clip_grad_norm`, `optim::grad_norm`) against an f64
//! reference: the norm over every gradient present (strided ones read through their strides),
//! the exact scaling by coef = max_norm / (total + 1e-6), no change below the limit, and that
//! scaling in place never reaches a tensor that shares the gradient's buffer.

use pretext::autograd::ParamStore;
use pretext::optim::{clip_grad_norm, grad_norm};
use pretext::tensor::{Rng, Tensor};

/// A store with three parameters: `a` (4×3) with a dense gradient, `b` (3×5) whose gradient is
/// a transposed view, and `c` without a gradient.
fn store() -> ParamStore {
    let mut rng = Rng::new(5);
    let mut s = ParamStore::new();
    let a = s
        .add("a", Tensor::randn(&[4, 3], 0.0, 1.0, &mut rng))
        .unwrap();
    let b = s
        .add("b", Tensor::randn(&[3, 5], 0.0, 1.0, &mut rng))
        .unwrap();
    s.add("c", Tensor::randn(&[7], 0.0, 1.0, &mut rng)).unwrap();
    a.set_grad(Some(
        Tensor::randn(&[4, 3], 0.0, 1.0, &mut rng)
            .mul_scalar(3.0)
            .unwrap(),
    ));
    let bt = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng)
        .transpose(0, 1)
        .unwrap();
    assert!(!bt.is_contiguous());
    b.set_grad(Some(bt));
    s
}

fn grads(s: &ParamStore) -> Vec<Option<Vec<f32>>> {
    s.iter()
        .map(|(_, p)| p.grad().map(|g| g.to_vec_f32().unwrap()))
        .collect()
}

fn reference_norm(s: &ParamStore) -> f64 {
    grads(s)
        .iter()
        .flatten()
        .flatten()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn the_norm_covers_every_gradient_present() {
    let s = store();
    let want = reference_norm(&s);
    let got = grad_norm(&s).unwrap();
    assert_eq!(got, want as f32);
    assert_eq!(grad_norm(&ParamStore::new()).unwrap(), 0.0);
}

#[test]
fn clipping_multiplies_every_gradient_by_the_coefficient() {
    let s = store();
    let before = grads(&s);
    // A tensor sharing `a`'s gradient buffer must keep its values.
    let held = s.iter().next().unwrap().1.grad().unwrap();
    let held_before = held.to_vec_f32().unwrap();
    let total = reference_norm(&s) as f32;
    let max_norm = total / 4.0;
    assert_eq!(clip_grad_norm(&s, max_norm).unwrap(), total);
    let coef = max_norm / (total + 1e-6);
    for ((name, p), b) in s.iter().zip(before.clone()) {
        match (p.grad(), b) {
            (Some(g), Some(b)) => {
                assert!(g.is_contiguous(), "{name}");
                let want: Vec<u32> = b.iter().map(|x| (x * coef).to_bits()).collect();
                let got: Vec<u32> = g
                    .to_vec_f32()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                assert_eq!(got, want, "{name}");
            }
            (None, None) => {}
            _ => panic!("{name}: a gradient appeared or vanished"),
        }
    }
    assert_eq!(held.to_vec_f32().unwrap(), held_before);
    assert_eq!(before[0].as_ref(), Some(&held_before));
}

#[test]
fn below_the_limit_nothing_changes() {
    let s = store();
    let held: Vec<Tensor> = s.iter().filter_map(|(_, p)| p.grad()).collect();
    let total = grad_norm(&s).unwrap();
    assert_eq!(clip_grad_norm(&s, total * 2.0).unwrap(), total);
    let now: Vec<Tensor> = s.iter().filter_map(|(_, p)| p.grad()).collect();
    assert_eq!(now.len(), 2);
    for (a, b) in held.iter().zip(&now) {
        assert!(a.shares_storage_with(b) && a.strides() == b.strides());
    }
}
