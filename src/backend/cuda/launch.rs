//! What a kernel launch is, independent of who runs it: the kernel's name, grid, block, dynamic
//! shared memory and its arguments packed as cuLaunchKernel wants them (one pointer per
//! parameter). An [`Executor`] runs it: the real device (`device::CudaDevice`) or the CPU
//! emulator (`emu::EmuExecutor`, feature `emu`). Buffers are [`DSlice`]s: an address, a length
//! and the memory space it lives in, so a host buffer is never handed to the GPU or vice versa.

use std::marker::PhantomData;

use crate::error::{Error, Result};

/// Where a [`DSlice`]'s memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Host memory (the emulator's buffers).
    Host,
    /// Device memory of CUDA device `ordinal`.
    Device(usize),
}

/// Element types a kernel buffer may hold.
pub trait Elem: Copy + Default + Send + Sync + 'static {
    const NAME: &'static str;
    /// What a fresh emulator buffer holds (NaN where there is one), so reading memory no
    /// kernel wrote shows up in results, like the emulator's shared memory.
    const POISON: Self;
}
impl Elem for f32 {
    const NAME: &'static str = "f32";
    const POISON: f32 = f32::NAN;
}
impl Elem for u16 {
    const NAME: &'static str = "bf16";
    const POISON: u16 = 0xffff; // a bf16 NaN
}
impl Elem for i32 {
    const NAME: &'static str = "i32";
    const POISON: i32 = i32::MIN;
}
impl Elem for u8 {
    const NAME: &'static str = "u8";
    const POISON: u8 = 0xff;
}

/// A typed buffer given to a kernel: `len` elements of `T` at `ptr` in `space`, borrowed for
/// `'a` (from a host slice or a device buffer). Kernels read inputs and write only the
/// outputs their documentation names.
#[derive(Clone, Copy, Debug)]
pub struct DSlice<'a, T: Elem> {
    pub ptr: u64,
    pub len: usize,
    pub space: Space,
    /// False for a view of a shared borrow (`input`): launchers refuse it as an output.
    pub writable: bool,
    _life: PhantomData<&'a T>,
}

impl<'a, T: Elem> DSlice<'a, T> {
    /// A host buffer the kernel only reads.
    pub fn input(s: &'a [T]) -> Self {
        DSlice {
            ptr: s.as_ptr() as u64,
            len: s.len(),
            space: Space::Host,
            writable: false,
            _life: PhantomData,
        }
    }
    /// A host buffer the kernel may write.
    pub fn output(s: &'a mut [T]) -> Self {
        DSlice {
            ptr: s.as_mut_ptr() as u64,
            len: s.len(),
            space: Space::Host,
            writable: true,
            _life: PhantomData,
        }
    }
    /// # Safety
    /// `ptr` must address `len` valid elements in `space` for `'a`, and nothing else may access
    /// the memory a kernel writes while it runs.
    pub unsafe fn from_raw(ptr: u64, len: usize, space: Space) -> Self {
        DSlice {
            ptr,
            len,
            space,
            writable: true,
            _life: PhantomData,
        }
    }
    /// The null buffer (an optional kernel argument left out).
    pub fn null(space: Space) -> Self {
        DSlice {
            ptr: 0,
            len: 0,
            space,
            writable: true,
            _life: PhantomData,
        }
    }
    pub fn is_null(&self) -> bool {
        self.ptr == 0
    }
    /// The same buffer starting `elems` elements later (a column block, a fused-QKV part).
    pub fn offset(self, elems: usize) -> Result<Self> {
        if self.is_null() || elems > self.len {
            return Err(Error::Index {
                op: "DSlice::offset",
                msg: format!(
                    "offset {elems} into a buffer of {} {} elements",
                    self.len,
                    T::NAME
                ),
            });
        }
        Ok(DSlice {
            ptr: self.ptr + (elems * std::mem::size_of::<T>()) as u64,
            len: self.len - elems,
            space: self.space,
            writable: self.writable,
            _life: PhantomData,
        })
    }
}

/// One kernel parameter: its bytes in 8-byte-aligned storage and its size.
#[derive(Clone, Debug)]
pub struct Arg {
    words: Vec<u64>,
    size: usize,
}

/// A `#[repr(C)]` struct passed to a kernel by value.
///
/// # Safety
/// The type must be `#[repr(C)]`, match the C struct of the same name in `kernels/`, and have no
/// padding bytes (every byte is part of a field), so copying its bytes reads no uninitialised
/// memory.
pub unsafe trait KernelStruct: Copy {}

