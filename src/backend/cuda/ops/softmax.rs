//! Row softmax launchers (fused scale and masks) and its backward.

use super::{cdiv, need, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::{Error, Result};

impl Ops<'_> {
    /// Row softmax of `scale * x + mask` (mask: optional additive `[mask_rows, cols]`, row r
    /// uses mask row r % mask_rows; causal: column c > r % causal_t is masked). Rows of at most
    /// 1024 columns use a warp per row, longer ones a block per row.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &DSlice<f32>,
        y: &DSlice<f32>,
        scale: f32,
        mask: &DSlice<f32>,
        mask_rows: usize,
        causal_t: Option<usize>,
    ) -> Result<()> {
        let name = if cols <= 1024 {
            "softmax_fwd_warp_f32"
        } else {
            "softmax_fwd_block_f32"
        };
        need(name, "x", x, rows * cols)?;
        need(name, "y", y, rows * cols)?;
        if !mask.is_null() {
            if mask_rows == 0 {
                return Err(Error::shape(
                    name,
                    &[&[mask_rows, cols]],
                    "mask with 0 rows",
                ));
            }
            need(name, "mask", mask, mask_rows * cols)?;
        }
        if causal_t == Some(0) {
            return Err(Error::shape(
                name,
                &[&[rows, cols]],
                "causal_t must be >= 1",
            ));
        }
        if rows == 0 {
            return Ok(());
        }
        let (grid, block) = if cols <= 1024 {
            (cdiv(rows, 4), 128)
        } else {
            (rows as u32, 1024)
        };
        let call = KernelCall::new(name, (grid, 1, 1), (block, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(x)
            .out("y", y)
            .arg(Arg::f32(scale))
            .buf(mask)
            .arg(Arg::i32(mask_rows.max(1) as i32))
            .arg(Arg::i32(causal_t.is_some() as i32))
            .arg(Arg::i32(causal_t.unwrap_or(1) as i32));
        self.run(call)
    }

    /// `dx = scale * y * (dy - sum_c dy * y)`.
    pub fn softmax_bwd(
        &self,
        rows: usize,
        cols: usize,
        y: &DSlice<f32>,
        dy: &DSlice<f32>,
        dx: &DSlice<f32>,
        scale: f32,
    ) -> Result<()> {
        let name = "softmax_bwd_f32";
        for (w, s) in [("y", y), ("dy", dy), ("dx", dx)] {
            need(name, w, s, rows * cols)?;
        }
        if rows == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (cdiv(rows, 4), 1, 1), (128, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "cols", cols)?))
            .buf(y)
            .buf(dy)
            .out("dx", dx)
            .arg(Arg::f32(scale));
        self.run(call)
    }
}
