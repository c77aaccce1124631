//! Reductions over a set of dims: sum, mean, max (with arg-max for its gradient), and
//! `sum_to_shape`, which undoes broadcasting in the backward of broadcast ops.

use rayon::prelude::*;

use super::Tensor;
use crate::error::{Error, Result};

/// A reduction laid out as `outer` rows of `inner` contiguous elements each (the reduced dims last).
struct Rows {
    data: Vec<f32>,
    inner: usize,
    out_shape: Vec<usize>,
}

impl Tensor {
    fn reduce_dims(&self, op: &'static str, dims: &[isize]) -> Result<Vec<bool>> {
        let mut reduced = vec![false; self.rank()];
        for &d in dims {
            let i = self.resolve_dim(op, d)?;
            if reduced[i] {
                return Err(Error::shape(
                    op,
                    &[self.shape()],
                    format!("dim {d} listed twice"),
                ));
            }
            reduced[i] = true;
        }
        Ok(reduced)
    }

    /// The shape left after reducing the dims marked in `reduced`.
    fn reduced_shape(&self, reduced: &[bool], keepdim: bool) -> Vec<usize> {
        (0..self.rank())
            .filter_map(|i| {
                if !reduced[i] {
                    Some(self.shape()[i])
                } else if keepdim {
                    Some(1)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The elements as rows of the reduced dims (`reduce_dims`' marks), kept dims first.
    fn reduction_rows(&self, op: &'static str, reduced: &[bool], keepdim: bool) -> Result<Rows> {
        let kept: Vec<usize> = (0..self.rank()).filter(|&i| !reduced[i]).collect();
        let red: Vec<usize> = (0..self.rank()).filter(|&i| reduced[i]).collect();
        let perm: Vec<usize> = kept.iter().chain(red.iter()).copied().collect();
        let inner: usize = red.iter().map(|&i| self.shape()[i]).product();
        let permuted = self.permute(&perm)?;
        let data = permuted.f32s(op)?.into_owned();
        Ok(Rows {
            data,
            inner,
            out_shape: self.reduced_shape(reduced, keepdim),
        })
    }

    /// Σ over the leading dims of a contiguous tensor, as (outer, inner) columns:
    /// out[j] = Σ_i x[i·inner + j], in f64 with i ascending (the same sums in the same order as
    /// the row path, without its transposed copy). Bias gradients: (B, T, C) → (C).
    fn sum_leading(&self, lead: usize, out_shape: Vec<usize>) -> Result<Tensor> {
        let outer: usize = self.shape()[..lead].iter().product();
        let inner: usize = self.shape()[lead..].iter().product();
        if outer == 0 {
            // An empty sum is +0 (the f64 sums below start from −0, which x + −0 leaves as x).
            return Ok(Tensor::from_f32(vec![0.0; inner], &out_shape));
        }
        let x = self.f32s("sum")?;
        let columns = |j0: usize, out: &mut [f32]| {
            let mut acc = vec![-0.0f64; out.len()];
            for row in x.chunks_exact(inner.max(1)).take(outer) {
                for (a, &v) in acc.iter_mut().zip(&row[j0..]) {
                    *a += v as f64;
                }
            }
            out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        };
        let mut out = vec![0.0f32; inner];
        // Column blocks in parallel when there is enough work: each block's sums are the same.
        let block = (inner.div_ceil(rayon::current_num_threads())).next_multiple_of(16);
        if outer * inner >= 1 << 16 && inner > block {
            let _region = crate::backend::cpu::threads::region();
            out.par_chunks_mut(block)
                .enumerate()
                .for_each(|(b, o)| columns(b * block, o));
        } else {
            columns(0, &mut out);
        }
        Ok(Tensor::from_f32(out, &out_shape))
    }

    /// Σ over `dims`; with `keepdim` the reduced dims stay as size 1.
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        if let Some(ctx) = super::device::on_device("sum", &[self])? {
            return super::device::sum_dims(&ctx, self, dims, keepdim);
        }
        let reduced = self.reduce_dims("sum", dims)?;
        let lead = reduced.iter().take_while(|&&r| r).count();
        if self.is_contiguous() && lead > 0 && reduced[lead..].iter().all(|&r| !r) {
            return self.sum_leading(lead, self.reduced_shape(&reduced, keepdim));
        }
        let r = self.reduction_rows("sum", &reduced, keepdim)?;
        let out: Vec<f32> = if r.inner == 0 {
            vec![0.0; r.out_shape.iter().product()]
        } else {
            let _region = crate::backend::cpu::threads::region();
            r.data
                .par_chunks(r.inner)
                .with_min_len(crate::backend::cpu::par::row_block(
                    r.data.len() / r.inner,
                    r.inner,
                    1,
                ))
                .map(|row| row.iter().map(|&x| x as f64).sum::<f64>() as f32)
                .collect()
        };
        Ok(Tensor::from_f32(out, &r.out_shape))
    }

    /// Mean over `dims`.
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let s = self.sum_dims(dims, keepdim)?;
        let count = (self.numel() / s.numel().max(1)).max(1);
        s.mul_scalar(1.0 / count as f32)
    }

    /// Σ of all elements, as a 0-d tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum_dims(&dims, false)
    }

    /// Mean of all elements, as a 0-d tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.mean_dims(&dims, false)
    }

    /// Max over `dims`, with the position of the (first) maximum in each reduced block.
    pub fn max_dims_with_arg(&self, dims: &[isize], keepdim: bool) -> Result<(Tensor, Vec<usize>)> {
        let r = self.reduction_rows("max", &self.reduce_dims("max", dims)?, keepdim)?;
        if r.inner == 0 {
            return Err(Error::shape(
                "max",
                &[self.shape()],
                "max over an empty dim",
            ));
        }
        let (vals, args): (Vec<f32>, Vec<usize>) = r
            .data
            .chunks(r.inner)
            .map(|row| {
                let mut best = 0;
                for (i, &x) in row.iter().enumerate() {
                    if x > row[best] || (x.is_nan() && !row[best].is_nan()) {
                        best = i;
                    }
                }
                (row[best], best)
            })
            .unzip();
        Ok((Tensor::from_f32(vals, &r.out_shape), args))
    }

    pub fn max_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        Ok(self.max_dims_with_arg(dims, keepdim)?.0)
    }

