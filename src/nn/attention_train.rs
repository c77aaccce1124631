//! Attention as the model layers call it, with attention-probability dropout:
//!   y = dropout_p(softmax(S))·V,  S_ij = scale·⟨q_i, k_j⟩ + bias_ij where query i may attend
//!   key j, and S_ij = f32::MIN where it may not (causal: j > i + Tk − Tq; key padding:
//!   keep[b, j] = 0). As in the fused op, masked scores are replaced (no gradient flows through
//!   them) and a fully masked row gets uniform weights, passing gradient to v only.
//!
//! This is the fused op (`Var::attention`, no T×T buffer kept), in training with p > 0 with
//! its dropout: one draw of the run's `Rng` seeds a counter-based mask that the backward
//! regenerates. `attend_unfused` writes the same formula out op by op, keeping the
//! (B, H, Tq, Tk) probabilities; it draws the same seed and so drops the same probabilities,
//! which makes it the fused op's reference in the tests.

use std::sync::OnceLock;

use super::Train;
use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::tensor::{AttentionMasks, AttnDropout, Rng, Tensor};

/// The masks of one kind of attention in a stack (self or cross), and their dense
/// (B, 1, Tq, Tk) form (1 = masked) for the op-by-op path, built on its first use (the fused
/// op, which `attend` runs, never needs it).
#[derive(Clone, Debug)]
pub struct AttnMask {
    pub masks: AttentionMasks,
    dense: Dense,
}

/// The dense mask's shape (B, Tq, Tk) and, once built, the mask.
#[derive(Clone, Debug)]
struct Dense {
    shape: (usize, usize, usize),
    mask: OnceLock<Tensor>,
}

impl AttnMask {
    /// Masks for queries of length `tq` against `tk` keys in a batch of `b`.
    pub fn new(masks: AttentionMasks, b: usize, tq: usize, tk: usize) -> Result<Self> {
        if let Some(m) = &masks.key_padding {
            if m.shape() != [b, tk] {
                return Err(Error::shape(
                    "attention",
                    &[m.shape(), &[b, tk]],
                    "key padding mask must be (B, Tk)",
                ));
            }
        }
        let dense = Dense {
            shape: (b, tq, tk),
            mask: OnceLock::new(),
        };
        Ok(AttnMask { masks, dense })
    }

    /// The same masks with another score scale (GPT-2 scales by layer).
    pub fn with_scale(&self, scale: f32) -> AttnMask {
        let mut m = self.clone();
        m.masks.scale = Some(scale);
        m
    }

    /// The dense mask, built on first use; none without a causal or padding mask.
    fn dense(&self) -> Result<Option<&Tensor>> {
        if !self.masks.causal && self.masks.key_padding.is_none() {
            return Ok(None);
        }
        let d = &self.dense;
        if let Some(t) = d.mask.get() {
            return Ok(Some(t));
        }
        let (b, tq, tk) = d.shape;
        let t = dense_mask(&self.masks, b, tq, tk)?;
        Ok(Some(d.mask.get_or_init(|| t)))
    }
}

/// (B, 1, Tq, Tk): 0 where query i may attend key j, 1 where not.
fn dense_mask(masks: &AttentionMasks, b: usize, tq: usize, tk: usize) -> Result<Tensor> {
    let keep: Vec<bool> = match &masks.key_padding {
        Some(m) => {
            if m.shape() != [b, tk] {
                return Err(Error::shape(
                    "attention",
                    &[m.shape(), &[b, tk]],
                    "key padding mask must be (B, Tk)",
                ));
            }
            m.to_vec_f32()?.into_iter().map(|x| x != 0.0).collect()
        }
        None => vec![true; b * tk],
    };
    let mut masked = vec![0.0f32; b * tq * tk];
    for bi in 0..b {
        for i in 0..tq {
            for j in 0..tk {
                let causal_ok = !masks.causal || j + tq <= i + tk;
                if !(causal_ok && keep[bi * tk + j]) {
                    masked[(bi * tq + i) * tk + j] = 1.0;
                }
            }
        }
    }
    Tensor::from_vec(masked, &[b, 1, tq, tk])
}

/// Attention of q (B, H, Tq, D) over k (B, H, Tk, D), v (B, H, Tk, Dv) with an optional additive
/// `bias` broadcastable to (B, H, Tq, Tk), probabilities dropped with probability `p` in training.
pub fn attend(
    q: &Var,
    k: &Var,
    v: &Var,
    bias: Option<&Var>,
    mask: &AttnMask,
    p: f32,
    train: &mut Train,
) -> Result<Var> {
    match train {
        // (p outside [0, 1) goes this way too, for the op to refuse by name.)
        Some(rng) if p != 0.0 => {
            let masks = AttentionMasks {
                // The draw `dropout` makes in the op-by-op form.
                dropout: Some(AttnDropout {
                    p,
                    seed: rng.next_u64(),
                }),
                ..mask.masks.clone()
            };
            Var::attention(q, k, v, bias, &masks)
        }
        _ => Var::attention(q, k, v, bias, &mask.masks),
    }
}

/// The op-by-op form, dropout included (identity at p = 0): the reference the tests hold the
/// fused op against.
pub fn attend_unfused(
    q: &Var,
    k: &Var,
    v: &Var,
    bias: Option<&Var>,
    mask: &AttnMask,
    p: f32,
    rng: &mut Rng,
) -> Result<Var> {
    let dense = mask.dense()?;
    let d = q.shape()[3];
    let mut s = q.matmul(&k.transpose(-2, -1)?)?;
    let scale = mask.masks.scale.unwrap_or(1.0 / (d as f32).sqrt());
    if scale != 1.0 {
        s = s.mul_scalar(scale)?;
    }
    if let Some(bias) = bias {
        s = s.add(bias)?;
    }
    if let Some(masked) = dense {
        s = s.masked_fill(masked, f32::MIN)?;
    }
    s.softmax_last()?.dropout(p, true, rng)?.matmul(v)
}
