//! T5 parity with Hugging Face transformers (fixtures from tools/hf_fixtures.py), for the original
//! T5 (relu, tied lm_head, output scaled by d_model^-0.5) and v1.1 (gated-gelu, untied, unscaled):
//! logits, hidden states, loss, every parameter gradient; greedy generation with the KV cache;
//! the cache against full recomputation; save/load round trip; checkpoint errors.

mod common;

use common::{assert_close, assert_grads, fixture, Fixture};
use pretext::models::checkpoint::{self, RawTensor};
use pretext::models::{shift_tokens_right, T5};
use pretext::tensor::Tensor;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec_f32()
        .unwrap()
        .iter()
        .zip(b.to_vec_f32().unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_forward_loss_and_grads(case: &str, tied: bool) {
    let fx = fixture(case);
    let model = T5::from_pretrained(&fx.dir).unwrap();
    assert_eq!(model.tied, tied, "{case}: lm_head tying");
    let ids = fx.ids("input_ids");
    let mask = fx.ids("attention_mask");
    let labels = fx.ids("labels");
    // the decoder inputs HF derived from the labels
    let pad = model.config.pad_token_id.unwrap() as i64;
    let dec = shift_tokens_right(&labels, pad, model.decoder_start().unwrap()).unwrap();
    assert_eq!(
        dec.to_vec::<i64>().unwrap(),
        fx.ids("decoder_input_ids").to_vec::<i64>().unwrap(),
        "{case}: shifted labels"
    );
    let (out, loss) = model.loss(&ids, Some(&mask), &labels, None).unwrap();
    for (stack, states) in [
        ("encoder", &out.encoder.hidden_states),
        ("decoder", &out.decoder.hidden_states),
    ] {
        let n = model.config.num_layers + 1;
        assert_eq!(states.len(), n, "{case}: {stack} hidden state count");
        for (i, h) in states.iter().enumerate() {
            let key = format!("{stack}_hidden_states.{i}");
            assert_close(&format!("{case} {key}"), &h.value(), fx.out(&key), 1e-4);
        }
        let key = format!("{stack}_last_hidden_state");
        let last = if stack == "encoder" {
            &out.encoder.hidden
        } else {
            &out.decoder.hidden
        };
        assert_close(&format!("{case} {key}"), &last.value(), fx.out(&key), 1e-4);
    }
    assert_close(
        &format!("{case} logits"),
        &out.logits.value(),
        fx.out("logits"),
        1e-4,
    );
    assert_close(&format!("{case} loss"), &loss.value(), fx.out("loss"), 1e-5);
    loss.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &|_| false);
}

#[test]
fn t5_original_logits_hidden_states_loss_and_gradients_match_transformers() {
    check_forward_loss_and_grads("t5_original", true);
}

#[test]
fn t5_v11_logits_hidden_states_loss_and_gradients_match_transformers() {
    check_forward_loss_and_grads("t5_v11", false);
}

#[test]
fn t5_greedy_generation_matches_transformers_generate() {
    let fx = fixture("t5_original");
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("generate.json")).unwrap())
            .unwrap();
    let scores = checkpoint::load(fx.dir.join("generate_scores.safetensors")).unwrap();
    let scores = &scores["scores"];
    let model = T5::from_pretrained(&fx.dir).unwrap();
    let ids = common::ids_from_json(&gen["inputs"]["input_ids"]);
    let mask = common::ids_from_json(&gen["inputs"]["attention_mask"]);
    let want = common::ids_from_json(&gen["sequences"]);
    let (b, len) = (want.shape()[0], want.shape()[1]);
    let steps = len - 1;
    let v = model.config.vocab_size;
    let (seqs, got_scores) = model
        .generate_greedy_with_scores(&ids, Some(&mask), steps)
        .unwrap();
    assert_eq!(got_scores.len(), steps);
    for (step, s) in got_scores.iter().enumerate() {
        assert_eq!(s.shape(), &[b, v]);
        let got = s.to_vec_f32().unwrap();
        for r in 0..b {
            let want_row = &scores.data[(r * steps + step) * v..(r * steps + step + 1) * v];
            let d = got[r * v..(r + 1) * v]
                .iter()
                .zip(want_row)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(d < 1e-4, "step {step} row {r}: scores differ by {d}");
        }
    }
    assert_eq!(seqs.concat(), want.to_vec::<i64>().unwrap());
    assert_eq!(
        model.generate_greedy(&ids, Some(&mask), steps).unwrap(),
        seqs
    );
}

