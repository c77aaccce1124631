//! Batched GEMM launchers (f32 SIMT, bf16 tensor cores, f32-in autocast) and the GEMM description.

use super::{cdiv, need, to_i32, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, Elem, KernelCall};
use crate::error::{Error, Result};

/// Batched GEMM description: `C_b = alpha op(A_b) op(B_b) + beta C_b` for b < batch, with
/// leading dimensions and batch strides in elements (stride 0 broadcasts an operand).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm {
    /// Contiguous, non-transposed `[batch, m, k] x [batch, k, n] -> [batch, m, n]`.
    pub fn contiguous(batch: usize, m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            batch,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// Elements an operand must hold: stored `rows x cols` with leading dimension `ld`.
    fn extent(batch: usize, stride: usize, rows: usize, cols: usize, ld: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        (batch - 1) * stride + (rows - 1) * ld + cols
    }
}

impl Ops<'_> {
    /// Batched GEMM on f32 (see [`Gemm`]).
    pub fn gemm_f32(
        &self,
        g: &Gemm,
        a: &DSlice<f32>,
        b: &DSlice<f32>,
        c: &DSlice<f32>,
    ) -> Result<()> {
        self.gemm("gemm_f32", g, a, b, c)
    }

    /// Batched GEMM with bf16 A and B, f32 accumulation and C, on tensor cores (sm_80+).
    pub fn gemm_bf16(
        &self,
        g: &Gemm,
        a: &DSlice<u16>,
        b: &DSlice<u16>,
        c: &DSlice<f32>,
    ) -> Result<()> {
        self.gemm("gemm_bf16", g, a, b, c)
    }

    /// Batched GEMM on f32 operands computed on tensor cores: A and B are rounded to bf16 as
    /// they are staged (autocast), accumulation and C stay f32.
    pub fn gemm_bf16_autocast(
        &self,
        g: &Gemm,
        a: &DSlice<f32>,
        b: &DSlice<f32>,
        c: &DSlice<f32>,
    ) -> Result<()> {
        self.gemm("gemm_bf16_autocast", g, a, b, c)
    }

    fn gemm<T: Elem>(
        &self,
        kernel: &'static str,
        g: &Gemm,
        a: &DSlice<T>,
        b: &DSlice<T>,
        c: &DSlice<f32>,
    ) -> Result<()> {
        let op = kernel;
        if g.batch == 0 || g.batch > 65535 {
            return Err(Error::shape(
                op,
                &[&[g.batch]],
                "batch must be in 1..=65535",
            ));
        }
        let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
        let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
        if g.lda < ac || g.ldb < bc || g.ldc < g.n {
            return Err(Error::shape(
                op,
                &[&[g.m, g.k], &[g.k, g.n], &[g.lda, g.ldb, g.ldc]],
                "leading dimension smaller than the row length",
            ));
        }
        need(op, "A", a, Gemm::extent(g.batch, g.stride_a, ar, ac, g.lda))?;
        need(op, "B", b, Gemm::extent(g.batch, g.stride_b, br, bc, g.ldb))?;
        need(
            op,
            "C",
            c,
            Gemm::extent(g.batch, g.stride_c, g.m, g.n, g.ldc),
        )?;
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let (m, n, k) = (
            to_i32(op, "M", g.m)?,
            to_i32(op, "N", g.n)?,
            to_i32(op, "K", g.k)?,
        );
        let block = if kernel == "gemm_f32" { 256 } else { 128 };
        let call = KernelCall::new(
            kernel,
            (cdiv(g.n, 64), cdiv(g.m, 64), g.batch as u32),
            (block, 1, 1),
            0,
        )
        .arg(Arg::i32(m))
        .arg(Arg::i32(n))
        .arg(Arg::i32(k))
        .buf(a)
        .arg(Arg::i64(g.lda as i64))
        .arg(Arg::i64(g.stride_a as i64))
        .arg(Arg::i32(g.trans_a as i32))
        .buf(b)
        .arg(Arg::i64(g.ldb as i64))
        .arg(Arg::i64(g.stride_b as i64))
        .arg(Arg::i32(g.trans_b as i32))
        .out("c", c)
        .arg(Arg::i64(g.ldc as i64))
        .arg(Arg::i64(g.stride_c as i64))
        .arg(Arg::f32(g.alpha))
        .arg(Arg::f32(g.beta));
        self.run(call)
    }
}
