//! Cross-entropy (fused log-softmax, ignore_index) launchers.

use super::{need, to_i32, to_u32_grid, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::{Error, Result};

impl Ops<'_> {
    /// Cross-entropy with log-softmax over `[rows, vocab]` logits: writes per-row `loss`
    /// (0 when ignored), `lse` and `valid` (1.0 / 0.0). A target outside `[0, vocab)` other than
    /// `ignore_index` is an Index error (through `flag`).
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy(
        &self,
        rows: usize,
        vocab: usize,
        logits: &DSlice<f32>,
        targets: &DSlice<i32>,
        ignore_index: i32,
        loss: &DSlice<f32>,
        lse: &DSlice<f32>,
        valid: &DSlice<f32>,
        flag: &DSlice<i32>,
    ) -> Result<()> {
        let name = "ce_fwd_f32";
        need(name, "logits", logits, rows * vocab)?;
        need(name, "targets", targets, rows)?;
        for (w, s) in [("loss", loss), ("lse", lse), ("valid", valid)] {
            need(name, w, s, rows)?;
        }
        need(name, "flag", flag, 1)?;
        if rows == 0 {
            return Ok(());
        }
        if vocab == 0 {
            return Err(Error::shape(name, &[&[rows, vocab]], "empty vocabulary"));
        }
        self.ex.clear_flag(flag)?;
        let call = KernelCall::new(name, (to_u32_grid(name, rows)?, 1, 1), (256, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "V", vocab)?))
            .buf(logits)
            .buf(targets)
            .arg(Arg::i32(ignore_index))
            .out("loss", loss)
            .out("lse", lse)
            .out("valid", valid)
            .out("flag", flag);
        self.run(call)?;
        match self.ex.read_flag(flag)? {
            0 => Ok(()),
            r => Err(Error::Index { op: "cross_entropy", msg: format!("target of row {} is outside [0, {vocab}) and is not ignore_index {ignore_index}", r - 1) }),
        }
    }

    /// `dlogits = (softmax - onehot) * dloss[0] / max(count[0], 1)` on valid rows, 0 on ignored
    /// ones; `count` null means a sum reduction.
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy_bwd(
        &self,
        rows: usize,
        vocab: usize,
        logits: &DSlice<f32>,
        targets: &DSlice<i32>,
        ignore_index: i32,
        lse: &DSlice<f32>,
        dloss: &DSlice<f32>,
        count: &DSlice<f32>,
        dlogits: &DSlice<f32>,
    ) -> Result<()> {
        let name = "ce_bwd_f32";
        need(name, "logits", logits, rows * vocab)?;
        need(name, "dlogits", dlogits, rows * vocab)?;
        need(name, "targets", targets, rows)?;
        need(name, "lse", lse, rows)?;
        need(name, "dloss", dloss, 1)?;
        if rows == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, (to_u32_grid(name, rows)?, 1, 1), (256, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "rows", rows)?))
            .arg(Arg::i32(to_i32(name, "V", vocab)?))
            .buf(logits)
            .buf(targets)
            .arg(Arg::i32(ignore_index))
            .buf(lse)
            .buf(dloss)
            .buf(count)
            .out("dlogits", dlogits);
        self.run(call)
    }
}
