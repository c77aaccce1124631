//! Parameter initialisation.

use crate::tensor::{Rng, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// N(0, std²)
    Normal(f32),
    /// U[−a, a)
    Uniform(f32),
}

impl Init {
    pub fn tensor(self, shape: &[usize], rng: &mut Rng) -> Tensor {
        match self {
            Init::Zeros => Tensor::zeros(shape),
            Init::Ones => Tensor::ones(shape),
            Init::Normal(std) => Tensor::randn(shape, 0.0, std, rng),
            Init::Uniform(a) => Tensor::rand_uniform(shape, -a, a, rng),
        }
    }
}
