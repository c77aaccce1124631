//! Shape, strides and offset: how a tensor's elements sit in its storage.
//! Element (i0, …, i{n-1}) lives at `offset + Σ ik·strides[k]`. A broadcast dim has stride 0.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// Row-major strides of a contiguous tensor of this shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = s;
        s *= shape[i];
    }
    strides
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// NumPy broadcasting: align from the right; each pair of dims must be equal or one of them 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                &[a, b],
                format!("dims {da} and {db} cannot be broadcast (aligned from the right)"),
            ));
        };
    }
    Ok(out)
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the elements are in row-major order with no gaps (size-1 dims may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != expected {
                return false;
            }
            expected *= self.shape[i];
        }
        true
    }

    /// The layout of this tensor broadcast to `shape` (stride 0 on new and stretched dims).
    pub fn broadcast_to(&self, op: &'static str, shape: &[usize]) -> Result<Layout> {
        if shape.len() < self.shape.len() {
            return Err(Error::shape(
                op,
                &[&self.shape, shape],
                "cannot broadcast to a lower rank",
            ));
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for i in 0..shape.len() {
            if i < lead {
                continue;
            }
            let d = self.shape[i - lead];
            if d == shape[i] {
                strides[i] = self.strides[i - lead];
            } else if d == 1 {
                strides[i] = 0;
            } else {
                return Err(Error::shape(
                    op,
                    &[&self.shape, shape],
                    format!(
                        "dim {} of size {d} cannot be expanded to {}",
                        i - lead,
                        shape[i]
                    ),
                ));
            }
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// This layout's elements, in row-major order, as `shape` without moving them: the
    /// strides of the view, or None when no strides give that order (PyTorch's `view` rule,
    /// `computeStride` in ATen). Dims are grouped into chunks that are contiguous with each
    /// other (stride_i = size_{i+1}·stride_{i+1}, size-1 dims ignored); each chunk is split or
    /// merged freely, but new dims must not straddle two chunks. The caller checks that the
    /// element counts agree.
    pub fn view_strides(&self, shape: &[usize]) -> Option<Vec<usize>> {
        if self.numel() == 0 || self.is_contiguous() {
            return Some(contiguous_strides(shape));
        }
        let mut strides = vec![0; shape.len()];
        // Output dims still to assign, from the last; element counts of the current chunk.
        let mut view_d = shape.len();
        let mut chunk_base = *self.strides.last()?;
        let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
        for d in (0..self.shape.len()).rev() {
            tensor_numel *= self.shape[d];
            let chunk_ends = d == 0
                || (self.shape[d - 1] != 1 && self.strides[d - 1] != tensor_numel * chunk_base);
            if chunk_ends {
                while view_d > 0 && (view_numel < tensor_numel || shape[view_d - 1] == 1) {
                    strides[view_d - 1] = view_numel * chunk_base;
                    view_numel *= shape[view_d - 1];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if d > 0 {
                    chunk_base = self.strides[d - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        (view_d == 0).then_some(strides)
    }

    /// Storage offsets of all elements in row-major order.
    pub fn offsets(&self) -> StridedOffsets<'_> {
        StridedOffsets::new(self)
    }

    /// The layout of the rows along the last dim: (offsets of each row's first element,
    /// row length, stride within a row). A 0-d tensor is one row of one element.
    pub fn rows(&self) -> (Vec<usize>, usize, usize) {
        match self.shape.split_last() {
            None => (vec![self.offset], 1, 1),
            Some((&n, lead)) => {
                let outer = Layout {
                    shape: lead.to_vec(),
                    strides: self.strides[..lead.len()].to_vec(),
                    offset: self.offset,
                };
                (outer.offsets().collect(), n, self.strides[lead.len()])
            }
        }
    }

    /// Gather the elements of `src` in row-major order (a strided copy, row by row).
    pub fn gather<T: Copy>(&self, src: &[T]) -> Vec<T> {
        let (starts, n, stride) = self.rows();
        let mut out = Vec::with_capacity(starts.len() * n);
        for s in starts {
            if stride == 1 {
                out.extend_from_slice(&src[s..s + n]);
            } else {
                out.extend((0..n).map(|j| src[s + j * stride]));
            }
        }
        out
    }
}

/// Iterates the storage offsets of a layout in row-major element order.
pub struct StridedOffsets<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl<'a> StridedOffsets<'a> {
    fn new(layout: &'a Layout) -> Self {
        StridedOffsets {
            layout,
            index: vec![0; layout.rank()],
            next: layout.offset,
            remaining: layout.numel(),
        }
    }
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let cur = self.next;
        // Advance the multi-index, last dim fastest.
        let l = self.layout;
        for d in (0..l.rank()).rev() {
            self.index[d] += 1;
            self.next += l.strides[d];
            if self.index[d] < l.shape[d] {
                break;
            }
            self.next -= l.strides[d] * l.shape[d];
            self.index[d] = 0;
        }
        Some(cur)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedOffsets<'_> {}
