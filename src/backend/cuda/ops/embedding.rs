//! Embedding lookup and its backward.

use super::{need, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, KernelCall};
use crate::error::{Error, Result};

impl Ops<'_> {
    /// `out[i, :] = table[ids[i], :]`; an id outside `[0, vocab)` is an Index error (after the
    /// launch, through `flag`, one i32 of scratch).
    #[allow(clippy::too_many_arguments)]
    pub fn embedding(
        &self,
        n: usize,
        c: usize,
        vocab: usize,
        ids: &DSlice<i32>,
        table: &DSlice<f32>,
        out: &DSlice<f32>,
        flag: &DSlice<i32>,
    ) -> Result<()> {
        let name = "embedding_fwd_f32";
        need(name, "ids", ids, n)?;
        need(name, "table", table, vocab * c)?;
        need(name, "out", out, n * c)?;
        need(name, "flag", flag, 1)?;
        if n * c == 0 {
            return Ok(());
        }
        self.ex.clear_flag(flag)?;
        let call = KernelCall::new(name, self.stride_grid(n * c), (256, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "n", n)?))
            .arg(Arg::i32(to_i32(name, "C", c)?))
            .arg(Arg::i32(to_i32(name, "V", vocab)?))
            .buf(ids)
            .buf(table)
            .out("out", out)
            .out("flag", flag);
        self.run(call)?;
        match self.ex.read_flag(flag)? {
            0 => Ok(()),
            pos => Err(Error::Index {
                op: "embedding",
                msg: format!(
                    "id at position {} is outside the vocabulary of {vocab}",
                    pos - 1
                ),
            }),
        }
    }

    /// `dtable[ids[i], :] += dout[i, :]` (accumulates).
    pub fn embedding_bwd(
        &self,
        n: usize,
        c: usize,
        vocab: usize,
        ids: &DSlice<i32>,
        dout: &DSlice<f32>,
        dtable: &DSlice<f32>,
    ) -> Result<()> {
        let name = "embedding_bwd_f32";
        need(name, "ids", ids, n)?;
        need(name, "dout", dout, n * c)?;
        need(name, "dtable", dtable, vocab * c)?;
        if n * c == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(n * c), (256, 1, 1), 0)
            .arg(Arg::i32(to_i32(name, "n", n)?))
            .arg(Arg::i32(to_i32(name, "C", c)?))
            .arg(Arg::i32(to_i32(name, "V", vocab)?))
            .buf(ids)
            .buf(dout)
            .out("dtable", dtable);
        self.run(call)
    }
}
