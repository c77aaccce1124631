//! Fused neural-network ops on tensors (forward and the backward helpers autograd calls):
//! softmax / log-softmax over the last dim, LayerNorm, RMSNorm, dropout masks,
//! cross-entropy with ignore_index and label smoothing, scaled dot-product attention,
//! embedding backward.
//! The maths of each lives beside its kernel in `backend::cpu`.

use super::{device, Tensor};
use crate::backend::cpu::attention::AttnDropout;
use crate::backend::cpu::par::{self, fresh};
use crate::backend::cpu::{attention, cross_entropy, dropout, embedding, norm, softmax};
use crate::error::{Error, Result};

/// Output of LayerNorm / RMSNorm with the per-row statistics the backward needs.
#[derive(Clone, Debug)]
pub struct NormOut {
    pub y: Tensor,
    /// Per-row mean (LayerNorm only), shape = input shape without the last dim.
    pub mean: Option<Tensor>,
    /// Per-row 1/√(var + ε) (or 1/√(mean(x²) + ε) for RMSNorm).
    pub rstd: Tensor,
}

#[derive(Clone, Debug)]
pub struct CrossEntropyOut {
    /// Mean loss over non-ignored rows (0-d). NaN when every row is ignored, as in PyTorch.
    pub loss: Tensor,
    /// Per-row logsumexp of the logits, kept for the backward.
    pub lse: Vec<f32>,
    /// Targets as i64, one per row.
    pub targets: Vec<i64>,
    /// Number of rows that carry loss.
    pub count: usize,
    /// The saved state of a forward that ran on a CUDA device (then `lse`, `targets` are empty
    /// and `count` is 0: they stay on the device).
    pub device: Option<device::CrossEntropyDevice>,
}

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

fn rows_cols(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    let cols = *t
        .shape()
        .last()
        .ok_or_else(|| Error::shape(op, &[t.shape()], "needs rank ≥ 1"))?;
    Ok((t.numel() / cols.max(1), cols))
}

/// (rows, cols) for ops that normalise over the last dim, which must not be empty.
fn rows_cols_nonempty(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    let (rows, cols) = rows_cols(op, t)?;
    if cols == 0 {
        return Err(Error::shape(op, &[t.shape()], "the last dim is empty"));
    }
    Ok((rows, cols))
}

fn check_param(op: &'static str, x: &Tensor, p: Option<&Tensor>, cols: usize) -> Result<()> {
    if let Some(p) = p {
        if p.shape() != [cols] {
            return Err(Error::shape(
                op,
                &[x.shape(), p.shape()],
                format!("parameter must be ({cols},)"),
            ));
        }
    }
    Ok(())
}

impl Tensor {
    pub fn softmax_last(&self) -> Result<Tensor> {
        if let Some(ctx) = device::on_device("softmax", &[self])? {
            return device::softmax_last(&ctx, self);
        }
        let (_, cols) = rows_cols("softmax", self)?;
        let x = self.f32s("softmax")?;
        let y = fresh(x.len(), |y| softmax::softmax_rows(&x, y, cols));
        Ok(Tensor::from_f32(y, self.shape()))
    }

    pub fn log_softmax_last(&self) -> Result<Tensor> {
        let (_, cols) = rows_cols("log_softmax", self)?;
        let x = self.f32s("log_softmax")?;
        let y = fresh(x.len(), |y| softmax::log_softmax_rows(&x, y, cols));
        Ok(Tensor::from_f32(y, self.shape()))
    }

