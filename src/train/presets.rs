//! Named presets: a model shape and the training hyper-parameters that go with it.
//! The vocabulary size always comes from the corpus's tokenizer.

use super::config::TrainConfig;
use crate::models::Model;
use crate::error::{Error, Result};
use crate::models::config::Gpt2Config;
use crate::models::{Gpt2, Gpt2Head};
use crate::tensor::Rng;

/// Preset names per family, for help texts and errors.
pub const GPT_PRESETS: &[&str] = &["tiny", "nanogpt-shakespeare-cpu", "nanogpt-shakespeare", "gpt2-124m"];

fn base(arch: &str, objective: &str, preset: &str) -> TrainConfig {
    TrainConfig {
        arch: arch.into(),
        objective: objective.into(),
        preset: preset.into(),
        steps: 500,
        batch_size: 16,
        seq_len: 64,
        grad_accum: 1,
        lr: 2e-3,
        min_lr: 2e-4,
        warmup: 50,
        decay_iters: 500,
        weight_decay: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        grad_clip: 1.0,
        eval_interval: 100,
        eval_iters: 20,
        ckpt_interval: 0,
        log_interval: 10,
        seed: 1337,
        dropout: 0.0,
    }
}

/// The training defaults of a preset.
pub fn train_config(arch: &str, preset: &str) -> Result<TrainConfig> {
    let c = match (arch, preset) {
        ("gpt", "tiny") => base("gpt", "clm", "tiny"),
        // nanoGPT's CPU recipe (README): block 64, batch 12, 2000 iterations, lr 1e-3 → 1e-4.
        ("gpt", "nanogpt-shakespeare-cpu") => TrainConfig {
            steps: 2000,
            batch_size: 12,
            seq_len: 64,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            decay_iters: 2000,
            eval_interval: 250,
            eval_iters: 200,
            ..base("gpt", "clm", preset)
        },
        // config/train_shakespeare_char.py
        ("gpt", "nanogpt-shakespeare") => TrainConfig {
            steps: 5000,
            batch_size: 64,
            seq_len: 256,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            decay_iters: 5000,
            eval_interval: 250,
            eval_iters: 200,
            dropout: 0.2,
            ..base("gpt", "clm", preset)
        },
        // nanoGPT's train.py defaults for GPT-2 124M on OpenWebText.
        ("gpt", "gpt2-124m") => TrainConfig {
            steps: 600_000,
            batch_size: 12,
            seq_len: 1024,
            grad_accum: 40,
            lr: 6e-4,
            min_lr: 6e-5,
            warmup: 2000,
            decay_iters: 600_000,
            beta2: 0.95,
            eval_interval: 2000,
            eval_iters: 200,
            ..base("gpt", "clm", preset)
        },
        ("gpt", other) => {
            return Err(Error::msg(format!(
                "unknown gpt preset \"{other}\"; known: {}",
                GPT_PRESETS.join(", ")
            )))
        }
        (other, _) => return Err(Error::msg(format!("unknown arch \"{other}\"; known: gpt, bert, t5, bart"))),
    };
    Ok(c)
}

/// A freshly initialised model for `cfg` with the corpus's vocabulary size.
pub fn build_model(cfg: &TrainConfig, vocab_size: usize, rng: &mut Rng) -> Result<Model> {
    match cfg.arch.as_str() {
        "gpt" => {
            let mut c = match cfg.preset.as_str() {
                "tiny" => {
                    let mut c = Gpt2Config::shakespeare_char_cpu();
                    c.n_layer = 2;
                    c.n_head = 4;
                    c.n_embd = 64;
                    c
                }
                "nanogpt-shakespeare-cpu" => Gpt2Config::shakespeare_char_cpu(),
                "nanogpt-shakespeare" => Gpt2Config::shakespeare_char_gpu(),
                "gpt2-124m" => Gpt2Config::gpt2_124m(),
                other => return Err(Error::msg(format!("unknown gpt preset \"{other}\""))),
            };
            c.vocab_size = vocab_size;
            c.n_positions = c.n_positions.max(cfg.seq_len);
            c.embd_pdrop = cfg.dropout as f64;
            c.resid_pdrop = cfg.dropout as f64;
            c.attn_pdrop = cfg.dropout as f64;
            Ok(Model::Gpt2(Gpt2::new(c, Gpt2Head::Lm, rng)?))
        }
        other => Err(Error::msg(format!("training arch \"{other}\" is not available"))),
    }
}
