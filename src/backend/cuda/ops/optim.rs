//! The AdamW update launcher and its hyper-parameters.

use super::{need, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Ops<'_> {
    /// One AdamW step on `n` parameters (see kernels/optim.cu); `step` counts from 1.
    #[allow(clippy::too_many_arguments)]
    pub fn adamw(
        &self,
        n: usize,
        p: &DSlice<f32>,
        grad: &DSlice<f32>,
        m: &DSlice<f32>,
        v: &DSlice<f32>,
        hp: &AdamW,
        step: u32,
        grad_scale: f32,
    ) -> Result<()> {
        let name = "adamw_f32";
        for (w, s) in [("param", p), ("grad", grad), ("m", m), ("v", v)] {
            need(name, w, s, n)?;
        }
        if step == 0 {
            return Err(Error::msg("adamw: step counts from 1"));
        }
        let bc1 = 1.0 - hp.beta1.powi(step as i32);
        let bc2 = 1.0 - hp.beta2.powi(step as i32);
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .out("p", p)
            .buf(grad)
            .out("m", m)
            .out("v", v)
            .arg(Arg::f32(hp.lr))
            .arg(Arg::f32(hp.beta1))
            .arg(Arg::f32(hp.beta2))
            .arg(Arg::f32(hp.eps))
            .arg(Arg::f32(hp.weight_decay))
            .arg(Arg::f32(bc1))
            .arg(Arg::f32(bc2))
            .arg(Arg::f32(grad_scale));
        self.run(call)
    }
}
