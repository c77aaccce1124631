//! LayerNorm (optional weight and bias) and RMSNorm (weight only) over the last dim.

use super::{join, Init};
use crate::autograd::{ParamStore, Var};
use crate::error::Result;
use crate::tensor::Rng;

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Option<Var>,
    pub bias: Option<Var>,
    pub eps: f32,
}

impl LayerNorm {
    /// `<prefix>.weight` = 1 (when `affine`) and `<prefix>.bias` = 0 (when `bias`).
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        dim: usize,
        affine: bool,
        bias: bool,
        eps: f32,
        rng: &mut Rng,
    ) -> Result<LayerNorm> {
        let weight = if affine {
            Some(store.add(join(prefix, "weight"), Init::Ones.tensor(&[dim], rng))?)
        } else {
            None
        };
        let bias = if affine && bias {
            Some(store.add(join(prefix, "bias"), Init::Zeros.tensor(&[dim], rng))?)
        } else {
            None
        };
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.layer_norm(self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}

#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub weight: Var,
    pub eps: f32,
}

impl RmsNorm {
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        dim: usize,
        eps: f32,
        rng: &mut Rng,
    ) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: store.add(join(prefix, "weight"), Init::Ones.tensor(&[dim], rng))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.rms_norm(Some(&self.weight), self.eps)
    }
}