impl Arg {
    fn from_bytes(b: &[u8]) -> Arg {
        let mut words = vec![0u64; b.len().div_ceil(8).max(1)];
        for (i, byte) in b.iter().enumerate() {
            words[i / 8] |= (*byte as u64) << (8 * (i % 8));
        }
        Arg {
            words,
            size: b.len(),
        }
    }
    pub fn i32(v: i32) -> Arg {
        Arg::from_bytes(&v.to_le_bytes())
    }
    pub fn i64(v: i64) -> Arg {
        Arg::from_bytes(&v.to_le_bytes())
    }
    pub fn u64(v: u64) -> Arg {
        Arg::from_bytes(&v.to_le_bytes())
    }
    pub fn f32(v: f32) -> Arg {
        Arg::from_bytes(&v.to_le_bytes())
    }
    pub fn ptr<T: Elem>(s: &DSlice<'_, T>) -> Arg {
        Arg::u64(s.ptr)
    }
    pub fn by_value<S: KernelStruct>(v: &S) -> Arg {
        let n = std::mem::size_of::<S>();
        // SAFETY: `S: KernelStruct` promises a padding-free repr(C) type, so all n bytes are
        // initialised; the slice lives only during this call.
        let bytes = unsafe { std::slice::from_raw_parts(v as *const S as *const u8, n) };
        Arg::from_bytes(bytes)
    }
    pub fn size(&self) -> usize {
        self.size
    }
    /// Pointer to the parameter's bytes (valid while `self` lives).
    pub fn as_ptr(&self) -> *const u8 {
        self.words.as_ptr() as *const u8
    }
}

/// A kernel launch, ready for any executor.
#[derive(Clone, Debug)]
pub struct KernelCall {
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
    pub args: Vec<Arg>,
    /// The spaces of the buffers passed, checked against the executor's.
    pub spaces: Vec<Space>,
    /// An output given as a read-only view, reported before launching.
    pub readonly_output: Option<&'static str>,
}

impl KernelCall {
    pub fn new(
        kernel: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
    ) -> Self {
        KernelCall {
            kernel,
            grid,
            block,
            smem,
            args: Vec::new(),
            spaces: Vec::new(),
            readonly_output: None,
        }
    }
    pub fn arg(mut self, a: Arg) -> Self {
        self.args.push(a);
        self
    }
    pub fn buf<T: Elem>(mut self, s: &DSlice<'_, T>) -> Self {
        if !s.is_null() {
            self.spaces.push(s.space);
        }
        self.args.push(Arg::ptr(s));
        self
    }
    /// A buffer the kernel writes: it must not be a read-only view.
    pub fn out<T: Elem>(mut self, what: &'static str, s: &DSlice<'_, T>) -> Self {
        if !s.writable && !s.is_null() && self.readonly_output.is_none() {
            self.readonly_output = Some(what);
        }
        self.buf(s)
    }
    /// Err unless every buffer lives in `space` and every output is writable.
    pub fn check_space(&self, space: Space) -> Result<()> {
        if let Some(what) = self.readonly_output {
            return Err(Error::Device {
                op: self.kernel,
                msg: format!("output `{what}` was passed as a read-only view (DSlice::input)"),
            });
        }
        match self.spaces.iter().find(|s| **s != space) {
            None => Ok(()),
            Some(s) => Err(Error::Device {
                op: self.kernel,
                msg: format!("a buffer in {s:?} was passed to an executor for {space:?}"),
            }),
        }
    }
}

/// Something that runs kernel launches in order (a CUDA stream, or the emulator).
pub trait Executor {
    /// Run (or enqueue) one launch.
    fn launch(&self, call: &KernelCall) -> Result<()>;
    /// The memory space its buffers must live in.
    fn space(&self) -> Space;
    /// How many blocks a grid-stride kernel should use for `n` elements of work.
    fn grid_stride_blocks(&self, n: usize) -> u32;
    /// Read an `i32` error flag a kernel may have set (embedding, cross-entropy); the only
    /// device-to-host copy on the hot path, done once per op that checks indices.
    fn read_flag(&self, flag: &DSlice<'_, i32>) -> Result<i32>;
    /// Set an `i32` flag to 0 before a kernel that may raise it.
    fn clear_flag(&self, flag: &DSlice<'_, i32>) -> Result<()>;
}
