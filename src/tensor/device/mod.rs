//! Tensors on a CUDA device (the real GPU or the emulator, `backend::cuda::CudaContext`): the
//! device storage, moving tensors between host and device (`to_cuda` / `to_cpu`, the only
//! copies: data in, results out), and the device implementations of the tensor ops. Each CPU op
//! dispatches here at its top when an operand lives on a device; an op without a device
//! implementation returns `Error::Device` naming the op and the device. Nothing is copied to the
//! host behind the caller's back: host-only accessors (`to_vec`, `f32s`, …) refuse device
//! tensors. Integer index inputs (token ids, targets, masks) may come from the host; they are
//! uploaded by the op that reads them, like any batch of input data.
//!
//! Device dtypes: f32, and i64 / u32 index tensors, which live on the device as i32 (the
//! kernels' index type; values outside the i32 range are refused when uploaded).

mod attention;
mod linalg;
mod nn;
mod pointwise;

pub(crate) use attention::{attention, attention_backward};
pub(crate) use linalg::{matmul, sum_dims};
pub use nn::CrossEntropyDevice;
pub(crate) use nn::{
    cross_entropy, cross_entropy_backward, dropout, embedding, index_add_into, layer_norm,
    norm_backward, rms_norm, softmax_last, softmax_last_backward,
};
pub(crate) use pointwise::{binary, cat, narrow_backward, unary, write_narrow};

use std::sync::Arc;

use super::layout::{contiguous_strides, Layout};
use super::storage::{CpuStorage, Storage};
use super::{DType, Tensor};
use crate::backend::cuda::launch::DSlice;
use crate::backend::cuda::{CudaContext, Mem};
use crate::error::{Error, Result};

/// A device buffer with the tensor's logical dtype (i64 / u32 are stored as i32).
pub(crate) enum DeviceBuf {
    F32(Mem<f32>),
    I32(Mem<i32>),
}

/// Elements of a tensor on a CUDA device, with the device they live on.
pub struct CudaStorage {
    ctx: CudaContext,
    buf: DeviceBuf,
    dtype: DType,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({:?}, {}, {} elements)",
            self.ctx,
            self.dtype,
            self.len()
        )
    }
}

