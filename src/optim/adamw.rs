//! AdamW exactly as `torch.optim.AdamW` (decoupled weight decay, bias correction, ε added
//! after the bias correction of √v). For step t = 1, 2, …:
//!   θ ← θ·(1 − lr·λ)                       (only parameters that decay)
//!   m ← m + (1 − β1)·(g − m)                 (torch's lerp form of β1·m + (1 − β1)·g)
//!   v ← β2·v + (1 − β2)·g²
//!   θ ← θ − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! Weight decay applies to parameters of rank ≥ 2 by default (nanoGPT / llm.c groups);
//! `decay_all` applies it to every parameter (torch with one param group).
//! The element loop is `backend::cpu::adamw` (SIMD, bit-identical to the scalar form).

use std::borrow::Cow;

use crate::autograd::ParamStore;
use crate::backend::cpu::adamw::{adamw_update, AdamWStep};
use crate::error::{Error, Result};
use crate::tensor::DType;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decay every parameter, not only those of rank ≥ 2.
    pub decay_all: bool,
}

impl Default for AdamWConfig {
    /// torch.optim.AdamW's defaults.
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            decay_all: false,
        }
    }
}

/// Optimizer state: first and second moments per parameter (in `ParamStore` order) and the step.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Moments of parameters on a CUDA device (`adamw_cuda`); `m`, `v` hold them only after
    /// `moments_to_host`.
    pub device: super::adamw_cuda::DeviceMoments,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &ParamStore) -> Self {
        let zeros = || {
            params
                .iter()
                .map(|(_, p)| vec![0.0; p.value().numel()])
                .collect()
        };
        AdamW {
            config,
            step: 0,
            m: zeros(),
            v: zeros(),
            device: Default::default(),
        }
    }

    /// One update at learning rate `lr` (the schedule's value for this step).
    pub fn step(&mut self, params: &ParamStore, lr: f32) -> Result<()> {
        if self.m.len() != params.len() {
            return Err(Error::msg(format!(
                "AdamW: state for {} parameters, store has {}",
                self.m.len(),
                params.len()
            )));
        }
        if super::adamw_cuda::any_on_device(params) {
            return self.step_device(params, lr);
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        for (i, (name, p)) in params.iter().enumerate() {
            let Some(g) = p.grad() else { continue };
            // Read in place when it is an f32 tensor laid out densely (the usual case).
            let g = match g.dtype() {
                DType::F32 => g.f32s("AdamW")?,
                _ => Cow::Owned(g.to_vec_f32()?),
            };
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            if m.len() != g.len() {
                return Err(Error::msg(format!(
                    "AdamW: parameter `{name}` changed size"
                )));
            }
            let decay = c.weight_decay != 0.0 && (c.decay_all || p.value().rank() >= 2);
            let st = AdamWStep {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                decay: decay.then_some(1.0 - lr * c.weight_decay),
                bc2_sqrt,
                step_size,
            };
            p.update_value(|t| -> Result<()> {
                adamw_update(&st, t.f32s_mut()?, &g, m, v);
                Ok(())
            })??;
        }
        Ok(())
    }
}
