//! The real GPU through cudarc's driver API (dynamic loading): one context and one stream per
//! device, kernels compiled by NVRTC for the device's architecture on first use (PTX cached on
//! disk), a caching allocator, and host <-> device copies for the edges only.
//!
//! A machine without the NVIDIA driver (no libcuda) or without NVRTC gets an `Error::Device`
//! saying so from [`CudaDevice::new`]; cudarc itself would panic, so presence is checked first.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use cudarc::driver::result as cu;
use cudarc::driver::sys;

use super::alloc::{CachingAllocator, CudaBuf};
use super::launch::{DSlice, Elem, Executor, KernelCall, Space};
use super::nvrtc;
use super::source::KernelSource;
use crate::error::{Error, Result};

fn dev_err(op: &'static str, e: impl std::fmt::Debug) -> Error {
    Error::Device {
        op,
        msg: format!("{e:?}"),
    }
}

/// Check that the CUDA driver library can be loaded, without panicking when it cannot.
pub fn driver_present() -> Result<()> {
    // SAFETY: only tries to dlopen libcuda's candidate names; no symbol is called.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Device {
            op: "cuda",
            msg: "no CUDA driver found (libcuda.so could not be loaded): this machine has no \
                  usable NVIDIA GPU driver; run with --device cpu"
                .into(),
        })
    }
}

struct Loaded {
    modules: HashMap<&'static str, sys::CUmodule>,
    functions: HashMap<&'static str, sys::CUfunction>,
}

/// One CUDA device with its context, stream, kernel modules and allocator.
pub struct CudaDevice {
    ordinal: usize,
    ctx: sys::CUcontext,
    stream: sys::CUstream,
    arch: String,
    sm_count: u32,
    name: String,
    loaded: Mutex<Loaded>,
    alloc: Arc<CachingAllocator>,
}

// SAFETY: the context and stream handles are plain driver handles usable from any thread once
// the context is made current (every entry point does so); module/function maps are behind a
// Mutex and the allocator is internally synchronised.
unsafe impl Send for CudaDevice {}
// SAFETY: as above; launches are serialised on the one stream by the driver.
unsafe impl Sync for CudaDevice {}

