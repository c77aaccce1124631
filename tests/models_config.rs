//! `config.json` parsing, writing and presets, against the HF fixtures in tests/fixtures/hf.

use std::path::{Path, PathBuf};

use pretext::models::config::SUPPORTED_MODEL_TYPES;
use pretext::models::{BartConfig, BertConfig, Gpt2Config, ModelConfig, T5Config, TokenIds};
use pretext::Error;
use serde_json::{Map, Value};

const CASES: [&str; 9] = [
    "bert_pretraining",
    "bert_seqcls",
    "bert_tokcls",
    "gpt2_lm",
    "gpt2_seqcls",
    "gpt2_trajectory",
    "t5_original",
    "t5_v11",
    "bart",
];

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(case)
}

fn read_json(path: &Path) -> Map<String, Value> {
    match serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() {
        Value::Object(m) => m,
        _ => panic!("{} is not an object", path.display()),
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pretext-models-config-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// JSON equality where numbers compare as f64 (HF may write `0` where we write `0.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn every_fixture_config_parses_to_its_family() {
    for case in CASES {
        let c = ModelConfig::from_file(fixture(case)).unwrap();
        let expected = case.split('_').next().unwrap();
        assert_eq!(c.model_type(), expected, "{case}");
        let arch = c.architectures().expect("fixtures record architectures");
        assert_eq!(arch.len(), 1, "{case}");
    }
}

#[test]
fn fixture_values_are_read_with_hf_names() {
    let ModelConfig::Bert(b) = ModelConfig::from_file(fixture("bert_pretraining")).unwrap() else {
        panic!("bert_pretraining is not BERT")
    };
    assert_eq!(
        (b.vocab_size, b.hidden_size, b.num_hidden_layers),
        (128, 32, 2)
    );
    assert_eq!(
        (b.num_attention_heads, b.intermediate_size, b.head_dim()),
        (4, 48, 8)
    );
    assert_eq!(b.layer_norm_eps, 1e-12);
    assert_eq!(b.hidden_act, "gelu");
    assert_eq!(b.pad_token_id, Some(0));
    assert_eq!(b.num_labels(), 2);
    assert_eq!(
        b.architectures.as_deref(),
        Some(&["BertForPreTraining".to_string()][..])
    );

    let ModelConfig::Bert(s) = ModelConfig::from_file(fixture("bert_seqcls")).unwrap() else {
        panic!()
    };
    assert_eq!(s.num_labels(), 3);
    let ModelConfig::Bert(t) = ModelConfig::from_file(fixture("bert_tokcls")).unwrap() else {
        panic!()
    };
    assert_eq!(t.num_labels(), 5);

    let ModelConfig::Gpt2(g) = ModelConfig::from_file(fixture("gpt2_lm")).unwrap() else {
        panic!()
    };
    assert_eq!(
        (g.vocab_size, g.n_embd, g.n_layer, g.n_head, g.n_positions),
        (99, 32, 2, 4, 64)
    );
    assert_eq!(g.inner_dim(), 128);
    assert_eq!(g.activation_function, "gelu_new");
    assert_eq!(g.eos_token_id, Some(TokenIds::One(98)));
    assert_eq!(g.pad_token_id, None);
    assert!(g.bias());
    let ModelConfig::Gpt2(gs) = ModelConfig::from_file(fixture("gpt2_seqcls")).unwrap() else {
        panic!()
    };
    assert_eq!(gs.pad_token_id, Some(0));
    assert_eq!(gs.num_labels(), 3);

    let ModelConfig::T5(t5) = ModelConfig::from_file(fixture("t5_original")).unwrap() else {
        panic!()
    };
    assert_eq!(
        (t5.d_model, t5.d_kv, t5.num_heads, t5.inner_dim(), t5.d_ff),
        (32, 6, 4, 24, 40)
    );
    assert_eq!(t5.decoder_layers(), 2);
    assert!(!t5.gated());
    assert_eq!(t5.act_fn(), "relu");
    assert!(t5.scale_decoder_outputs());
    assert_eq!(t5.decoder_start(), Some(0));
    let ModelConfig::T5(v11) = ModelConfig::from_file(fixture("t5_v11")).unwrap() else {
        panic!()
    };
    assert!(v11.gated());
    assert_eq!(v11.act_fn(), "gelu_new");
    assert!(!v11.scale_decoder_outputs());

    let ModelConfig::Bart(ba) = ModelConfig::from_file(fixture("bart")).unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            ba.vocab_size,
            ba.d_model,
            ba.encoder_ffn_dim,
            ba.decoder_ffn_dim
        ),
        (111, 32, 48, 40)
    );
    assert_eq!(ba.position_rows(), 66);
    assert_eq!(ba.embed_scale(), 1.0);
    assert_eq!(
        ba.forced_eos_token_id, None,
        "the fixture disables forced EOS with an explicit null"
    );
    assert_eq!(
        (ba.pad_token_id, ba.decoder_start_token_id),
        (Some(1), Some(2))
    );
    assert_eq!(ba.num_labels(), 3);
}

