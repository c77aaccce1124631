//! Indexing: index_select / embedding lookup, gather, their scatter-add adjoints,
//! cat / stack / split, masked_fill and where.

use super::layout::{broadcast_shapes, numel};
use super::{DType, Tensor};
use crate::backend::cpu::{elementwise, isa, par};
use crate::error::{Error, Result};

/// (outer, size, inner) of a contiguous tensor around dim `d`.
fn around(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// Checks that `src` fits `dst`'s slice start.. along `dim`: same rank and sizes except along
/// `dim`, where start + src's size ≤ dst's.
fn check_slice(
    op: &'static str,
    dst: &Tensor,
    dim: usize,
    start: usize,
    src: &Tensor,
) -> Result<()> {
    let fits = dst.rank() == src.rank()
        && dim < dst.rank()
        && dst
            .shape()
            .iter()
            .zip(src.shape())
            .enumerate()
            .all(|(d, (&a, &b))| d == dim || a == b)
        && start
            .checked_add(src.shape()[dim])
            .is_some_and(|end| end <= dst.shape()[dim]);
    if !fits {
        return Err(Error::shape(
            op,
            &[src.shape(), dst.shape()],
            format!("the first into positions {start}.. along dim {dim} of the second"),
        ));
    }
    Ok(())
}

/// dst[.., start + i, ..] = f(dst[.., start + i, ..], src[.., i, ..]) along `dim`, in place on
/// dst's host storage (made contiguous and unshared first). Shapes checked by `check_slice`.
fn update_slice(
    op: &'static str,
    dst: &mut Tensor,
    dim: usize,
    start: usize,
    src: &Tensor,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<()> {
    let (_, full, inner) = around(dst.shape(), dim);
    let (span, seg) = (full * inner, src.shape()[dim] * inner);
    if seg == 0 {
        return Ok(());
    }
    let g = src.f32s(op)?;
    let a = dst.f32s_mut()?;
    let level = isa::active();
    // Per index of the dims before `dim`: a[o·span + start·inner ..][..seg] ← f(a, g[o·seg ..]).
    let apply = |(a, g): (&mut [f32], &[f32])| {
        elementwise::update(level, &mut a[start * inner..][..seg], g, &f)
    };
    if a.len() >= 1 << 16 {
        use rayon::prelude::*;
        let _region = crate::backend::cpu::threads::region();
        a.par_chunks_mut(span)
            .zip(g.par_chunks(seg))
            .for_each(apply);
    } else {
        a.chunks_mut(span).zip(g.chunks(seg)).for_each(apply);
    }
    Ok(())
}

impl Tensor {
    fn checked_ids(&self, op: &'static str, ids: &Tensor, bound: usize) -> Result<Vec<usize>> {
        let v = ids.indices(op)?;
        if let Some(&bad) = v.iter().find(|&&i| i >= bound) {
            return Err(Error::Index {
                op,
                msg: format!(
                    "index {bad} ≥ size {bound} (tensor shape {:?})",
                    self.shape()
                ),
            });
        }
        Ok(v)
    }

    /// Rows of `self` along `dim` picked by the 1-D integer tensor `ids`.
    pub fn index_select(&self, dim: isize, ids: &Tensor) -> Result<Tensor> {
        let d = self.resolve_dim("index_select", dim)?;
        if ids.rank() != 1 {
            return Err(Error::shape(
                "index_select",
                &[self.shape(), ids.shape()],
                "ids must be 1-D",
            ));
        }
        let idx = self.checked_ids("index_select", ids, self.shape()[d])?;
        let x = self.f32s("index_select")?;
        let (outer, size, inner) = around(self.shape(), d);
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in &idx {
                let s = (o * size + i) * inner;
                out.extend_from_slice(&x[s..s + inner]);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[d] = idx.len();
        Ok(Tensor::from_f32(out, &shape))
    }

    /// Adjoint of `index_select`: a zero tensor with `size` entries along `dim`, into which the
    /// slices of `self` are added at the positions `ids` (repeated ids accumulate).
    pub fn index_add_into(&self, dim: isize, ids: &Tensor, size: usize) -> Result<Tensor> {
        let d = self.resolve_dim("index_add", dim)?;
        if let Some(ctx) = super::device::on_device("index_add", &[self])? {
            return super::device::index_add_into(&ctx, self, d, ids, size);
        }
        let idx = ids.indices("index_add")?;
        if idx.len() != self.shape()[d] {
            return Err(Error::shape(
                "index_add",
                &[self.shape(), ids.shape()],
                "one id per slice",
            ));
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= size) {
            return Err(Error::Index {
                op: "index_add",
                msg: format!("index {bad} ≥ size {size}"),
            });
        }
        let g = self.f32s("index_add")?;
        let (outer, n, inner) = around(self.shape(), d);
        let mut out = vec![0.0f32; outer * size * inner];
        for o in 0..outer {
            for (j, &i) in idx.iter().enumerate() {
                let src = &g[(o * n + j) * inner..][..inner];
                let dst = &mut out[(o * size + i) * inner..][..inner];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[d] = size;
        Ok(Tensor::from_f32(out, &shape))
    }

    /// Embedding lookup: `self` is the table (V, C), `ids` any shape of integers → (…ids, C).
    /// A bf16 table gives f32 rows (weight-only bf16 inference).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        if let Some(ctx) = super::device::on_device("embedding", &[self])? {
            return super::device::embedding(&ctx, self, ids);
        }
        if self.rank() != 2 {
            return Err(Error::shape(
                "embedding",
                &[self.shape(), ids.shape()],
                "table must be (V, C)",
            ));
        }
        // Checked here too so that an id past the vocabulary names this op.
        let idx = self.checked_ids("embedding", ids, self.shape()[0])?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.shape()[1]);
        if self.dtype() == DType::BF16 {
            // A bf16 table (weight-only bf16 inference): the rows come out as f32, widened
            // exactly, the values a bf16-rounded f32 table would give.
            let c = self.shape()[1];
            let table = self.elems::<half::bf16>("embedding")?;
            let mut out = Vec::with_capacity(idx.len() * c);
            for &i in &idx {
                out.extend(table[i * c..][..c].iter().map(|x| x.to_f32()));
            }
            return Ok(Tensor::from_f32(out, &shape));
        }
        let flat = ids.reshape(&[ids.numel()])?;
        let rows = self.index_select(0, &flat)?;
        rows.reshape(&shape)
    }

    /// torch.gather: out[…i…] = self[… index[…i…] …] along `dim`; `index` has the rank of
    /// `self` and no larger size in any other dim.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let d = self.resolve_dim("gather", dim)?;
        if index.rank() != self.rank()
            || (0..self.rank()).any(|i| i != d && index.shape()[i] > self.shape()[i])
        {
            return Err(Error::shape(
                "gather",
                &[self.shape(), index.shape()],
                format!(
                    "index must have rank {} and no dim larger than the input's outside dim {d}",
                    self.rank()
                ),
            ));
        }
        let idx = self.checked_ids("gather", index, self.shape()[d])?;
        let x = self.contiguous()?;
        let xs = x.f32s("gather")?;
        let strides = super::layout::contiguous_strides(self.shape());
        let mut out = Vec::with_capacity(idx.len());
        for (pos, multi) in MultiIndex::new(index.shape()).enumerate() {
            let mut off = 0;
            for (k, &m) in multi.iter().enumerate() {
                off += if k == d { idx[pos] } else { m } * strides[k];
            }
            out.push(xs[off]);
        }
        Ok(Tensor::from_f32(out, index.shape()))
    }

    /// Adjoint of `gather`: scatter-add `self` (shaped like `index`) into zeros of `shape`.
    pub fn scatter_add_into(&self, dim: isize, index: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let d = self.resolve_dim("scatter_add", dim)?;
        if index.shape() != self.shape() {
            return Err(Error::shape(
                "scatter_add",
                &[self.shape(), index.shape()],
                "src and index shapes differ",
            ));
        }
        let idx = index.indices("scatter_add")?;
        let g = self.f32s("scatter_add")?;
        let strides = super::layout::contiguous_strides(shape);
        let mut out = vec![0.0f32; numel(shape)];
        for (pos, multi) in MultiIndex::new(index.shape()).enumerate() {
            let mut off = 0;
            for (k, &m) in multi.iter().enumerate() {
                let i = if k == d { idx[pos] } else { m };
                if i >= shape[k] {
                    return Err(Error::Index {
                        op: "scatter_add",
                        msg: format!("index {i} ≥ size {} of dim {k}", shape[k]),
                    });
                }
                off += i * strides[k];
            }
            out[off] += g[pos];
        }
        Ok(Tensor::from_f32(out, shape))
    }

    /// Concatenate along `dim`; all other dims must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::msg("cat: no tensors given"))?;
        let d = first.resolve_dim("cat", dim)?;
        for t in tensors {
            let same = t.rank() == first.rank()
                && (0..first.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !same {
                return Err(Error::shape(
                    "cat",
                    &[first.shape(), t.shape()],
                    format!("shapes must agree outside dim {d}"),
                ));
            }
        }
        if let Some(ctx) = super::device::on_device("cat", tensors)? {
            return super::device::cat(&ctx, tensors, d);
        }
        let total: usize = tensors.iter().map(|t| t.shape()[d]).sum();
        let (outer, _, inner) = around(first.shape(), d);
        let datas: Vec<_> = tensors
            .iter()
            .map(|t| t.f32s("cat"))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for (t, x) in tensors.iter().zip(&datas) {
                let block = t.shape()[d] * inner;
                out.extend_from_slice(&x[o * block..(o + 1) * block]);
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = total;
        Ok(Tensor::from_f32(out, &shape))
    }

    /// The adjoint of `narrow`: zeros with `full` entries along `dim` (self's shape otherwise),
    /// holding `self` at `start..start + len`.
    pub fn narrow_backward(&self, dim: usize, start: usize, full: usize) -> Result<Tensor> {
        let len = *self.shape().get(dim).ok_or_else(|| {
            Error::shape("narrow_backward", &[self.shape()], format!("no dim {dim}"))
        })?;
        if start.checked_add(len).is_none_or(|end| end > full) {
            return Err(Error::shape(
                "narrow_backward",
                &[self.shape()],
                format!("range {start}..{start}+{len} past size {full}"),
            ));
        }
        if let Some(ctx) = super::device::on_device("narrow_backward", &[self])? {
            return super::device::narrow_backward(&ctx, self, dim, start, full);
        }
        // One pass over a fresh output, block by block of its rows along `dim` (span values
        // each): zeros, then self's segment (seg values) at start·inner.
        let mut shape = self.shape().to_vec();
        shape[dim] = full;
        let (outer, _, inner) = around(&shape, dim);
        let (span, seg) = (full * inner, len * inner);
        let g = self.f32s("narrow_backward")?;
        let out = par::fresh(outer * span, |o| {
            par::rows_mut(o, span, 1, |r0, block| {
                block.init(|a| {
                    for (r, row) in a.chunks_mut(span.max(1)).enumerate() {
                        row[start * inner..][..seg].copy_from_slice(&g[(r0 + r) * seg..][..seg]);
                    }
                })
            })
        });
        Ok(Tensor::from_f32(out, &shape))
    }

    /// `acc + self.narrow_backward(dim, start, full)` (just the latter when `acc` is None),
    /// without the padded tensor: `self` is added into `acc`'s slice start..start+len along
    /// `dim`, in place unless `acc`'s storage is shared. This is how the backward pass
    /// accumulates a narrow's gradient: q, k and v narrowed from one projection then cost one
    /// pass over each third instead of three zero-padded copies and two full-width adds. The
    /// sums are the ones the padded form gives (each element is acc + g, or acc + 0).
    pub fn narrow_backward_add(
        &self,
        acc: Option<Tensor>,
        dim: usize,
        start: usize,
        full: usize,
    ) -> Result<Tensor> {
        let Some(mut acc) = acc else {
            return self.narrow_backward(dim, start, full);
        };
        let op = "narrow_backward_add";
        check_slice(op, &acc, dim, start, self)?;
        if acc.shape()[dim] != full {
            return Err(Error::shape(
                op,
                &[self.shape(), acc.shape()],
                format!("gradient of size {full} along dim {dim} expected"),
            ));
        }
        if super::device::on_device(op, &[self, &acc])?.is_some() {
            return acc.add(&self.narrow_backward(dim, start, full)?);
        }
        update_slice(op, &mut acc, dim, start, self, |x, y| x + y)?;
        Ok(acc)
    }

    /// Writes `src` over this tensor's slice start..start + len along `dim` (len = src's size
    /// there; the other dims equal), in place unless the storage is shared (then copied
    /// first): the append of a decoding cache (`nn::attention::KvCache`). Both on the host or
    /// both on one device.
    pub(crate) fn write_narrow(&mut self, dim: usize, start: usize, src: &Tensor) -> Result<()> {
        let op = "write_narrow";
        check_slice(op, self, dim, start, src)?;
        if let Some(ctx) = super::device::on_device(op, &[self, src])? {
            return super::device::write_narrow(&ctx, self, dim, start, src);
        }
        update_slice(op, self, dim, start, src, |_, y| y)
    }

    /// Stack equal-shaped tensors along a new dim.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let un: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = un.iter().collect();
        Tensor::cat(&refs, dim)
    }

    /// Views of consecutive pieces along `dim` with the given sizes (which must add up).
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let d = self.resolve_dim("split", dim)?;
        if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(self.shape()[d]) {
            return Err(Error::shape(
                "split",
                &[self.shape()],
                format!("sizes {sizes:?} do not add up to {}", self.shape()[d]),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let t = self.narrow(d as isize, start, s);
                start += s;
                t
            })
            .collect()
    }

    /// The truth values of a mask tensor (non-zero = true) broadcast to `shape`.
    pub(crate) fn mask_values(&self, op: &'static str, shape: &[usize]) -> Result<Vec<bool>> {
        let b = self.broadcast_to(shape).map_err(|_| {
            Error::shape(
                op,
                &[self.shape(), shape],
                "mask cannot be broadcast to the input",
            )
        })?;
        Ok(b.to_vec_f32()?.into_iter().map(|v| v != 0.0).collect())
    }

    /// Elements where `mask` (broadcastable, non-zero = true) holds are replaced by `value`.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let m = mask.mask_values("masked_fill", self.shape())?;
        let x = self.f32s("masked_fill")?;
        let out = x
            .iter()
            .zip(&m)
            .map(|(&x, &m)| if m { value } else { x })
            .collect();
        Ok(Tensor::from_f32(out, self.shape()))
    }

    /// Elementwise choice: `cond ? a : b`, all three broadcast together.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let shape = broadcast_shapes("where", a.shape(), b.shape())?;
        let shape = broadcast_shapes("where", cond.shape(), &shape)?;
        let c = cond.mask_values("where", &shape)?;
        let av = a.broadcast_to(&shape)?.to_vec_f32()?;
        let bv = b.broadcast_to(&shape)?.to_vec_f32()?;
        let out = c
            .iter()
            .zip(av.iter().zip(&bv))
            .map(|(&c, (&a, &b))| if c { a } else { b })
            .collect();
        Ok(Tensor::from_f32(out, &shape))
    }
}

/// Row-major multi-indices of a shape.
struct MultiIndex {
    shape: Vec<usize>,
    cur: Vec<usize>,
    left: usize,
}

impl MultiIndex {
    fn new(shape: &[usize]) -> Self {
        MultiIndex {
            shape: shape.to_vec(),
            cur: vec![0; shape.len()],
            left: numel(shape),
        }
    }
}

impl Iterator for MultiIndex {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.cur.clone();
        for d in (0..self.shape.len()).rev() {
            self.cur[d] += 1;
            if self.cur[d] < self.shape[d] {
                break;
            }
            self.cur[d] = 0;
        }
        Some(out)
    }
}
