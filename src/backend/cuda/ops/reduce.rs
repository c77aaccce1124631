//! Reduction launchers: sums over rows, columns and everything.

use super::{cdiv, need, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::Result;

impl Ops<'_> {
    /// `y[r] = alpha sum_c x[r, c] + beta y[r]`.
    pub fn sum_rows(
        &self,
        rows: usize,
        cols: usize,
        x: &DSlice<f32>,
        y: &DSlice<f32>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let name = "sum_rows_f32";
        need(name, "x", x, rows * cols)?;
        need(name, "y", y, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (cdiv(rows, 8), 1, 1), (256, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(x)
            .out("y", y)
            .arg(Arg::f32(alpha))
            .arg(Arg::f32(beta));
        self.run(call)
    }

    /// `y[c] = alpha sum_r x[r, c] + beta y[c]` (bias gradients); deterministic.
    pub fn sum_cols(
        &self,
        rows: usize,
        cols: usize,
        x: &DSlice<f32>,
        y: &DSlice<f32>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let name = "sum_cols_f32";
        need(name, "x", x, rows * cols)?;
        need(name, "y", y, cols)?;
        if cols == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (cdiv(cols, 32), 1, 1), (32, 8, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(x)
            .out("y", y)
            .arg(Arg::f32(alpha))
            .arg(Arg::f32(beta));
        self.run(call)
    }

    /// `out[0] = alpha sum_i x[i]` (out is zeroed first).
    pub fn sum_all(&self, n: usize, x: &DSlice<f32>, out: &DSlice<f32>, alpha: f32) -> Result<()> {
        let name = "sum_all_f32";
        need(name, "x", x, n)?;
        need(name, "out", out, 1)?;
        self.fill(1, out, 0.0)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("out", out)
            .arg(Arg::f32(alpha));
        self.run(call)
    }
}
