//! An opened CUDA device as the tensor layer sees it: the real GPU ([`CudaDevice`]) or, with
//! feature `emu`, the CPU emulator, behind one cheap-to-clone handle that every tensor stored
//! on it shares. Memory comes from the executor ([`Backend`]: alloc / upload / download) and
//! kernels are launched through the same [`Ops`] launchers for both, so a tensor op runs the
//! same code on the GPU and in the emulator.

use std::sync::Arc;

use super::device::CudaDevice;
use super::launch::{Elem, Executor};
use super::mem::{Backend, Mem};
use super::ops::Ops;
use crate::backend::Device;
use crate::error::Result;

enum Kind {
    Gpu(CudaDevice),
    #[cfg(feature = "emu")]
    Emu(super::emu::EmuExecutor),
}

struct Inner {
    kind: Kind,
    ordinal: usize,
}

/// A shared handle to one opened CUDA device (real or emulated). Two handles are the same
/// device only when cloned from one another ([`CudaContext::same`]).
#[derive(Clone)]
pub struct CudaContext(Arc<Inner>);

impl std::fmt::Debug for CudaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.kind {
            Kind::Gpu(d) => write!(f, "CudaContext(cuda:{}, {})", self.0.ordinal, d.name()),
            #[cfg(feature = "emu")]
            Kind::Emu(e) => write!(f, "CudaContext(cuda:0, emulated, {:?})", e.schedule),
        }
    }
}

macro_rules! with_backend {
    ($self:expr, $b:ident => $e:expr) => {
        match &$self.0.kind {
            Kind::Gpu($b) => $e,
            #[cfg(feature = "emu")]
            Kind::Emu($b) => $e,
        }
    };
}

impl CudaContext {
    /// Open GPU `ordinal`: an `Error::Device` (never a panic) when the driver, NVRTC or the
    /// device is missing.
    pub fn open(ordinal: usize) -> Result<CudaContext> {
        let dev = CudaDevice::new(ordinal)?;
        Ok(CudaContext(Arc::new(Inner {
            kind: Kind::Gpu(dev),
            ordinal,
        })))
    }

    /// The CPU emulator as device `cuda:0`, running every launch under `schedule`.
    #[cfg(feature = "emu")]
    pub fn emulated(schedule: super::emu::Schedule) -> CudaContext {
        CudaContext(Arc::new(Inner {
            kind: Kind::Emu(super::emu::EmuExecutor::new(schedule)),
            ordinal: 0,
        }))
    }

    /// `Device::Cuda(ordinal)` (the emulator is ordinal 0).
    pub fn device(&self) -> Device {
        Device::Cuda(self.0.ordinal)
    }

    pub fn is_emulated(&self) -> bool {
        !matches!(self.0.kind, Kind::Gpu(_))
    }

    /// True when both handles refer to the same opened device.
    pub fn same(&self, other: &CudaContext) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn executor(&self) -> &dyn Executor {
        with_backend!(self, b => b as &dyn Executor)
    }

    /// The kernel launchers bound to this device.
    pub fn ops(&self) -> Ops<'_> {
        Ops::new(self.executor())
    }

    /// `len` elements, contents undefined.
    pub fn alloc<T: Elem>(&self, len: usize) -> Result<Mem<T>> {
        with_backend!(self, b => Backend::alloc(b, len))
    }

    /// A new buffer holding `data` (host to device).
    pub fn upload<T: Elem>(&self, data: &[T]) -> Result<Mem<T>> {
        with_backend!(self, b => Backend::upload(b, data))
    }

    /// The buffer's contents (device to host), after every launch queued before.
    pub fn download<T: Elem>(&self, m: &Mem<T>) -> Result<Vec<T>> {
        with_backend!(self, b => Backend::download(b, m))
    }
}
