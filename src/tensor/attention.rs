//! Scaled dot-product attention on tensors: checks, the dispatch to the host kernels
//! (`backend::cpu::attention`, whose module doc states the maths) or the device ones, and the
//! memory order of what they return.
//!
//! On the host, q, k, v, the output and its gradient are read in place whenever their last dim
//! is contiguous, whatever their other strides: the head views `split_heads` makes of a fused
//! QKV projection, (B, T, H, D) seen as (B, H, T, D), cost no copy. The output and the
//! gradients are allocated in their operand's memory order (`RowLayout::dense_like`), so for
//! those views the output is a (B, T, H, Dv) buffer that `merge_heads` reshapes for free, and
//! dq, dk, dv are (B, T, H, D) buffers that the backward of `split_heads` reshapes for free.

use std::borrow::Cow;
use std::sync::Arc;

use super::layout::Layout;
use super::storage::{CpuStorage, Storage};
use super::{check_dropout_p, device, Tensor};
use crate::backend::cpu::attention::{
    self, AttnDropout, AttnStats, BiasView, FreshRows, Heads, HeadsMut, RowLayout, Written,
};
use crate::error::{Error, Result};

/// Masks and options of scaled dot-product attention.
#[derive(Clone, Debug, Default)]
pub struct AttentionMasks {
    /// Query i may attend to key j only when j ≤ i + (Tk − Tq).
    pub causal: bool,
    /// (B, Tk): non-zero = attend, zero = padding (Hugging Face's attention_mask convention).
    pub key_padding: Option<Tensor>,
    /// Scale of the scores; `None` means 1/√D. T5 uses `Some(1.0)`.
    pub scale: Option<f32>,
    /// Dropout of the probabilities in training: the mask `dropout_seeded(p, seed)` would draw
    /// for the (B, H, Tq, Tk) probabilities, regenerated in the backward, never stored (host
    /// and CUDA kernels alike).
    pub dropout: Option<AttnDropout>,
}

impl AttentionMasks {
    /// A dropout probability outside [0, 1) is an error (host and device).
    fn check_dropout(&self) -> Result<()> {
        match self.dropout {
            Some(dr) => check_dropout_p(dr.p).map_err(|e| Error::msg(format!("attention {e}"))),
            None => Ok(()),
        }
    }
}

impl Tensor {
    /// The problem's dims after checking q, k, v (host and device): ranks, matching B, H, D
    /// and Tk, no empty dim, Tq ≤ Tk under a causal mask.
    pub(crate) fn attention_dims(
        op: &'static str,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        masks: &AttentionMasks,
    ) -> Result<attention::AttnDims> {
        if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
            return Err(Error::shape(
                op,
                &[q.shape(), k.shape(), v.shape()],
                "q, k, v must be (B, H, T, D)",
            ));
        }
        let (b, h, tq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let tk = k.shape()[2];
        let dv = v.shape()[3];
        if k.shape() != [b, h, tk, d] || v.shape() != [b, h, tk, dv] {
            return Err(Error::shape(
                op,
                &[q.shape(), k.shape(), v.shape()],
                "k must be (B, H, Tk, D) and v (B, H, Tk, Dv) with q's B, H, D",
            ));
        }
        if tq == 0 || tk == 0 || d == 0 || dv == 0 {
            return Err(Error::shape(
                op,
                &[q.shape(), k.shape(), v.shape()],
                "empty sequence or head dim (Tq, Tk, D and Dv must be ≥ 1)",
            ));
        }
        if masks.causal && tq > tk {
            return Err(Error::shape(
                op,
                &[q.shape(), k.shape()],
                "causal attention needs Tq ≤ Tk",
            ));
        }
        Ok(attention::AttnDims {
            batch: b,
            heads: h,
            tq,
            tk,
            d,
            dv,
            scale: masks.scale.unwrap_or(1.0 / (d as f32).sqrt()),
            causal: masks.causal,
            dropout: masks.dropout,
        })
    }

