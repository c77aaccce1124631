//! Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`:
//!   total = ‖(‖g_1‖₂, …, ‖g_n‖₂)‖₂,  coef = min(max_norm / (total + 1e-6), 1)
//! and every gradient is multiplied by coef. Returns total (before clipping).

use crate::autograd::ParamStore;
use crate::error::Result;

pub fn clip_grad_norm(params: &ParamStore, max_norm: f32) -> Result<f32> {
    let mut sq = 0.0f64;
    for (_, p) in params.iter() {
        if let Some(g) = p.grad() {
            sq += g
                .to_vec_f32()?
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>();
        }
    }
    let total = sq.sqrt() as f32;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        for (_, p) in params.iter() {
            if let Some(g) = p.grad() {
                p.set_grad(Some(g.mul_scalar(coef)?));
            }
        }
    }
    Ok(total)
}
