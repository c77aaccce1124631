//! Activation launchers: plain and fused bias + activation, forward and backward.

use super::{need, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::Result;

/// Activation codes shared with `kernels/activation.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Identity = 0,
    GeluTanh = 1,
    GeluErf = 2,
    Relu = 3,
}

impl Ops<'_> {
    /// `y = act(x)` elementwise.
    pub fn act(&self, act: Act, n: usize, x: &DSlice<f32>, y: &DSlice<f32>) -> Result<()> {
        let name = "act_fwd_f32";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i32(act as i32))
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("y", y);
        self.run(call)
    }

    /// `dx = dy * act'(x)`.
    pub fn act_bwd(
        &self,
        act: Act,
        n: usize,
        x: &DSlice<f32>,
        dy: &DSlice<f32>,
        dx: &DSlice<f32>,
    ) -> Result<()> {
        let name = "act_bwd_f32";
        for (w, s) in [("x", x), ("dy", dy), ("dx", dx)] {
            need(name, w, s, n)?;
        }
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i32(act as i32))
            .arg(Arg::i64(n as i64))
            .buf(x)
            .buf(dy)
            .out("dx", dx);
        self.run(call)
    }

    /// `y[r, c] = act(x[r, c] + bias[c])`.
    pub fn bias_act(
        &self,
        act: Act,
        rows: usize,
        cols: usize,
        x: &DSlice<f32>,
        bias: &DSlice<f32>,
        y: &DSlice<f32>,
    ) -> Result<()> {
        let name = "bias_act_fwd_f32";
        need(name, "x", x, rows * cols)?;
        need(name, "y", y, rows * cols)?;
        need(name, "bias", bias, cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(rows * cols), (256, 1, 1), 0)
            .arg(Arg::i32(act as i32))
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(x)
            .buf(bias)
            .out("y", y);
        self.run(call)
    }

    /// `dx = dy * act'(x + bias)`; the bias gradient is then `sum_cols(dx)`.
    #[allow(clippy::too_many_arguments)]
    pub fn bias_act_bwd(
        &self,
        act: Act,
        rows: usize,
        cols: usize,
        x: &DSlice<f32>,
        bias: &DSlice<f32>,
        dy: &DSlice<f32>,
        dx: &DSlice<f32>,
    ) -> Result<()> {
        let name = "bias_act_bwd_f32";
        for (w, s) in [("x", x), ("dy", dy), ("dx", dx)] {
            need(name, w, s, rows * cols)?;
        }
        need(name, "bias", bias, cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(rows * cols), (256, 1, 1), 0)
            .arg(Arg::i32(act as i32))
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(x)
            .buf(bias)
            .buf(dy)
            .out("dx", dx);
        self.run(call)
    }
}
