//! LayerNorm and RMSNorm launchers, forward and backward.

use super::{cdiv, need, smem_floats, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::Result;

impl Ops<'_> {
    /// LayerNorm over rows of `[rows, c]`: writes y, mean and rstd (`[rows]` each).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm(
        &self,
        rows: usize,
        c: usize,
        x: &DSlice<f32>,
        gamma: &DSlice<f32>,
        beta: &DSlice<f32>,
        y: &DSlice<f32>,
        mean: &DSlice<f32>,
        rstd: &DSlice<f32>,
        eps: f32,
    ) -> Result<()> {
        let name = "layernorm_fwd_f32";
        need(name, "x", x, rows * c)?;
        need(name, "y", y, rows * c)?;
        need(name, "gamma", gamma, c)?;
        need(name, "beta", beta, c)?;
        need(name, "mean", mean, rows)?;
        need(name, "rstd", rstd, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (cdiv(rows, 4), 1, 1), (128, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "C", c)?))
            .buf(x)
            .buf(gamma)
            .buf(beta)
            .out("y", y)
            .out("mean", mean)
            .out("rstd", rstd)
            .arg(Arg::f32(eps));
        self.run(call)
    }

    /// LayerNorm backward: writes dx, accumulates into dgamma and dbeta.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_bwd(
        &self,
        rows: usize,
        c: usize,
        dy: &DSlice<f32>,
        x: &DSlice<f32>,
        gamma: &DSlice<f32>,
        mean: &DSlice<f32>,
        rstd: &DSlice<f32>,
        dx: &DSlice<f32>,
        dgamma: &DSlice<f32>,
        dbeta: &DSlice<f32>,
    ) -> Result<()> {
        let name = "layernorm_bwd_f32";
        for (w, s) in [("dy", dy), ("x", x), ("dx", dx)] {
            need(name, w, s, rows * c)?;
        }
        for (w, s) in [("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
            need(name, w, s, c)?;
        }
        need(name, "mean", mean, rows)?;
        need(name, "rstd", rstd, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let smem = smem_floats(name, 2 * c)?;
        let call = KernelCall::new(
            name,
            (
                cdiv(rows, 4).min(self.ex.grid_stride_blocks(rows * c)),
                1,
                1,
            ),
            (128, 1, 1),
            smem,
        )
        .arg(Arg::i32(to_i32(name, "rows", rows)?))
        .arg(Arg::i32(to_i32(name, "C", c)?))
        .buf(dy)
        .buf(x)
        .buf(gamma)
        .buf(mean)
        .buf(rstd)
        .out("dx", dx)
        .out("dgamma", dgamma)
        .out("dbeta", dbeta);
        self.run(call)
    }

    /// RMSNorm: writes y and rstd.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(
        &self,
        rows: usize,
        c: usize,
        x: &DSlice<f32>,
        gamma: &DSlice<f32>,
        y: &DSlice<f32>,
        rstd: &DSlice<f32>,
        eps: f32,
    ) -> Result<()> {
        let name = "rmsnorm_fwd_f32";
        need(name, "x", x, rows * c)?;
        need(name, "y", y, rows * c)?;
        need(name, "gamma", gamma, c)?;
        need(name, "rstd", rstd, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (cdiv(rows, 4), 1, 1), (128, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "C", c)?))
            .buf(x)
            .buf(gamma)
            .out("y", y)
            .out("rstd", rstd)
            .arg(Arg::f32(eps));
        self.run(call)
    }

    /// RMSNorm backward: writes dx, accumulates into dgamma.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm_bwd(
        &self,
        rows: usize,
        c: usize,
        dy: &DSlice<f32>,
        x: &DSlice<f32>,
        gamma: &DSlice<f32>,
        rstd: &DSlice<f32>,
        dx: &DSlice<f32>,
        dgamma: &DSlice<f32>,
    ) -> Result<()> {
        let name = "rmsnorm_bwd_f32";
        for (w, s) in [("dy", dy), ("x", x), ("dx", dx)] {
            need(name, w, s, rows * c)?;
        }
        need(name, "gamma", gamma, c)?;
        need(name, "dgamma", dgamma, c)?;
        need(name, "rstd", rstd, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let smem = smem_floats(name, c)?;
        let call = KernelCall::new(
            name,
            (
                cdiv(rows, 4).min(self.ex.grid_stride_blocks(rows * c)),
                1,
                1,
            ),
            (128, 1, 1),
            smem,
        )
        .arg(Arg::i32(to_i32(name, "rows", rows)?))
        .arg(Arg::i32(to_i32(name, "C", c)?))
        .buf(dy)
        .buf(x)
        .buf(gamma)
        .buf(rstd)
        .out("dx", dx)
        .out("dgamma", dgamma);
        self.run(call)
    }
}
