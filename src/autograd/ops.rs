//! Differentiable ops on `Var`: each runs the tensor forward and records the op.

use super::op::Op;
use super::Var;
use crate::error::{Error, Result};
use crate::tensor::{AttentionMasks, Rng, Tensor};

macro_rules! unary_ops {
    ($($name:ident => $op:expr),* $(,)?) => {
        $(
            pub fn $name(&self) -> Result<Var> {
                Ok(Var::from_op(self.value().$name()?, $op, &[self]))
            }
        )*
    };
}

macro_rules! binary_ops {
    ($($name:ident => $op:expr),* $(,)?) => {
        $(
            /// Elementwise, with NumPy broadcasting.
            pub fn $name(&self, rhs: &Var) -> Result<Var> {
                Ok(Var::from_op(self.value().$name(&rhs.value())?, $op, &[self, rhs]))
            }
        )*
    };
}

impl Var {
    binary_ops!(add => Op::Add, sub => Op::Sub, mul => Op::Mul, div => Op::Div);
    unary_ops!(
        neg => Op::Neg,
        exp => Op::Exp,
        log => Op::Log,
        sqrt => Op::Sqrt,
        rsqrt => Op::Rsqrt,
        tanh => Op::Tanh,
        sigmoid => Op::Sigmoid,
        relu => Op::Relu,
        gelu => Op::GeluErf,
        gelu_tanh => Op::GeluTanh,
        softmax_last => Op::Softmax,
        log_softmax_last => Op::LogSoftmax,
    );

