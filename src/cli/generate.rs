//! `pretext generate --checkpoint DIR --prompt "..."`: sample from a GPT, T5 or BART
//! checkpoint (greedy with --temperature 0; temperature, top-k, top-p otherwise), printing
//! the text as the tokens come.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

use super::Weights;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::generate::{generate, SamplingConfig};
use crate::models::Model;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A run folder, its checkpoint/ folder, or a model folder with a tokenizer/ beside or inside it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// New tokens at most.
    #[arg(long, default_value_t = 200)]
    pub max_tokens: usize,
    /// 0 means greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    #[arg(long)]
    pub threads: Option<usize>,
    /// How the model's matrices (Linear weights, embedding tables) are held while decoding:
    /// f32 as stored, or bf16 (weight-only bf16: half the bytes streamed per token, f32
    /// activations and sums; the outputs of the model with its matrices rounded to bf16).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
}

/// (model folder, tokenizer folder) of whatever the user pointed at.
pub fn resolve_checkpoint(p: &Path) -> Result<(PathBuf, PathBuf)> {
    for base in [p.join("checkpoint"), p.to_path_buf()] {
        if base.join("model/config.json").is_file() && base.join("tokenizer").is_dir() {
            return Ok((base.join("model"), base.join("tokenizer")));
        }
    }
    if p.join("config.json").is_file() {
        for t in [p.join("tokenizer"), p.join("../tokenizer"), p.to_path_buf()] {
            if t.join(crate::data::tokenizer::HF_FILE).is_file()
                || t.join(crate::data::tokenizer::CHAR_FILE).is_file()
            {
                return Ok((p.to_path_buf(), t));
            }
        }
    }
    Err(Error::msg(format!(
        "{}: not a checkpoint (expected checkpoint/model/config.json and checkpoint/tokenizer/, or a model folder with a tokenizer)",
        p.display()
    )))
}

pub fn run(a: Args) -> Result<()> {
    super::train::in_pool(a.threads, || run_in_pool(a))
}

fn run_in_pool(a: Args) -> Result<()> {
    let (model_dir, tok_dir) = resolve_checkpoint(&a.checkpoint)?;
    let model = Model::load_as(&model_dir, a.weights.dtype())?;
    if a.weights == Weights::Bf16 {
        let (n, bytes) = model
            .store()
            .iter()
            .map(|(_, v)| v.value())
            .filter(|t| t.dtype() == crate::tensor::DType::BF16)
            .fold((0, 0), |(n, b), t| (n + 1, b + 2 * t.numel()));
        eprintln!(
            "(weights: {n} matrices held in bf16, {:.1} MB)",
            bytes as f64 / 1e6
        );
    }
    let tok = Tokenizer::load(&tok_dir)?;
    let prompt = tok.encode(&a.prompt)?;
    let cfg = SamplingConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
    };
    let eos = tok.specials().eos.as_ref().map(|s| s.id);
    // The text shown grows as decode(context) grows. A GPT continues its prompt, so its
    // context starts with the prompt: a new token's leading space (word-level, SentencePiece
    // and byte-level decoders put it between tokens) then shows as the tokenizer decodes it.
    // T5 and BART write a new sequence.
    let mut context = Vec::new();
    if matches!(model, Model::Gpt2(_)) {
        print!("{}", a.prompt);
        context.extend_from_slice(&prompt);
    }
    let mut shown = tok.decode(&context)?;
    let out = generate(&model, &prompt, a.max_tokens, &cfg, eos, a.seed, |t| {
        context.push(t);
        let text = tok.decode(&context)?;
        if text.len() > shown.len() && text.starts_with(&shown) {
            print!("{}", &text[shown.len()..]);
            let _ = std::io::stdout().flush();
            shown = text;
        }
        Ok(())
    })?;
    println!();
    if out.stopped_at_eos {
        eprintln!(
            "(stopped at end of sequence after {} tokens)",
            out.tokens.len()
        );
    }
    Ok(())
}
