//! safetensors load / save as raw f32 arrays, against the HF fixtures in tests/fixtures/hf.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pretext::models::checkpoint::{self, save_raw, Checkpoint, RawTensor};
use pretext::models::{ModelConfig, T5Config};
use safetensors::Dtype;
use serde_json::Value;

#[path = "hf_case/mod.rs"]
mod common;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(case)
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-models-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tensor names the fixture builder recorded (`model.named_parameters()` + buffers it saved).
fn stored_names(case: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(case).join("versions.json")).unwrap(),
    )
    .unwrap();
    v["stored_tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fixture_checkpoints_hold_the_recorded_names() {
    for case in [
        "bert_pretraining",
        "bert_seqcls",
        "bert_tokcls",
        "gpt2_lm",
        "gpt2_seqcls",
        "t5_original",
        "t5_v11",
        "bart",
    ] {
        let ck = Checkpoint::open(fixture(case)).unwrap();
        let names: Vec<String> = ck.names().map(String::from).collect();
        assert_eq!(names, stored_names(case), "{case}");
        assert_eq!(
            ck.metadata()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
        // Every gradient in outputs.safetensors is named after a stored parameter.
        let out = Checkpoint::open(fixture(case).join("outputs.safetensors")).unwrap();
        let grads: Vec<&str> = out
            .names()
            .filter_map(|n| n.strip_prefix("grad."))
            .collect();
        let params: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "final_logits_bias")
            .collect();
        assert_eq!(grads, params, "{case}: grad.* names");
    }
}

#[test]
fn tied_weights_are_stored_once() {
    let gpt2 = Checkpoint::open(fixture("gpt2_lm")).unwrap();
    assert!(gpt2.contains("transformer.wte.weight") && !gpt2.contains("lm_head.weight"));
    let bert = Checkpoint::open(fixture("bert_pretraining")).unwrap();
    assert!(bert.contains("cls.predictions.bias"));
    assert!(
        !bert.contains("cls.predictions.decoder.weight")
            && !bert.contains("cls.predictions.decoder.bias")
    );
    let t5 = Checkpoint::open(fixture("t5_original")).unwrap();
    assert!(
        t5.contains("shared.weight")
            && !t5.contains("lm_head.weight")
            && !t5.contains("encoder.embed_tokens.weight")
    );
    let v11 = Checkpoint::open(fixture("t5_v11")).unwrap();
    assert!(v11.contains("lm_head.weight"), "v1.1 keeps its own lm_head");
    let bart = Checkpoint::open(fixture("bart")).unwrap();
    assert!(bart.contains("model.shared.weight") && bart.contains("final_logits_bias"));
    assert!(
        !bart.contains("lm_head.weight") && !bart.contains("model.decoder.embed_tokens.weight")
    );
}

#[test]
fn shapes_follow_the_configs() {
    let ModelConfig::Gpt2(g) = ModelConfig::from_file(fixture("gpt2_lm")).unwrap() else {
        panic!()
    };
    let ck = Checkpoint::open(fixture("gpt2_lm")).unwrap();
    let c = g.n_embd;
    // Conv1D stores (in, out).
    let qkv = ck
        .get_shaped("transformer.h.0.attn.c_attn.weight", &[c, 3 * c])
        .unwrap();
    assert_eq!(qkv.numel(), c * 3 * c);
    ck.get_shaped("transformer.h.1.mlp.c_fc.weight", &[c, g.inner_dim()])
        .unwrap();
    ck.get_shaped("transformer.h.1.mlp.c_proj.weight", &[g.inner_dim(), c])
        .unwrap();
    ck.get_shaped("transformer.wpe.weight", &[g.n_positions, c])
        .unwrap();

    let ModelConfig::T5(t): ModelConfig = ModelConfig::from_file(fixture("t5_v11")).unwrap() else {
        panic!()
    };
    let t: T5Config = t;
    let ck = Checkpoint::open(fixture("t5_v11")).unwrap();
    ck.get_shaped(
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        &[t.inner_dim(), t.d_model],
    )
    .unwrap();
    ck.get_shaped(
        "decoder.block.1.layer.1.EncDecAttention.o.weight",
        &[t.d_model, t.inner_dim()],
    )
    .unwrap();
    ck.get_shaped(
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        &[t.relative_attention_num_buckets, t.num_heads],
    )
    .unwrap();
    ck.get_shaped(
        "decoder.block.1.layer.2.DenseReluDense.wi_1.weight",
        &[t.d_ff, t.d_model],
    )
    .unwrap();

    let ModelConfig::Bart(b) = ModelConfig::from_file(fixture("bart")).unwrap() else {
        panic!()
    };
    let ck = Checkpoint::open(fixture("bart")).unwrap();
    ck.get_shaped(
        "model.encoder.embed_positions.weight",
        &[b.position_rows(), b.d_model],
    )
    .unwrap();
    ck.get_shaped("final_logits_bias", &[1, b.vocab_size])
        .unwrap();
}

