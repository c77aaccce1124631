//! The model being trained, whichever family it is: one enum so the training loop,
//! checkpoints and commands handle them alike.

use std::path::Path;

use super::config::ModelConfig;
use super::{weights, Bart, Bert, Gpt2, T5};
use crate::autograd::ParamStore;
use crate::error::{Error, Result};
use crate::tensor::DType;

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
        Model::load_as(dir, DType::F32)
    }

    /// `load` with the matrices (`weights::is_matrix`) read as `matrices`: F32, or BF16 for
    /// weight-only bf16 inference, rounded as the file is decoded so that no f32 copy of them
    /// is ever made (the same values as `load` then `cast_matrices(BF16)`).
    pub fn load_as(dir: &Path, matrices: DType) -> Result<Model> {
        check_matrix_dtype("load_as", matrices)?;
        match ModelConfig::from_file(dir.join("config.json"))? {
            ModelConfig::Gpt2(_) => Ok(Model::Gpt2(Gpt2::from_pretrained_as(dir, matrices)?)),
            ModelConfig::Bert(_) => Ok(Model::Bert(Bert::from_pretrained_as(dir, matrices)?)),
            ModelConfig::Bart(_) => Ok(Model::Bart(Bart::from_pretrained_as(dir, matrices)?)),
            ModelConfig::T5(_) => Ok(Model::T5(T5::from_pretrained_as(dir, matrices)?)),
        }
    }

    /// Stores the model's matrices (`weights::is_matrix`: every rank-2 `….weight` parameter,
    /// the Linear weights and the embedding tables, tied LM heads included) as `dtype`, F32
    /// or BF16, for inference with weight-only bf16: activations, norms and biases stay f32,
    /// each matmul multiplies f32 activations by the bf16 matrix widened exactly, and each
    /// lookup widens its rows.
    /// The outputs are then those of the f32 model on bf16-rounded matrices (up to the order
    /// of f32 sums), at half the bytes per decoding step. The parameters keep no f32 copy:
    /// an optimizer step on them is refused (an f32 update of a bf16 value). CPU only.
    /// Returns the number of parameters converted.
    pub fn cast_matrices(&self, dtype: DType) -> Result<usize> {
        check_matrix_dtype("cast_matrices", dtype)?;
        let mut n = 0;
        for (name, var) in self.store().iter() {
            let is_matrix = weights::is_matrix(name, var.value().shape());
            if is_matrix && var.value().dtype() != dtype {
                let cast = var.value().to_dtype(dtype)?;
                var.update_value(|v| *v = cast)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn check_matrix_dtype(op: &str, dtype: DType) -> Result<()> {
    if matches!(dtype, DType::F32 | DType::BF16) {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "{op}: matrices are held as f32 or bf16, not {dtype}"
        )))
    }
}