    /// The key-padding mask as keep flags (B·Tk, true = attend), after checking it is (B, Tk).
    pub(crate) fn attention_key_keep(
        op: &'static str,
        masks: &AttentionMasks,
        dims: &attention::AttnDims,
    ) -> Result<Option<Vec<bool>>> {
        let (b, tk) = (dims.batch, dims.tk);
        let Some(m) = &masks.key_padding else {
            return Ok(None);
        };
        if m.shape() != [b, tk] {
            return Err(Error::shape(
                op,
                &[&[b, dims.heads, dims.tq, dims.d], m.shape()],
                format!("key padding mask must be (B, Tk) = ({b}, {tk})"),
            ));
        }
        Ok(Some(m.mask_values(op, &[b, tk])?))
    }

    fn attention_setup(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
    ) -> Result<(attention::AttnDims, Option<Layout>, Option<Vec<bool>>)> {
        let op = "attention";
        let dims = Tensor::attention_dims(op, q, k, v, masks)?;
        let bias_layout = bias
            .map(|bt| {
                let (b, h, tq, tk) = (dims.batch, dims.heads, dims.tq, dims.tk);
                bt.layout.broadcast_to(op, &[b, h, tq, tk])
            })
            .transpose()?;
        let keep = Tensor::attention_key_keep(op, masks, &dims)?;
        Ok((dims, bias_layout, keep))
    }

    /// Scaled dot-product attention: softmax(scale·QKᵀ + bias, masked)·V for q (B, H, Tq, D),
    /// k (B, H, Tk, D), v (B, H, Tk, Dv) and an optional additive `bias` broadcastable to
    /// (B, H, Tq, Tk).
    pub fn attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
    ) -> Result<Tensor> {
        Ok(Tensor::attention_with_stats(q, k, v, bias, masks)?.0)
    }

    /// `attention` and the per-row softmax statistics (row max and 1/sum, (B, H, Tq) each)
    /// that `attention_backward` needs to recompute the probabilities tile by tile.
    pub fn attention_with_stats(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
    ) -> Result<(Tensor, AttnStats)> {
        masks.check_dropout()?;
        if let Some(ctx) = device::on_device("attention", &[q])? {
            // the device kernels recompute what their backward needs: no host stats
            let out = device::attention(&ctx, q, k, v, bias, masks)?;
            return Ok((out, AttnStats::default()));
        }
        let op = "attention";
        let (dims, bl, keep) = Tensor::attention_setup(q, k, v, bias, masks)?;
        let (qr, kr, vr) = (
            HostRows::of(q, op)?,
            HostRows::of(k, op)?,
            HostRows::of(v, op)?,
        );
        let mut out = FreshRows::new(
            dims.query_rows(),
            dims.dv,
            RowLayout::dense_like(&qr.rows, dims.query_rows(), dims.dv),
        );
        let mut stats = AttnStats::new(dims.rows());
        let o = out.out();
        attention::attention_forward(
            &dims,
            qr.heads(),
            kr.heads(),
            vr.heads(),
            bias_view(bias, &bl, op)?,
            keep.as_deref(),
            &o,
            &mut stats,
        );
        let written = finished(o);
        Ok((rows_tensor(out, written), stats))
    }

    /// (dq, dk, dv, dbias) of `attention` from its output `out` and `stats` (both from
    /// `attention_with_stats` on the same inputs); dbias (B, H, Tq, Tk) only when `want_dbias`.
    /// Each gradient has its operand's memory order.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
        out: &Tensor,
        stats: &AttnStats,
        dout: &Tensor,
        want_dbias: bool,
    ) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        masks.check_dropout()?;
        if let Some(ctx) = device::on_device("attention_backward", &[q])? {
            return device::attention_backward(&ctx, q, k, v, bias, masks, out, dout, want_dbias);
        }
        let (dims, bl, keep) = Tensor::attention_setup(q, k, v, bias, masks)?;
        let op = "attention_backward";
        let out_shape = [dims.batch, dims.heads, dims.tq, dims.dv];
        if out.shape() != out_shape || dout.shape() != out_shape {
            return Err(Error::shape(
                op,
                &[q.shape(), v.shape(), out.shape(), dout.shape()],
                "out and dout must be (B, H, Tq, Dv)",
            ));
        }
        if stats.row_max.len() != dims.rows() || stats.inv_sum.len() != dims.rows() {
            return Err(Error::shape(
                op,
                &[q.shape(), &[stats.row_max.len()], &[stats.inv_sum.len()]],
                "the saved stats must have B·H·Tq rows",
            ));
        }
        let (qr, kr, vr) = (
            HostRows::of(q, op)?,
            HostRows::of(k, op)?,
            HostRows::of(v, op)?,
        );
        let (or, dor) = (HostRows::of(out, op)?, HostRows::of(dout, op)?);
        let (qrows, krows) = (dims.query_rows(), dims.key_rows());
        let mut dq = FreshRows::new(
            qrows,
            dims.d,
            RowLayout::dense_like(&qr.rows, qrows, dims.d),
        );
        let mut dk = FreshRows::new(
            krows,
            dims.d,
            RowLayout::dense_like(&kr.rows, krows, dims.d),
        );
        let mut dvv = FreshRows::new(
            krows,
            dims.dv,
            RowLayout::dense_like(&vr.rows, krows, dims.dv),
        );
        let mut dbias = want_dbias.then(|| vec![0.0; dims.rows() * dims.tk]);
        let (dq_out, dk_out, dv_out) = (dq.out(), dk.out(), dvv.out());
        attention::attention_backward(
            &dims,
            qr.heads(),
            kr.heads(),
            vr.heads(),
            bias_view(bias, &bl, op)?,
            keep.as_deref(),
            or.heads(),
            stats,
            dor.heads(),
            &dq_out,
            &dk_out,
            &dv_out,
            dbias.as_deref_mut(),
        );
        let (wq, wk, wv) = (finished(dq_out), finished(dk_out), finished(dv_out));
        Ok((
            rows_tensor(dq, wq),
            rows_tensor(dk, wk),
            rows_tensor(dvv, wv),
            dbias.map(|d| Tensor::from_f32(d, &[dims.batch, dims.heads, dims.tq, dims.tk])),
        ))
    }
}

