//! One launcher per kernel: shape checks on raw buffers, grid and block sizing, argument
//! packing. The same code runs on the GPU and in the emulator (it only talks to an
//! [`Executor`]), so the emulated tests also cover the launch arithmetic the GPU will use.
//!
//! Conventions: row-major f32 buffers unless stated; `rows x cols` matrices are contiguous.
//! Outputs are overwritten unless the method says it accumulates.

use super::launch::{Arg, DSlice, Elem, Executor, KernelCall, KernelStruct};
use crate::error::{Error, Result};

/// The launchers, bound to one executor.
pub struct Ops<'e> {
    pub ex: &'e dyn Executor,
}

fn need<T: Elem>(op: &'static str, what: &str, s: &DSlice<'_, T>, n: usize) -> Result<()> {
    if s.len < n {
        return Err(Error::shape(
            op,
            &[&[s.len], &[n]],
            format!(
                "buffer `{what}` has {} {} elements, needs {n}",
                s.len,
                T::NAME
            ),
        ));
    }
    Ok(())
}

fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::shape(
            op,
            &[&[v]],
            format!("`{what}` = {v} exceeds the kernel's 32-bit range"),
        )
    })
}

fn cdiv(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}

/// Activation codes shared with `kernels/activation.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Identity = 0,
    GeluTanh = 1,
    GeluErf = 2,
    Relu = 3,
}

/// Binary op codes shared with `kernels/elementwise.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
}

/// Unary op codes shared with `kernels/elementwise.cu` (`Scale` and `AddScalar` use alpha).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg = 0,
    Exp = 1,
    Log = 2,
    Sqrt = 3,
    Scale = 4,
    Relu = 5,
    Tanh = 6,
    AddScalar = 7,
    Square = 8,
    Recip = 9,
}

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

/// Broadcast/strided addressing (`Bcast` in kernels/elementwise.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Bcast {
    pub rank: i32,
    pub pad: i32,
    pub shape: [i64; 6],
    pub sa: [i64; 6],
    pub sb: [i64; 6],
}
// SAFETY: repr(C), two i32 then i64 arrays: no padding; matches `struct Bcast`.
unsafe impl KernelStruct for Bcast {}

/// Attention parameters (`AttnParams` in kernels/attention.cu); pointers are buffer addresses
/// (0 for an absent optional input).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AttnParams {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    pub lse: u64,
    pub bias: u64,
    pub key_mask: u64,
    pub dout: u64,
    pub delta: u64,
    pub dq: u64,
    pub dk: u64,
    pub dv: u64,
    pub dbias: u64,
    pub q_sb: i64,
    pub q_sh: i64,
    pub q_st: i64,
    pub k_sb: i64,
    pub k_sh: i64,
    pub k_st: i64,
    pub v_sb: i64,
    pub v_sh: i64,
    pub v_st: i64,
    pub o_sb: i64,
    pub o_sh: i64,
    pub o_st: i64,
    pub bias_sb: i64,
    pub bias_sh: i64,
    pub bias_sq: i64,
    pub b: i32,
    pub h: i32,
    pub tq: i32,
    pub tk: i32,
    pub d: i32,
    pub causal: i32,
    pub scale: f32,
    pub pad: i32,
}
// SAFETY: repr(C), 13 u64 + 15 i64 + 8 four-byte fields = 256 bytes with no padding; matches
// `struct AttnParams`.
unsafe impl KernelStruct for AttnParams {}

/// Shape and strides of one attention call. Strides are (batch, head, time) in elements; the
/// head dimension is contiguous. `bias_strides` address the optional additive bias
/// `[B, H, Tq, Tk]` (0 broadcasts, key stride 1).
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    pub b: usize,
    pub h: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub causal: bool,
    pub scale: f32,
    pub q_strides: [usize; 3],
    pub k_strides: [usize; 3],
    pub v_strides: [usize; 3],
    pub o_strides: [usize; 3],
    pub bias_strides: [usize; 3],
}