#[test]
fn scalars_and_outputs_load() {
    let out = Checkpoint::open(fixture("gpt2_lm").join("outputs.safetensors")).unwrap();
    let loss = out.get("loss").unwrap();
    assert!(loss.shape.is_empty());
    assert_eq!(loss.data.len(), 1);
    assert!(loss.data[0].is_finite() && loss.data[0] > 0.0);
    let logits = out.get("logits").unwrap();
    assert_eq!(logits.shape, vec![2, 7, 99]);
}

#[test]
fn missing_tensor_names_the_tensor_and_the_file() {
    let ck = Checkpoint::open(fixture("gpt2_lm")).unwrap();
    let msg = ck.get("lm_head.weight").unwrap_err().to_string();
    assert!(
        msg.contains("lm_head.weight") && msg.contains("gpt2_lm/model.safetensors"),
        "{msg}"
    );
    let msg = ck.get_shaped("nope", &[1]).unwrap_err().to_string();
    assert!(msg.contains("nope") && msg.contains("missing"), "{msg}");
}

#[test]
fn shape_mismatch_names_expected_and_found() {
    let ck = Checkpoint::open(fixture("gpt2_lm")).unwrap();
    // Linear layout (out, in) where the file has Conv1D (in, out).
    let msg = ck
        .get_shaped("transformer.h.0.attn.c_attn.weight", &[96, 32])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("transformer.h.0.attn.c_attn.weight"), "{msg}");
    assert!(
        msg.contains("[96, 32]") && msg.contains("[32, 96]"),
        "{msg}"
    );
}

