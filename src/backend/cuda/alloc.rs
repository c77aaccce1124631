//! Caching device allocator: freed buffers go to a free list keyed by size class and are handed
//! out again instead of calling cuMemAlloc/cuMemFree per tensor. Sizes round up to a power of
//! two (at least 512 bytes) up to 1 MiB and to a multiple of 2 MiB above. With one stream per
//! device, reusing a block is ordered after every kernel that used it, so no events are needed.
//! On out-of-memory the device synchronises its stream (cached blocks may still be read by
//! queued kernels), empties the cache and retries once (`CudaDevice::alloc`).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use cudarc::driver::result as cu;

use super::launch::{DSlice, Elem, Space};
use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    free: HashMap<usize, Vec<u64>>,
    in_use: usize,
    cached: usize,
}

/// Per-device caching allocator (see the module doc).
pub struct CachingAllocator {
    ordinal: usize,
    inner: Mutex<Inner>,
}

/// Bytes actually reserved for a request of `bytes`.
pub fn size_class(bytes: usize) -> usize {
    const MIB: usize = 1 << 20;
    if bytes <= MIB {
        bytes.max(512).next_power_of_two()
    } else {
        bytes.div_ceil(2 * MIB) * 2 * MIB
    }
}

impl CachingAllocator {
    pub fn new(ordinal: usize) -> Self {
        CachingAllocator {
            ordinal,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::msg("cuda allocator: lock poisoned"))
    }

    /// A buffer of `len` elements of `T` (contents undefined). The device's context must be
    /// current (CudaDevice::alloc does that, and handles out-of-memory).
    pub fn alloc<T: Elem>(self: &Arc<Self>, len: usize) -> Result<CudaBuf<T>> {
        let bytes = size_class((len * std::mem::size_of::<T>()).max(1));
        let mut g = self.lock()?;
        let ptr = match g.free.get_mut(&bytes).and_then(|v| v.pop()) {
            Some(p) => {
                g.cached -= bytes;
                p
            }
            None => {
                drop(g);
                // SAFETY: plain allocation in the current context; the pointer is freed by
                // `empty_cache` after its CudaBuf returned it.
                let p = unsafe { cu::malloc_sync(bytes) }.map_err(|e| Error::Device {
                    op: "cuda alloc",
                    msg: format!(
                        "cannot allocate {bytes} bytes on cuda:{}: {e:?}",
                        self.ordinal
                    ),
                })?;
                g = self.lock()?;
                p
            }
        };
        g.in_use += bytes;
        Ok(CudaBuf {
            ptr,
            len,
            bytes,
            ordinal: self.ordinal,
            alloc: Arc::clone(self),
            _t: PhantomData,
        })
    }

    fn release(&self, ptr: u64, bytes: usize) {
        if let Ok(mut g) = self.inner.lock() {
            g.in_use -= bytes;
            g.cached += bytes;
            g.free.entry(bytes).or_default().push(ptr);
        }
    }

    /// Return every cached block to the driver. The caller must first make sure no queued
    /// kernel still uses a returned block (synchronise the stream).
    pub fn empty_cache(&self) {
        if let Ok(mut g) = self.inner.lock() {
            for (_, ptrs) in g.free.drain() {
                for p in ptrs {
                    // SAFETY: `p` came from cuMemAlloc and no CudaBuf refers to it any more.
                    let _ = unsafe { cu::free_sync(p) };
                }
            }
            g.cached = 0;
        }
    }

    /// (bytes held by live buffers, bytes cached for reuse).
    pub fn stats(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|g| (g.in_use, g.cached))
            .unwrap_or((0, 0))
    }
}

/// A device buffer of `len` elements of `T`, returned to its allocator's cache on drop.
pub struct CudaBuf<T: Elem> {
    ptr: u64,
    len: usize,
    bytes: usize,
    ordinal: usize,
    alloc: Arc<CachingAllocator>,
    _t: PhantomData<T>,
}

impl<T: Elem> CudaBuf<T> {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// View for a kernel launch.
    pub fn slice(&self) -> DSlice<'_, T> {
        // SAFETY: the buffer holds `len` elements on device `ordinal` and outlives the view.
        unsafe { DSlice::from_raw(self.ptr, self.len, Space::Device(self.ordinal)) }
    }
}

impl<T: Elem> Drop for CudaBuf<T> {
    fn drop(&mut self) {
        self.alloc.release(self.ptr, self.bytes);
    }
}
