//! Embedding table (V, C): ids of any shape → (…ids, C). Its gradient is a scatter-add.

use super::{join, Init};
use crate::autograd::{ParamStore, Var};
use crate::error::Result;
use crate::tensor::{Rng, Tensor};

#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Var,
    /// Row that receives no gradient from lookups (torch's `padding_idx`).
    pub padding_idx: Option<usize>,
}

impl Embedding {
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        num: usize,
        dim: usize,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Embedding> {
        Ok(Embedding {
            weight: store.add(join(prefix, "weight"), init.tensor(&[num, dim], rng))?,
            padding_idx: None,
        })
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Var> {
        self.weight.embedding_padded(ids, self.padding_idx)
    }
}
