//! CUDA backend on raw buffers: hand-written kernels (`kernels/*.cu`) compiled at run time by
//! NVRTC and launched through cudarc, plus a CPU emulator of the same sources for machines
//! without a GPU.
//!
//! - [`source`]: the embedded kernel sources and their hashes.
//! - [`nvrtc`]: loading NVRTC, compiling to PTX, the on-disk PTX cache.
//! - [`launch`]: a launch ([`launch::KernelCall`]), its buffers ([`launch::DSlice`]) and the
//!   [`launch::Executor`] trait that runs it.
//! - [`ops`]: one launcher per kernel (shape checks, grid sizing), shared by GPU and emulator.
//! - [`device`]: the GPU executor (context, stream, modules), [`alloc`]: its caching allocator.
//! - [`mem`]: buffers owned by an executor ([`mem::Mem`]) and the [`mem::Backend`] trait
//!   (alloc / upload / download), the same for the GPU and the emulator.
//! - [`context`]: an opened device (GPU or emulator) as one handle, what device tensors hold.
//! - `emu` (feature `emu`): the CPU emulator executor.

pub mod alloc;
pub mod context;
pub mod device;
#[cfg(feature = "emu")]
pub mod emu;
pub mod launch;
pub mod mem;
pub mod nvrtc;
pub mod ops;
pub mod source;

pub use context::CudaContext;
pub use device::CudaDevice;
pub use launch::{DSlice, Executor, Space};
pub use mem::{Backend, Mem};
pub use ops::Ops;
