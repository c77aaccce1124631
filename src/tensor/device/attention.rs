//! Scaled dot-product attention on the device through the flash kernels (`attn_fwd_f32`,
//! `attn_bwd_f32`): q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, D) are read through their
//! (batch, head, time) strides, so the head views of a fused QKV projection need no copy.
//! Only the log-sum-exp per query is kept by the kernel, and the autograd graph does not store
//! it: the backward re-runs the forward kernel to get it (one extra forward per layer, the
//! price of keeping `Tensor::attention`'s signature).
//!
//! The output is allocated in q's memory order (as on the host): for head views of a fused
//! projection a (B, T, H, D) buffer, which `merge_heads` reshapes for free and whose gradient
//! the backward reads in place; o and dO in another layout are copied into that one.
//!
//! Device limits: Dv = D ≤ 128; causal attention needs Tq = Tk (no key/value cache); a key
//! padding mask comes from the host (uploaded as bytes).

use std::sync::Arc;

use super::{new_f32, not_on_device, on_device, zeros};
use crate::backend::cpu::attention::RowLayout;
use crate::backend::cuda::launch::DSlice;
use crate::backend::cuda::ops::Attn;
use crate::backend::cuda::{CudaContext, Mem};
use crate::error::{Error, Result};
use crate::tensor::layout::Layout;
use crate::tensor::{AttentionMasks, Tensor};

struct Setup {
    a: Attn,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Materialised (B, H, Tq, Tk) bias.
    bias: Option<Tensor>,
    key_mask: Option<Mem<u8>>,
}

/// The tensor with a contiguous last dim (a copy otherwise), and its (batch, head, time) strides.
fn with_unit_last(t: &Tensor) -> Result<(Tensor, [usize; 3])> {
    let t = if t.strides()[3] == 1 || t.shape()[3] == 1 {
        t.clone()
    } else {
        t.contiguous()?
    };
    let s = [t.strides()[0], t.strides()[1], t.strides()[2]];
    Ok((t, s))
}

fn setup(
    ctx: &CudaContext,
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    masks: &AttentionMasks,
) -> Result<Setup> {
    on_device(op, &[q, k, v])?;
    let dims = Tensor::attention_dims(op, q, k, v, masks)?;
    let (b, h, tq, tk, d) = (dims.batch, dims.heads, dims.tq, dims.tk, dims.d);
    if dims.dv != d {
        return Err(not_on_device("attention with a value dim Dv != D", ctx));
    }
    if masks.causal && tq != tk {
        return Err(not_on_device(
            "causal attention with Tq != Tk (a key/value cache)",
            ctx,
        ));
    }
    let (q, qs) = with_unit_last(q)?;
    let (k, ks) = with_unit_last(k)?;
    let (v, vs) = with_unit_last(v)?;
    let bias = match bias {
        Some(bt) => {
            on_device(op, &[&q, bt])?;
            Some(bt.broadcast_to(&[b, h, tq, tk])?.contiguous()?)
        }
        None => None,
    };
    if masks.key_padding.as_ref().is_some_and(|m| m.is_cuda()) {
        return Err(not_on_device(
            "attention with a key-padding mask on the device (pass it from the host)",
            ctx,
        ));
    }
    let key_mask = match Tensor::attention_key_keep(op, masks, &dims)? {
        Some(keep) => {
            let keep: Vec<u8> = keep.iter().map(|&x| x as u8).collect();
            Some(ctx.upload(&keep)?)
        }
        None => None,
    };
    let a = Attn {
        b,
        h,
        tq,
        tk,
        d,
        causal: masks.causal,
        scale: dims.scale,
        dropout: masks.dropout.map_or((0.0, 0), |dr| (dr.p, dr.seed)),
        q_strides: qs,
        k_strides: ks,
        v_strides: vs,
        o_strides: RowLayout::dense_like(
            &RowLayout {
                offset: 0,
                strides: qs,
            },
            [b, h, tq],
            d,
        )
        .strides,
        bias_strides: [h * tq * tk, tq * tk, tk],
    };
    Ok(Setup {
        a,
        q,
        k,
        v,
        bias,
        key_mask,
    })
}