/// Generation stops a row at EOS, pads it afterwards, and stops once every row is finished.
/// On the generate.json prompt, row 0 greedily emits 21 and row 1 emits 0 at every step.
#[test]
fn t5_greedy_generation_pads_rows_after_eos() {
    use pretext::models::TokenIds;
    let fx = fixture("t5_original");
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("generate.json")).unwrap())
            .unwrap();
    let ids = common::ids_from_json(&gen["inputs"]["input_ids"]);
    let mask = common::ids_from_json(&gen["inputs"]["attention_mask"]);
    let mut model = T5::from_pretrained(&fx.dir).unwrap();
    let free = model.generate_greedy(&ids, Some(&mask), 4).unwrap();
    assert_eq!(free, vec![vec![0, 21, 21, 21, 21], vec![0, 0, 0, 0, 0]]);
    // row 0 finishes at its first token and is padded (a distinct pad id shows it); row 1 goes on
    model.config.eos_token_id = Some(TokenIds::One(21));
    model.config.pad_token_id = Some(7);
    let got = model.generate_greedy(&ids, Some(&mask), 4).unwrap();
    assert_eq!(got, vec![vec![0, 21, 7, 7, 7], vec![0, 0, 0, 0, 0]]);
    // both rows finish at the first step: generation stops there
    model.config.eos_token_id = Some(TokenIds::Many(vec![21, 0]));
    let got = model.generate_greedy(&ids, Some(&mask), 4).unwrap();
    assert_eq!(got, vec![vec![0, 21], vec![0, 0]]);
}

/// The KV-cache path (token by token, with and without a decoder padding mask) gives the logits
/// of the full recomputation.
#[test]
fn t5_kv_cache_equals_full_recomputation() {
    for case in ["t5_original", "t5_v11"] {
        let fx = fixture(case);
        let model = T5::from_pretrained(&fx.dir).unwrap();
        let ids = fx.ids("input_ids");
        let mask = fx.ids("attention_mask");
        let dec = fx.ids("decoder_input_ids");
        let (b, t) = (dec.shape()[0], dec.shape()[1]);
        let dec_mask = Tensor::from_vec(
            (0..b * t)
                .map(|i| i64::from(!(i / t == 1 && i % t == 2)))
                .collect::<Vec<i64>>(),
            &[b, t],
        )
        .unwrap();
        for dm in [None, Some(&dec_mask)] {
            let full =
                pretext::autograd::no_grad(|| model.forward(&ids, Some(&mask), &dec, dm, None))
                    .unwrap()
                    .logits
                    .value()
                    .clone();
            let mut cache = model.start_cache(&ids, Some(&mask)).unwrap();
            // a two-token prefix, then one token per step
            let mut pieces = vec![model
                .decode_step(
                    &dec.narrow(1, 0, 2).unwrap().contiguous().unwrap(),
                    dm.map(|m| m.narrow(1, 0, 2).unwrap().contiguous().unwrap())
                        .as_ref(),
                    &mut cache,
                )
                .unwrap()];
            for j in 2..t {
                let m = dm.map(|m| m.narrow(1, 0, j + 1).unwrap().contiguous().unwrap());
                pieces.push(
                    model
                        .decode_step(
                            &dec.narrow(1, j, 1).unwrap().contiguous().unwrap(),
                            m.as_ref(),
                            &mut cache,
                        )
                        .unwrap(),
                );
            }
            assert_eq!(cache.past_len(), t);
            let refs: Vec<&Tensor> = pieces.iter().collect();
            let cached = Tensor::cat(&refs, 1).unwrap();
            let d = max_diff(&cached, &full);
            assert!(
                d < 1e-5,
                "{case} (decoder mask {}): cached logits differ by {d}",
                dm.is_some()
            );
        }
    }
}