#[test]
fn half_precision_is_widened_and_other_dtypes_are_refused() {
    let dir = tmp_dir("half");
    let path = dir.join("mixed.safetensors");
    // bf16 / f16 values chosen so that the exact widened value is known.
    let bf: Vec<f32> = vec![1.5, -2.0, 0.15625, 3.0e38, 0.1];
    let bf_bytes: Vec<u8> = bf
        .iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect();
    let hf: Vec<f32> = vec![0.5, -65504.0, 6.1035156e-5];
    let hf_bytes: Vec<u8> = hf
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    let ints: Vec<u8> = [0i64, 1, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    save_raw(
        &path,
        &[
            ("w.bf16", Dtype::BF16, vec![5], bf_bytes),
            ("w.f16", Dtype::F16, vec![1, 3], hf_bytes),
            ("position_ids", Dtype::I64, vec![3], ints),
        ],
    )
    .unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    let b = ck.get("w.bf16").unwrap();
    assert_eq!(b.shape, vec![5]);
    assert_eq!(&b.data[..3], &[1.5, -2.0, 0.15625]);
    // bf16(0.1) = 0x3DCD, which widens to the f32 with bits 0x3DCD0000 = 0.10009765625.
    assert_eq!(b.data[4].to_bits(), 0x3dcd_0000, "bf16(0.1) widens exactly");
    assert!((b.data[3] - 3.0e38).abs() / 3.0e38 < 1e-2);
    let h = ck.get("w.f16").unwrap();
    assert_eq!(h.shape, vec![1, 3]);
    assert_eq!(h.data, vec![0.5, -65504.0, 6.1035156e-5]);
    let msg = ck.get("position_ids").unwrap_err().to_string();
    assert!(
        msg.contains("position_ids") && msg.contains("I64") && msg.contains("unsupported"),
        "{msg}"
    );
    assert!(
        ck.load_all().is_err(),
        "load_all refuses a file with an integer tensor"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_then_load_is_exact_and_ties_are_stored_once() {
    let src = checkpoint::load(fixture("gpt2_lm")).unwrap();
    let mut tensors: BTreeMap<String, RawTensor> = src.clone();
    // The model side holds lm_head as its own name; saving declares the tie.
    tensors.insert(
        "lm_head.weight".into(),
        src["transformer.wte.weight"].clone(),
    );
    let dir = tmp_dir("save");
    let path = dir.join("model.safetensors");
    checkpoint::save(
        &path,
        &tensors,
        &[("lm_head.weight", "transformer.wte.weight")],
    )
    .unwrap();
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back, src, "bit-exact round trip, alias dropped");
    // Byte-identical header layout is not required, but no temp file may be left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // An alias whose values differ is not a tie.
    let mut bad = tensors.clone();
    bad.get_mut("lm_head.weight").unwrap().data[0] += 1.0;
    let msg = checkpoint::save(&path, &bad, &[("lm_head.weight", "transformer.wte.weight")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("lm_head.weight") && msg.contains("transformer.wte.weight"),
        "{msg}"
    );
    // The kept name must be present.
    let msg = checkpoint::save(&path, &src, &[("lm_head.weight", "wte.missing")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("wte.missing"), "{msg}");
    // A data / shape disagreement is refused.
    let mut wrong = BTreeMap::new();
    wrong.insert(
        "x".to_string(),
        RawTensor {
            shape: vec![2, 2],
            data: vec![0.0; 3],
        },
    );
    let msg = checkpoint::save(&path, &wrong, &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains('x') && msg.contains("3 elements"), "{msg}");
    // The file written before the failures is intact.
    assert_eq!(checkpoint::load(&path).unwrap(), src);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn raw_tensor_checks_and_transposes() {
    assert!(RawTensor::new(vec![2, 3], vec![0.0; 5]).is_err());
    let t = RawTensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let tt = t.transpose2().unwrap();
    assert_eq!(tt.shape, vec![3, 2]);
    assert_eq!(tt.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(tt.transpose2().unwrap(), t);
    // Shapes across the 32 × 32 tiles: partial tiles on both sides, one row, one column.
    for (r, c) in [(45, 70), (32, 64), (1, 33), (33, 1), (64, 31)] {
        let t = RawTensor::new(vec![r, c], (0..r * c).map(|x| x as f32).collect()).unwrap();
        let tt = t.transpose2().unwrap();
        assert_eq!(tt.shape, vec![c, r]);
        for i in 0..r {
            for j in 0..c {
                assert_eq!(
                    tt.data[j * r + i],
                    t.data[i * c + j],
                    "{r}x{c} at ({i}, {j})"
                );
            }
        }
    }
    assert!(RawTensor::new(vec![4], vec![0.0; 4])
        .unwrap()
        .transpose2()
        .is_err());
}

#[test]
fn garbage_is_a_format_error() {
    let dir = tmp_dir("garbage");
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, b"this is not a safetensors file at all").unwrap();
    let msg = Checkpoint::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("bad.safetensors") && msg.contains("safetensors"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fixture_inputs_and_outputs_agree_on_shapes() {
    for case in [
        "bert_pretraining",
        "bert_seqcls",
        "bert_tokcls",
        "gpt2_lm",
        "gpt2_seqcls",
        "gpt2_trajectory",
        "t5_original",
        "t5_v11",
        "bart",
    ] {
        let c = common::HfCase::open(case);
        let (shape, ids) = c.ints("input_ids").unwrap();
        assert_eq!(shape, vec![2, 7], "{case}");
        let (mshape, mask) = c.ints("attention_mask").unwrap();
        assert_eq!(mshape, shape, "{case}");
        assert_eq!(
            &mask[7..],
            &[1, 1, 1, 1, 1, 0, 0],
            "{case}: row 2 is right-padded"
        );
        let logits = c.output("logits");
        let vocab_or_labels = *logits.shape.last().unwrap();
        assert!(ids.iter().all(|&t| t >= 0), "{case}");
        match case {
            "bert_seqcls" | "gpt2_seqcls" => assert_eq!(logits.shape, vec![2, 3], "{case}"),
            "t5_original" | "t5_v11" | "bart" => {
                let (dshape, _) = c.ints("decoder_input_ids").unwrap();
                assert_eq!(dshape, vec![2, 5], "{case}");
                assert_eq!(logits.shape, vec![2, 5, vocab_or_labels], "{case}");
            }
            _ => assert_eq!(&logits.shape[..2], &[2, 7], "{case}"),
        }
        // The stored loss is a finite scalar.
        let loss = c.output("loss");
        assert!(loss.shape.is_empty() && loss.data[0].is_finite(), "{case}");
        // A fixture compared with itself is close; a perturbed copy is not.
        common::assert_close(case, &logits.data, &logits, 0.0, 0.0);
        let mut off = logits.data.clone();
        off[0] += 1e-3;
        let caught =
            std::panic::catch_unwind(|| common::assert_close(case, &off, &logits, 1e-5, 1e-5));
        assert!(
            caught.is_err(),
            "{case}: assert_close must catch a 1e-3 error"
        );
    }
}

/// A file holding the same (r, c) values as "a" (F32), "b" (BF16) and "h" (F16); returns
/// the values.
fn three_dtypes(path: &Path, r: usize, c: usize) -> Vec<f32> {
    let vals: Vec<f32> = (0..r * c).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    let f32_bytes: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bf_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect();
    let hf_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    save_raw(
        path,
        &[
            ("a", Dtype::F32, vec![r, c], f32_bytes),
            ("b", Dtype::BF16, vec![r, c], bf_bytes),
            ("h", Dtype::F16, vec![r, c], hf_bytes),
        ],
    )
    .unwrap();
    vals
}

/// `get_transposed` reads a stored (r, c) tensor as its (c, r) transpose, for every dtype it
/// widens, equal to reading it and transposing; a wrong stored shape names both shapes.
#[test]
fn transposed_reads_equal_read_then_transpose() {
    let dir = tmp_dir("transposed");
    let path = dir.join("t.safetensors");
    let (r, c) = (37, 70); // more than one 32 × 32 tile each way, neither a multiple
    let vals = three_dtypes(&path, r, c);
    let ck = Checkpoint::open(&path).unwrap();
    for name in ["a", "b", "h"] {
        let want = ck.get(name).unwrap().transpose2().unwrap();
        let got = ck.get_transposed(name, [r, c]).unwrap();
        assert_eq!(got.shape, vec![c, r], "{name}");
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(ck.get_transposed("a", [r, c]).unwrap().data[r], vals[1]);
    let msg = ck.get_transposed("a", [c, r]).unwrap_err().to_string();
    assert!(
        msg.contains("[70, 37]") && msg.contains("[37, 70]"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `get_tensor` as f32 equals `get` (or `get_transposed`); as bf16 it equals rounding that
/// with `half` (nearest even), for every stored dtype; wrong shapes, a transposed read of a
/// non-2-D shape and an integer dtype are errors naming the tensor.
#[test]
fn tensors_read_as_f32_or_rounded_to_bf16() {
    use pretext::tensor::DType;
    let dir = tmp_dir("get_tensor");
    let path = dir.join("t.safetensors");
    let (r, c) = (37, 70);
    three_dtypes(&path, r, c);
    let ck = Checkpoint::open(&path).unwrap();
    let round = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect()
    };
    for name in ["a", "b", "h"] {
        for transposed in [false, true] {
            let want = if transposed {
                ck.get_transposed(name, [r, c]).unwrap()
            } else {
                ck.get(name).unwrap()
            };
            let shape = want.shape.clone();
            let t = ck.get_tensor(name, &shape, transposed, DType::F32).unwrap();
            assert_eq!((t.dtype(), t.shape()), (DType::F32, &shape[..]));
            assert_eq!(t.to_vec_f32().unwrap(), want.data, "{name} {transposed}");
            let t = ck
                .get_tensor(name, &shape, transposed, DType::BF16)
                .unwrap();
            assert_eq!((t.dtype(), t.shape()), (DType::BF16, &shape[..]));
            assert_eq!(
                t.to_vec_f32().unwrap(),
                round(&want.data),
                "{name} {transposed} as bf16"
            );
        }
    }
    let msg = ck
        .get_tensor("a", &[r, c], true, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[70, 37]") && msg.contains("[37, 70]"),
        "{msg}"
    );
    let msg = ck
        .get_tensor("a", &[r * c], true, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("2-D") && msg.contains('a'), "{msg}");
    let msg = ck
        .get_tensor("a", &[r, c], false, DType::I64)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("i64"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}
