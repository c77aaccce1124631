//! GPT-2 parity with Hugging Face transformers (fixtures from tools/hf_fixtures.py): logits,
//! hidden states, loss and every parameter gradient; sequence classification; the AdamW
//! trajectory; greedy generation with the KV cache.

mod common;

use common::{assert_close, assert_grads, fixture};
use pretext::models::{Gpt2, Gpt2Head};
use pretext::nn::attention::KvCache;
use pretext::tensor::Tensor;

fn conv1d(name: &str) -> bool {
    name.ends_with("c_attn.weight")
        || name.ends_with("c_proj.weight")
        || name.ends_with("c_fc.weight")
}

#[test]
fn gpt2_lm_logits_loss_and_gradients_match_transformers() {
    let fx = fixture("gpt2_lm");
    let model = Gpt2::from_pretrained(&fx.dir).unwrap();
    assert_eq!(model.head, Gpt2Head::Lm);
    let ids = fx.ids("input_ids");
    let mask = fx.ids("attention_mask");
    let labels = fx.ids("labels");
    let out = model.forward(&ids, Some(&mask), None, None).unwrap();
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            &format!("hidden_states.{i}"),
            &h.value(),
            fx.out(&format!("hidden_states.{i}")),
            1e-4,
        );
    }
    let (logits, loss) = model.lm_loss(&ids, Some(&mask), &labels, None).unwrap();
    assert_close("logits", &logits.value(), fx.out("logits"), 1e-4);
    assert_close("loss", &loss.value(), fx.out("loss"), 1e-5);
    loss.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &conv1d);
}

#[test]
fn gpt2_sequence_classification_pools_the_last_non_pad_token() {
    let fx = fixture("gpt2_seqcls");
    let model = Gpt2::from_pretrained(&fx.dir).unwrap();
    assert!(matches!(model.head, Gpt2Head::SequenceClassification(3)));
    let ids = fx.ids("input_ids");
    let mask = fx.ids("attention_mask");
    let logits = model.classify(&ids, Some(&mask), None).unwrap();
    assert_close("logits", &logits.value(), fx.out("logits"), 1e-4);
    let loss = logits.cross_entropy(&fx.ids("labels"), -100, 0.0).unwrap();
    assert_close("loss", &loss.value(), fx.out("loss"), 1e-5);
    loss.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &conv1d);
}

/// transformers' greedy `generate` on the fixture: the prompt (B, T0), the sequences it
/// returned (prompt and new tokens, row by row) and the number of new tokens.
fn greedy_fixture(fx: &common::Fixture) -> (Tensor, Vec<i64>, usize) {
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("generate.json")).unwrap())
            .unwrap();
    let prompt = common::ids_from_json(&gen["inputs"]["input_ids"]);
    let want = common::ids_from_json(&gen["sequences"])
        .to_vec::<i64>()
        .unwrap();
    let steps = gen["new_tokens"][0].as_array().unwrap().len();
    (prompt, want, steps)
}

#[test]
fn gpt2_greedy_generation_with_kv_cache_matches_transformers_generate() {
    let fx = fixture("gpt2_lm");
    let scores =
        pretext::models::checkpoint::load(fx.dir.join("generate_scores.safetensors")).unwrap();
    let scores = &scores["scores"];
    let model = Gpt2::from_pretrained(&fx.dir).unwrap();
    let (prompt, want, steps) = greedy_fixture(&fx);
    let (b, t0) = (prompt.shape()[0], prompt.shape()[1]);
    let vocab = model.config.vocab_size;
    let mut seqs: Vec<Vec<i64>> = (0..b)
        .map(|r| prompt.to_vec::<i64>().unwrap()[r * t0..(r + 1) * t0].to_vec())
        .collect();
    let mut cache = KvCache::default();
    let mut input = prompt.clone();
    for step in 0..steps {
        let out =
            pretext::autograd::no_grad(|| model.forward(&input, None, Some(&mut cache), None))
                .unwrap();
        let logits = model.lm_logits(&out.hidden).unwrap();
        let t = logits.shape()[1];
        let last = logits
            .value()
            .narrow(1, t - 1, 1)
            .unwrap()
            .reshape(&[b, vocab])
            .unwrap();
        // scores (B, steps, V): this step's last-position logits
        let want_step = scores
            .data
            .iter()
            .enumerate()
            .filter(|(i, _)| (i / vocab) % steps == step)
            .map(|(_, &v)| v);
        let d = last
            .to_vec_f32()
            .unwrap()
            .iter()
            .zip(want_step)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-4, "step {step}: logits differ by {d}");
        let (_, arg) = last.max_dims_with_arg(&[-1], false).unwrap();
        for r in 0..b {
            seqs[r].push(arg[r] as i64);
        }
        input = Tensor::from_vec(arg.iter().map(|&a| a as i64).collect(), &[b, 1]).unwrap();
    }
    let got: Vec<i64> = seqs.concat();
    assert_eq!(got, want);
    // the cached path gives the same logits as recomputing the whole sequence
    let full = Tensor::from_vec(got.clone(), &[b, t0 + steps]).unwrap();
    let out = pretext::autograd::no_grad(|| model.forward(&full, None, None, None)).unwrap();
    let logits = model.lm_logits(&out.hidden).unwrap();
    let last_full = logits
        .value()
        .narrow(1, t0 + steps - 2, 1)
        .unwrap()
        .contiguous()
        .unwrap();
    let mut cache = KvCache::default();
    let prefix = full
        .narrow(1, 0, t0 + steps - 2)
        .unwrap()
        .contiguous()
        .unwrap();
    pretext::autograd::no_grad(|| model.forward(&prefix, None, Some(&mut cache), None)).unwrap();
    let step_in = full
        .narrow(1, t0 + steps - 2, 1)
        .unwrap()
        .contiguous()
        .unwrap();
    let out = pretext::autograd::no_grad(|| model.forward(&step_in, None, Some(&mut cache), None))
        .unwrap();
    let cached = model.lm_logits(&out.hidden).unwrap();
    let d = cached
        .value()
        .sub(&last_full)
        .unwrap()
        .abs()
        .unwrap()
        .max_dims(&[0, 1, 2], false)
        .unwrap()
        .scalar()
        .unwrap();
    assert!(
        d < 1e-5,
        "KV-cache logits differ from full recomputation by {d}"
    );
}