#[test]
fn t5_save_and_load_round_trip_reproduces_logits() {
    for case in ["t5_original", "t5_v11"] {
        let fx = fixture(case);
        let model = T5::from_pretrained(&fx.dir).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "pretext_t5_roundtrip_{case}_{}",
            std::process::id()
        ));
        model.save_pretrained(&dir).unwrap();
        let saved = checkpoint::load(dir.join("model.safetensors")).unwrap();
        let original = checkpoint::load(fx.dir.join("model.safetensors")).unwrap();
        let names: Vec<&String> = saved.keys().collect();
        assert_eq!(
            names,
            original.keys().collect::<Vec<_>>(),
            "{case}: tensor names"
        );
        let back = T5::from_pretrained(&dir).unwrap();
        assert_eq!(back.tied, model.tied);
        assert_eq!(
            back.config.scale_decoder_outputs(),
            model.config.scale_decoder_outputs()
        );
        let ids = fx.ids("input_ids");
        let mask = fx.ids("attention_mask");
        let dec = fx.ids("decoder_input_ids");
        let a = model.forward(&ids, Some(&mask), &dec, None, None).unwrap();
        let b = back.forward(&ids, Some(&mask), &dec, None, None).unwrap();
        assert_eq!(max_diff(&a.logits.value(), &b.logits.value()), 0.0);
        assert_close(
            &format!("{case} reloaded logits"),
            &b.logits.value(),
            fx.out("logits"),
            1e-4,
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Copy a fixture's config and a modified checkpoint into a temp dir.
fn broken_checkpoint(
    fx: &Fixture,
    tag: &str,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, RawTensor>),
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pretext_t5_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fx.dir.join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors = checkpoint::load(fx.dir.join("model.safetensors")).unwrap();
    edit(&mut tensors);
    checkpoint::save(dir.join("model.safetensors"), &tensors, &[]).unwrap();
    dir
}

#[test]
fn t5_checkpoint_with_missing_or_misshaped_tensor_is_an_error_naming_it() {
    let fx = fixture("t5_v11");
    let name = "decoder.block.1.layer.1.EncDecAttention.k.weight";
    let dir = broken_checkpoint(&fx, "missing", |t| {
        t.remove(name).unwrap();
    });
    let err = T5::from_pretrained(&dir)
        .err()
        .expect("missing tensor must fail")
        .to_string();
    assert!(err.contains(name), "error does not name the tensor: {err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let name = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    let dir = broken_checkpoint(&fx, "misshaped", |t| {
        let w = t.get_mut(name).unwrap();
        assert_eq!(w.shape, vec![32, 4]);
        *w = RawTensor::new(vec![4, 32], w.data.clone()).unwrap();
    });
    let err = T5::from_pretrained(&dir)
        .err()
        .expect("mis-shaped tensor must fail")
        .to_string();
    assert!(err.contains(name), "error does not name the tensor: {err}");
    assert!(
        err.contains("32") && err.contains('4'),
        "error does not give the shapes: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A freshly initialised model has HF's parameter set and shapes and trains (the loss decreases
/// over a few SGD steps on one batch).
#[test]
fn t5_new_has_hf_parameters_and_learns() {
    use pretext::models::T5Config;
    let fx = fixture("t5_v11");
    let mut config = T5Config::tiny().into_v1_1();
    config.vocab_size = 120;
    config.dropout_rate = 0.1;
    let mut rng = pretext::tensor::Rng::new(1);
    let model = T5::new(config, &mut rng).unwrap();
    assert!(!model.tied);
    let reference = checkpoint::load(fx.dir.join("model.safetensors")).unwrap();
    let mut names: Vec<&str> = model.store.iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        reference.keys().map(String::as_str).collect::<Vec<_>>()
    );
    let ids = fx.ids("input_ids");
    let mask = fx.ids("attention_mask");
    let labels = fx.ids("labels");
    let mut losses = Vec::new();
    for _ in 0..5 {
        model.store.zero_grad();
        let (_, loss) = model
            .loss(&ids, Some(&mask), &labels, Some(&mut rng))
            .unwrap();
        losses.push(loss.value().scalar().unwrap());
        loss.backward().unwrap();
        for (_, p) in model.store.iter() {
            let g = p.grad().unwrap();
            p.update_value(|v| *v = v.sub(&g.mul_scalar(0.05).unwrap()).unwrap())
                .unwrap();
        }
    }
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        losses[4] < losses[0],
        "loss did not decrease with dropout on: {losses:?}"
    );
}
