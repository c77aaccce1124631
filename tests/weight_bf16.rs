//! Weight-only bf16 inference: matrices stored in bf16, activations and sums in f32. The
//! contract is that a model whose matrices are bf16 computes what the f32 model computes
//! with those matrices rounded to bf16 (`cast_matrices(BF16)` then `(F32)`), up to the
//! order of f32 sums. Checked on the tensor ops (matmul with a bf16 right operand, embedding
//! lookup from a bf16 table, the input gradient through them) and on every family's Hugging
//! Face fixture: logits, and greedy decoding with the KV cache.

mod common;

use common::fixture;
use pretext::autograd::{no_grad, Var};
use pretext::generate::{generate, SamplingConfig};
use pretext::models::Model;
use pretext::tensor::{DType, Rng, Tensor};

/// |got − want| ≤ tol·(1 + |want|) everywhere.
fn assert_near(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w} (|diff| {})",
            (g - w).abs()
        );
    }
}

fn rounded(t: &Tensor) -> Tensor {
    t.to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

#[test]
fn matmul_with_bf16_right_operand_is_the_f32_product_of_the_widened_values() {
    let mut rng = Rng::new(7);
    // (2, 3, 40) · (40, 70) broadcast over the batch; Wᵀ views of (70, 40) weights; the decode
    // shape (1, 40) against Wᵀ; and rows past the gemv path (20 rows).
    let w = Tensor::randn(&[70, 40], 0.0, 1.0, &mut rng);
    let w16 = w.to_dtype(DType::BF16).unwrap();
    let wr = rounded(&w);
    for x_shape in [&[2usize, 3, 40][..], &[1, 40], &[20, 40]] {
        let x = Tensor::randn(x_shape, 0.0, 1.0, &mut rng);
        let got = x.matmul(&w16.transpose(0, 1).unwrap()).unwrap();
        let want = x.matmul(&wr.transpose(0, 1).unwrap()).unwrap();
        assert_eq!(got.shape(), want.shape());
        assert_eq!(got.dtype(), DType::F32);
        assert_near(
            &format!("x{x_shape:?}·Wᵀ"),
            &got.to_vec_f32().unwrap(),
            &want.to_vec_f32().unwrap(),
            1e-5,
        );
        // Row-major (k, n) weights (x·W with W (70, 40)).
        let rows = x_shape[x_shape.len() - 2];
        let xt = Tensor::randn(&[rows, 70], 0.0, 1.0, &mut rng);
        let (got, want) = (xt.matmul(&w16).unwrap(), xt.matmul(&wr).unwrap());
        let (got, want) = (got.to_vec_f32().unwrap(), want.to_vec_f32().unwrap());
        if rows > 8 {
            // Both on the packed path: the same panels and kernel, bit for bit.
            assert_eq!(got, want);
        }
        assert_near("x·W", &got, &want, 1e-5);
    }
    // bf16 on the left is not a weight-only product: refused, naming the op and the dtypes.
    let x = Tensor::randn(&[3, 40], 0.0, 1.0, &mut rng);
    let e = w16
        .matmul(&x.transpose(0, 1).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("matmul") && e.contains("bf16"), "{e}");
}

#[test]
fn embedding_from_a_bf16_table_gives_the_widened_rows() {
    let mut rng = Rng::new(8);
    let table = Tensor::randn(&[50, 12], 0.0, 1.0, &mut rng);
    let t16 = table.to_dtype(DType::BF16).unwrap();
    let ids = Tensor::from_vec(vec![3i64, 0, 49, 3, 17, 8], &[2, 3]).unwrap();
    let got = t16.embedding(&ids).unwrap();
    assert_eq!(got.shape(), &[2, 3, 12]);
    assert_eq!(got.dtype(), DType::F32);
    assert_eq!(
        got.to_vec_f32().unwrap(),
        rounded(&table)
            .embedding(&ids)
            .unwrap()
            .to_vec_f32()
            .unwrap()
    );
    let bad = Tensor::from_vec(vec![50i64], &[1]).unwrap();
    let e = t16.embedding(&bad).unwrap_err().to_string();
    assert!(e.contains("embedding") && e.contains("50"), "{e}");
}

#[test]
fn input_gradient_through_bf16_weights() {
    // y = sum(tanh(x·Wᵀ)) on (5, 24)·(24, 33): ∂y/∂x with bf16 W equals that with rounded W.
    let mut rng = Rng::new(9);
    let w = Tensor::randn(&[33, 24], 0.0, 0.3, &mut rng);
    let x = Tensor::randn(&[5, 24], 0.0, 1.0, &mut rng);
    let grad = |w: Tensor| {
        let xv = Var::param(x.clone());
        let wv = Var::constant(w);
        let y = xv
            .matmul(&wv.transpose(0, 1).unwrap())
            .unwrap()
            .tanh()
            .unwrap()
            .sum_all()
            .unwrap();
        y.backward().unwrap();
        xv.grad().unwrap().to_vec_f32().unwrap()
    };
    let got = grad(w.to_dtype(DType::BF16).unwrap());
    let want = grad(rounded(&w));
    assert_near("∂y/∂x", &got, &want, 1e-5);
}

/// The fixture model twice: matrices in bf16, and matrices rounded to bf16 but held in f32.
fn bf16_and_rounded(case: &str) -> (Model, Model) {
    let dir = fixture(case).dir;
    let bf = Model::load(&dir).unwrap();
    let n = bf.cast_matrices(DType::BF16).unwrap();
    assert!(n > 0, "{case}: no matrix cast");
    for (name, v) in bf.store().iter() {
        let t = v.value();
        let want = if t.rank() == 2 && name.ends_with("weight") {
            DType::BF16
        } else {
            DType::F32
        };
        assert_eq!(t.dtype(), want, "{case}: {name} {:?}", t.shape());
    }
    // Read as bf16 straight from the file: the same bits as casting after an f32 load (GPT-2's
    // Conv1D weights transposed on the way).
    let direct = Model::load_as(&dir, DType::BF16).unwrap();
    for ((name, a), (name_b, b)) in bf.store().iter().zip(direct.store().iter()) {
        assert_eq!(name, name_b);
        let (a, b) = (a.value(), b.value());
        assert_eq!(
            (a.dtype(), a.shape()),
            (b.dtype(), b.shape()),
            "{case}: {name}"
        );
        assert_eq!(
            a.to_vec_f32().unwrap(),
            b.to_vec_f32().unwrap(),
            "{case}: {name} read as bf16"
        );
    }
    let rounded = Model::load(&dir).unwrap();
    assert_eq!(rounded.cast_matrices(DType::BF16).unwrap(), n);
    assert_eq!(rounded.cast_matrices(DType::F32).unwrap(), n);
    (bf, rounded)
}

fn logits(model: &Model, case: &str) -> Vec<f32> {
    let fx = fixture(case);
    let ids = fx.ids("input_ids");
    let mask = fx.ids("attention_mask");
    no_grad(|| {
        let v = match model {
            Model::Gpt2(g) => g.lm_logits(&g.forward(&ids, Some(&mask), None, None)?.hidden)?,
            Model::Bert(b) => {
                let tt = fx.ids("token_type_ids");
                b.mlm_logits(&b.forward(&ids, Some(&tt), Some(&mask), None)?.hidden)?
            }
            Model::Bart(b) => {
                b.forward(&ids, Some(&mask), &fx.ids("decoder_input_ids"), None)?
                    .logits
            }
            Model::T5(t) => {
                t.forward(&ids, Some(&mask), &fx.ids("decoder_input_ids"), None, None)?
                    .logits
            }
        };
        let out = v.value().to_vec_f32();
        out
    })
    .unwrap()
}

#[test]
fn every_family_with_bf16_matrices_computes_the_rounded_f32_model() {
    for case in [
        "gpt2_lm",
        "bert_pretraining",
        "bart",
        "t5_v11",
        "t5_original",
    ] {
        let (bf, rounded) = bf16_and_rounded(case);
        let (got, want) = (logits(&bf, case), logits(&rounded, case));
        assert_near(&format!("{case} logits"), &got, &want, 1e-5);
        // And not the f32 model's: the rounding is real.
        let f32_model = Model::load(&fixture(case).dir).unwrap();
        let orig = logits(&f32_model, case);
        let moved = orig.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert!(moved > got.len() / 2, "{case}: only {moved} logits moved");
    }
}

#[test]
fn greedy_decoding_with_bf16_matrices_follows_the_rounded_f32_model() {
    let greedy = SamplingConfig {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };
    for case in ["gpt2_lm", "bart", "t5_v11"] {
        let (bf, rounded) = bf16_and_rounded(case);
        let prompt = [5u32, 9, 2, 14];
        let run = |m: &Model| {
            let mut steps = Vec::new();
            let out = generate(m, &prompt, 20, &greedy, None, 1, |t| {
                steps.push(t);
                Ok(())
            })
            .unwrap();
            assert_eq!(out.tokens, steps);
            out.tokens
        };
        let (got, want) = (run(&bf), run(&rounded));
        assert_eq!(got.len(), 20, "{case}");
        assert_eq!(got, want, "{case}: greedy tokens");
    }
}

#[test]
fn cast_matrices_refuses_other_dtypes_and_optimizer_steps() {
    let dir = fixture("gpt2_lm").dir;
    let e = Model::load_as(&dir, DType::F16).err().unwrap().to_string();
    assert!(e.contains("f16"), "{e}");
    let model = Model::load(&dir).unwrap();
    let e = model.cast_matrices(DType::F16).unwrap_err().to_string();
    assert!(e.contains("f16"), "{e}");
    model.cast_matrices(DType::BF16).unwrap();
    let (name, w) = model
        .store()
        .iter()
        .find(|(_, v)| v.value().dtype() == DType::BF16)
        .unwrap();
    // An f32 update of a bf16 value is an error, not a silent reinterpretation.
    let e = w
        .update_value(|t| t.f32s_mut().map(|_| ()))
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("bf16"), "{name}: {e}");
}
