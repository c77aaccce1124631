//! Fused neural-network ops on the device: LayerNorm / RMSNorm (forward and backward), row
//! softmax, embedding lookup and its scatter-add adjoint, cross-entropy with `ignore_index`
//! (the mean loss stays on the device: Σ loss_r / Σ valid_r), and dropout masks drawn by the
//! counter-based dropout kernel.

use super::{ids_on, new_f32, not_on_device, on_device, zeros};
use crate::backend::cuda::CudaContext;
use crate::error::{Error, Result};
use crate::tensor::{CrossEntropyOut, NormOut, Tensor};

/// What the backward of a device cross-entropy needs, kept on the device.
#[derive(Clone, Debug)]
pub struct CrossEntropyDevice {
    /// Per-row logsumexp, (rows,).
    pub lse: Tensor,
    /// Targets as device indices, (rows,).
    pub targets: Tensor,
    /// Number of rows that carry loss, as a 0-d f32 tensor.
    pub count: Tensor,
}

/// (rows, cols) of a tensor normalised over its non-empty last dim.
fn rows_cols(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    match t.shape().last() {
        Some(&c) if c > 0 => Ok((t.numel() / c, c)),
        _ => Err(Error::shape(
            op,
            &[t.shape()],
            "needs rank >= 1 and a non-empty last dim",
        )),
    }
}

/// A (C,) parameter on the device, or `fill` when absent.
fn param_or(
    ctx: &CudaContext,
    op: &'static str,
    x: &Tensor,
    p: Option<&Tensor>,
    cols: usize,
    fill: f32,
) -> Result<Tensor> {
    match p {
        None => Tensor::full_cuda(&[cols], fill, ctx),
        Some(p) => {
            on_device(op, &[x, p])?;
            if p.shape() != [cols] {
                return Err(Error::shape(
                    op,
                    &[x.shape(), p.shape()],
                    format!("parameter must be ({cols},)"),
                ));
            }
            p.contiguous()
        }
    }
}