    pub fn add_scalar(&self, c: f32) -> Result<Var> {
        Ok(Var::from_op(
            self.value().add_scalar(c)?,
            Op::AddScalar,
            &[self],
        ))
    }
    pub fn mul_scalar(&self, c: f32) -> Result<Var> {
        Ok(Var::from_op(
            self.value().mul_scalar(c)?,
            Op::MulScalar(c),
            &[self],
        ))
    }
    pub fn powf(&self, p: f32) -> Result<Var> {
        Ok(Var::from_op(self.value().powf(p)?, Op::Powf(p), &[self]))
    }

    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let v = self.value().sum_dims(dims, keepdim)?;
        Ok(Var::from_op(
            v,
            Op::Sum {
                dims: dims.to_vec(),
                keepdim,
            },
            &[self],
        ))
    }
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let v = self.value().mean_dims(dims, keepdim)?;
        Ok(Var::from_op(
            v,
            Op::Mean {
                dims: dims.to_vec(),
                keepdim,
            },
            &[self],
        ))
    }
    pub fn sum_all(&self) -> Result<Var> {
        let dims: Vec<isize> = (0..self.shape().len() as isize).collect();
        self.sum_dims(&dims, false)
    }
    pub fn mean_all(&self) -> Result<Var> {
        let dims: Vec<isize> = (0..self.shape().len() as isize).collect();
        self.mean_dims(&dims, false)
    }
    /// Max over dims; the gradient goes to the first maximal element of each block.
    pub fn max_dims(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let (v, args) = self.value().max_dims_with_arg(dims, keepdim)?;
        Ok(Var::from_op(
            v,
            Op::Max {
                dims: dims.to_vec(),
                args,
            },
            &[self],
        ))
    }

    /// Batched matmul (…, m, k)·(…, k, n) with broadcast batch dims.
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        Ok(Var::from_op(
            self.value().matmul(&rhs.value())?,
            Op::Matmul,
            &[self, rhs],
        ))
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        Ok(Var::from_op(
            self.value().reshape(shape)?,
            Op::Reshape,
            &[self],
        ))
    }
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let v = self.value().permute(perm)?;
        Ok(Var::from_op(
            v,
            Op::Permute {
                perm: perm.to_vec(),
            },
            &[self],
        ))
    }
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Var> {
        let a = self.value().resolve_dim("transpose", d0)?;
        let b = self.value().resolve_dim("transpose", d1)?;
        let mut perm: Vec<usize> = (0..self.shape().len()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Var> {
        let d = self.value().resolve_dim("narrow", dim)?;
        let v = self.value().narrow(dim, start, len)?;
        Ok(Var::from_op(v, Op::Narrow { dim: d, start }, &[self]))
    }
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        Ok(Var::from_op(
            self.value().broadcast_to(shape)?,
            Op::BroadcastTo,
            &[self],
        ))
    }
    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        Ok(Var::from_op(
            self.value().unsqueeze(dim)?,
            Op::Reshape,
            &[self],
        ))
    }
    pub fn squeeze(&self, dim: isize) -> Result<Var> {
        Ok(Var::from_op(
            self.value().squeeze(dim)?,
            Op::Reshape,
            &[self],
        ))
    }
    /// A contiguous copy (its gradient passes straight through).
    pub fn contiguous(&self) -> Result<Var> {
        Ok(Var::from_op(
            self.value().contiguous()?,
            Op::Reshape,
            &[self],
        ))
    }

    /// LayerNorm over the last dim with optional affine parameters γ, β of shape (C,).
    pub fn layer_norm(&self, gamma: Option<&Var>, beta: Option<&Var>, eps: f32) -> Result<Var> {
        if beta.is_some() && gamma.is_none() {
            return Err(Error::msg("layer_norm: a bias β needs a weight γ"));
        }
        let (gv, bv) = (gamma.map(|g| g.value()), beta.map(|b| b.value()));
        let out = self.value().layer_norm(gv.as_deref(), bv.as_deref(), eps)?;
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        let mean = out.mean.expect("layer_norm returns the mean");
        Ok(Var::from_op(
            out.y,
            Op::LayerNorm {
                mean,
                rstd: out.rstd,
            },
            &inputs,
        ))
    }

    /// RMSNorm over the last dim with optional weight γ of shape (C,).
    pub fn rms_norm(&self, gamma: Option<&Var>, eps: f32) -> Result<Var> {
        let gv = gamma.map(|g| g.value());
        let out = self.value().rms_norm(gv.as_deref(), eps)?;
        let mut inputs = vec![self];
        inputs.extend(gamma);
        Ok(Var::from_op(out.y, Op::RmsNorm { rstd: out.rstd }, &inputs))
    }

    /// Embedding lookup: `self` is the (V, C) table, `ids` integers of any shape → (…ids, C).
    pub fn embedding(&self, ids: &Tensor) -> Result<Var> {
        self.embedding_padded(ids, None)
    }
    /// Embedding lookup whose backward adds nothing to row `padding_idx` (torch's
    /// `nn.Embedding(padding_idx=…)`); the forward still looks that row up.
    pub fn embedding_padded(&self, ids: &Tensor, padding_idx: Option<usize>) -> Result<Var> {
        let v = self.value().embedding(ids)?;
        Ok(Var::from_op(
            v,
            Op::Embedding {
                ids: ids.clone(),
                padding_idx,
            },
            &[self],
        ))
    }
    pub fn index_select(&self, dim: isize, ids: &Tensor) -> Result<Var> {
        let d = self.value().resolve_dim("index_select", dim)?;
        let v = self.value().index_select(dim, ids)?;
        Ok(Var::from_op(
            v,
            Op::IndexSelect {
                dim: d,
                ids: ids.clone(),
            },
            &[self],
        ))
    }
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Var> {
        let d = self.value().resolve_dim("gather", dim)?;
        let v = self.value().gather(dim, index)?;
        Ok(Var::from_op(
            v,
            Op::Gather {
                dim: d,
                index: index.clone(),
            },
            &[self],
        ))
    }

    pub fn cat(vars: &[&Var], dim: isize) -> Result<Var> {
        let held: Vec<std::cell::Ref<'_, Tensor>> = vars.iter().map(|v| v.value()).collect();
        let values: Vec<&Tensor> = held.iter().map(|r| &**r).collect();
        let out = Tensor::cat(&values, dim)?;
        let d = values[0].resolve_dim("cat", dim)?;
        let sizes = values.iter().map(|t| t.shape()[d]).collect();
        Ok(Var::from_op(out, Op::Cat { dim: d, sizes }, vars))
    }
    pub fn stack(vars: &[&Var], dim: isize) -> Result<Var> {
        let un: Vec<Var> = vars
            .iter()
            .map(|v| v.unsqueeze(dim))
            .collect::<Result<_>>()?;
        let refs: Vec<&Var> = un.iter().collect();
        Var::cat(&refs, dim)
    }
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Var>> {
        let d = self.value().resolve_dim("split", dim)?;
        if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(self.shape()[d]) {
            return Err(Error::shape(
                "split",
                &[&self.shape()],
                format!("sizes {sizes:?} do not add up to {}", self.shape()[d]),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let v = self.narrow(d as isize, start, s);
                start += s;
                v
            })
            .collect()
    }

    /// Replace elements where `mask` (broadcastable, non-zero = true) holds by `value`.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Var> {
        let v = self.value().masked_fill(mask, value)?;
        Ok(Var::from_op(
            v,
            Op::MaskedFill { mask: mask.clone() },
            &[self],
        ))
    }
    /// `cond ? a : b` elementwise with broadcasting.
    pub fn where_cond(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let v = Tensor::where_cond(cond, &a.value(), &b.value())?;
        Ok(Var::from_op(v, Op::Where { cond: cond.clone() }, &[a, b]))
    }

    /// Inverted dropout: in training, zero each element with probability p and scale the rest
    /// by 1/(1 − p); the identity otherwise (or when p = 0).
    pub fn dropout(&self, p: f32, training: bool, rng: &mut Rng) -> Result<Var> {
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        crate::tensor::check_dropout_p(p)?;
        // One draw seeds the counter-based mask, which the backward pass regenerates.
        let seed = rng.next_u64();
        let v = self.value().dropout_seeded(p, seed)?;
        Ok(Var::from_op(v, Op::Dropout { p, seed }, &[self]))
    }

    /// Mean cross-entropy of logits (…, C) against integer targets (…); rows whose target is
    /// `ignore_index` carry no loss and do not count in the mean.
    pub fn cross_entropy(
        &self,
        targets: &Tensor,
        ignore_index: i64,
        smoothing: f32,
    ) -> Result<Var> {
        let saved = self
            .value()
            .cross_entropy(targets, ignore_index, smoothing)?;
        let loss = saved.loss.clone();
        Ok(Var::from_op(
            loss,
            Op::CrossEntropy {
                saved,
                ignore_index,
                smoothing,
            },
            &[self],
        ))
    }

    /// Scaled dot-product attention as one op (see `Tensor::attention`); `bias` (T5's relative
    /// position bias) is differentiable.
    pub fn attention(
        q: &Var,
        k: &Var,
        v: &Var,
        bias: Option<&Var>,
        masks: &AttentionMasks,
    ) -> Result<Var> {
        let bv = bias.map(|b| b.value());
        let (out, stats) =
            Tensor::attention_with_stats(&q.value(), &k.value(), &v.value(), bv.as_deref(), masks)?;
        drop(bv);
        let mut inputs = vec![q, k, v];
        inputs.extend(bias);
        Ok(Var::from_op(
            out,
            Op::Attention {
                masks: masks.clone(),
                stats,
            },
            &inputs,
        ))
    }
}
