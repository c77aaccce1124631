//! The tensor: a typed storage shared between views, and a layout (shape, strides, offset).
//! Tensors are values: ops here compute forward results only. Gradients live one layer up,
//! in `autograd`, which records these ops and applies their gradient rules.

mod attention;
mod create;
pub mod device;
pub mod dtype;
mod elementwise;
mod index;
pub mod layout;
mod matmul;
mod nnops;
mod reduce;
pub mod rng;
pub mod storage;
mod view;

use std::borrow::Cow;
use std::sync::Arc;

pub use crate::backend::cpu::attention::AttnDropout;
pub use attention::AttentionMasks;
pub use dtype::DType;
pub use elementwise::{Binary, Unary};
pub use layout::Layout;
pub(crate) use nnops::check_dropout_p;
pub use nnops::{CrossEntropyOut, NormOut};
pub use rng::Rng;
use storage::Storage;
pub use storage::{CpuStorage, Element};

use crate::backend::cpu::convert;
use crate::backend::Device;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
}

impl Tensor {
    pub(crate) fn from_parts(storage: Arc<Storage>, layout: Layout) -> Tensor {
        Tensor { storage, layout }
    }

    /// A new contiguous tensor owning `storage`.
    pub(crate) fn from_storage(storage: CpuStorage, shape: &[usize]) -> Tensor {
        debug_assert_eq!(storage.len(), layout::numel(shape));
        Tensor {
            storage: Arc::new(Storage::Cpu(storage)),
            layout: Layout::contiguous(shape),
        }
    }

