//! The numbers docs/objectives.md states: the gradient of the mean cross-entropy with respect
//! to the logits is (softmax − one-hot)/|P| on the positions P that carry loss and 0 elsewhere
//! (with label smoothing, softmax − q), and a freshly initialised model's loss is ≈ ln V.

use pretext::autograd::Var;
use pretext::models::config::Gpt2Config;
use pretext::models::{Gpt2, Gpt2Head};
use pretext::tensor::{Rng, Tensor};

#[test]
fn cross_entropy_gradient_is_softmax_minus_one_hot_over_the_loss_positions() {
    let mut rng = Rng::new(7);
    let (n, v) = (6, 5);
    let z = Tensor::randn(&[n, v], 0.0, 2.0, &mut rng);
    let targets = Tensor::from_vec(vec![1i64, -100, 4, 0, -100, 2], &[n]).unwrap();
    for eps in [0.0f32, 0.1] {
        let zv = Var::param(z.clone());
        zv.cross_entropy(&targets, -100, eps)
            .unwrap()
            .backward()
            .unwrap();
        let g = zv.grad().unwrap().to_vec_f32().unwrap();
        let p = z.softmax_last().unwrap().to_vec_f32().unwrap();
        let t = targets.to_vec::<i64>().unwrap();
        let count = t.iter().filter(|&&y| y != -100).count() as f32;
        for i in 0..n {
            for c in 0..v {
                let want = if t[i] == -100 {
                    0.0
                } else {
                    let q = if c as i64 == t[i] { 1.0 - eps } else { 0.0 } + eps / v as f32;
                    (p[i * v + c] - q) / count
                };
                assert!(
                    (g[i * v + c] - want).abs() < 1e-6,
                    "eps {eps}, row {i}, class {c}"
                );
            }
        }
    }
}

#[test]
fn a_fresh_model_starts_at_ln_v() {
    for vocab in [65usize, 1000] {
        let mut c = Gpt2Config::shakespeare_char_cpu();
        c.vocab_size = vocab;
        let mut rng = Rng::new(1);
        let model = Gpt2::new(c, Gpt2Head::Lm, &mut rng).unwrap();
        let ids: Vec<i64> = (0..4 * 64)
            .map(|_| rng.below(vocab as u64) as i64)
            .collect();
        let ids = Tensor::from_vec(ids, &[4, 64]).unwrap();
        let (_, loss) = model.lm_loss(&ids, None, &ids, None).unwrap();
        let l = loss.value().scalar().unwrap() as f64;
        let ln_v = (vocab as f64).ln();
        assert!(
            (l - ln_v).abs() < 0.05,
            "V = {vocab}: initial loss {l} vs ln V = {ln_v}"
        );
    }
}
