//! Pointwise ops on the device: unary maps (composed from `unary_f32` and the activation
//! kernels), broadcast binary ops (`binary_f32`, operands read through their strides), and
//! the copies into strided destinations that `cat` and the adjoint of `narrow` need.

use super::{new_f32, not_on_device, zeros};
use crate::backend::cuda::ops::{Act, BinOp, UnOp};
use crate::backend::cuda::CudaContext;
use crate::error::{Error, Result};
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{Binary, Tensor, Unary};

/// y = f(x) elementwise. Maps without a kernel of their own are compositions:
/// rsqrt = 1/√x, sigmoid = 1/(1 + e^{−x}), relu' / gelu' = act_bwd with dy = 1, |x| = max(x, −x).
pub(crate) fn unary(ctx: &CudaContext, x: &Tensor, op: Unary) -> Result<Tensor> {
    let x = x.contiguous()?;
    let n = x.numel();
    let y = new_f32(ctx, x.shape())?;
    let ops = ctx.ops();
    let xs = x.f32_slice("unary")?;
    let ys = y.f32_slice("unary")?;
    let act = |a: Act| ops.act(a, n, &xs, &ys);
    let act_grad = |a: Act| -> Result<()> {
        let ones = Tensor::full_cuda(x.shape(), 1.0, ctx)?;
        ops.act_bwd(a, n, &xs, &ones.f32_slice("unary")?, &ys)
    };
    // Kernel steps (op, alpha), the first reading x, the later ones updating y in place.
    let chain: Vec<(UnOp, f32)> = match op {
        Unary::GeluErf => return act(Act::GeluErf).map(|_| y),
        Unary::GeluTanh => return act(Act::GeluTanh).map(|_| y),
        Unary::Step => return act_grad(Act::Relu).map(|_| y),
        Unary::GeluErfGrad => return act_grad(Act::GeluErf).map(|_| y),
        Unary::GeluTanhGrad => return act_grad(Act::GeluTanh).map(|_| y),
        Unary::Abs => {
            let neg = unary(ctx, &x, Unary::Neg)?;
            return binary(ctx, &x, &neg, Binary::Maximum);
        }
        Unary::Powf(3.0) => {
            let sq = unary(ctx, &x, Unary::Powf(2.0))?;
            return binary(ctx, &sq, &x, Binary::Mul);
        }
        Unary::Neg => vec![(UnOp::Neg, 0.0)],
        Unary::Exp => vec![(UnOp::Exp, 0.0)],
        Unary::Log => vec![(UnOp::Log, 0.0)],
        Unary::Sqrt => vec![(UnOp::Sqrt, 0.0)],
        Unary::Rsqrt => vec![(UnOp::Sqrt, 0.0), (UnOp::Recip, 0.0)],
        Unary::Tanh => vec![(UnOp::Tanh, 0.0)],
        Unary::Relu => vec![(UnOp::Relu, 0.0)],
        Unary::Sigmoid => vec![
            (UnOp::Neg, 0.0),
            (UnOp::Exp, 0.0),
            (UnOp::AddScalar, 1.0),
            (UnOp::Recip, 0.0),
        ],
        Unary::AddScalar(c) => vec![(UnOp::AddScalar, c)],
        Unary::MulScalar(c) => vec![(UnOp::Scale, c)],
        Unary::Powf(1.0) => vec![(UnOp::Scale, 1.0)],
        Unary::Powf(2.0) => vec![(UnOp::Square, 0.0)],
        Unary::Powf(0.5) => vec![(UnOp::Sqrt, 0.0)],
        Unary::Powf(-1.0) => vec![(UnOp::Recip, 0.0)],
        Unary::Powf(-0.5) => vec![(UnOp::Sqrt, 0.0), (UnOp::Recip, 0.0)],
        Unary::Powf(p) => {
            return Err(Error::Device {
                op: "powf",
                msg: format!(
                    "x^{p} is not implemented on {} (exponents 1, 2, 3, 0.5, -0.5 and -1 are)",
                    ctx.device()
                ),
            })
        }
    };
    // unary_f32 allows x == y.
    for (i, (u, alpha)) in chain.into_iter().enumerate() {
        let src = if i == 0 { xs } else { ys };
        ops.unary(u, n, &src, &ys, alpha)?;
    }
    Ok(y)
}

