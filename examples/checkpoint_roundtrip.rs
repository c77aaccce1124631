//! Round-trip a Hugging Face model directory through pretext's config and checkpoint code.
//!
//! `cargo run --example checkpoint_roundtrip -- SRC_DIR DST_DIR [LOGITS_KEY]`
//!
//! Reads SRC_DIR/config.json (ModelConfig) and SRC_DIR/model.safetensors (Checkpoint, as f32),
//! writes them to DST_DIR with pretext's writers, and writes DST_DIR/pretext_logits.safetensors
//! holding `logits` copied from SRC_DIR/outputs.safetensors (key LOGITS_KEY, default `logits`).
//! `tools/hf_roundtrip.py DST_DIR SRC_DIR/inputs.json` then loads DST_DIR in transformers and
//! compares its logits with that file: this checks the writers until the models can produce
//! their own logits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pretext::models::checkpoint::{self, Checkpoint};
use pretext::models::ModelConfig;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> pretext::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.len() > 4 {
        return Err(pretext::Error::msg(
            "usage: checkpoint_roundtrip SRC_DIR DST_DIR [LOGITS_KEY]",
        ));
    }
    let src = PathBuf::from(&args[1]);
    let dst = PathBuf::from(&args[2]);
    let key = args.get(3).map(String::as_str).unwrap_or("logits");
    std::fs::create_dir_all(&dst).map_err(|e| pretext::Error::io(&dst, e))?;

    let config = ModelConfig::from_file(src.join("config.json"))?;
    config.save(dst.join("config.json"))?;

    let tensors = checkpoint::load(src.join("model.safetensors"))?;
    checkpoint::save(dst.join("model.safetensors"), &tensors, &[])?;

    let outputs = Checkpoint::open(src.join("outputs.safetensors"))?;
    let mut logits = BTreeMap::new();
    logits.insert("logits".to_string(), outputs.get(key)?);
    checkpoint::save(dst.join("pretext_logits.safetensors"), &logits, &[])?;

    println!(
        "{}: {} ({} tensors) -> {}",
        config.model_type(),
        src.display(),
        tensors.len(),
        dst.display()
    );
    Ok(())
}
