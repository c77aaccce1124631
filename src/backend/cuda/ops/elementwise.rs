//! Elementwise launchers: broadcast binary ops, strided copies, unary ops, axpby, fill, casts and dropout.

use super::{need, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, Elem, KernelCall, KernelStruct};
use crate::error::{Error, Result};

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

impl Ops<'_> {
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

    /// `dst[dst_strides · idx] = src[src_strides · idx]` for every index of `shape`: a strided
    /// view copied into a strided destination, on any 4-byte element type (f32 or i32 ids,
    /// copied bit for bit). The destination positions must not overlap.
    pub fn copy_b32<T: Elem>(
        &self,
        shape: &[usize],
        src: &DSlice<T>,
        src_strides: &[usize],
        dst: &DSlice<T>,
        dst_strides: &[usize],
    ) -> Result<()> {
        let name = "copy_strided_b32";
        if std::mem::size_of::<T>() != 4 {
            return Err(Error::DType {
                op: name,
                expected: "a 4-byte element type (f32, i32)".into(),
                got: T::NAME.into(),
            });
        }
        let p = bcast(name, shape, src_strides, dst_strides)?;
        let n: usize = shape.iter().product();
        need(name, "src", src, strided_extent(shape, src_strides))?;
        need(name, "dst", dst, strided_extent(shape, dst_strides))?;
        if n == 0 {
            return Ok(());
        }
        let call = KernelCall::new(name, self.stride_grid(n), (256, 1, 1), 0)
            .arg(Arg::i64(n as i64))
            .buf(src)
            .out("dst", dst)
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
