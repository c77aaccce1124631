//! Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`:
//!   total = ‖(‖g_1‖₂, …, ‖g_n‖₂)‖₂ = √(Σ_i Σ_j g_ij²),  coef = min(max_norm / (total + 1e-6), 1)
//! and every gradient is multiplied by coef. Returns total (before clipping).
//! Host gradients are read where they lie (no copy) and squared and summed in f64; device
//! gradients are reduced on their device, with one transfer of the sum.

use crate::autograd::ParamStore;
use crate::backend::cpu::grad_norm as kernels;
use crate::backend::Device;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

pub fn clip_grad_norm(params: &ParamStore, max_norm: f32) -> Result<f32> {
    let total = grad_norm(params)?;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        for (_, p) in params.iter() {
            if let Some(g) = p.grad() {
                // Released first, so a host gradient's buffer is ours alone and is scaled in place.
                p.set_grad(None);
                p.set_grad(Some(scaled(g, coef)?));
            }
        }
    }
    Ok(total)
}

/// √(Σ_i Σ_j g_ij²) over the gradients present (0 when there are none).
pub fn grad_norm(params: &ParamStore) -> Result<f32> {
    let mut sq = 0.0f64;
    let mut on_device: Option<Tensor> = None;
    for (_, p) in params.iter() {
        let Some(g) = p.grad() else { continue };
        match (g.device(), g.dtype()) {
            (Device::Cpu, DType::F32) => sq += kernels::sum_squares(&g.f32s("clip_grad_norm")?),
            (Device::Cpu, _) => sq += kernels::sum_squares(&g.to_vec_f32()?),
            (Device::Cuda(_), _) => {
                let s = g.mul(&g)?.sum_all()?;
                on_device = Some(match on_device {
                    Some(t) => t.add(&s)?,
                    None => s,
                });
            }
        }
    }
    if let Some(t) = on_device {
        sq += t.to_cpu()?.scalar()? as f64;
    }
    Ok(sq.sqrt() as f32)
}

/// c·g, in g's own buffer when that is a host f32 buffer no other tensor shares.
fn scaled(mut g: Tensor, c: f32) -> Result<Tensor> {
    if g.device() == Device::Cpu && g.dtype() == DType::F32 {
        kernels::scale(g.f32s_mut()?, c);
        Ok(g)
    } else {
        g.mul_scalar(c)
    }
}