impl Attn {
    /// Contiguous `[B, H, T, D]` q, k, v, o with scale 1/sqrt(D).
    pub fn contiguous(b: usize, h: usize, tq: usize, tk: usize, d: usize, causal: bool) -> Attn {
        Attn {
            b,
            h,
            tq,
            tk,
            d,
            causal,
            scale: 1.0 / (d as f32).sqrt(),
            q_strides: [h * tq * d, tq * d, d],
            k_strides: [h * tk * d, tk * d, d],
            v_strides: [h * tk * d, tk * d, d],
            o_strides: [h * tq * d, tq * d, d],
            bias_strides: [h * tq * tk, tq * tk, tk],
        }
    }
    fn extent(&self, s: [usize; 3], t: usize) -> usize {
        (self.b - 1) * s[0] + (self.h - 1) * s[1] + (t - 1) * s[2] + self.d
    }
    fn params(&self) -> AttnParams {
        let i = |v: usize| v as i64;
        AttnParams {
            q_sb: i(self.q_strides[0]),
            q_sh: i(self.q_strides[1]),
            q_st: i(self.q_strides[2]),
            k_sb: i(self.k_strides[0]),
            k_sh: i(self.k_strides[1]),
            k_st: i(self.k_strides[2]),
            v_sb: i(self.v_strides[0]),
            v_sh: i(self.v_strides[1]),
            v_st: i(self.v_strides[2]),
            o_sb: i(self.o_strides[0]),
            o_sh: i(self.o_strides[1]),
            o_st: i(self.o_strides[2]),
            bias_sb: i(self.bias_strides[0]),
            bias_sh: i(self.bias_strides[1]),
            bias_sq: i(self.bias_strides[2]),
            b: self.b as i32,
            h: self.h as i32,
            tq: self.tq as i32,
            tk: self.tk as i32,
            d: self.d as i32,
            causal: self.causal as i32,
            scale: self.scale,
            ..Default::default()
        }
    }
    fn check(&self, op: &'static str) -> Result<()> {
        let dims = [self.b, self.h, self.tq, self.tk, self.d];
        if dims.contains(&0) || self.d > 128 {
            return Err(Error::shape(
                op,
                &[&dims],
                "need B, H, Tq, Tk >= 1 and 1 <= D <= 128",
            ));
        }
        if self.causal && self.tq != self.tk {
            return Err(Error::shape(
                op,
                &[&[self.tq], &[self.tk]],
                "causal attention needs Tq == Tk",
            ));
        }
        to_i32(
            op,
            "B*H*T*D",
            self.b * self.h * self.tq.max(self.tk) * self.d,
        )?;
        Ok(())
    }
}

/// Dynamic shared memory of the attention kernels, in bytes.
pub fn attn_fwd_smem(d: usize) -> u32 {
    ((16 * d + 32 * (d + 1) + 32 * d) * 4) as u32
}
pub fn attn_bwd_smem(d: usize) -> u32 {
    ((4 * 32 * (d + 1) + 2 * d) * 4) as u32
}

impl<'e> Ops<'e> {
    pub fn new(ex: &'e dyn Executor) -> Self {
        Ops { ex }
    }

    fn run(&self, call: KernelCall) -> Result<()> {
        call.check_space(self.ex.space())?;
        self.ex.launch(&call)
    }

    fn stride_grid(&self, n: usize) -> (u32, u32, u32) {
        (self.ex.grid_stride_blocks(n).max(1), 1, 1)
    }

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

