//! `pretext generate` on a GPT-2 checkpoint (the tiny HF fixture) with a WordPiece
//! tokenizer, whose decoder puts a space between words: the printed text is the prompt
//! followed by what decoding prompt + new tokens adds to decoding the prompt, so each new
//! word keeps its leading space. Checked against the library's greedy `generate`.

use std::path::PathBuf;
use std::process::Command;

use pretext::data::Tokenizer;
use pretext::generate::{generate, SamplingConfig};
use pretext::models::Model;
use pretext::tensor::DType;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A model folder: the gpt2_lm fixture's config and weights, with the WordPiece tokenizer
/// (600 tokens, more than the model's 99, so every generated id decodes).
fn checkpoint(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pretext-cli-generate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(format!("{FIXTURES}/hf/gpt2_lm/{f}"), dir.join(f)).unwrap();
    }
    std::fs::copy(
        format!("{FIXTURES}/tokenizers/bert-wordpiece/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    dir
}

#[test]
fn new_words_are_printed_with_their_spaces() {
    check_cli_against_library("f32");
}

/// `--weights bf16` decodes as the library does on the model read with bf16 matrices.
#[test]
fn bf16_weights_decode_as_the_library_model_with_bf16_matrices() {
    check_cli_against_library("bf16");
}

fn check_cli_against_library(weights: &str) {
    let dir = checkpoint(weights);
    let prompt = "be";
    let tok = Tokenizer::load(&dir).unwrap();
    let matrices = match weights {
        "bf16" => DType::BF16,
        _ => DType::F32,
    };
    let model = Model::load_as(&dir, matrices).unwrap();
    let ids = tok.encode(prompt).unwrap();
    let greedy = SamplingConfig {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };
    let eos = tok.specials().eos.as_ref().map(|s| s.id);
    let new = generate(&model, &ids, 12, &greedy, eos, 1, |_| Ok(()))
        .unwrap()
        .tokens;
    let base = tok.decode(&ids).unwrap();
    let full = tok.decode(&[ids.clone(), new].concat()).unwrap();
    assert!(full.starts_with(&base), "{full:?} does not extend {base:?}");
    let want = format!("{prompt}{}", &full[base.len()..]);
    assert!(
        want.len() > prompt.len() + 1 && want[prompt.len()..].starts_with(' '),
        "the continuation {:?} should start a new word",
        &want[prompt.len()..]
    );

    let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["generate", "--checkpoint"])
        .arg(&dir)
        .args([
            "--prompt",
            prompt,
            "--max-tokens",
            "12",
            "--temperature",
            "0",
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The fixture's greedy tokens do not change with bf16 rounding: the CLI says what it held.
    assert_eq!(
        stderr.contains("matrices held in bf16"),
        weights == "bf16",
        "{stderr}"
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim_end_matches('\n'), want);
    let _ = std::fs::remove_dir_all(&dir);
}