    /// A contiguous f32 tensor from a buffer whose length the caller guarantees.
    pub(crate) fn from_f32(data: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_storage(CpuStorage::F32(data), shape)
    }

    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.layout.strides
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }
    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.context().device(),
        }
    }
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }
    /// Size of dim `d`, with negative indices counting from the end.
    pub fn dim(&self, d: isize) -> Result<usize> {
        let d = self.resolve_dim("dim", d)?;
        Ok(self.shape()[d])
    }
    /// True when two tensors share the same storage buffer (a view of the other).
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// Turn a possibly negative dim into an index, or an error naming the op and shape.
    pub(crate) fn resolve_dim(&self, op: &'static str, d: isize) -> Result<usize> {
        let r = self.rank() as isize;
        let i = if d < 0 { d + r } else { d };
        if i < 0 || i >= r {
            return Err(Error::shape(
                op,
                &[self.shape()],
                format!("dim {d} out of range for rank {r}"),
            ));
        }
        Ok(i as usize)
    }

    /// The elements in row-major order, borrowed when the layout already is contiguous.
    pub(crate) fn elems<T: Element>(&self, op: &'static str) -> Result<Cow<'_, [T]>> {
        let data = T::slice(self.cpu_storage(op)?).ok_or_else(|| Error::DType {
            op,
            expected: T::DTYPE.to_string(),
            got: self.dtype().to_string(),
        })?;
        if self.is_contiguous() {
            let start = self.layout.offset;
            Ok(Cow::Borrowed(&data[start..start + self.numel()]))
        } else {
            Ok(Cow::Owned(self.layout.gather(data)))
        }
    }

    /// f32 elements in row-major order (errors for other dtypes).
    pub(crate) fn f32s(&self, op: &'static str) -> Result<Cow<'_, [f32]>> {
        self.elems::<f32>(op)
    }

    /// The whole storage as a slice of `T` (for kernels that read through strides).
    pub(crate) fn storage_slice<T: Element>(&self, op: &'static str) -> Result<&[T]> {
        T::slice(self.cpu_storage(op)?).ok_or_else(|| Error::DType {
            op,
            expected: T::DTYPE.to_string(),
            got: self.dtype().to_string(),
        })
    }

    /// Index values as usize (from i64 or u32 tensors), row-major; negative values are an error.
    pub(crate) fn indices(&self, op: &'static str) -> Result<Vec<usize>> {
        match self.dtype() {
            DType::I64 => self
                .elems::<i64>(op)?
                .iter()
                .map(|&i| {
                    usize::try_from(i).map_err(|_| Error::Index {
                        op,
                        msg: format!("negative index {i}"),
                    })
                })
                .collect(),
            DType::U32 => Ok(self.elems::<u32>(op)?.iter().map(|&i| i as usize).collect()),
            other => Err(Error::DType {
                op,
                expected: "i64 or u32".into(),
                got: other.to_string(),
            }),
        }
    }

    /// Mutable access to the f32 elements, for in-place updates (optimizer steps). A view or
    /// a storage shared with other tensors is first copied, so no other tensor changes.
    pub fn f32s_mut(&mut self) -> Result<&mut [f32]> {
        self.cpu_storage("f32s_mut")?;
        if !(self.is_contiguous() && self.layout.offset == 0 && self.storage.len() == self.numel())
        {
            *self = self.contiguous()?;
        }
        let dt = self.dtype();
        if Arc::get_mut(&mut self.storage).is_none() {
            // Shared with another tensor: copy on write.
            let copy = self.cpu_storage("f32s_mut")?.clone();
            self.storage = Arc::new(Storage::Cpu(copy));
        }
        match Arc::get_mut(&mut self.storage) {
            Some(Storage::Cpu(CpuStorage::F32(v))) => Ok(v),
            _ => Err(Error::DType {
                op: "f32s_mut",
                expected: "f32".into(),
                got: dt.to_string(),
            }),
        }
    }

    /// Copy out as a row-major `Vec<T>`; the dtype must be `T`.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        Ok(self.elems::<T>("to_vec")?.into_owned())
    }

    /// Copy out as f32, converting from bf16 / f16 / integer dtypes.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype() {
            DType::F32 => self.elems::<f32>("to_vec_f32")?.into_owned(),
            DType::BF16 => self
                .elems::<half::bf16>("to_vec_f32")?
                .iter()
                .map(|x| x.to_f32())
                .collect(),
            DType::F16 => self
                .elems::<half::f16>("to_vec_f32")?
                .iter()
                .map(|x| x.to_f32())
                .collect(),
            DType::I64 => self
                .elems::<i64>("to_vec_f32")?
                .iter()
                .map(|&x| x as f32)
                .collect(),
            DType::U32 => self
                .elems::<u32>("to_vec_f32")?
                .iter()
                .map(|&x| x as f32)
                .collect(),
        })
    }

    /// The single value of a one-element tensor, as f32.
    pub fn scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "scalar",
                &[self.shape()],
                "expected exactly one element",
            ));
        }
        Ok(self.to_vec_f32()?[0])
    }

    /// Convert to another dtype (a copy; float ↔ float rounds to nearest even, float → int truncates).
    pub fn to_dtype(&self, dt: DType) -> Result<Tensor> {
        if dt == self.dtype() {
            return Ok(self.clone());
        }
        self.cpu_storage("to_dtype")?;
        let storage = match (self.dtype(), dt) {
            (DType::I64, DType::U32) => CpuStorage::U32(
                self.elems::<i64>("to_dtype")?
                    .iter()
                    .map(|&x| {
                        u32::try_from(x).map_err(|_| Error::Index {
                            op: "to_dtype",
                            msg: format!("{x} does not fit u32"),
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            (DType::U32, DType::I64) => CpuStorage::I64(
                self.elems::<u32>("to_dtype")?
                    .iter()
                    .map(|&x| x as i64)
                    .collect(),
            ),
            (DType::F32, DType::BF16) => {
                CpuStorage::BF16(convert::to_bf16_vec(&self.elems::<f32>("to_dtype")?))
            }
            (DType::BF16, DType::F32) => {
                CpuStorage::F32(convert::to_f32_vec(&self.elems::<half::bf16>("to_dtype")?))
            }
            _ => {
                let f = self.to_vec_f32()?;
                match dt {
                    DType::F32 => CpuStorage::F32(f),
                    DType::BF16 => {
                        CpuStorage::BF16(f.iter().map(|&x| half::bf16::from_f32(x)).collect())
                    }
                    DType::F16 => {
                        CpuStorage::F16(f.iter().map(|&x| half::f16::from_f32(x)).collect())
                    }
                    DType::I64 => CpuStorage::I64(f.iter().map(|&x| x as i64).collect()),
                    DType::U32 => CpuStorage::U32(f.iter().map(|&x| x as u32).collect()),
                }
            }
        };
        Ok(Tensor::from_storage(storage, self.shape()))
    }

    /// A contiguous copy, or `self` (sharing storage) when already contiguous. On a CUDA
    /// device the copy is a kernel launch, hence the `Result`.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.layout.offset == 0 && self.storage.len() == self.numel() {
            return Ok(self.clone());
        }
        let cpu = match &*self.storage {
            Storage::Cpu(c) => c,
            Storage::Cuda(_) => return device::contiguous(self),
        };
        let storage = match cpu {
            CpuStorage::F32(v) => CpuStorage::F32(self.layout.gather(v)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.layout.gather(v)),
            CpuStorage::F16(v) => CpuStorage::F16(self.layout.gather(v)),
            CpuStorage::I64(v) => CpuStorage::I64(self.layout.gather(v)),
            CpuStorage::U32(v) => CpuStorage::U32(self.layout.gather(v)),
        };
        Ok(Tensor::from_storage(storage, self.shape()))
    }

    /// Conversion to an `ndarray` array (f32; other float dtypes are converted).
    pub fn to_ndarray(&self) -> Result<ndarray::ArrayD<f32>> {
        ndarray::ArrayD::from_shape_vec(self.shape().to_vec(), self.to_vec_f32()?)
            .map_err(|e| Error::msg(format!("to_ndarray: {e}")))
    }

    /// Conversion from an `ndarray` array (any memory order; copied to row-major).
    pub fn from_ndarray(a: &ndarray::ArrayD<f32>) -> Tensor {
        let shape = a.shape().to_vec();
        Tensor::from_f32(a.iter().copied().collect(), &shape)
    }
}

impl std::fmt::Display for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {}]", self.shape(), self.dtype())?;
        if let Ok(v) = self.to_vec_f32() {
            let n = v.len().min(8);
            write!(f, " {:?}{}", &v[..n], if v.len() > n { " …" } else { "" })?;
        }
        Ok(())
    }
}