impl CudaStorage {
    pub fn context(&self) -> &CudaContext {
        &self.ctx
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        match &self.buf {
            DeviceBuf::F32(m) => m.len(),
            DeviceBuf::I32(m) => m.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The error of an op that has no device implementation (or a host accessor on a device tensor).
pub(crate) fn not_on_device(op: &'static str, ctx: &CudaContext) -> Error {
    Error::Device {
        op,
        msg: format!(
            "not implemented on {} (the tensor lives on the device; move it with to_cpu() to run \
             this op on the host)",
            ctx.device()
        ),
    }
}

/// The device shared by `ts`: None when all are on the host, Err when they are on different
/// devices (an operand on the host beside one on a device included).
pub(crate) fn on_device(op: &'static str, ts: &[&Tensor]) -> Result<Option<CudaContext>> {
    let mut found: Option<&CudaContext> = None;
    let mut host = false;
    for t in ts {
        match t.cuda_context() {
            None => host = true,
            Some(c) => match found {
                None => found = Some(c),
                Some(f) if f.same(c) => {}
                Some(f) => {
                    return Err(Error::Device {
                        op,
                        msg: format!(
                            "operands on two different CUDA contexts ({f:?} and {c:?}); move them \
                             to one device first"
                        ),
                    })
                }
            },
        }
    }
    match found {
        Some(c) if host => Err(Error::Device {
            op,
            msg: format!(
                "operands on cpu and {}; move them to one device first (Tensor::to_cuda / to_cpu)",
                c.device()
            ),
        }),
        other => Ok(other.cloned()),
    }
}

impl Tensor {
    /// The host storage, or an `Error::Device` naming `op` for a tensor on a device.
    pub(crate) fn cpu_storage(&self, op: &'static str) -> Result<&CpuStorage> {
        match &*self.storage {
            Storage::Cpu(s) => Ok(s),
            Storage::Cuda(s) => Err(not_on_device(op, &s.ctx)),
        }
    }

    pub(crate) fn cuda_storage(&self) -> Option<&CudaStorage> {
        match &*self.storage {
            Storage::Cuda(s) => Some(s),
            Storage::Cpu(_) => None,
        }
    }

    /// The CUDA device the tensor lives on (None on the host).
    pub fn cuda_context(&self) -> Option<&CudaContext> {
        self.cuda_storage().map(|s| &s.ctx)
    }

    pub fn is_cuda(&self) -> bool {
        self.cuda_storage().is_some()
    }

    /// A copy on `ctx` (contiguous). f32 tensors, and i64 / u32 index tensors whose values fit
    /// i32, can live on a device.
    pub fn to_cuda(&self, ctx: &CudaContext) -> Result<Tensor> {
        if let Some(c) = self.cuda_context() {
            if c.same(ctx) {
                return Ok(self.clone());
            }
            return self.to_cpu()?.to_cuda(ctx);
        }
        let buf = match self.dtype() {
            DType::F32 => DeviceBuf::F32(ctx.upload(&self.elems::<f32>("to_cuda")?)?),
            DType::I64 | DType::U32 => DeviceBuf::I32(ctx.upload(&host_ids_i32("to_cuda", self)?)?),
            other => {
                return Err(Error::DType {
                    op: "to_cuda",
                    expected: "f32, i64 or u32 (the dtypes a CUDA tensor can hold)".into(),
                    got: other.to_string(),
                })
            }
        };
        Ok(from_buf(ctx, buf, self.dtype(), self.shape()))
    }

    /// A copy on the host (a no-op for a host tensor): the download of results.
    pub fn to_cpu(&self) -> Result<Tensor> {
        let Some(s) = self.cuda_storage() else {
            return Ok(self.clone());
        };
        let t = self.contiguous()?;
        let s2 = t.cuda_storage().unwrap_or(s);
        let (start, n) = (t.layout.offset, t.numel());
        let storage = match (&s2.buf, self.dtype()) {
            (DeviceBuf::F32(m), _) => {
                CpuStorage::F32(s.ctx.download(m)?[start..start + n].to_vec())
            }
            (DeviceBuf::I32(m), DType::U32) => CpuStorage::U32(
                s.ctx.download(m)?[start..start + n]
                    .iter()
                    .map(|&v| v as u32)
                    .collect(),
            ),
            (DeviceBuf::I32(m), _) => CpuStorage::I64(
                s.ctx.download(m)?[start..start + n]
                    .iter()
                    .map(|&v| v as i64)
                    .collect(),
            ),
        };
        Ok(Tensor::from_storage(storage, self.shape()))
    }

    /// An f32 tensor of `shape` on `ctx` filled with `v`.
    pub fn full_cuda(shape: &[usize], v: f32, ctx: &CudaContext) -> Result<Tensor> {
        let t = new_f32(ctx, shape)?;
        ctx.ops().fill(t.numel(), &t.f32_slice("full")?, v)?;
        Ok(t)
    }

    /// An f32 tensor of this tensor's shape, on its device, filled with `v`.
    pub fn full_like(&self, v: f32) -> Result<Tensor> {
        match self.cuda_context() {
            Some(ctx) => Tensor::full_cuda(self.shape(), v, ctx),
            None => Ok(Tensor::full(self.shape(), v)),
        }
    }

    /// Make this device tensor the sole owner of an exactly-sized contiguous buffer (copying
    /// when the buffer is shared or a view), so a kernel may update it in place.
    pub(crate) fn make_device_unique(&mut self) -> Result<()> {
        let exact =
            self.is_contiguous() && self.layout.offset == 0 && self.storage.len() == self.numel();
        if !exact || Arc::get_mut(&mut self.storage).is_none() {
            *self = contiguous(self)?;
        }
        Ok(())
    }

    /// The f32 device buffer from this tensor's first element on (read through the layout).
    pub(crate) fn f32_slice(&self, op: &'static str) -> Result<DSlice<'_, f32>> {
        match self.cuda_storage().map(|s| &s.buf) {
            Some(DeviceBuf::F32(m)) => m.slice().offset(self.layout.offset),
            Some(DeviceBuf::I32(_)) => Err(Error::DType {
                op,
                expected: "f32".into(),
                got: self.dtype().to_string(),
            }),
            None => Err(Error::Device {
                op,
                msg: "expected a tensor on a CUDA device".into(),
            }),
        }
    }

    /// The i32 device buffer of an index tensor, from its first element on.
    pub(crate) fn i32_slice(&self, op: &'static str) -> Result<DSlice<'_, i32>> {
        match self.cuda_storage().map(|s| &s.buf) {
            Some(DeviceBuf::I32(m)) => m.slice().offset(self.layout.offset),
            _ => Err(Error::DType {
                op,
                expected: "an i64 or u32 index tensor on a CUDA device".into(),
                got: format!("{} on {}", self.dtype(), self.device()),
            }),
        }
    }
}

/// Index values of a host tensor as i32, refusing values outside the i32 range.
fn host_ids_i32(op: &'static str, t: &Tensor) -> Result<Vec<i32>> {
    let wide: Vec<i64> = match t.dtype() {
        DType::I64 => t.elems::<i64>(op)?.into_owned(),
        DType::U32 => t.elems::<u32>(op)?.iter().map(|&v| v as i64).collect(),
        other => {
            return Err(Error::DType {
                op,
                expected: "i64 or u32 indices".into(),
                got: other.to_string(),
            })
        }
    };
    wide.iter()
        .map(|&v| {
            i32::try_from(v).map_err(|_| Error::Index {
                op,
                msg: format!("index {v} does not fit the device's i32 indices"),
            })
        })
        .collect()
}

/// A contiguous tensor of `shape` on `ctx` owning `buf`.
fn from_buf(ctx: &CudaContext, buf: DeviceBuf, dtype: DType, shape: &[usize]) -> Tensor {
    Tensor::from_parts(
        Arc::new(Storage::Cuda(CudaStorage {
            ctx: ctx.clone(),
            buf,
            dtype,
        })),
        Layout::contiguous(shape),
    )
}

/// A new contiguous f32 tensor on `ctx` (contents undefined until a kernel writes them).
pub(crate) fn new_f32(ctx: &CudaContext, shape: &[usize]) -> Result<Tensor> {
    let n = shape.iter().product();
    Ok(from_buf(
        ctx,
        DeviceBuf::F32(ctx.alloc(n)?),
        DType::F32,
        shape,
    ))
}

/// An f32 tensor of zeros on `ctx`.
pub(crate) fn zeros(ctx: &CudaContext, shape: &[usize]) -> Result<Tensor> {
    Tensor::full_cuda(shape, 0.0, ctx)
}

/// Integer indices on `ctx` as a contiguous i32 device tensor: uploaded from the host (input
/// data), or the device tensor itself.
pub(crate) fn ids_on(ctx: &CudaContext, op: &'static str, ids: &Tensor) -> Result<Tensor> {
    match ids.cuda_context() {
        None => {
            let v = host_ids_i32(op, ids)?;
            Ok(from_buf(
                ctx,
                DeviceBuf::I32(ctx.upload(&v)?),
                ids.dtype(),
                ids.shape(),
            ))
        }
        Some(c) if c.same(ctx) => ids.contiguous(),
        Some(c) => Err(Error::Device {
            op,
            msg: format!("indices on {c:?}, operands on {ctx:?}"),
        }),
    }
}

/// A contiguous copy of a device tensor (any device dtype).
pub(crate) fn contiguous(t: &Tensor) -> Result<Tensor> {
    let s = t
        .cuda_storage()
        .ok_or_else(|| Error::msg("device::contiguous on a host tensor"))?;
    let ctx = &s.ctx;
    let shape = t.shape();
    if shape.len() > 6 {
        return Err(Error::shape(
            "contiguous",
            &[shape],
            format!("strided copies on {} support rank <= 6", ctx.device()),
        ));
    }
    let n = t.numel();
    let dst = contiguous_strides(shape);
    let ops = ctx.ops();
    let buf = match &s.buf {
        DeviceBuf::F32(_) => {
            let out = ctx.alloc::<f32>(n)?;
            ops.copy_b32(
                shape,
                &t.f32_slice("contiguous")?,
                t.strides(),
                &out.slice(),
                &dst,
            )?;
            DeviceBuf::F32(out)
        }
        DeviceBuf::I32(_) => {
            let out = ctx.alloc::<i32>(n)?;
            ops.copy_b32(
                shape,
                &t.i32_slice("contiguous")?,
                t.strides(),
                &out.slice(),
                &dst,
            )?;
            DeviceBuf::I32(out)
        }
    };
    Ok(from_buf(ctx, buf, t.dtype(), shape))
}
