//! `pretext embed`: the hidden states of a BERT checkpoint as JSON lines, pooled by [CLS],
//! by the mean, or not at all — checked against the library's forward pass.

use std::process::Command;

use pretext::autograd::no_grad;
use pretext::models::Bert;
use pretext::tensor::{DType, Tensor};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/bert_seqcls");

/// The library's last hidden states (1, 5, H) for the ids the CLI is given.
fn hidden(model: &Bert) -> Vec<f32> {
    let ids = Tensor::from_vec(vec![2i64, 17, 33, 5, 9], &[1, 5]).unwrap();
    no_grad(|| model.forward(&ids, None, None, None))
        .unwrap()
        .hidden
        .value()
        .to_vec_f32()
        .unwrap()
}

fn embed(pool: &str) -> serde_json::Value {
    embed_with(pool, "f32")
}

fn embed_with(pool: &str, weights: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "embed",
            "--model",
            DIR,
            "--ids",
            "2 17 33 5 9",
            "--pool",
            pool,
            "--weights",
            weights,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn embed_pools_the_encoder_hidden_states() {
    let model = Bert::from_pretrained(DIR).unwrap();
    let h = hidden(&model);
    let d = model.config.hidden_size;
    let close = |v: &serde_json::Value, want: &[f32]| {
        let got: Vec<f32> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
    };
    close(&embed("cls")["embedding"], &h[..d]);
    let mean: Vec<f32> = (0..d)
        .map(|j| (0..5).map(|t| h[t * d + j]).sum::<f32>() / 5.0)
        .collect();
    close(&embed("mean")["embedding"], &mean);
    let all = embed("none");
    assert_eq!(all["hidden"].as_array().unwrap().len(), 5);
    close(&all["hidden"][4], &h[4 * d..]);
    assert_eq!(all["ids"], serde_json::json!([2, 17, 33, 5, 9]));
}

/// `--weights bf16`: the features of the encoder read with bf16 matrices, equal to the
/// library's on that model (and not to the f32 model's).
#[test]
fn embed_with_bf16_weights_is_the_bf16_model() {
    let model = Bert::from_pretrained_as(DIR, DType::BF16).unwrap();
    let h = hidden(&model);
    let got: Vec<f32> = embed_with("none", "bf16")["hidden"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let d = model.config.hidden_size;
    assert!(got.iter().zip(&h[..d]).all(|(a, b)| (a - b).abs() < 1e-5));
    let f32_row: Vec<f64> = embed("none")["hidden"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(got
        .iter()
        .zip(&f32_row)
        .any(|(&a, &b)| (a as f64 - b).abs() > 1e-4));
}

#[test]
fn embed_without_a_tokenizer_asks_for_ids() {
    let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["embed", "--model", DIR, "--text", "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ids"));
}
