//! Named presets: a model shape and the training hyper-parameters that go with it.
//! The vocabulary size always comes from the corpus's tokenizer.

use super::config::TrainConfig;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::models::config::{BartConfig, BertConfig, Gpt2Config, T5Config, TokenIds};
use crate::models::Model;
use crate::models::{Bart, Bert, BertHead, Gpt2, Gpt2Head, T5};
use crate::tensor::Rng;

/// Preset names per family, for help texts and errors.
pub const GPT_PRESETS: &[&str] = &[
    "tiny",
    "nanogpt-shakespeare-cpu",
    "nanogpt-shakespeare",
    "gpt2-124m",
];
pub const BERT_PRESETS: &[&str] = &["tiny", "small", "bert-base"];
pub const T5_PRESETS: &[&str] = &["tiny", "small", "t5-small"];
pub const BART_PRESETS: &[&str] = &["tiny", "small", "bart-base"];

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
        matmul_precision: "highest".into(),
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
        // Encoders and encoder-decoders: the tiny presets train in minutes on a CPU; the
        // named ones use the published model shapes with BERT's / T5's / BART's recipes.
        ("bert", "tiny") | ("bert", "small") => TrainConfig {
            steps: 600,
            batch_size: 16,
            seq_len: 128,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 60,
            decay_iters: 600,
            weight_decay: 0.01,
            beta2: 0.999,
            eps: 1e-6,
            ..base("bert", "mlm_nsp", preset)
        },
        ("bert", "bert-base") => TrainConfig {
            steps: 1_000_000,
            batch_size: 256,
            seq_len: 128,
            lr: 1e-4,
            min_lr: 0.0,
            warmup: 10_000,
            decay_iters: 1_000_000,
            weight_decay: 0.01,
            beta2: 0.999,
            eps: 1e-6,
            dropout: 0.1,
            eval_interval: 10_000,
            ..base("bert", "mlm_nsp", preset)
        },
        ("t5", "tiny") | ("t5", "small") => TrainConfig {
            steps: 600,
            batch_size: 16,
            seq_len: 128,
            lr: 2e-3,
            min_lr: 2e-4,
            warmup: 60,
            decay_iters: 600,
            weight_decay: 0.0,
            beta2: 0.999,
            ..base("t5", "span", preset)
        },
        ("t5", "t5-small") => TrainConfig {
            steps: 524_288,
            batch_size: 128,
            seq_len: 512,
            lr: 1e-2,
            min_lr: 1e-3,
            warmup: 10_000,
            decay_iters: 524_288,
            weight_decay: 0.0,
            beta2: 0.999,
            dropout: 0.1,
            eval_interval: 10_000,
            ..base("t5", "span", preset)
        },
        ("bart", "tiny") | ("bart", "small") => TrainConfig {
            steps: 600,
            batch_size: 16,
            seq_len: 128,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 60,
            decay_iters: 600,
            weight_decay: 0.01,
            beta2: 0.98,
            eps: 1e-6,
            grad_clip: 0.1,
            ..base("bart", "denoise", preset)
        },
        ("bart", "bart-base") => TrainConfig {
            steps: 500_000,
            batch_size: 64,
            seq_len: 512,
            lr: 4e-4,
            min_lr: 0.0,
            warmup: 10_000,
            decay_iters: 500_000,
            weight_decay: 0.01,
            beta2: 0.98,
            eps: 1e-6,
            grad_clip: 0.1,
            dropout: 0.1,
            eval_interval: 10_000,
            ..base("bart", "denoise", preset)
        },
        ("bert", o) | ("t5", o) | ("bart", o) => {
            let known = match arch {
                "bert" => BERT_PRESETS,
                "t5" => T5_PRESETS,
                _ => BART_PRESETS,
            };
            return Err(Error::msg(format!(
                "unknown {arch} preset \"{o}\"; known: {}",
                known.join(", ")
            )));
        }
        (other, _) => {
            return Err(Error::msg(format!(
                "unknown arch \"{other}\"; known: gpt, bert, t5, bart"
            )))
        }
    };
    Ok(c)
}

/// The architecture of a GPT preset (before the vocabulary and dropout of a run are set).
pub fn gpt_config(preset: &str) -> Result<Gpt2Config> {
    Ok(match preset {
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
    })
}

/// A freshly initialised model for `cfg` with the tokenizer's vocabulary and special ids.
pub fn build_model(cfg: &TrainConfig, tokenizer: &Tokenizer, rng: &mut Rng) -> Result<Model> {
    let vocab_size = tokenizer.vocab_size();
    let sp = tokenizer.specials();
    let id = |t: &Option<crate::data::tokenizer::SpecialToken>| t.as_ref().map(|t| t.id);
    let (pad, eos, bos) = (id(&sp.pad), id(&sp.eos), id(&sp.bos));
    let drop = cfg.dropout as f64;
    match cfg.arch.as_str() {
        "bert" => {
            let mut c = match cfg.preset.as_str() {
                "tiny" => BertConfig::tiny(),
                "small" => BertConfig::small(),
                _ => BertConfig::base(),
            };
            c.vocab_size = vocab_size;
            c.max_position_embeddings = c.max_position_embeddings.max(cfg.seq_len);
            c.pad_token_id = pad;
            c.hidden_dropout_prob = drop;
            c.attention_probs_dropout_prob = drop;
            let head = if cfg.objective == "mlm" {
                BertHead::MaskedLm
            } else {
                BertHead::PreTraining
            };
            Ok(Model::Bert(Bert::new(c, head, rng)?))
        }
        "t5" => {
            let mut c = match cfg.preset.as_str() {
                "tiny" => T5Config::tiny(),
                "small" => T5Config::small(),
                _ => T5Config::small(),
            };
            c.vocab_size = vocab_size;
            c.pad_token_id = pad;
            c.eos_token_id = eos.map(TokenIds::One);
            c.decoder_start_token_id = pad;
            c.dropout_rate = drop;
            Ok(Model::T5(T5::new(c, rng)?))
        }
        "bart" => {
            let mut c = match cfg.preset.as_str() {
                "tiny" => BartConfig::tiny(),
                "small" => BartConfig::small(),
                _ => BartConfig::base(),
            };
            c.vocab_size = vocab_size;
            c.max_position_embeddings = c.max_position_embeddings.max(cfg.seq_len);
            c.pad_token_id = pad;
            c.bos_token_id = bos;
            c.eos_token_id = eos.map(TokenIds::One);
            c.decoder_start_token_id = eos;
            c.forced_eos_token_id = None;
            c.dropout = drop;
            Ok(Model::Bart(Bart::new(c, rng)?))
        }
        "gpt" => {
            let mut c = gpt_config(&cfg.preset)?;
            c.vocab_size = vocab_size;
            c.n_positions = c.n_positions.max(cfg.seq_len);
            c.embd_pdrop = cfg.dropout as f64;
            c.resid_pdrop = cfg.dropout as f64;
            c.attn_pdrop = cfg.dropout as f64;
            Ok(Model::Gpt2(Gpt2::new(c, Gpt2Head::Lm, rng)?))
        }
        other => Err(Error::msg(format!(
            "training arch \"{other}\" is not available"
        ))),
    }
}
