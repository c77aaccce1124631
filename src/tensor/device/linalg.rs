//! Matrix products and sum reductions on the device.
//!
//! matmul: (…, m, k)·(…, k, n) → (…, m, n) as one batched `gemm_f32` launch. Each operand is
//! read through its strides when they describe a (possibly transposed) matrix with one batch
//! stride — a transposed weight `Wᵀ`, a broadcast batch — and materialised contiguously only
//! otherwise.
//!
//! sum_dims: the reduced dims are moved last (a strided copy unless they already are) and each
//! row summed by `sum_rows_f32`; sums over the leading dims of a contiguous tensor (bias
//! gradients) use `sum_cols_f32` directly.

use super::{new_f32, zeros};
use crate::backend::cuda::ops::Gemm;
use crate::backend::cuda::CudaContext;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// (transposed, leading dimension) of a `rows x cols` matrix with strides (rs, cs), when the
/// GEMM can read it in place.
fn matrix_form(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
    if (cs == 1 || cols == 1) && (rows == 1 || rs >= cols.max(1)) {
        return Some((false, if rows == 1 { cols.max(1) } else { rs }));
    }
    if (rs == 1 || rows == 1) && (cols == 1 || cs >= rows.max(1)) {
        return Some((true, if cols == 1 { rows.max(1) } else { cs }));
    }
    None
}

/// One stride for the batch dims (`shape`/`strides` already broadcast), if they have one.
fn batch_stride(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let mut stride: Option<usize> = None;
    let mut span = 1;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n == 1 {
            continue;
        }
        match stride {
            None => stride = Some(s),
            Some(s0) if s == s0 * span => {}
            Some(_) => return None,
        }
        span *= n;
    }
    Some(stride.unwrap_or(0))
}

/// How the GEMM reads one operand: (transposed, ld, batch stride, the tensor read).
fn operand(
    t: &Tensor,
    batch: &[usize],
    rows: usize,
    cols: usize,
) -> Result<(bool, usize, usize, Tensor)> {
    let r = t.rank();
    let bl = crate::tensor::Layout {
        shape: t.shape()[..r - 2].to_vec(),
        strides: t.strides()[..r - 2].to_vec(),
        offset: 0,
    }
    .broadcast_to("matmul", batch)?;
    let (rs, cs) = (t.strides()[r - 2], t.strides()[r - 1]);
    if let (Some((tr, ld)), Some(bs)) = (
        matrix_form(rows, cols, rs, cs),
        batch_stride(batch, &bl.strides),
    ) {
        return Ok((tr, ld, bs, t.clone()));
    }
    // Materialise the operand broadcast over the batch: contiguous, batch stride rows·cols.
    let mut full = batch.to_vec();
    full.extend([rows, cols]);
    let c = t.broadcast_to(&full)?.contiguous()?;
    Ok((false, cols.max(1), rows * cols, c))
}

/// Batched matmul with the shapes already checked: `batch` is the broadcast batch shape.
pub(crate) fn matmul(
    ctx: &CudaContext,
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> Result<Tensor> {
    let nb: usize = batch.iter().product();
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    if nb == 0 || m == 0 || n == 0 {
        return new_f32(ctx, &shape);
    }
    if k == 0 {
        return zeros(ctx, &shape);
    }
    let (ta, lda, sa, at) = operand(a, batch, m, k)?;
    let (tb, ldb, sb, bt) = operand(b, batch, k, n)?;
    let c = new_f32(ctx, &shape)?;
    let g = Gemm {
        m,
        n,
        k,
        batch: nb,
        trans_a: ta,
        trans_b: tb,
        lda,
        ldb,
        ldc: n,
        stride_a: sa,
        stride_b: sb,
        stride_c: m * n,
        alpha: 1.0,
        beta: 0.0,
    };
    ctx.ops().gemm_f32(
        &g,
        &at.f32_slice("matmul")?,
        &bt.f32_slice("matmul")?,
        &c.f32_slice("matmul")?,
    )?;
    Ok(c)
}

/// Σ over `dims` (negative dims count from the end); with `keepdim` reduced dims stay as 1.
pub(crate) fn sum_dims(
    ctx: &CudaContext,
    x: &Tensor,
    dims: &[isize],
    keepdim: bool,
) -> Result<Tensor> {
    let op = "sum";
    let r = x.rank();
    let mut reduced = vec![false; r];
    for &d in dims {
        let i = x.resolve_dim(op, d)?;
        if std::mem::replace(&mut reduced[i], true) {
            return Err(Error::shape(
                op,
                &[x.shape()],
                format!("dim {d} listed twice"),
            ));
        }
    }
    let out_shape: Vec<usize> = (0..r)
        .filter_map(|i| match (reduced[i], keepdim) {
            (false, _) => Some(x.shape()[i]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let kept: Vec<usize> = (0..r).filter(|&i| !reduced[i]).collect();
    let red: Vec<usize> = (0..r).filter(|&i| reduced[i]).collect();
    let outer: usize = kept.iter().map(|&i| x.shape()[i]).product();
    let inner: usize = red.iter().map(|&i| x.shape()[i]).product();
    if inner == 0 || outer == 0 {
        return zeros(ctx, &out_shape);
    }
    let y = new_f32(ctx, &out_shape)?;
    let ops = ctx.ops();
    let leading = red.iter().enumerate().all(|(j, &i)| i == j);
    if x.is_contiguous() && leading {
        ops.sum_cols(inner, outer, &x.f32_slice(op)?, &y.f32_slice(op)?, 1.0, 0.0)?;
        return Ok(y);
    }
    let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
    let rows = x.permute(&perm)?.contiguous()?;
    ops.sum_rows(
        outer,
        inner,
        &rows.f32_slice(op)?,
        &y.f32_slice(op)?,
        1.0,
        0.0,
    )?;
    Ok(y)
}
