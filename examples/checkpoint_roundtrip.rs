//! Export a model that pretext trained, for `tools/hf_roundtrip.py` to check in transformers.
//!
//! `cargo run --release --example checkpoint_roundtrip -- CASE_DIR OUT_DIR [STEPS]`
//!
//! Loads the Hugging Face fixture CASE_DIR (config.json, model.safetensors, inputs.json) into
//! pretext's model of that family, trains it STEPS (default 3) AdamW steps on the case's
//! batch so the weights are pretext's own, saves it with `save_pretrained` to OUT_DIR, and
//! writes OUT_DIR/pretext_logits.safetensors (`logits`: pretext's logits for the inputs, the
//! MLM logits for BERT). `tools/hf_roundtrip.py OUT_DIR CASE_DIR/inputs.json` then loads
//! OUT_DIR in transformers and compares its logits with pretext's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pretext::autograd::{no_grad, Var};
use pretext::models::checkpoint::{self, RawTensor};
use pretext::models::Model;
use pretext::optim::{AdamW, AdamWConfig};
use pretext::tensor::Tensor;
use pretext::{Error, Result};

fn ids(v: &serde_json::Value) -> Result<Tensor> {
    let rows = v
        .as_array()
        .ok_or_else(|| Error::msg("inputs: expected a 2-D array"))?;
    let mut data = Vec::new();
    for r in rows {
        for x in r
            .as_array()
            .ok_or_else(|| Error::msg("inputs: expected a 2-D array"))?
        {
            data.push(
                x.as_i64()
                    .ok_or_else(|| Error::msg("inputs: not an integer"))?,
            );
        }
    }
    let cols = data.len() / rows.len().max(1);
    Tensor::from_vec(data, &[rows.len(), cols])
}

/// (logits, loss) of the case's batch.
fn forward(model: &Model, inp: &serde_json::Value) -> Result<(Var, Var)> {
    let get = |k: &str| -> Result<Tensor> { ids(&inp[k]) };
    let (x, mask, labels) = (get("input_ids")?, get("attention_mask")?, get("labels")?);
    Ok(match model {
        Model::Gpt2(m) => m.lm_loss(&x, Some(&mask), &labels, None)?,
        Model::Bert(m) => {
            let tt = get("token_type_ids")?;
            let out = m.forward(&x, Some(&tt), Some(&mask), None)?;
            let logits = m.mlm_logits(&out.hidden)?;
            let loss = logits.cross_entropy(&labels, -100, 0.0)?;
            (logits, loss)
        }
        Model::T5(m) => {
            let (out, loss) = m.loss(&x, Some(&mask), &labels, None)?;
            (out.logits, loss)
        }
        Model::Bart(m) => {
            let (out, loss) = m.loss(&x, Some(&mask), &labels, None)?;
            (out.logits, loss)
        }
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.len() > 4 {
        return Err(Error::msg(
            "usage: checkpoint_roundtrip CASE_DIR OUT_DIR [STEPS]",
        ));
    }
    let (case, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let steps: usize = args
        .get(3)
        .map_or(Ok(3), |s| s.parse())
        .map_err(|_| Error::msg("STEPS must be a number"))?;
    let inp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(case.join("inputs.json"))
            .map_err(|e| Error::io(case.join("inputs.json"), e))?,
    )
    .map_err(|e| Error::msg(e.to_string()))?;
    let model = Model::load(&case)?;
    let mut opt = AdamW::new(AdamWConfig::default(), model.store());
    for step in 0..steps {
        model.store().zero_grad();
        let (_, loss) = forward(&model, &inp)?;
        println!("step {step}: loss {:.6}", loss.value().scalar()?);
        loss.backward()?;
        opt.step(model.store(), 1e-2)?;
    }
    model.save(&out)?;
    let (logits, _) = no_grad(|| forward(&model, &inp))?;
    let v = logits.value().clone();
    let mut t = BTreeMap::new();
    t.insert(
        "logits".to_string(),
        RawTensor::new(v.shape().to_vec(), v.to_vec_f32()?)?,
    );
    checkpoint::save(out.join("pretext_logits.safetensors"), &t, &[])?;
    println!("saved {} and pretext_logits.safetensors", out.display());
    Ok(())
}
