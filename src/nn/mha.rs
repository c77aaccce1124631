//! Multi-head attention with separate q, k, v and output projections (BERT, BART, and any
//! encoder-decoder): self-attention, causal self-attention and cross-attention, with an
//! optional key/value cache for incremental decoding.
//!   Q = x_q·W_qᵀ + b_q,  K = x_kv·W_kᵀ + b_k,  V = x_kv·W_vᵀ + b_v   (split into H heads)
//!   out = W_o · merge(dropout_p(softmax(scale·QKᵀ + bias, masks))·V) + b_o
//! (attention-probability dropout p only in training; see `attention_train`).

use super::attention::{merge_heads, split_heads, KvCache};
use super::{attend, AttnMask, Init, Linear, Train};
use crate::autograd::{ParamStore, Var};
use crate::error::Result;
use crate::tensor::Rng;

#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub heads: usize,
}

/// Full parameter prefixes of the four projections (their names differ per family).
pub struct MhaNames<'a> {
    pub q: &'a str,
    pub k: &'a str,
    pub v: &'a str,
    pub o: &'a str,
}

/// How keys and values are cached during incremental decoding.
pub enum KvMode<'a> {
    /// No cache: K and V from `x_kv` as given.
    None,
    /// Self-attention: this step's K, V are appended to layer `i` of the cache.
    Append(&'a mut KvCache, usize),
    /// Cross-attention: K, V of layer `i` are computed from `x_kv` once, then reused.
    Static(&'a mut KvCache, usize),
}

impl MultiHeadAttention {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        names: MhaNames,
        d_model: usize,
        inner: usize,
        heads: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(MultiHeadAttention {
            q: Linear::new(store, names.q, d_model, inner, bias, init, rng)?,
            k: Linear::new(store, names.k, d_model, inner, bias, init, rng)?,
            v: Linear::new(store, names.v, d_model, inner, bias, init, rng)?,
            o: Linear::new(store, names.o, inner, d_model, bias, init, rng)?,
            heads,
        })
    }

    /// x_q: (B, Tq, D), x_kv: (B, Tk, D) → (B, Tq, D); `p_attn`: attention-probability dropout.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x_q: &Var,
        x_kv: &Var,
        bias: Option<&Var>,
        mask: &AttnMask,
        kv: KvMode,
        p_attn: f32,
        train: &mut Train,
    ) -> Result<Var> {
        let q = split_heads(&self.q.forward(x_q)?, self.heads)?;
        let project = |x: &Var| -> Result<(Var, Var)> {
            Ok((
                split_heads(&self.k.forward(x)?, self.heads)?,
                split_heads(&self.v.forward(x)?, self.heads)?,
            ))
        };
        let (k, v) = match kv {
            KvMode::None => project(x_kv)?,
            KvMode::Append(cache, i) => {
                let (k, v) = project(x_kv)?;
                cache.extend(i, &k, &v)?
            }
            KvMode::Static(cache, i) => match cache.get(i)? {
                Some((k, v)) => (Var::constant(k), Var::constant(v)),
                None => {
                    let (k, v) = project(x_kv)?;
                    cache.set(i, &k.value(), &v.value())?;
                    (k, v)
                }
            },
        };
        let y = attend(&q, &k, &v, bias, mask, p_attn, train)?;
        self.o.forward(&merge_heads(&y)?)
    }
}