    /// `y = a op b` with broadcasting: `shape` is y's shape (contiguous), `sa`/`sb` the element
    /// strides of a and b over it (0 broadcasts). Rank <= 6.
    #[allow(clippy::too_many_arguments)]
    pub fn binary(
        &self,
        op: BinOp,
        shape: &[usize],
        a: &DSlice<f32>,
        sa: &[usize],
        b: &DSlice<f32>,
        sb: &[usize],
        y: &DSlice<f32>,
    ) -> Result<()> {
        let name = "binary_f32";
        let p = bcast(name, shape, sa, sb)?;
        let n: usize = shape.iter().product();
        need(name, "a", a, strided_extent(shape, sa))?;
        need(name, "b", b, strided_extent(shape, sb))?;
        need(name, "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i32(op as i32))
            .arg(Arg::i64(n as i64))
            .buf(a)
            .buf(b)
            .out("y", y)
            .arg(Arg::by_value(&p));
        self.run(call)
    }

    /// `y = src` viewed with `shape` and element `strides` (materialises a strided view).
    pub fn copy_strided(
        &self,
        shape: &[usize],
        src: &DSlice<f32>,
        strides: &[usize],
        y: &DSlice<f32>,
    ) -> Result<()> {
        let name = "copy_strided_f32";
        let p = bcast(name, shape, strides, strides)?;
        let n: usize = shape.iter().product();
        need(name, "src", src, strided_extent(shape, strides))?;
        need(name, "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(src)
            .out("y", y)
            .arg(Arg::by_value(&p));
        self.run(call)
    }

    /// `y[i] = f(x[i])` for the first `n` elements.
    pub fn unary(
        &self,
        op: UnOp,
        n: usize,
        x: &DSlice<f32>,
        y: &DSlice<f32>,
        alpha: f32,
    ) -> Result<()> {
        let name = "unary_f32";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i32(op as i32))
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("y", y)
            .arg(Arg::f32(alpha));
        self.run(call)
    }

    /// `y = alpha x + beta y` (residual add, gradient accumulation); beta == 0 ignores old y.
    pub fn axpby(
        &self,
        n: usize,
        alpha: f32,
        x: &DSlice<f32>,
        beta: f32,
        y: &DSlice<f32>,
    ) -> Result<()> {
        let name = "axpby_f32";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .arg(Arg::f32(alpha))
            .buf(x)
            .arg(Arg::f32(beta))
            .out("y", y);
        self.run(call)
    }

    pub fn fill(&self, n: usize, y: &DSlice<f32>, value: f32) -> Result<()> {
        let name = "fill_f32";
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .out("y", y)
            .arg(Arg::f32(value));
        self.run(call)
    }

    /// f32 -> bf16 (round to nearest even), the autocast of matmul inputs.
    pub fn cast_to_bf16(&self, n: usize, x: &DSlice<f32>, y: &DSlice<u16>) -> Result<()> {
        let name = "cast_f32_bf16";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("y", y);
        self.run(call)
    }

    pub fn cast_from_bf16(&self, n: usize, x: &DSlice<u16>, y: &DSlice<f32>) -> Result<()> {
        let name = "cast_bf16_f32";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("y", y);
        self.run(call)
    }

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

    /// Dropout forward (`y = keep ? x / (1 - p) : 0`) and, with dy for x and dx for y, its
    /// backward: the keep mask is a function of (seed, offset + i) only.
    #[allow(clippy::too_many_arguments)]
    pub fn dropout(
        &self,
        n: usize,
        x: &DSlice<f32>,
        y: &DSlice<f32>,
        p: f32,
        seed: u64,
        offset: u64,
    ) -> Result<()> {
        let name = "dropout_f32";
        need(name, "x", x, n)?;
        need(name, "y", y, n)?;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::msg(format!(
                "dropout: probability {p} is not in [0, 1)"
            )));
        }
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(x)
            .out("y", y)
            .arg(Arg::f32(p))
            .arg(Arg::u64(seed))
            .arg(Arg::u64(offset));
        self.run(call)
    }

    /// Flash attention forward: writes o and lse (`[B, H, Tq]`). `bias` (additive, addressed by
    /// `a.bias_strides`) and `key_mask` (`[B, Tk]`, 1 = attend) may be null. q, k, v are f32,
    /// or bf16 (`u16`, mixed precision: read as bf16, computed and written in f32).
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: Elem>(
        &self,
        a: &Attn,
        q: &DSlice<T>,
        k: &DSlice<T>,
        v: &DSlice<T>,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
        o: &DSlice<f32>,
        lse: &DSlice<f32>,
    ) -> Result<()> {
        let name = attn_kernel::<T>("attn_fwd_f32", "attn_fwd_bf16")?;
        a.check(name)?;
        writable(name, &[("o", o.writable), ("lse", lse.writable)])?;
        need(name, "q", q, a.extent(a.q_strides, a.tq))?;
        need(name, "k", k, a.extent(a.k_strides, a.tk))?;
        need(name, "v", v, a.extent(a.v_strides, a.tk))?;
        need(name, "o", o, a.extent(a.o_strides, a.tq))?;
        need(name, "lse", lse, a.b * a.h * a.tq)?;
        self.check_bias_mask(name, a, bias, key_mask)?;
        let mut p = a.params();
        (p.q, p.k, p.v, p.o, p.lse, p.bias, p.key_mask) =
            (q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, bias.ptr, key_mask.ptr);
        let mut call = KernelCall::new(
            name,
            (cdiv(a.tq, 16), (a.b * a.h) as u32, 1),
            (128, 1, 1),
            attn_fwd_smem(a.d),
        )
        .arg(Arg::by_value(&p));
        call.spaces = spaces(
            &[q.space, k.space, v.space, o.space, lse.space],
            &[(bias.ptr, bias.space), (key_mask.ptr, key_mask.space)],
        );
        self.run(call)
    }

    /// Flash attention backward: needs o and lse from the forward and dout (o's strides);
    /// `delta` is `[B, H, Tq]` scratch. Writes dk, dv (contiguous `[B, H, Tk, D]`), overwrites
    /// dq (contiguous `[B, H, Tq, D]`) and accumulates into dbias if given.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_bwd<T: Elem>(
        &self,
        a: &Attn,
        q: &DSlice<T>,
        k: &DSlice<T>,
        v: &DSlice<T>,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
        o: &DSlice<f32>,
        lse: &DSlice<f32>,
        dout: &DSlice<f32>,
        delta: &DSlice<f32>,
        dq: &DSlice<f32>,
        dk: &DSlice<f32>,
        dv: &DSlice<f32>,
        dbias: &DSlice<f32>,
    ) -> Result<()> {
        let name = attn_kernel::<T>("attn_bwd_f32", "attn_bwd_bf16")?;
        a.check(name)?;
        let dbias_w = dbias.writable || dbias.is_null();
        writable(
            name,
            &[
                ("delta", delta.writable),
                ("dq", dq.writable),
                ("dk", dk.writable),
                ("dv", dv.writable),
                ("dbias", dbias_w),
            ],
        )?;
        need(name, "q", q, a.extent(a.q_strides, a.tq))?;
        need(name, "k", k, a.extent(a.k_strides, a.tk))?;
        need(name, "v", v, a.extent(a.v_strides, a.tk))?;
        need(name, "o", o, a.extent(a.o_strides, a.tq))?;
        need(name, "dout", dout, a.extent(a.o_strides, a.tq))?;
        for (w, s) in [("lse", lse), ("delta", delta)] {
            need(name, w, s, a.b * a.h * a.tq)?;
        }
        need(name, "dq", dq, a.b * a.h * a.tq * a.d)?;
        need(name, "dk", dk, a.b * a.h * a.tk * a.d)?;
        need(name, "dv", dv, a.b * a.h * a.tk * a.d)?;
        self.check_bias_mask(name, a, bias, key_mask)?;
        if !dbias.is_null() {
            need(name, "dbias", dbias, bias_extent(a))?;
        }
        self.fill(a.b * a.h * a.tq * a.d, dq, 0.0)?;
        let mut p = a.params();
        (p.q, p.k, p.v, p.o, p.lse, p.bias, p.key_mask) =
            (q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, bias.ptr, key_mask.ptr);
        (p.dout, p.delta, p.dq, p.dk, p.dv, p.dbias) =
            (dout.ptr, delta.ptr, dq.ptr, dk.ptr, dv.ptr, dbias.ptr);
        let sp = spaces(
            &[
                q.space,
                k.space,
                v.space,
                o.space,
                lse.space,
                dout.space,
                delta.space,
                dq.space,
                dk.space,
                dv.space,
            ],
            &[
                (bias.ptr, bias.space),
                (key_mask.ptr, key_mask.space),
                (dbias.ptr, dbias.space),
            ],
        );
        let mut pre = KernelCall::new(
            "attn_bwd_delta_f32",
            (cdiv(a.tq, 4), (a.b * a.h) as u32, 1),
            (128, 1, 1),
            0,
        )
        .arg(Arg::by_value(&p));
        pre.spaces = sp.clone();
        self.run(pre)?;
        let mut call = KernelCall::new(
            name,
            (cdiv(a.tk, 32), (a.b * a.h) as u32, 1),
            (32, 1, 1),
            attn_bwd_smem(a.d),
        )
        .arg(Arg::by_value(&p));
        call.spaces = sp;
        self.run(call)
    }

    fn check_bias_mask(
        &self,
        name: &'static str,
        a: &Attn,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
    ) -> Result<()> {
        if !bias.is_null() {
            need(name, "bias", bias, bias_extent(a))?;
        }
        if !key_mask.is_null() {
            need(name, "key_mask", key_mask, a.b * a.tk)?;
        }
        Ok(())
    }
}

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The attention kernel for q/k/v element type T: f32 or bf16.
fn attn_kernel<T: Elem>(f32_name: &'static str, bf16_name: &'static str) -> Result<&'static str> {
    match T::NAME {
        "f32" => Ok(f32_name),
        "bf16" => Ok(bf16_name),
        other => Err(Error::DType {
            op: "attention",
            expected: "f32 or bf16".into(),
            got: other.into(),
        }),
    }
}

