//! Neural-network building blocks on `autograd::Var`, with parameters registered in a
//! `ParamStore` under Hugging Face names (`<prefix>.weight`, `<prefix>.bias`).

pub mod activation;
pub mod attention;
pub mod attention_train;
pub mod embedding;
pub mod init;
pub mod linear;
pub mod mha;
pub mod norm;

pub use activation::Activation;
pub use attention_train::{attend, AttnMask};
pub use embedding::Embedding;
pub use init::{no_init_weights, Init};
pub use linear::Linear;
pub use mha::{KvMode, MhaNames, MultiHeadAttention};
pub use norm::{LayerNorm, RmsNorm};

use crate::tensor::Rng;

/// Dropout randomness for a forward pass: `Some(rng)` in training, `None` in evaluation.
pub type Train<'a> = Option<&'a mut Rng>;

/// Inverted dropout with probability p in training (`train` is `Some`), the identity otherwise.
pub fn dropout(
    x: &crate::autograd::Var,
    p: f32,
    train: &mut Train,
) -> crate::error::Result<crate::autograd::Var> {
    match train {
        Some(rng) => x.dropout(p, true, rng),
        None => Ok(x.clone()),
    }
}

/// Join a module prefix and a parameter name with a dot (an empty prefix adds none).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
