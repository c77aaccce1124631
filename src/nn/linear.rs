//! Linear layer y = x·Wᵀ + b, with W stored (out, in) as `torch.nn.Linear`.
//! x: (…, in) → y: (…, out). Wᵀ is a stride view, not a copy.

use super::{join, Init};
use crate::autograd::{ParamStore, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;

#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl Linear {
    /// Registers `<prefix>.weight` (out, in) and, with `bias`, `<prefix>.bias` (out,) initialised to 0.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let weight = store.add(
            join(prefix, "weight"),
            init.tensor(&[out_features, in_features], rng),
        )?;
        let bias = if bias {
            Some(store.add(
                join(prefix, "bias"),
                Init::Zeros.tensor(&[out_features], rng),
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let shape = x.shape();
        let (in_f, out_f) = (self.in_features(), self.out_features());
        if shape.last() != Some(&in_f) {
            return Err(Error::shape(
                "linear",
                &[&shape, &self.weight.shape()],
                format!("input's last dim must be in_features = {in_f}"),
            ));
        }
        // Fold the leading dims into one so the product is a single GEMM.
        let rows = shape[..shape.len() - 1].iter().product();
        let x2 = if shape.len() == 2 {
            x.clone()
        } else {
            x.reshape(&[rows, in_f])?
        };
        let mut y = x2.matmul(&self.weight.transpose(0, 1)?)?;
        if let Some(b) = &self.bias {
            y = y.add(b)?;
        }
        let mut out_shape = shape.clone();
        *out_shape.last_mut().expect("rank ≥ 1") = out_f;
        if out_shape.len() == 2 {
            Ok(y)
        } else {
            y.reshape(&out_shape)
        }
    }
}