    /// dx of softmax from its output `y` and the upstream `dy`.
    pub fn softmax_last_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        if let Some(ctx) = device::on_device("softmax_backward", &[y, dy])? {
            return device::softmax_last_backward(&ctx, y, dy);
        }
        let (_, cols) = rows_cols("softmax_backward", y)?;
        let (ys, dys) = (y.f32s("softmax_backward")?, dy.f32s("softmax_backward")?);
        let dx = fresh(ys.len(), |dx| {
            softmax::softmax_rows_backward(&ys, &dys, dx, cols)
        });
        Ok(Tensor::from_f32(dx, y.shape()))
    }

    /// dx of log-softmax from its output `y` and the upstream `dy`.
    pub fn log_softmax_last_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let (_, cols) = rows_cols("log_softmax_backward", y)?;
        let (ys, dys) = (
            y.f32s("log_softmax_backward")?,
            dy.f32s("log_softmax_backward")?,
        );
        let dx = fresh(ys.len(), |dx| {
            softmax::log_softmax_rows_backward(&ys, &dys, dx, cols)
        });
        Ok(Tensor::from_f32(dx, y.shape()))
    }

    /// LayerNorm over the last dim with optional affine γ, β of shape (C,).
    pub fn layer_norm(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f32,
    ) -> Result<NormOut> {
        if let Some(ctx) = device::on_device("layer_norm", &[self])? {
            return device::layer_norm(&ctx, self, gamma, beta, eps);
        }
        let (rows, cols) = rows_cols_nonempty("layer_norm", self)?;
        check_param("layer_norm", self, gamma, cols)?;
        check_param("layer_norm", self, beta, cols)?;
        let x = self.f32s("layer_norm")?;
        let g = gamma.map(|g| g.f32s("layer_norm")).transpose()?;
        let b = beta.map(|b| b.f32s("layer_norm")).transpose()?;
        let (mut mean, mut rstd) = (vec![0.0; rows], vec![0.0; rows]);
        let y = fresh(x.len(), |y| {
            norm::layer_norm_rows(
                &x,
                g.as_deref(),
                b.as_deref(),
                eps,
                y,
                &mut mean,
                &mut rstd,
                cols,
            )
        });
        let stat_shape = &self.shape()[..self.rank() - 1];
        Ok(NormOut {
            y: Tensor::from_f32(y, self.shape()),
            mean: Some(Tensor::from_f32(mean, stat_shape)),
            rstd: Tensor::from_f32(rstd, stat_shape),
        })
    }

    /// RMSNorm over the last dim (T5): y = γ ⊙ x / √(mean(x²) + ε).
    pub fn rms_norm(&self, gamma: Option<&Tensor>, eps: f32) -> Result<NormOut> {
        if let Some(ctx) = device::on_device("rms_norm", &[self])? {
            return device::rms_norm(&ctx, self, gamma, eps);
        }
        let (rows, cols) = rows_cols_nonempty("rms_norm", self)?;
        check_param("rms_norm", self, gamma, cols)?;
        let x = self.f32s("rms_norm")?;
        let g = gamma.map(|g| g.f32s("rms_norm")).transpose()?;
        let mut rstd = vec![0.0; rows];
        let y = fresh(x.len(), |y| {
            norm::rms_norm_rows(&x, g.as_deref(), eps, y, &mut rstd, cols)
        });
        Ok(NormOut {
            y: Tensor::from_f32(y, self.shape()),
            mean: None,
            rstd: Tensor::from_f32(rstd, &self.shape()[..self.rank() - 1]),
        })
    }

    /// (dx, dγ, dβ) of LayerNorm or RMSNorm (`mean` = None) from the saved statistics.
    pub fn norm_backward(
        x: &Tensor,
        gamma: Option<&Tensor>,
        mean: Option<&Tensor>,
        rstd: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        if let Some(ctx) = device::on_device("norm_backward", &[x])? {
            return device::norm_backward(&ctx, x, gamma, mean, rstd, dy);
        }
        let (_, cols) = rows_cols("norm_backward", x)?;
        let xs = x.f32s("norm_backward")?;
        let g = gamma.map(|g| g.f32s("norm_backward")).transpose()?;
        let rs = rstd.f32s("norm_backward")?;
        let dys = dy.f32s("norm_backward")?;
        let (mut dg, mut db) = (vec![0.0; cols], vec![0.0; cols]);
        let ms = mean.map(|m| m.f32s("norm_backward")).transpose()?;
        let dx = fresh(xs.len(), |dx| match &ms {
            Some(m) => norm::layer_norm_rows_backward(
                &xs,
                g.as_deref(),
                m,
                &rs,
                &dys,
                dx,
                Some(&mut dg),
                Some(&mut db),
                cols,
            ),
            None => {
                norm::rms_norm_rows_backward(&xs, g.as_deref(), &rs, &dys, dx, Some(&mut dg), cols)
            }
        });
        Ok((
            Tensor::from_f32(dx, x.shape()),
            Tensor::from_f32(dg, &[cols]),
            Tensor::from_f32(db, &[cols]),
        ))
    }

    /// Gradient of an embedding table (V = `vocab`, C) from the upstream `g` (…ids, C): the
    /// scatter-add of g's rows by `ids`, rows looked up at `padding` left out.
    pub fn embedding_backward(
        g: &Tensor,
        ids: &Tensor,
        vocab: usize,
        padding: Option<usize>,
    ) -> Result<Tensor> {
        let op = "embedding_backward";
        if device::on_device(op, &[g])?.is_some() {
            // on a device: scatter-add of g's rows (padding rows zeroed first)
            let c = *g.shape().last().unwrap_or(&0);
            let flat = ids.reshape(&[ids.numel()])?;
            let mut g2 = g.reshape(&[ids.numel(), c])?;
            if let Some(p) = padding {
                let keep: Vec<f32> = flat
                    .indices(op)?
                    .iter()
                    .map(|&i| (i != p) as u8 as f32)
                    .collect();
                g2 = g2.mul(&Tensor::from_vec(keep, &[ids.numel(), 1])?)?;
            }
            return g2.index_add_into(0, &flat, vocab);
        }
        let idx = ids.indices(op)?;
        let cols = *g.shape().last().unwrap_or(&0);
        if g.numel() != idx.len() * cols || g.shape()[..g.rank().saturating_sub(1)] != *ids.shape()
        {
            return Err(Error::shape(
                op,
                &[g.shape(), ids.shape()],
                "g must be (…ids, C)",
            ));
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= vocab) {
            return Err(Error::Index {
                op,
                msg: format!("id {bad} ≥ vocabulary size {vocab}"),
            });
        }
        let mut table = vec![0.0f32; vocab * cols];
        embedding::embedding_backward(&g.f32s(op)?, &idx, padding, cols, &mut table);
        Ok(Tensor::from_f32(table, &[vocab, cols]))
    }

    /// Inverted dropout with the counter-based mask of stream `seed` (`backend::cpu::dropout`,
    /// the same function as the CUDA kernel): element i (row-major) is kept when
    /// u(seed, i) ≥ p, then y_i = x_i / (1 − p), else 0. It is its own backward: the gradient
    /// is `dy.dropout_seeded(p, seed)`, so the mask is never stored.
    pub fn dropout_seeded(&self, p: f32, seed: u64) -> Result<Tensor> {
        check_dropout_p(p)?;
        if let Some(ctx) = super::device::on_device("dropout", &[self])? {
            return super::device::dropout(&ctx, self, p, seed);
        }
        let x = self.f32s("dropout")?;
        let y = par::fresh(x.len(), |out| {
            par::rows_mut(out, 1, 1, |i, y| {
                dropout::dropout(&x[i..i + y.len()], y, p, seed, i as u64)
            })
        });
        Ok(Tensor::from_f32(y, self.shape()))
    }

    /// Mean cross-entropy of logits (…, C) against integer targets (…) with `ignore_index`
    /// rows excluded from both sum and count, and label smoothing ε.
    pub fn cross_entropy(
        &self,
        targets: &Tensor,
        ignore_index: i64,
        smoothing: f32,
    ) -> Result<CrossEntropyOut> {
        if let Some(ctx) = device::on_device("cross_entropy", &[self])? {
            return device::cross_entropy(&ctx, self, targets, ignore_index, smoothing);
        }
        let (rows, cols) = rows_cols_nonempty("cross_entropy", self)?;
        if targets.shape() != &self.shape()[..self.rank() - 1] {
            return Err(Error::shape(
                "cross_entropy",
                &[self.shape(), targets.shape()],
                "targets must have the logits' shape without the class dim",
            ));
        }
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(Error::msg(format!(
                "cross_entropy: label smoothing {smoothing} not in [0, 1]"
            )));
        }
        let t: Vec<i64> = match targets.dtype() {
            super::DType::I64 => targets.to_vec::<i64>()?,
            super::DType::U32 => targets
                .to_vec::<u32>()?
                .into_iter()
                .map(i64::from)
                .collect(),
            other => {
                return Err(Error::DType {
                    op: "cross_entropy",
                    expected: "i64 or u32 targets".into(),
                    got: other.to_string(),
                })
            }
        };
        let x = self.f32s("cross_entropy")?;
        let (mut row_loss, mut lse) = (vec![0.0; rows], vec![0.0; rows]);
        cross_entropy::cross_entropy_rows(
            &x,
            &t,
            cols,
            ignore_index,
            smoothing,
            &mut row_loss,
            &mut lse,
        )
        .map_err(|msg| Error::Index {
            op: "cross_entropy",
            msg: format!("{msg}; logits shape {:?}", self.shape()),
        })?;
        let count = t.iter().filter(|&&v| v != ignore_index).count();
        let total: f64 = row_loss.iter().map(|&v| v as f64).sum();
        let loss = (total / count as f64) as f32; // 0/0 = NaN when all rows are ignored
        Ok(CrossEntropyOut {
            loss: Tensor::scalar_f32(loss),
            lse,
            targets: t,
            count,
            device: None,
        })
    }

    /// d logits of the mean cross-entropy, times the upstream scalar gradient `g` (1 element).
    pub fn cross_entropy_backward(
        logits: &Tensor,
        saved: &CrossEntropyOut,
        ignore_index: i64,
        smoothing: f32,
        g: &Tensor,
    ) -> Result<Tensor> {
        if let Some(ctx) = device::on_device("cross_entropy_backward", &[logits])? {
            return device::cross_entropy_backward(&ctx, logits, saved, ignore_index, g);
        }
        let g = g.scalar()?;
        let (_, cols) = rows_cols("cross_entropy_backward", logits)?;
        let x = logits.f32s("cross_entropy_backward")?;
        let scale = if saved.count == 0 {
            0.0
        } else {
            g / saved.count as f32
        };
        let dx = fresh(x.len(), |dx| {
            cross_entropy::cross_entropy_rows_backward(
                &x,
                &saved.targets,
                &saved.lse,
                cols,
                ignore_index,
                smoothing,
                scale,
                dx,
            )
        });
        Ok(Tensor::from_f32(dx, logits.shape()))
    }

    fn attention_setup(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
    ) -> Result<(
        attention::AttnDims,
        Option<super::Layout>,
        Option<Vec<bool>>,
    )> {
        let op = "attention";
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
        let bias_layout = bias
            .map(|bt| bt.layout.broadcast_to(op, &[b, h, tq, tk]))
            .transpose()?;
        let keep = match &masks.key_padding {
            Some(m) => {
                if m.shape() != [b, tk] {
                    return Err(Error::shape(
                        op,
                        &[q.shape(), k.shape(), m.shape()],
                        "key padding mask must be (B, Tk)",
                    ));
                }
                Some(m.mask_values(op, &[b, tk])?)
            }
            None => None,
        };
        let dims = attention::AttnDims {
            batch: b,
            heads: h,
            tq,
            tk,
            d,
            dv,
            scale: masks.scale.unwrap_or(1.0 / (d as f32).sqrt()),
            causal: masks.causal,
            dropout: masks.dropout,
        };
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
    ) -> Result<(Tensor, attention::AttnStats)> {
        masks.check_dropout()?;
        if let Some(ctx) = device::on_device("attention", &[q])? {
            // the device kernels recompute what their backward needs: no host stats
            let out = device::attention(&ctx, q, k, v, bias, masks)?;
            return Ok((out, attention::AttnStats::default()));
        }
        let (dims, bl, keep) = Tensor::attention_setup(q, k, v, bias, masks)?;
        let (qs, ks, vs) = (
            q.f32s("attention")?,
            k.f32s("attention")?,
            v.f32s("attention")?,
        );
        let bview = match (bias, &bl) {
            (Some(bt), Some(l)) => Some(attention::BiasView {
                data: bt.storage_slice::<f32>("attention")?,
                offset: l.offset,
                strides: [l.strides[0], l.strides[1], l.strides[2], l.strides[3]],
            }),
            _ => None,
        };
        let mut out = vec![0.0; dims.rows() * dims.dv];
        let mut stats = attention::AttnStats::new(dims.rows());
        attention::attention_forward(
            &dims,
            &qs,
            &ks,
            &vs,
            bview,
            keep.as_deref(),
            &mut out,
            &mut stats,
        );
        let out = Tensor::from_f32(out, &[dims.batch, dims.heads, dims.tq, dims.dv]);
        Ok((out, stats))
    }

    /// (dq, dk, dv, dbias) of `attention` from its output `out` and `stats` (both from
    /// `attention_with_stats` on the same inputs); dbias (B, H, Tq, Tk) only when `want_dbias`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        masks: &AttentionMasks,
        out: &Tensor,
        stats: &attention::AttnStats,
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
        let (qs, ks, vs) = (q.f32s(op)?, k.f32s(op)?, v.f32s(op)?);
        let bview = match (bias, &bl) {
            (Some(bt), Some(l)) => Some(attention::BiasView {
                data: bt.storage_slice::<f32>(op)?,
                offset: l.offset,
                strides: [l.strides[0], l.strides[1], l.strides[2], l.strides[3]],
            }),
            _ => None,
        };
        let (mut dq, mut dk, mut dvv) = (
            vec![0.0; qs.len()],
            vec![0.0; ks.len()],
            vec![0.0; vs.len()],
        );
        let mut dbias = want_dbias.then(|| vec![0.0; dims.batch * dims.heads * dims.tq * dims.tk]);
        attention::attention_backward(
            &dims,
            &qs,
            &ks,
            &vs,
            bview,
            keep.as_deref(),
            &out.f32s(op)?,
            stats,
            &dout.f32s(op)?,
            &mut dq,
            &mut dk,
            &mut dvv,
            dbias.as_deref_mut(),
        );
        Ok((
            Tensor::from_f32(dq, q.shape()),
            Tensor::from_f32(dk, k.shape()),
            Tensor::from_f32(dvv, v.shape()),
            dbias.map(|d| Tensor::from_f32(d, &[dims.batch, dims.heads, dims.tq, dims.tk])),
        ))
    }
}

/// A drop probability must lie in [0, 1).
pub(crate) fn check_dropout_p(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "dropout: probability {p} not in [0, 1)"
        )))
    }
}