impl CudaDevice {
    /// Open device `ordinal`: Err when the driver, NVRTC or the device is missing.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        driver_present()?;
        nvrtc::ensure_loaded()?;
        cu::init().map_err(|e| dev_err("cuInit", e))?;
        let count = cu::device::get_count().map_err(|e| dev_err("cuDeviceGetCount", e))? as usize;
        if ordinal >= count {
            return Err(Error::Device {
                op: "cuda",
                msg: format!("device cuda:{ordinal} requested but {count} CUDA device(s) found"),
            });
        }
        let dev = cu::device::get(ordinal as i32).map_err(|e| dev_err("cuDeviceGet", e))?;
        // SAFETY: `dev` comes from cuDeviceGet; the retained primary context is released in Drop.
        let ctx = unsafe { cu::primary_ctx::retain(dev) }
            .map_err(|e| dev_err("cuDevicePrimaryCtxRetain", e))?;
        // SAFETY: `ctx` is a live context retained above.
        unsafe { cu::ctx::set_current(ctx) }.map_err(|e| dev_err("cuCtxSetCurrent", e))?;
        let attr = |a| {
            // SAFETY: `dev` is a valid device handle from cuDeviceGet.
            unsafe { cu::device::get_attribute(dev, a) }
                .map_err(|e| dev_err("cuDeviceGetAttribute", e))
        };
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let sm_count =
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
        if major < 8 {
            return Err(Error::Device { op: "cuda", msg: format!("device cuda:{ordinal} has compute capability {major}.{minor}; pretext's kernels need 8.0 or newer") });
        }
        let name = cu::device::get_name(dev).unwrap_or_else(|_| "unknown".into());
        let stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)
            .map_err(|e| dev_err("cuStreamCreate", e))?;
        Ok(CudaDevice {
            ordinal,
            ctx,
            stream,
            arch: format!("compute_{major}{minor}"),
            sm_count,
            name,
            loaded: Mutex::new(Loaded {
                modules: HashMap::new(),
                functions: HashMap::new(),
            }),
            alloc: Arc::new(CachingAllocator::new(ordinal)),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The NVRTC target, e.g. `compute_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }
    pub fn allocator(&self) -> &Arc<CachingAllocator> {
        &self.alloc
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: `self.ctx` stays retained for the life of `self`.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| dev_err("cuCtxSetCurrent", e))
    }

    /// A device buffer of `len` elements (uninitialised), from the caching allocator.
    pub fn alloc<T: Elem>(&self, len: usize) -> Result<CudaBuf<T>> {
        self.bind()?;
        match self.alloc.alloc(len) {
            Ok(b) => Ok(b),
            Err(_) => {
                // Out of memory: wait until no kernel uses a cached block, free the cache, retry.
                self.synchronize()?;
                self.alloc.empty_cache();
                self.alloc.alloc(len)
            }
        }
    }

    /// Copy host data into a new device buffer. The copy is queued on the device's stream, so
    /// it is ordered before every later kernel (a synchronous copy runs on the legacy stream,
    /// which a non-blocking stream does not wait for).
    pub fn upload<T: Elem>(&self, data: &[T]) -> Result<CudaBuf<T>> {
        let buf = self.alloc::<T>(data.len())?;
        self.copy_in(buf.ptr(), data)?;
        Ok(buf)
    }

    fn copy_in<T: Elem>(&self, dst: u64, data: &[T]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` addresses at least data.len() elements of T on this device. The host
        // data is pageable, so the driver stages it before returning and `data` may be dropped
        // afterwards; the transfer itself is ordered on `self.stream`.
        unsafe { cu::memcpy_htod_async(dst, data, self.stream) }
            .map_err(|e| dev_err("cuMemcpyHtoDAsync", e))
    }

    fn copy_out<T: Elem>(&self, out: &mut [T], src: u64) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` addresses at least out.len() elements of T; the copy is queued after
        // every kernel on the stream and `out` is only read after the synchronize below.
        unsafe { cu::memcpy_dtoh_async(out, src, self.stream) }
            .map_err(|e| dev_err("cuMemcpyDtoHAsync", e))?;
        self.synchronize()
    }

    /// Copy a device buffer to the host, after every kernel queued before it.
    pub fn download<T: Elem>(&self, buf: &CudaBuf<T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); buf.len()];
        self.copy_out(&mut out, buf.ptr())?;
        Ok(out)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: `self.stream` was created in `new` and is destroyed only in Drop.
        unsafe { cu::stream::synchronize(self.stream) }
            .map_err(|e| dev_err("cuStreamSynchronize", e))
    }

    fn function(&self, kernel: &'static str) -> Result<sys::CUfunction> {
        let mut l = self
            .loaded
            .lock()
            .map_err(|_| Error::msg("cuda: module table poisoned"))?;
        if let Some(f) = l.functions.get(kernel) {
            return Ok(*f);
        }
        let src = KernelSource::find(kernel).ok_or_else(|| Error::Device {
            op: "cuda",
            msg: format!("no kernel named `{kernel}` in kernels/"),
        })?;
        let module = match l.modules.get(src.name) {
            Some(m) => *m,
            None => {
                let ptx = nvrtc::compile_cached(src, &self.arch)?;
                let image =
                    CString::new(ptx).map_err(|_| Error::msg("PTX with an interior NUL"))?;
                // SAFETY: `image` is a NUL-terminated PTX string that outlives the call; the
                // context is current.
                let m = unsafe { cu::module::load_data(image.as_ptr() as *const _) }
                    .map_err(|e| dev_err("cuModuleLoadData", e))?;
                l.modules.insert(src.name, m);
                m
            }
        };
        let cname = CString::new(kernel).map_err(|_| Error::msg("kernel name with NUL"))?;
        // SAFETY: `module` is a loaded module of this context.
        let f = unsafe { cu::module::get_function(module, cname) }
            .map_err(|e| dev_err("cuModuleGetFunction", e))?;
        l.functions.insert(kernel, f);
        Ok(f)
    }
}

impl Executor for CudaDevice {
    fn launch(&self, call: &KernelCall) -> Result<()> {
        call.check_space(Space::Device(self.ordinal))?;
        self.bind()?;
        let f = self.function(call.kernel)?;
        if call.smem > 48 * 1024 {
            // SAFETY: `f` is a live function handle of the current context.
            unsafe {
                cu::function::set_function_attribute(
                    f,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    call.smem as i32,
                )
            }
            .map_err(|e| dev_err("cuFuncSetAttribute", e))?;
        }
        let mut params: Vec<*mut std::ffi::c_void> =
            call.args.iter().map(|a| a.as_ptr() as *mut _).collect();
        // SAFETY: `params` holds one pointer per kernel parameter, each to the parameter's bytes
        // inside `call`, alive until cuLaunchKernel returns (it copies them). Buffer addresses
        // are device memory of this device (checked above), kept alive by their owners until the
        // stream is synchronised.
        unsafe {
            cu::launch_kernel(
                f,
                call.grid,
                call.block,
                call.smem,
                self.stream,
                &mut params,
            )
        }
        .map_err(|e| Error::Device {
            op: call.kernel,
            msg: format!("launch failed: {e:?}"),
        })
    }

    fn space(&self) -> Space {
        Space::Device(self.ordinal)
    }

    fn grid_stride_blocks(&self, n: usize) -> u32 {
        (n.div_ceil(256) as u32).clamp(1, self.sm_count * 8)
    }

    fn read_flag(&self, flag: &DSlice<'_, i32>) -> Result<i32> {
        check_flag(flag, self.ordinal)?;
        let mut v = [0i32];
        self.copy_out(&mut v, flag.ptr)?;
        Ok(v[0])
    }

    fn clear_flag(&self, flag: &DSlice<'_, i32>) -> Result<()> {
        check_flag(flag, self.ordinal)?;
        self.copy_in(flag.ptr, &[0i32])
    }
}

fn check_flag(flag: &DSlice<'_, i32>, ordinal: usize) -> Result<()> {
    if flag.is_null() || flag.len == 0 || flag.space != Space::Device(ordinal) {
        return Err(Error::Device {
            op: "cuda",
            msg: format!("error flag must be a non-empty buffer on cuda:{ordinal}"),
        });
    }
    Ok(())
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Teardown errors cannot be reported from Drop; the process is usually exiting.
        let _ = self.synchronize();
        self.alloc.empty_cache();
        // SAFETY: the stream and modules were created by this device and are not used after
        // this point; the primary context was retained in `new`.
        unsafe {
            let l = self
                .loaded
                .get_mut()
                .map(|l| std::mem::take(&mut l.modules))
                .unwrap_or_default();
            for (_, m) in l {
                let _ = cu::module::unload(m);
            }
            let _ = cu::stream::destroy(self.stream);
            if let Ok(dev) = cu::device::get(self.ordinal as i32) {
                let _ = cu::primary_ctx::release(dev);
            }
        }
    }
}
