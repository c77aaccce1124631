//! Plain stochastic gradient descent: θ ← θ − lr·g.

use crate::autograd::ParamStore;
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f32,
}

impl Sgd {
    pub fn new(lr: f32) -> Self {
        Sgd { lr }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&self, params: &ParamStore) -> Result<()> {
        for (_, p) in params.iter() {
            let Some(g) = p.grad() else { continue };
            let g = g.to_vec_f32()?;
            p.update_value(|t| -> Result<()> {
                t.f32s_mut()?
                    .iter_mut()
                    .zip(&g)
                    .for_each(|(w, g)| *w -= self.lr * g);
                Ok(())
            })??;
        }
        Ok(())
    }
}
