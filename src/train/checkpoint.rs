//! Training checkpoints: `RUN_DIR/checkpoint/` holds
//!   model/            config.json + model.safetensors (Hugging Face layout)
//!   tokenizer/        the tokenizer that made the corpus
//!   optimizer.safetensors   AdamW moments `m.<param>`, `v.<param>`
//!   state.json        step, AdamW step, train config, seeds (the data position and the
//!                     dropout stream are functions of (seed, step))
//! It is written to `checkpoint.partial/` and swapped in with renames, so a crash never
//! leaves a half-written checkpoint where a resume would read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::models::checkpoint::{self, Checkpoint, RawTensor};
use crate::models::Model;
use crate::optim::{AdamW, AdamWConfig};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    pub adam_step: u64,
    pub config: TrainConfig,
    /// The corpus trained on.
    pub data: PathBuf,
}

pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

fn io<T>(p: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(p, e))
}

/// Write the checkpoint atomically.
pub fn save(
    run_dir: &Path,
    model: &Model,
    opt: &AdamW,
    tokenizer: &Tokenizer,
    state: &TrainState,
) -> Result<()> {
    let final_dir = checkpoint_dir(run_dir);
    let tmp = run_dir.join("checkpoint.partial");
    if tmp.exists() {
        io(&tmp, std::fs::remove_dir_all(&tmp))?;
    }
    io(&tmp, std::fs::create_dir_all(&tmp))?;
    model.save(&tmp.join("model"))?;
    tokenizer.save(&tmp.join("tokenizer"))?;
    let mut tensors = BTreeMap::new();
    for (i, (name, p)) in model.store().iter().enumerate() {
        let shape = p.shape();
        tensors.insert(
            format!("m.{name}"),
            RawTensor::new(shape.clone(), opt.m[i].clone())?,
        );
        tensors.insert(
            format!("v.{name}"),
            RawTensor::new(shape, opt.v[i].clone())?,
        );
    }
    checkpoint::save(tmp.join("optimizer.safetensors"), &tensors, &[])?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::msg(e.to_string()))?;
    io(&tmp, std::fs::write(tmp.join("state.json"), json))?;
    let old = run_dir.join("checkpoint.old");
    if old.exists() {
        io(&old, std::fs::remove_dir_all(&old))?;
    }
    if final_dir.exists() {
        io(&final_dir, std::fs::rename(&final_dir, &old))?;
    }
    io(&final_dir, std::fs::rename(&tmp, &final_dir))?;
    if old.exists() {
        io(&old, std::fs::remove_dir_all(&old))?;
    }
    Ok(())
}

/// Read a checkpoint back: (model, optimizer, tokenizer, state).
pub fn load(dir: &Path) -> Result<(Model, AdamW, Tokenizer, TrainState)> {
    let state_path = dir.join("state.json");
    let text = io(&state_path, std::fs::read_to_string(&state_path))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| Error::format(&state_path, "state.json", e.to_string()))?;
    let model = Model::load(&dir.join("model"))?;
    let tokenizer = Tokenizer::load(&dir.join("tokenizer"))?;
    let c = &state.config;
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decay_all: false,
        },
        model.store(),
    );
    let ck = Checkpoint::open(dir.join("optimizer.safetensors"))?;
    for (i, (name, p)) in model.store().iter().enumerate() {
        let shape = p.shape();
        opt.m[i] = ck.get_shaped(&format!("m.{name}"), &shape)?.data;
        opt.v[i] = ck.get_shaped(&format!("v.{name}"), &shape)?.data;
    }
    opt.step = state.adam_step;
    Ok((model, opt, tokenizer, state))
}