pub(crate) fn layer_norm(
    ctx: &CudaContext,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<NormOut> {
    let op = "layer_norm";
    let (rows, cols) = rows_cols(op, x)?;
    let g = param_or(ctx, op, x, gamma, cols, 1.0)?;
    let b = param_or(ctx, op, x, beta, cols, 0.0)?;
    let x = x.contiguous()?;
    let stat_shape = &x.shape()[..x.rank() - 1];
    let (y, mean, rstd) = (
        new_f32(ctx, x.shape())?,
        new_f32(ctx, stat_shape)?,
        new_f32(ctx, stat_shape)?,
    );
    ctx.ops().layernorm(
        rows,
        cols,
        &x.f32_slice(op)?,
        &g.f32_slice(op)?,
        &b.f32_slice(op)?,
        &y.f32_slice(op)?,
        &mean.f32_slice(op)?,
        &rstd.f32_slice(op)?,
        eps,
    )?;
    Ok(NormOut {
        y,
        mean: Some(mean),
        rstd,
    })
}

pub(crate) fn rms_norm(
    ctx: &CudaContext,
    x: &Tensor,
    gamma: Option<&Tensor>,
    eps: f32,
) -> Result<NormOut> {
    let op = "rms_norm";
    let (rows, cols) = rows_cols(op, x)?;
    let g = param_or(ctx, op, x, gamma, cols, 1.0)?;
    let x = x.contiguous()?;
    let y = new_f32(ctx, x.shape())?;
    let rstd = new_f32(ctx, &x.shape()[..x.rank() - 1])?;
    ctx.ops().rmsnorm(
        rows,
        cols,
        &x.f32_slice(op)?,
        &g.f32_slice(op)?,
        &y.f32_slice(op)?,
        &rstd.f32_slice(op)?,
        eps,
    )?;
    Ok(NormOut {
        y,
        mean: None,
        rstd,
    })
}

/// (dx, dγ, dβ) of LayerNorm, or of RMSNorm when `mean` is None (dβ is then zeros).
pub(crate) fn norm_backward(
    ctx: &CudaContext,
    x: &Tensor,
    gamma: Option<&Tensor>,
    mean: Option<&Tensor>,
    rstd: &Tensor,
    dy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "norm_backward";
    let (rows, cols) = rows_cols(op, x)?;
    on_device(op, &[x, rstd, dy])?;
    if dy.shape() != x.shape() || rstd.numel() != rows {
        return Err(Error::shape(
            op,
            &[x.shape(), dy.shape(), rstd.shape()],
            "dy must match x and rstd hold one value per row",
        ));
    }
    let g = param_or(ctx, op, x, gamma, cols, 1.0)?;
    let (x, dy, rstd) = (x.contiguous()?, dy.contiguous()?, rstd.contiguous()?);
    let dx = new_f32(ctx, x.shape())?;
    let (dg, db) = (zeros(ctx, &[cols])?, zeros(ctx, &[cols])?);
    let ops = ctx.ops();
    match mean {
        Some(m) => {
            on_device(op, &[&x, m])?;
            let m = m.contiguous()?;
            ops.layernorm_bwd(
                rows,
                cols,
                &dy.f32_slice(op)?,
                &x.f32_slice(op)?,
                &g.f32_slice(op)?,
                &m.f32_slice(op)?,
                &rstd.f32_slice(op)?,
                &dx.f32_slice(op)?,
                &dg.f32_slice(op)?,
                &db.f32_slice(op)?,
            )?
        }
        None => ops.rmsnorm_bwd(
            rows,
            cols,
            &dy.f32_slice(op)?,
            &x.f32_slice(op)?,
            &g.f32_slice(op)?,
            &rstd.f32_slice(op)?,
            &dx.f32_slice(op)?,
            &dg.f32_slice(op)?,
        )?,
    }
    Ok((dx, dg, db))
}

/// Row softmax over the last dim.
pub(crate) fn softmax_last(ctx: &CudaContext, x: &Tensor) -> Result<Tensor> {
    let op = "softmax";
    let (rows, cols) = rows_cols(op, x)?;
    let x = x.contiguous()?;
    let y = new_f32(ctx, x.shape())?;
    let null = crate::backend::cuda::DSlice::null(ctx.executor().space());
    ctx.ops().softmax(
        rows,
        cols,
        &x.f32_slice(op)?,
        &y.f32_slice(op)?,
        1.0,
        &null,
        0,
        None,
    )?;
    Ok(y)
}

/// dx = y ⊙ (dy − Σ dy ⊙ y) of the row softmax.
pub(crate) fn softmax_last_backward(ctx: &CudaContext, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let op = "softmax_backward";
    let (rows, cols) = rows_cols(op, y)?;
    on_device(op, &[y, dy])?;
    let (y, dy) = (y.contiguous()?, dy.contiguous()?);
    let dx = new_f32(ctx, y.shape())?;
    ctx.ops().softmax_bwd(
        rows,
        cols,
        &y.f32_slice(op)?,
        &dy.f32_slice(op)?,
        &dx.f32_slice(op)?,
        1.0,
    )?;
    Ok(dx)
}

/// Rows of the (V, C) `table` picked by `ids` (any shape) → (…ids, C).
pub(crate) fn embedding(ctx: &CudaContext, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let op = "embedding";
    if table.rank() != 2 {
        return Err(Error::shape(
            op,
            &[table.shape(), ids.shape()],
            "table must be (V, C)",
        ));
    }
    let (vocab, c) = (table.shape()[0], table.shape()[1]);
    let ids_d = ids_on(ctx, op, ids)?;
    let table = table.contiguous()?;
    let mut shape = ids.shape().to_vec();
    shape.push(c);
    let out = new_f32(ctx, &shape)?;
    let flag = ctx.alloc::<i32>(1)?;
    ctx.ops().embedding(
        ids.numel(),
        c,
        vocab,
        &ids_d.i32_slice(op)?,
        &table.f32_slice(op)?,
        &out.f32_slice(op)?,
        &flag.slice(),
    )?;
    Ok(out)
}

/// Adjoint of the embedding lookup: rows of `g` (n, C) added into zeros (size, C) at `ids`.
/// Ids are checked by the forward lookup; the kernel skips any outside [0, size).
pub(crate) fn index_add_into(
    ctx: &CudaContext,
    g: &Tensor,
    dim: usize,
    ids: &Tensor,
    size: usize,
) -> Result<Tensor> {
    let op = "index_add";
    if dim != 0 || g.rank() != 2 {
        return Err(not_on_device(
            "index_add (other than along dim 0 of a matrix)",
            ctx,
        ));
    }
    if ids.numel() != g.shape()[0] {
        return Err(Error::shape(
            op,
            &[g.shape(), ids.shape()],
            "one id per row",
        ));
    }
    let c = g.shape()[1];
    let ids_d = ids_on(ctx, op, ids)?;
    let g = g.contiguous()?;
    let out = zeros(ctx, &[size, c])?;
    ctx.ops().embedding_bwd(
        ids.numel(),
        c,
        size,
        &ids_d.i32_slice(op)?,
        &g.f32_slice(op)?,
        &out.f32_slice(op)?,
    )?;
    Ok(out)
}

/// Mean cross-entropy of logits (…, C) against targets (…), rows with `ignore_index` excluded;
/// the loss is a 0-d device tensor (NaN when every row is ignored, as on the host).
pub(crate) fn cross_entropy(
    ctx: &CudaContext,
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: i64,
    smoothing: f32,
) -> Result<CrossEntropyOut> {
    let op = "cross_entropy";
    let (rows, cols) = rows_cols(op, logits)?;
    if targets.shape() != &logits.shape()[..logits.rank() - 1] {
        return Err(Error::shape(
            op,
            &[logits.shape(), targets.shape()],
            "targets must have the logits' shape without the class dim",
        ));
    }
    if smoothing != 0.0 {
        return Err(not_on_device("cross_entropy with label smoothing", ctx));
    }
    let ii = i32::try_from(ignore_index).map_err(|_| Error::Index {
        op,
        msg: format!("ignore_index {ignore_index} does not fit the device's i32 targets"),
    })?;
    let t = ids_on(ctx, op, targets)?;
    let x = logits.contiguous()?;
    let (row_loss, lse, valid) = (
        new_f32(ctx, &[rows])?,
        new_f32(ctx, &[rows])?,
        new_f32(ctx, &[rows])?,
    );
    let flag = ctx.alloc::<i32>(1)?;
    let ops = ctx.ops();
    ops.cross_entropy(
        rows,
        cols,
        &x.f32_slice(op)?,
        &t.i32_slice(op)?,
        ii,
        &row_loss.f32_slice(op)?,
        &lse.f32_slice(op)?,
        &valid.f32_slice(op)?,
        &flag.slice(),
    )?;
    let (total, count) = (new_f32(ctx, &[])?, new_f32(ctx, &[])?);
    ops.sum_all(rows, &row_loss.f32_slice(op)?, &total.f32_slice(op)?, 1.0)?;
    ops.sum_all(rows, &valid.f32_slice(op)?, &count.f32_slice(op)?, 1.0)?;
    let loss = total.div(&count)?; // 0/0 = NaN when every row is ignored
    Ok(CrossEntropyOut {
        loss,
        lse: Vec::new(),
        targets: Vec::new(),
        count: 0,
        device: Some(CrossEntropyDevice {
            lse,
            targets: t,
            count,
        }),
    })
}

/// d logits of the mean cross-entropy times the upstream gradient `g` (a 1-element device
/// tensor, read by the kernel: no host round trip).
pub(crate) fn cross_entropy_backward(
    ctx: &CudaContext,
    logits: &Tensor,
    saved: &CrossEntropyOut,
    ignore_index: i64,
    g: &Tensor,
) -> Result<Tensor> {
    let op = "cross_entropy_backward";
    let (rows, cols) = rows_cols(op, logits)?;
    let d = saved.device.as_ref().ok_or_else(|| Error::Device {
        op,
        msg: "the forward ran on the host".into(),
    })?;
    on_device(op, &[logits, g])?;
    if g.numel() != 1 {
        return Err(Error::shape(
            op,
            &[g.shape()],
            "upstream gradient must be a scalar",
        ));
    }
    let ii = i32::try_from(ignore_index).map_err(|_| Error::Index {
        op,
        msg: format!("ignore_index {ignore_index} does not fit i32"),
    })?;
    let (x, g) = (logits.contiguous()?, g.contiguous()?);
    let dx = new_f32(ctx, x.shape())?;
    ctx.ops().cross_entropy_bwd(
        rows,
        cols,
        &x.f32_slice(op)?,
        &d.targets.i32_slice(op)?,
        ii,
        &d.lse.f32_slice(op)?,
        &g.f32_slice(op)?,
        &d.count.f32_slice(op)?,
        &dx.f32_slice(op)?,
    )?;
    Ok(dx)
}

/// `Tensor::dropout_seeded` on the device: the counter-based dropout kernel on x read
/// contiguously (element i at counter i), so the mask equals the host's for the same seed.
pub(crate) fn dropout(ctx: &CudaContext, x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    let x = super::contiguous(x)?;
    let y = new_f32(ctx, x.shape())?;
    ctx.ops().dropout(
        x.numel(),
        &x.f32_slice("dropout")?,
        &y.f32_slice("dropout")?,
        p,
        seed,
        0,
    )?;
    Ok(y)
}