    /// Gradient of `max_dims`: `grad` (the output's shape) routed to the arg-max positions of `self`.
    pub fn max_dims_backward(
        &self,
        dims: &[isize],
        args: &[usize],
        grad: &Tensor,
    ) -> Result<Tensor> {
        let reduced = self.reduce_dims("max_backward", dims)?;
        let kept: Vec<usize> = (0..self.rank()).filter(|&i| !reduced[i]).collect();
        let red: Vec<usize> = (0..self.rank()).filter(|&i| reduced[i]).collect();
        let perm: Vec<usize> = kept.iter().chain(red.iter()).copied().collect();
        let inner: usize = red.iter().map(|&i| self.shape()[i]).product();
        let g = grad.f32s("max_backward")?;
        let mut out = vec![0.0f32; self.numel()];
        for (row, (&a, &gv)) in args.iter().zip(g.iter()).enumerate() {
            out[row * inner + a] = gv;
        }
        let permuted_shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Tensor::from_f32(out, &permuted_shape)
            .permute(&inverse)?
            .contiguous()
    }

    /// Sum `self` (a broadcast result) down to `shape`: the backward of broadcasting.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let r = self.rank();
        if shape.len() > r {
            return Err(Error::shape(
                "sum_to_shape",
                &[self.shape(), shape],
                "target has higher rank",
            ));
        }
        let lead = r - shape.len();
        let mut dims = Vec::new();
        for i in 0..r {
            // Leading dims the target lacks, and its size-1 dims that were stretched, are summed.
            if i < lead || (shape[i - lead] == 1 && self.shape()[i] != 1) {
                dims.push(i as isize);
            } else if shape[i - lead] != self.shape()[i] {
                return Err(Error::shape(
                    "sum_to_shape",
                    &[self.shape(), shape],
                    "not a broadcast of the target",
                ));
            }
        }
        self.sum_dims(&dims, true)?.reshape(shape)
    }
}
