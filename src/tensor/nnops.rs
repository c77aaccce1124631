//! Fused neural-network ops on tensors (forward and the backward helpers autograd calls):
//! softmax / log-softmax over the last dim, LayerNorm, RMSNorm, dropout masks,
//! cross-entropy with ignore_index and label smoothing, embedding backward (attention is in
//! `attention.rs`).
//! The maths of each lives beside its kernel in `backend::cpu`.

use super::{device, Tensor};
use crate::backend::cpu::par::{self, fresh};
use crate::backend::cpu::{cross_entropy, dropout, embedding, norm, softmax};
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