/// A (B, H, T, n) host operand as the kernels read it: the storage itself, through the
/// tensor's strides, when its last dim is contiguous; a contiguous copy otherwise.
struct HostRows<'a> {
    data: Cow<'a, [f32]>,
    rows: RowLayout,
}

impl<'a> HostRows<'a> {
    fn of(t: &'a Tensor, op: &'static str) -> Result<HostRows<'a>> {
        let (l, s) = (&t.layout, t.shape());
        if l.strides[3] == 1 || s[3] == 1 {
            return Ok(HostRows {
                data: Cow::Borrowed(t.storage_slice::<f32>(op)?),
                rows: RowLayout {
                    offset: l.offset,
                    strides: [l.strides[0], l.strides[1], l.strides[2]],
                },
            });
        }
        Ok(HostRows {
            data: t.f32s(op)?,
            rows: RowLayout::contiguous(s[1], s[2], s[3]),
        })
    }

    fn heads(&self) -> Heads<'_> {
        Heads {
            data: &self.data,
            rows: self.rows,
        }
    }
}

/// The bias broadcast to (B, H, Tq, Tk) as the kernels read it.
fn bias_view<'a>(
    bias: Option<&'a Tensor>,
    layout: &Option<Layout>,
    op: &'static str,
) -> Result<Option<BiasView<'a>>> {
    Ok(match (bias, layout) {
        (Some(bt), Some(l)) => Some(BiasView {
            data: bt.storage_slice::<f32>(op)?,
            offset: l.offset,
            strides: [l.strides[0], l.strides[1], l.strides[2], l.strides[3]],
        }),
        _ => None,
    })
}

/// The proof that a kernel wrote its whole output (a kernel that leaves a row unwritten is a
/// bug in pretext, not bad input).
fn finished(o: HeadsMut) -> Written {
    let shape = o.shape();
    o.finish().unwrap_or_else(|| {
        panic!("attention: the kernel left rows of its {shape:?} output unwritten")
    })
}

/// The (B, H, T, n) tensor of a written output, its strides those of its row layout.
fn rows_tensor(rows: FreshRows, written: Written) -> Tensor {
    let ([b, h, t], n, layout) = (rows.dims(), rows.n(), rows.layout());
    let [r0, r1, r2] = layout.strides;
    Tensor::from_parts(
        Arc::new(Storage::Cpu(CpuStorage::F32(rows.into_vec(written)))),
        Layout {
            shape: vec![b, h, t, n],
            strides: vec![r0, r1, r2, 1],
            offset: layout.offset,
        },
    )
}
