//! The model being trained, whichever family it is: one enum so the training loop,
//! checkpoints and commands handle them alike.

use std::path::Path;

use super::config::ModelConfig;
use super::{Bart, Bert, Gpt2, T5};
use crate::autograd::ParamStore;
use crate::error::Result;

pub enum Model {
    Gpt2(Gpt2),
    Bert(Bert),
    Bart(Bart),
    T5(T5),
}

impl Model {
    pub fn store(&self) -> &ParamStore {
        match self {
            Model::Gpt2(m) => &m.store,
            Model::Bert(m) => &m.store,
            Model::Bart(m) => &m.store,
            Model::T5(m) => &m.store,
        }
    }

    pub fn arch(&self) -> &'static str {
        match self {
            Model::Gpt2(_) => "gpt",
            Model::Bert(_) => "bert",
            Model::Bart(_) => "bart",
            Model::T5(_) => "t5",
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.vocab_size,
            Model::Bert(m) => m.config.vocab_size,
            Model::Bart(m) => m.config.vocab_size,
            Model::T5(m) => m.config.vocab_size,
        }
    }

    /// Write config.json + model.safetensors in Hugging Face layout.
    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Model::Gpt2(m) => m.save_pretrained(dir),
            Model::Bert(m) => m.save_pretrained(dir),
            Model::Bart(m) => m.save_pretrained(dir),
            Model::T5(m) => m.save_pretrained(dir),
        }
    }

    /// Open a model directory of any supported family (dispatching on `model_type`).
    pub fn load(dir: &Path) -> Result<Model> {
        match ModelConfig::from_file(dir.join("config.json"))? {
            ModelConfig::Gpt2(_) => Ok(Model::Gpt2(Gpt2::from_pretrained(dir)?)),
            ModelConfig::Bert(_) => Ok(Model::Bert(Bert::from_pretrained(dir)?)),
            ModelConfig::Bart(_) => Ok(Model::Bart(Bart::from_pretrained(dir)?)),
            ModelConfig::T5(_) => Ok(Model::T5(T5::from_pretrained(dir)?)),
        }
    }
}