fn bin_op(op: Binary) -> BinOp {
    match op {
        Binary::Add => BinOp::Add,
        Binary::Sub => BinOp::Sub,
        Binary::Mul => BinOp::Mul,
        Binary::Div => BinOp::Div,
        Binary::Maximum => BinOp::Max,
        Binary::Minimum => BinOp::Min,
    }
}

/// y = a op b with NumPy broadcasting; a and b are read through their (broadcast) strides.
pub(crate) fn binary(ctx: &CudaContext, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    let name = "binary";
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let la = a.layout.broadcast_to(name, &shape)?;
    let lb = b.layout.broadcast_to(name, &shape)?;
    if shape.len() > 6 {
        return Err(Error::shape(
            name,
            &[a.shape(), b.shape()],
            format!("broadcast ops on {} support rank <= 6", ctx.device()),
        ));
    }
    let y = new_f32(ctx, &shape)?;
    ctx.ops().binary(
        bin_op(op),
        &shape,
        &a.f32_slice(name)?,
        &la.strides,
        &b.f32_slice(name)?,
        &lb.strides,
        &y.f32_slice(name)?,
    )?;
    Ok(y)
}

/// Copy `src` into the region of `dst` (a contiguous device tensor) that starts `offset`
/// elements in and has `dst_strides` over `src`'s shape.
fn copy_into(
    ctx: &CudaContext,
    src: &Tensor,
    dst: &Tensor,
    offset: usize,
    dst_strides: &[usize],
) -> Result<()> {
    let op = "copy";
    if src.rank() > 6 {
        return Err(Error::shape(
            op,
            &[src.shape()],
            format!("strided copies on {} support rank <= 6", ctx.device()),
        ));
    }
    ctx.ops().copy_b32(
        src.shape(),
        &src.f32_slice(op)?,
        src.strides(),
        &dst.f32_slice(op)?.offset(offset)?,
        dst_strides,
    )
}

/// Concatenation along `d` (shapes already checked by the caller): each input is copied into
/// its slice of the output.
pub(crate) fn cat(ctx: &CudaContext, ts: &[&Tensor], d: usize) -> Result<Tensor> {
    let mut shape = ts[0].shape().to_vec();
    shape[d] = ts.iter().map(|t| t.shape()[d]).sum();
    let out = new_f32(ctx, &shape)?;
    let strides = out.strides().to_vec();
    let mut start = 0;
    for t in ts {
        if t.dtype() != crate::tensor::DType::F32 {
            return Err(not_on_device("cat of index tensors", ctx));
        }
        copy_into(ctx, t, &out, start * strides[d], &strides)?;
        start += t.shape()[d];
    }
    Ok(out)
}

/// Writes `src` over `dst`'s slice start..start + len along `d`, in place: `dst` is first
/// made the sole owner of a dense buffer (copied when shared or a view), so no other tensor
/// sees the write.
pub(crate) fn write_narrow(
    ctx: &CudaContext,
    dst: &mut Tensor,
    d: usize,
    start: usize,
    src: &Tensor,
) -> Result<()> {
    if src.dtype() != crate::tensor::DType::F32 || dst.dtype() != crate::tensor::DType::F32 {
        return Err(not_on_device("write_narrow of index tensors", ctx));
    }
    dst.make_device_unique()?;
    let strides = dst.strides().to_vec();
    copy_into(ctx, src, dst, start * strides[d], &strides)
}

/// The adjoint of `narrow`: zeros of `g`'s shape with `full` entries along `d`, with `g`
/// placed at `start..start + len`.
pub(crate) fn narrow_backward(
    ctx: &CudaContext,
    g: &Tensor,
    d: usize,
    start: usize,
    full: usize,
) -> Result<Tensor> {
    let mut shape = g.shape().to_vec();
    shape[d] = full;
    let out = zeros(ctx, &shape)?;
    let strides = out.strides().to_vec();
    copy_into(ctx, g, &out, start * strides[d], &strides)?;
    Ok(out)
}