/// The library's `generate` (KV cache, the LM head on the last position only) decodes each
/// prompt row to transformers' greedy sequence.
#[test]
fn library_generate_matches_transformers_generate() {
    let fx = fixture("gpt2_lm");
    let (prompt, want, steps) = greedy_fixture(&fx);
    let (b, t0) = (prompt.shape()[0], prompt.shape()[1]);
    let model = pretext::models::Model::load(&fx.dir).unwrap();
    let greedy = pretext::generate::SamplingConfig {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };
    let ids = prompt.to_vec::<i64>().unwrap();
    for r in 0..b {
        let row: Vec<u32> = ids[r * t0..(r + 1) * t0]
            .iter()
            .map(|&t| t as u32)
            .collect();
        let out =
            pretext::generate::generate(&model, &row, steps, &greedy, None, 0, |_| Ok(())).unwrap();
        let got: Vec<i64> = out.tokens.iter().map(|&t| t as i64).collect();
        let w = &want[r * (t0 + steps) + t0..(r + 1) * (t0 + steps)];
        assert_eq!(got, w, "row {r}");
    }
}

/// llm.c's test_gpt2: ten AdamW steps on one batch reproduce PyTorch's losses step by step and
/// the final parameters, with weight decay on every parameter (one torch param group) and on
/// rank ≥ 2 parameters only.
#[test]
fn gpt2_adamw_trajectory_matches_torch() {
    use pretext::optim::{AdamW, AdamWConfig};
    let fx = fixture("gpt2_trajectory");
    let traj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("trajectory.json")).unwrap())
            .unwrap();
    let finals =
        pretext::models::checkpoint::load(fx.dir.join("trajectory_params.safetensors")).unwrap();
    for (run, decay_all) in [("wd_all", true), ("wd_dim2", false)] {
        let model = Gpt2::from_pretrained(&fx.dir).unwrap();
        let ids = fx.ids("input_ids");
        let mask = fx.ids("attention_mask");
        let labels = fx.ids("labels");
        let cfg = AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.01,
            decay_all,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg, &model.store);
        let want: Vec<f64> = traj["runs"][run]["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (step, &w) in want.iter().enumerate() {
            model.store.zero_grad();
            let (_, loss) = model.lm_loss(&ids, Some(&mask), &labels, None).unwrap();
            let l = loss.value().scalar().unwrap() as f64;
            assert!(
                (l - w).abs() < 1e-4,
                "{run} step {step}: loss {l} vs torch {w}"
            );
            loss.backward().unwrap();
            opt.step(&model.store, cfg.lr).unwrap();
        }
        let (_, loss) = model.lm_loss(&ids, Some(&mask), &labels, None).unwrap();
        let final_want = traj["runs"][run]["final_loss"].as_f64().unwrap();
        assert!(
            (loss.value().scalar().unwrap() as f64 - final_want).abs() < 1e-4,
            "{run}: final loss"
        );
        let c = model.config.n_embd;
        for (name, var) in model.store.iter() {
            let want = &finals[&format!("{run}.final.{name}")];
            let want = if conv1d(name) {
                want.transpose2().unwrap()
            } else {
                want.clone()
            };
            let got = var.value().to_vec_f32().unwrap();
            for (i, (a, b)) in got.iter().zip(&want.data).enumerate() {
                // The key bias (c_attn.bias[C..2C]) shifts every score of a query row equally, so
                // softmax cancels it: its exact gradient is 0 and both frameworks see only rounding
                // noise, which Adam's m/√v turns into ±lr steps. Those elements are not comparable.
                if name.ends_with("c_attn.bias") && (c..2 * c).contains(&i) {
                    continue;
                }
                assert!(
                    (a - b).abs() < 2e-5,
                    "{run}: final {name}[{i}] = {a}, torch {b}"
                );
            }
        }
    }
}

/// `KvCache::crop` rolls decoding back: after stepping on, cropping to the prompt and
/// stepping with the first token again gives its logits bit for bit.
#[test]
fn cropped_cache_repeats_a_step_exactly() {
    let fx = fixture("gpt2_lm");
    let model = Gpt2::from_pretrained(&fx.dir).unwrap();
    let ids = |v: &[i64]| Tensor::from_vec(v.to_vec(), &[1, v.len()]).unwrap();
    let step = |cache: &mut KvCache, t: &[i64]| {
        let out =
            pretext::autograd::no_grad(|| model.forward(&ids(t), None, Some(cache), None)).unwrap();
        model
            .lm_logits(&out.hidden)
            .unwrap()
            .value()
            .to_vec_f32()
            .unwrap()
    };
    let mut cache = KvCache::default();
    step(&mut cache, &[5, 9, 2, 14]);
    let first = step(&mut cache, &[7]);
    step(&mut cache, &[3]);
    step(&mut cache, &[11, 4]);
    assert_eq!(cache.past_len(), 8);
    cache.crop(4);
    assert_eq!(cache.past_len(), 4);
    assert_eq!(step(&mut cache, &[7]), first);
    // Cropping past the end keeps everything.
    cache.crop(100);
    assert_eq!(cache.past_len(), 5);
}