/// Runs the forward kernel: (o (B, H, Tq, D), lse (B, H, Tq)).
fn forward(ctx: &CudaContext, s: &Setup, op: &'static str) -> Result<(Tensor, Tensor)> {
    let a = &s.a;
    let o = new_f32(ctx, &[a.b * a.h * a.tq * a.d])?;
    let o = Tensor::from_parts(
        Arc::clone(&o.storage),
        Layout {
            shape: vec![a.b, a.h, a.tq, a.d],
            strides: [a.o_strides.as_slice(), &[1]].concat(),
            offset: 0,
        },
    );
    let lse = new_f32(ctx, &[a.b, a.h, a.tq])?;
    let space = ctx.executor().space();
    let bias = match &s.bias {
        Some(t) => t.f32_slice(op)?,
        None => DSlice::null(space),
    };
    let mask = s
        .key_mask
        .as_ref()
        .map_or(DSlice::null(space), |m| m.slice());
    ctx.ops().attention::<f32>(
        a,
        &s.q.f32_slice(op)?,
        &s.k.f32_slice(op)?,
        &s.v.f32_slice(op)?,
        &bias,
        &mask,
        &o.f32_slice(op)?,
        &lse.f32_slice(op)?,
    )?;
    Ok((o, lse))
}

pub(crate) fn attention(
    ctx: &CudaContext,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    masks: &AttentionMasks,
) -> Result<Tensor> {
    let s = setup(ctx, "attention", q, k, v, bias, masks)?;
    Ok(forward(ctx, &s, "attention")?.0)
}

/// (dq, dk, dv, dbias) of `attention`; dbias (B, H, Tq, Tk) only when `want_dbias`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    ctx: &CudaContext,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    masks: &AttentionMasks,
    out: &Tensor,
    dout: &Tensor,
    want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    let op = "attention_backward";
    let s = setup(ctx, op, q, k, v, bias, masks)?;
    let a = &s.a;
    on_device(op, &[q, out, dout])?;
    let o_shape = [a.b, a.h, a.tq, a.d];
    if out.shape() != o_shape || dout.shape() != o_shape {
        return Err(Error::shape(
            op,
            &[out.shape(), dout.shape()],
            "out and dout must be (B, H, Tq, D)",
        ));
    }
    // The kernel reads o and dout with the output's strides (o_strides).
    let (_, lse) = forward(ctx, &s, op)?;
    let (out, dout) = (in_rows(out, a.o_strides)?, in_rows(dout, a.o_strides)?);
    let delta = new_f32(ctx, &[a.b, a.h, a.tq])?;
    let dq = new_f32(ctx, q.shape())?;
    let dk = new_f32(ctx, k.shape())?;
    let dv = new_f32(ctx, v.shape())?;
    let dbias = match (&s.bias, want_dbias) {
        (Some(_), true) => Some(zeros(ctx, &[a.b, a.h, a.tq, a.tk])?),
        _ => None,
    };
    let space = ctx.executor().space();
    let bias_s = match &s.bias {
        Some(t) => t.f32_slice(op)?,
        None => DSlice::null(space),
    };
    let dbias_s = match &dbias {
        Some(t) => t.f32_slice(op)?,
        None => DSlice::null(space),
    };
    let mask = s
        .key_mask
        .as_ref()
        .map_or(DSlice::null(space), |m| m.slice());
    ctx.ops().attention_bwd::<f32>(
        a,
        &s.q.f32_slice(op)?,
        &s.k.f32_slice(op)?,
        &s.v.f32_slice(op)?,
        &bias_s,
        &mask,
        &out.f32_slice(op)?,
        &lse.f32_slice(op)?,
        &dout.f32_slice(op)?,
        &delta.f32_slice(op)?,
        &dq.f32_slice(op)?,
        &dk.f32_slice(op)?,
        &dv.f32_slice(op)?,
        &dbias_s,
    )?;
    Ok((dq, dk, dv, dbias))
}

/// `t` (B, H, T, D) with (b, h, t) strides `rows` and a contiguous last dim: itself when it
/// has them, else a copy in that dense order (permuted so the order is row-major, made
/// contiguous, permuted back).
fn in_rows(t: &Tensor, rows: [usize; 3]) -> Result<Tensor> {
    if t.strides()[..3] == rows && (t.strides()[3] == 1 || t.shape()[3] == 1) {
        return Ok(t.clone());
    }
    let mut perm = [0usize, 1, 2];
    perm.sort_by_key(|&i| std::cmp::Reverse(rows[i]));
    let mut inv = [0usize; 4];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv[3] = 3;
    t.permute(&[perm[0], perm[1], perm[2], 3])?
        .contiguous()?
        .permute(&inv)
}
