//! BART parity with Hugging Face transformers: encoder and decoder hidden states, logits
//! (with final_logits_bias), loss, every parameter gradient, greedy generation with the KV
//! cache, and a save/load round trip.

mod common;

use common::{assert_close, assert_grads, fixture};
use pretext::autograd::no_grad;
use pretext::models::{shift_tokens_right, Bart};

#[test]
fn bart_logits_loss_and_gradients_match_transformers() {
    let fx = fixture("bart");
    let model = Bart::from_pretrained(&fx.dir).unwrap();
    let (ids, mask, labels) = (
        fx.ids("input_ids"),
        fx.ids("attention_mask"),
        fx.ids("labels"),
    );
    let dec_in = shift_tokens_right(&labels, 1, 2).unwrap();
    assert_eq!(
        dec_in.to_vec::<i64>().unwrap(),
        fx.ids("decoder_input_ids").to_vec::<i64>().unwrap()
    );
    let (out, loss) = model.loss(&ids, Some(&mask), &labels, None).unwrap();
    for (i, h) in out.encoder_hidden_states.iter().enumerate() {
        assert_close(
            &format!("encoder_hidden_states.{i}"),
            &h.value(),
            fx.out(&format!("encoder_hidden_states.{i}")),
            1e-4,
        );
    }
    for (i, h) in out.decoder_hidden_states.iter().enumerate() {
        assert_close(
            &format!("decoder_hidden_states.{i}"),
            &h.value(),
            fx.out(&format!("decoder_hidden_states.{i}")),
            1e-4,
        );
    }
    assert_close("logits", &out.logits.value(), fx.out("logits"), 1e-4);
    assert_close("loss", &loss.value(), fx.out("loss"), 1e-5);
    loss.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &|_| false);
}

#[test]
fn bart_greedy_generation_with_kv_cache_matches_transformers_generate() {
    let fx = fixture("bart");
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("generate.json")).unwrap())
            .unwrap();
    let scores =
        pretext::models::checkpoint::load(fx.dir.join("generate_scores.safetensors")).unwrap();
    let scores = &scores["scores"];
    let model = Bart::from_pretrained(&fx.dir).unwrap();
    let ids = common::ids_from_json(&gen["inputs"]["input_ids"]);
    let mask = common::ids_from_json(&gen["inputs"]["attention_mask"]);
    let steps = gen["new_tokens"][0].as_array().unwrap().len();
    let (seqs, step_logits) = model.generate_greedy(&ids, Some(&mask), steps).unwrap();
    let want = common::ids_from_json(&gen["sequences"])
        .to_vec::<i64>()
        .unwrap();
    let vocab = model.config.vocab_size;
    for (s, l) in step_logits.iter().enumerate() {
        let got = l.to_vec_f32().unwrap();
        for (r, row) in got.chunks(vocab).enumerate() {
            let w = &scores.data[(r * steps + s) * vocab..][..vocab];
            let d = row
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(d < 1e-4, "step {s} row {r}: logits differ by {d}");
        }
    }
    assert_eq!(seqs.concat(), want);
    // The cached decoder gives the logits of a full recomputation over the same sequence.
    let b = ids.shape()[0];
    let full = pretext::tensor::Tensor::from_vec(seqs.concat(), &[b, steps + 1]).unwrap();
    let out = no_grad(|| model.forward(&ids, Some(&mask), &full, None)).unwrap();
    let logits = out
        .logits
        .value()
        .narrow(1, steps - 1, 1)
        .unwrap()
        .reshape(&[b, vocab])
        .unwrap();
    let d = logits
        .sub(&step_logits[steps - 1])
        .unwrap()
        .abs()
        .unwrap()
        .max_dims(&[0, 1], false)
        .unwrap();
    assert!(
        d.scalar().unwrap() < 1e-5,
        "cached vs full: {}",
        d.scalar().unwrap()
    );
}

#[test]
fn bart_save_and_reload_reproduces_logits() {
    let fx = fixture("bart");
    let model = Bart::from_pretrained(&fx.dir).unwrap();
    let dir = std::env::temp_dir().join(format!("pretext-bart-roundtrip-{}", std::process::id()));
    model.save_pretrained(&dir).unwrap();
    let again = Bart::from_pretrained(&dir).unwrap();
    let (ids, mask, dec) = (
        fx.ids("input_ids"),
        fx.ids("attention_mask"),
        fx.ids("decoder_input_ids"),
    );
    let a = no_grad(|| model.forward(&ids, Some(&mask), &dec, None)).unwrap();
    let b = no_grad(|| again.forward(&ids, Some(&mask), &dec, None)).unwrap();
    assert_eq!(
        a.logits.value().to_vec_f32().unwrap(),
        b.logits.value().to_vec_f32().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
