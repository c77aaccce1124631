//! The CPU emulator as an [`Executor`] (feature `emu`): runs the kernels of `kernels/*.cu`
//! compiled as C++ (build.rs, kernels/emu/) on host buffers, one block at a time, each CUDA
//! thread a fiber, under a chosen thread [`Schedule`].

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use super::launch::{DSlice, Executor, KernelCall, Space};
use crate::error::{Error, Result};

extern "C" {
    fn pretext_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        smem: usize,
        args: *mut *mut c_void,
        sizes: *const usize,
        nargs: usize,
        schedule: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn pretext_emu_kernel_count() -> usize;
    fn pretext_emu_kernel_name(i: usize) -> *const c_char;
}

/// The order in which the emulator runs the threads of a block between synchronisation points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every runnable thread runs once (to its next sync point) before any runs again.
    RoundRobin = 0,
    /// The lowest warp with a runnable thread runs as far as it can before the next warp.
    WarpOrdered = 1,
    /// As `WarpOrdered`, highest warp first.
    WarpReversed = 2,
}

/// The emulator with one schedule. Launches run synchronously on the calling thread.
#[derive(Clone, Copy, Debug)]
pub struct EmuExecutor {
    pub schedule: Schedule,
    /// Upper bound on blocks for grid-stride kernels (few blocks keep emulation fast).
    pub max_stride_blocks: u32,
}

impl EmuExecutor {
    pub fn new(schedule: Schedule) -> Self {
        EmuExecutor {
            schedule,
            max_stride_blocks: 3,
        }
    }
}

/// Names of every kernel the emulator was built with.
pub fn kernel_names() -> Vec<String> {
    // SAFETY: the registry is a static array built by build.rs; names are NUL-terminated
    // literals valid for the program's life, and `i` stays below the count.
    unsafe {
        (0..pretext_emu_kernel_count())
            .map(|i| {
                CStr::from_ptr(pretext_emu_kernel_name(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl Executor for EmuExecutor {
    fn launch(&self, call: &KernelCall) -> Result<()> {
        call.check_space(Space::Host)?;
        let name = CString::new(call.kernel).map_err(|_| Error::msg("kernel name with NUL"))?;
        let grid = [call.grid.0, call.grid.1, call.grid.2];
        let block = [call.block.0, call.block.1, call.block.2];
        let mut ptrs: Vec<*mut c_void> = call
            .args
            .iter()
            .map(|a| a.as_ptr() as *mut c_void)
            .collect();
        let sizes: Vec<usize> = call.args.iter().map(|a| a.size()).collect();
        let mut err = vec![0u8; 4096];
        // SAFETY: every pointer in `ptrs` points into an `Arg` of `call`, alive for the call; the
        // emulator checks count and byte size of each against the kernel signature before use.
        // Buffer addresses inside the arguments are host memory (checked above) borrowed by the
        // caller's `DSlice`s for at least this call; the launch is synchronous.
        let rc = unsafe {
            pretext_emu_launch(
                name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                call.smem as usize,
                ptrs.as_mut_ptr(),
                sizes.as_ptr(),
                ptrs.len(),
                self.schedule as c_int,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let msg = CStr::from_bytes_until_nul(&err)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        Err(Error::Device {
            op: call.kernel,
            msg: format!(
                "emulated launch failed ({:?} schedule): {msg}",
                self.schedule
            ),
        })
    }

    fn space(&self) -> Space {
        Space::Host
    }

    fn grid_stride_blocks(&self, n: usize) -> u32 {
        (n.div_ceil(256) as u32).clamp(1, self.max_stride_blocks)
    }

    fn read_flag(&self, flag: &DSlice<'_, i32>) -> Result<i32> {
        flag_check(flag)?;
        // SAFETY: a non-null host DSlice addresses at least one live i32 (checked above).
        Ok(unsafe { *(flag.ptr as *const i32) })
    }

    fn clear_flag(&self, flag: &DSlice<'_, i32>) -> Result<()> {
        flag_check(flag)?;
        // SAFETY: as in read_flag; the flag is scratch that no kernel is using now.
        unsafe { *(flag.ptr as *mut i32) = 0 };
        Ok(())
    }
}

fn flag_check(flag: &DSlice<'_, i32>) -> Result<()> {
    if flag.is_null() || flag.len == 0 || flag.space != Space::Host || !flag.writable {
        return Err(Error::Device {
            op: "emu",
            msg: "error flag must be a non-empty, writable host buffer".into(),
        });
    }
    Ok(())
}
