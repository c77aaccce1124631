//! Embedding table (V, C): ids of any shape → (…ids, C). Its gradient is a scatter-add.

use super::{join, Init};
use crate::autograd::{ParamStore, Var};
use crate::error::Result;
use crate::tensor::{Rng, Tensor};

#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Var,
}

impl Embedding {
    pub fn new(store: &mut ParamStore, prefix: &str, num: usize, dim: usize, init: Init, rng: &mut Rng) -> Result<Embedding> {
        Ok(Embedding {
            weight: store.add(join(prefix, "weight"), init.tensor(&[num, dim], rng))?,
        })
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Var> {
        self.weight.embedding(ids)
    }
}
