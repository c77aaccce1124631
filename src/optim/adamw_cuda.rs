//! AdamW on a CUDA device (real or emulated): parameters, gradients and both moments stay on
//! the device and each parameter is updated in place by one `adamw_f32` launch (kernels/optim.cu,
//! the same update as `adamw.rs` up to rounding: θ ← θ − lr·λ·θ, then the bias-corrected Adam
//! step; λ = 0 for parameters that do not decay).

use std::fmt;

use super::adamw::AdamW;
use crate::autograd::ParamStore;
use crate::backend::cuda::ops;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Moments of parameters that live on a device, in `ParamStore` order (created on first use).
#[derive(Clone, Default)]
pub struct DeviceMoments {
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
}

impl fmt::Debug for DeviceMoments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.m.iter().flatten().count();
        write!(f, "DeviceMoments({n} parameters on a device)")
    }
}

/// True when any parameter lives on a CUDA device.
pub(super) fn any_on_device(params: &ParamStore) -> bool {
    params.iter().any(|(_, p)| p.value().is_cuda())
}

impl AdamW {
    /// One update of parameters that live on a CUDA device (all of them must).
    pub(super) fn step_device(&mut self, params: &ParamStore, lr: f32) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let step =
            u32::try_from(self.step).map_err(|_| Error::msg("AdamW: step count overflow"))?;
        let moments = &mut self.device;
        moments.m.resize(params.len(), None);
        moments.v.resize(params.len(), None);
        for (i, (name, p)) in params.iter().enumerate() {
            let Some(g) = p.grad() else { continue };
            let value = p.value().clone();
            let Some(ctx) = value.cuda_context().cloned() else {
                return Err(Error::Device {
                    op: "adamw",
                    msg: format!("parameter `{name}` is on the host while others are on a device"),
                });
            };
            if g.numel() != value.numel() || self.m[i].len() != value.numel() {
                return Err(Error::msg(format!(
                    "AdamW: parameter `{name}` changed size"
                )));
            }
            let g = g.contiguous()?;
            let m = match &moments.m[i] {
                Some(m) => m.clone(),
                None => Tensor::full_cuda(&[value.numel()], 0.0, &ctx)?,
            };
            let v = match &moments.v[i] {
                Some(v) => v.clone(),
                None => Tensor::full_cuda(&[value.numel()], 0.0, &ctx)?,
            };
            let decay = c.weight_decay != 0.0 && (c.decay_all || value.rank() >= 2);
            let hp = ops::AdamW {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: if decay { c.weight_decay } else { 0.0 },
            };
            drop(value);
            p.update_value(|t| -> Result<()> {
                t.make_device_unique()?;
                ctx.ops().adamw(
                    t.numel(),
                    &t.f32_slice("adamw")?,
                    &g.f32_slice("adamw")?,
                    &m.f32_slice("adamw")?,
                    &v.f32_slice("adamw")?,
                    &hp,
                    step,
                    1.0,
                )
            })??;
            moments.m[i] = Some(m);
            moments.v[i] = Some(v);
        }
        Ok(())
    }

    /// Copy the device moments into `m` and `v` (e.g. before saving a checkpoint).
    pub fn moments_to_host(&mut self) -> Result<()> {
        for (i, (m, v)) in self.device.m.iter().zip(&self.device.v).enumerate() {
            if let (Some(m), Some(v)) = (m, v) {
                self.m[i] = m.to_cpu()?.to_vec::<f32>()?;
                self.v[i] = v.to_cpu()?.to_vec::<f32>()?;
            }
        }
        Ok(())
    }
}
