//! Activation functions by their Hugging Face names (`ACT2FN`):
//!   relu: max(x, 0)
//!   gelu: exact x·Φ(x) = 0.5·x·(1 + erf(x/√2))          (BERT, BART, nanoGPT)
//!   gelu_new / gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))   (GPT-2, T5 v1.1)
//!   silu / swish: x·σ(x)

use crate::autograd::Var;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Gelu,
    GeluTanh,
    Silu,
}

impl Activation {
    /// The activation a config names; `model` names the family in the error.
    pub fn from_hf(model: &str, name: &str) -> Result<Activation> {
        Ok(match name {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(Error::msg(format!(
                    "{model}: unsupported activation \"{other}\" (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)"
                )))
            }
        })
    }

    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::GeluTanh => x.gelu_tanh(),
            Activation::Silu => x.mul(&x.sigmoid()?),
        }
    }
}