#[test]
fn round_trip_preserves_every_key() {
    for case in CASES {
        let path = fixture(case).join("config.json");
        let original = read_json(&path);
        let c = ModelConfig::from_file(&path).unwrap();
        let written = c.to_json_map().unwrap();
        for (k, v) in &original {
            let w = written
                .get(k)
                .unwrap_or_else(|| panic!("{case}: key `{k}` lost"));
            assert!(json_eq(v, w), "{case}: key `{k}`: {v} became {w}");
        }
        // transformers writes every declared field, so nothing is added either.
        let added: Vec<&String> = written
            .keys()
            .filter(|k| !original.contains_key(*k))
            .collect();
        assert!(added.is_empty(), "{case}: keys added on write: {added:?}");
        // Writing and reading again gives the same config.
        let dir = tmp_dir(case);
        c.save(&dir).unwrap();
        let again = ModelConfig::from_file(dir.join("config.json")).unwrap();
        assert_eq!(again, c, "{case}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let text = r#"{"model_type": "gpt2", "n_embd": 64, "my_custom": {"a": [1, 2]}, "task_specific_params": null}"#;
    let c = ModelConfig::from_json_str(text, Path::new("x/config.json")).unwrap();
    let ModelConfig::Gpt2(g) = &c else { panic!() };
    assert_eq!(g.n_embd, 64);
    assert_eq!(g.n_layer, 12, "absent fields take HF's defaults");
    assert_eq!(
        g.extra.get("my_custom"),
        Some(&serde_json::json!({"a": [1, 2]}))
    );
    let m = c.to_json_map().unwrap();
    assert_eq!(m.get("my_custom"), Some(&serde_json::json!({"a": [1, 2]})));
    assert_eq!(m.get("task_specific_params"), Some(&Value::Null));
    assert_eq!(m.get("model_type"), Some(&Value::String("gpt2".into())));
}

#[test]
fn unknown_model_type_names_the_value_and_the_file() {
    let path = Path::new("some/dir/config.json");
    let err = ModelConfig::from_json_str(r#"{"model_type": "llama", "hidden_size": 8}"#, path)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(
        msg.contains("llama") && msg.contains("some/dir/config.json"),
        "{msg}"
    );
    for t in SUPPORTED_MODEL_TYPES {
        assert!(msg.contains(t), "{msg} should list {t}");
    }

    let missing = ModelConfig::from_json_str(r#"{"hidden_size": 8}"#, path)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("model_type") && missing.contains("missing"),
        "{missing}"
    );

    let not_json = ModelConfig::from_json_str("{nope", path)
        .unwrap_err()
        .to_string();
    assert!(not_json.contains("some/dir/config.json"), "{not_json}");

    let io = ModelConfig::from_file("/nonexistent/pretext/config.json").unwrap_err();
    assert!(matches!(io, Error::Io { .. }), "{io:?}");
}

#[test]
fn a_bad_field_value_names_the_field() {
    let path = Path::new("cfg.json");
    let err = ModelConfig::from_json_str(r#"{"model_type": "bert", "hidden_size": "big"}"#, path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden_size") && err.contains("cfg.json") && err.contains("big"),
        "{err}"
    );

    let err = ModelConfig::from_json_str(
        r#"{"model_type": "t5", "feed_forward_proj": "gelu-gated"}"#,
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("feed_forward_proj") && err.contains("gelu-gated"),
        "{err}"
    );

    // A family struct refuses another family's model_type.
    let mut m = Map::new();
    m.insert("model_type".into(), Value::String("bart".into()));
    let err = BertConfig::from_json_map(m, path).unwrap_err().to_string();
    assert!(err.contains("bert") && err.contains("bart"), "{err}");
}

#[test]
fn eos_may_be_a_list() {
    let c = ModelConfig::from_json_str(
        r#"{"model_type": "bart", "eos_token_id": [2, 7]}"#,
        Path::new("c.json"),
    )
    .unwrap();
    let ModelConfig::Bart(b) = c else { panic!() };
    let eos = b.eos_token_id.unwrap();
    assert_eq!(eos, TokenIds::Many(vec![2, 7]));
    assert_eq!(eos.first(), Some(2));
    assert!(eos.contains(7) && !eos.contains(3));
}

#[test]
fn t5_output_scaling_follows_hf_5_rules() {
    let p = Path::new("t5.json");
    let parse = |s: &str| match ModelConfig::from_json_str(s, p).unwrap() {
        ModelConfig::T5(c) => c,
        _ => panic!(),
    };
    // HF 4.x configs: tie_word_embeddings decides; absent means tied.
    assert!(parse(r#"{"model_type": "t5"}"#).scale_decoder_outputs());
    assert!(
        !parse(r#"{"model_type": "t5", "tie_word_embeddings": false}"#).scale_decoder_outputs()
    );
    // HF 5.x configs: scale_decoder_outputs wins when present.
    assert!(parse(
        r#"{"model_type": "t5", "tie_word_embeddings": false, "scale_decoder_outputs": true}"#
    )
    .scale_decoder_outputs());
    assert!(!parse(
        r#"{"model_type": "t5", "tie_word_embeddings": true, "scale_decoder_outputs": false}"#
    )
    .scale_decoder_outputs());
    let v11 = T5Config::small().into_v1_1();
    assert!(v11.gated() && !v11.scale_decoder_outputs());
    assert_eq!(v11.act_fn(), "gelu_new");
}

#[test]
fn presets_have_the_documented_shapes() {
    let b = BertConfig::base();
    assert_eq!(
        (
            b.hidden_size,
            b.num_hidden_layers,
            b.num_attention_heads,
            b.intermediate_size
        ),
        (768, 12, 12, 3072)
    );
    assert_eq!(
        (
            BertConfig::tiny().hidden_size,
            BertConfig::small().hidden_size
        ),
        (128, 512)
    );

    let g = Gpt2Config::gpt2_124m();
    assert_eq!(
        (g.vocab_size, g.n_positions, g.n_embd, g.n_layer, g.n_head),
        (50257, 1024, 768, 12, 12)
    );
    assert_eq!(Gpt2Config::base(), g);
    let cpu = Gpt2Config::shakespeare_char_cpu();
    assert_eq!(
        (
            cpu.vocab_size,
            cpu.n_positions,
            cpu.n_layer,
            cpu.n_head,
            cpu.n_embd
        ),
        (65, 64, 4, 4, 128)
    );
    assert_eq!(
        (
            cpu.resid_pdrop,
            cpu.activation_function.as_str(),
            cpu.bias()
        ),
        (0.0, "gelu", false)
    );
    let gpu = Gpt2Config::shakespeare_char_gpu();
    assert_eq!(
        (
            gpu.vocab_size,
            gpu.n_positions,
            gpu.n_layer,
            gpu.n_head,
            gpu.n_embd
        ),
        (65, 256, 6, 6, 384)
    );
    assert_eq!((gpu.attn_pdrop, gpu.bias()), (0.2, false));
    // The nanoGPT `bias: false` extension survives a round trip.
    let text = ModelConfig::Gpt2(cpu.clone()).to_json_string().unwrap();
    let ModelConfig::Gpt2(back) = ModelConfig::from_json_str(&text, Path::new("c.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(back, cpu);
    assert!(!back.bias());

    let t = T5Config::base();
    assert_eq!(
        (t.d_model, t.num_heads, t.d_kv, t.d_ff, t.num_layers),
        (768, 12, 64, 3072, 12)
    );
    assert_eq!(T5Config::small().d_model, 512);
    assert_eq!(T5Config::tiny().inner_dim(), 128);

    let ba = BartConfig::base();
    assert_eq!(
        (
            ba.d_model,
            ba.encoder_layers,
            ba.decoder_layers,
            ba.encoder_attention_heads
        ),
        (768, 6, 6, 12)
    );
    assert_eq!(BartConfig::tiny().position_rows(), 258);
    assert_eq!(BartConfig::small().encoder_ffn_dim, 2048);
}

#[test]
fn set_num_labels_writes_id2label() {
    let mut b = BertConfig::tiny();
    b.set_num_labels(4);
    assert_eq!(b.num_labels(), 4);
    let m = ModelConfig::Bert(b).to_json_map().unwrap();
    assert_eq!(m["id2label"]["3"], Value::String("LABEL_3".into()));
    assert_eq!(m["label2id"]["LABEL_0"], Value::from(0));
}

#[test]
fn t5_derived_fields_are_written_with_effective_values() {
    for c in [
        T5Config::default(),
        T5Config::tiny(),
        T5Config::base().into_v1_1(),
    ] {
        let m = ModelConfig::T5(c.clone()).to_json_map().unwrap();
        for k in [
            "dense_act_fn",
            "is_gated_act",
            "scale_decoder_outputs",
            "tie_word_embeddings",
            "decoder_start_token_id",
        ] {
            assert!(
                m.get(k).is_some_and(|v| !v.is_null()),
                "{k} must not be null: {:?}",
                m.get(k)
            );
        }
        assert_eq!(
            m["scale_decoder_outputs"],
            Value::Bool(c.scale_decoder_outputs())
        );
        assert_eq!(m["dense_act_fn"], Value::String(c.act_fn()));
        assert_eq!(m["decoder_start_token_id"], Value::from(0));
    }
    let v11 = ModelConfig::T5(T5Config::small().into_v1_1())
        .to_json_map()
        .unwrap();
    assert_eq!(
        (&v11["is_gated_act"], &v11["tie_word_embeddings"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
}
