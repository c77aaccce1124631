//! Views: new layouts over the same storage, no copies (reshape copies only when no strides
//! give the new shape the same elements in the same order).

use super::layout::{numel, Layout};
use super::Tensor;
use crate::error::{Error, Result};

impl Tensor {
    fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor::from_parts(self.storage.clone(), layout)
    }

    /// Same elements, new shape: a view whenever strides exist that give the new shape the
    /// same elements in the same row-major order (always for a contiguous tensor; also, e.g.,
    /// for splitting the last dim of a column slice into heads), else a contiguous copy. As
    /// PyTorch's `reshape`, the result may share storage with `self`.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.shape(), shape],
                format!("{} elements cannot take shape {shape:?}", self.numel()),
            ));
        }
        if let Some(strides) = self.layout.view_strides(shape) {
            return Ok(self.with_layout(Layout {
                shape: shape.to_vec(),
                strides,
                offset: self.layout.offset,
            }));
        }
        let base = self.contiguous()?;
        let mut layout = Layout::contiguous(shape);
        layout.offset = base.layout.offset;
        Ok(base.with_layout(layout))
    }

    /// Reorder dims: result dim i is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                "permute",
                &[self.shape()],
                format!("{perm:?} is not a permutation of {r} dims"),
            ));
        }
        let l = &self.layout;
        Ok(self.with_layout(Layout {
            shape: perm.iter().map(|&p| l.shape[p]).collect(),
            strides: perm.iter().map(|&p| l.strides[p]).collect(),
            offset: l.offset,
        }))
    }

    /// Swap two dims (negative dims count from the end).
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.resolve_dim("transpose", d0)?;
        let b = self.resolve_dim("transpose", d1)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start..start+len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.resolve_dim("narrow", dim)?;
        // checked_add: a huge start or len is an error, not an overflow panic.
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.shape()[d])
        {
            return Err(Error::shape(
                "narrow",
                &[self.shape()],
                format!(
                    "range {start}..{start}+{len} past size {} of dim {d}",
                    self.shape()[d]
                ),
            ));
        }
        let mut l = self.layout.clone();
        l.offset += start * l.strides[d];
        l.shape[d] = len;
        Ok(self.with_layout(l))
    }

    /// Broadcast to `shape` (stride 0 on the new or stretched dims).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.broadcast_to("broadcast_to", shape)?))
    }

    /// Insert a dim of size 1 at `dim` (0..=rank; negative counts from the end of the result).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let r = self.rank() as isize;
        let d = if dim < 0 { dim + r + 1 } else { dim };
        if d < 0 || d > r {
            return Err(Error::shape(
                "unsqueeze",
                &[self.shape()],
                format!("dim {dim} out of range for rank {r}"),
            ));
        }
        let d = d as usize;
        let mut l = self.layout.clone();
        let stride = if d < l.rank() {
            l.strides[d] * l.shape[d]
        } else {
            1
        };
        l.shape.insert(d, 1);
        l.strides.insert(d, stride);
        Ok(self.with_layout(l))
    }

    /// Remove dim `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.resolve_dim("squeeze", dim)?;
        if self.shape()[d] != 1 {
            return Err(Error::shape(
                "squeeze",
                &[self.shape()],
                format!("dim {d} has size {}, not 1", self.shape()[d]),
            ));
        }
        let mut l = self.layout.clone();
        l.shape.remove(d);
        l.strides.remove(d);
        Ok(self.with_layout(l))
    }

    /// Merge all dims into one.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }
}