fn writable(op: &'static str, outs: &[(&str, bool)]) -> Result<()> {
    match outs.iter().find(|(_, w)| !w) {
        None => Ok(()),
        Some((what, _)) => Err(Error::Device {
            op,
            msg: format!("output `{what}` was passed as a read-only view (DSlice::input)"),
        }),
    }
}

fn bias_extent(a: &Attn) -> usize {
    (a.b - 1) * a.bias_strides[0]
        + (a.h - 1) * a.bias_strides[1]
        + (a.tq - 1) * a.bias_strides[2]
        + a.tk
}

fn spaces(
    required: &[super::launch::Space],
    optional: &[(u64, super::launch::Space)],
) -> Vec<super::launch::Space> {
    let mut v = required.to_vec();
    v.extend(optional.iter().filter(|(p, _)| *p != 0).map(|(_, s)| *s));
    v
}

fn to_u32_grid(op: &'static str, rows: usize) -> Result<u32> {
    if rows > i32::MAX as usize {
        return Err(Error::shape(op, &[&[rows]], "too many rows for one grid"));
    }
    Ok(rows as u32)
}

fn smem_floats(op: &'static str, n: usize) -> Result<u32> {
    let bytes = n * 4;
    if bytes > 96 * 1024 {
        return Err(Error::shape(
            op,
            &[&[n]],
            "row length needs more than 96 KiB of shared memory",
        ));
    }
    Ok(bytes as u32)
}

fn bcast(op: &'static str, shape: &[usize], sa: &[usize], sb: &[usize]) -> Result<Bcast> {
    if shape.len() > 6 || sa.len() != shape.len() || sb.len() != shape.len() {
        return Err(Error::shape(
            op,
            &[shape, sa, sb],
            "need rank <= 6 and one stride per dimension",
        ));
    }
    let mut p = Bcast {
        rank: shape.len() as i32,
        ..Default::default()
    };
    for d in 0..shape.len() {
        p.shape[d] = shape[d] as i64;
        p.sa[d] = sa[d] as i64;
        p.sb[d] = sb[d] as i64;
    }
    Ok(p)
}

fn strided_extent(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(n, s)| (n - 1) * s)
        .sum::<usize>()
}
