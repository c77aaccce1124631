//! Buffers owned by a CUDA executor, the same way for the GPU and the emulator, so the tensor
//! layer can hold one storage type (`Mem<T>`) and run unchanged on `cuda` or on the emulated
//! backend: `alloc` (contents undefined), `upload` (host data in), `download` (results out).

use super::alloc::CudaBuf;
use super::device::CudaDevice;
use super::launch::{DSlice, Elem, Executor, Space};
use crate::error::Result;

/// Host memory for the emulator: a boxed slice kept as a raw pointer, because kernels write
/// it through addresses while `&HostBuf` borrows are alive (like device memory).
pub struct HostBuf<T: Elem> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: HostBuf owns its allocation like a Box<[T]>; T is Send + Sync (Elem bound).
unsafe impl<T: Elem> Send for HostBuf<T> {}
// SAFETY: shared access only hands out addresses; writes happen inside emulated launches,
// which run synchronously on the launching thread.
unsafe impl<T: Elem> Sync for HostBuf<T> {}

impl<T: Elem> HostBuf<T> {
    pub fn from_vec(v: Vec<T>) -> Self {
        let b = v.into_boxed_slice();
        let len = b.len();
        HostBuf {
            ptr: Box::into_raw(b) as *mut T,
            len,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn to_vec(&self) -> Vec<T> {
        // SAFETY: `ptr` holds `len` initialised elements for the life of `self`; no launch is
        // running (launches are synchronous and this thread is here).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }
    pub fn slice(&self) -> DSlice<'_, T> {
        // SAFETY: `len` valid host elements that live as long as the borrow of `self`.
        unsafe { DSlice::from_raw(self.ptr as u64, self.len, Space::Host) }
    }
}

impl<T: Elem> Drop for HostBuf<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from Box::into_raw of a boxed slice in `from_vec`.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

/// A buffer of an executor: device memory or emulator host memory.
pub enum Mem<T: Elem> {
    Device(CudaBuf<T>),
    Host(HostBuf<T>),
}

impl<T: Elem> Mem<T> {
    pub fn len(&self) -> usize {
        match self {
            Mem::Device(b) => b.len(),
            Mem::Host(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// View for a kernel launch.
    pub fn slice(&self) -> DSlice<'_, T> {
        match self {
            Mem::Device(b) => b.slice(),
            Mem::Host(b) => b.slice(),
        }
    }
}

/// An executor that also owns memory.
pub trait Backend: Executor {
    /// `len` elements, contents undefined (the emulator fills them with `T::POISON`).
    fn alloc<T: Elem>(&self, len: usize) -> Result<Mem<T>>;
    /// A new buffer holding `data`.
    fn upload<T: Elem>(&self, data: &[T]) -> Result<Mem<T>>;
    /// The buffer's contents, after every launch queued before.
    fn download<T: Elem>(&self, m: &Mem<T>) -> Result<Vec<T>>;
}

fn wrong_space<T: Elem>(m: &Mem<T>, want: Space) -> crate::error::Error {
    crate::error::Error::Device {
        op: "download",
        msg: format!(
            "a {} buffer in {:?} read through the executor for {want:?}",
            T::NAME,
            m.slice().space
        ),
    }
}

impl Backend for CudaDevice {
    fn alloc<T: Elem>(&self, len: usize) -> Result<Mem<T>> {
        CudaDevice::alloc(self, len).map(Mem::Device)
    }
    fn upload<T: Elem>(&self, data: &[T]) -> Result<Mem<T>> {
        CudaDevice::upload(self, data).map(Mem::Device)
    }
    fn download<T: Elem>(&self, m: &Mem<T>) -> Result<Vec<T>> {
        match m {
            Mem::Device(b) if b.slice().space == self.space() => CudaDevice::download(self, b),
            _ => Err(wrong_space(m, self.space())),
        }
    }
}

#[cfg(feature = "emu")]
impl Backend for super::emu::EmuExecutor {
    fn alloc<T: Elem>(&self, len: usize) -> Result<Mem<T>> {
        Ok(Mem::Host(HostBuf::from_vec(vec![T::POISON; len])))
    }
    fn upload<T: Elem>(&self, data: &[T]) -> Result<Mem<T>> {
        Ok(Mem::Host(HostBuf::from_vec(data.to_vec())))
    }
    fn download<T: Elem>(&self, m: &Mem<T>) -> Result<Vec<T>> {
        match m {
            Mem::Host(b) => Ok(b.to_vec()),
            _ => Err(wrong_space(m, Space::Host)),
        }
    }
}
