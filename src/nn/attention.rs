//! Multi-head attention plumbing shared by the model families: splitting features into
//! heads, merging them back, and the key/value cache of incremental decoding.
//!
//! Head h owns features h·D .. (h+1)·D of the projected (B, T, H·D) activations:
//!   split:  (B, T, H·D) → (B, T, H, D) → (B, H, T, D)
//!   merge:  (B, H, T, D) → (B, T, H, D) → (B, T, H·D)
//! Both are views, no copies, on the host: the split of a column slice of a fused QKV
//! projection is a strided view the attention kernels read in place, and the host attention
//! returns its output in (B, T, H, D) memory order, which the merge reshapes for free.

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn split_heads(x: &Var, heads: usize) -> Result<Var> {
    let s = x.shape();
    if s.len() != 3 || !s[2].is_multiple_of(heads) {
        return Err(Error::shape(
            "split_heads",
            &[&s],
            format!("expected (B, T, H·D) with H = {heads} dividing the last dim"),
        ));
    }
    x.reshape(&[s[0], s[1], heads, s[2] / heads])?
        .permute(&[0, 2, 1, 3])
}

pub fn merge_heads(x: &Var) -> Result<Var> {
    let s = x.shape();
    if s.len() != 4 {
        return Err(Error::shape("merge_heads", &[&s], "expected (B, H, T, D)"));
    }
    x.permute(&[0, 2, 1, 3])?
        .reshape(&[s[0], s[2], s[1] * s[3]])
}

/// Keys and values of the positions already decoded, one entry per attention layer,
/// each (B, H, T_past, D). Only used without gradients (generation).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: vec![None; layers],
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn past_len(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |(k, _)| k.shape()[2])
    }

    /// Append this step's (k, v) to layer `i` and return the full (k, v) to attend over.
    pub fn extend(&mut self, i: usize, k: &Var, v: &Var) -> Result<(Var, Var)> {
        let (k, v) = (k.value().clone(), v.value().clone());
        let (k, v) = match self.layers[i].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[i] = Some((k.clone(), v.clone()));
        Ok((Var::constant(k), Var::constant(v)))
    }
}
