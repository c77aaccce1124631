//! The GotoBLAS/BLIS loop nest around a micro-kernel, and its threading.
//!
//! For one problem C[m×n] = A[m×k]·B[k×n] (+ C):
//!   for jc in steps of NC:                  (columns of C)
//!     for pc in steps of KC:                (depth; later blocks accumulate into C)
//!       pack B[pc.., jc..] (KC × NC, in L2) into NR-wide panels
//!       for ic in steps of MC: pack A[ic.., pc..] (MC × KC) into MR-high panels
//!         for each A panel (stays in L1):
//!           for each B panel (streams from L2): micro-kernel → MR × NR of C
//! (A kernel may ask for even blocks, for column blocks sized to its B budget at the
//! problem's depth, and for wider single column blocks on deep problems:
//! `MicroKernel::EVEN_BLOCKS`, `B_BLOCK`, `NC_ONE_BLOCK`; see `blocks`, `nc_max`, `n_blocks`.
//! A read in place against a narrow C needs no A panel in L1, so its depth blocks are sized
//! to the packed B instead: `deep_kc`.)
//! When the kernel can broadcast from A in place (f32 or bf16, k contiguous in A, rows not
//! crowding one L1 set) the A packing is skipped and each MR-row strip of A is read where it
//! lies; an A stored transposed against a narrow C is read in place too, the MR values of a
//! k step side by side (`transposed_a_in_place`). Otherwise, when C spans several NC
//! blocks, all of A is packed once up front (the same panels, one KC block after another)
//! instead of once per NC block.
//!
//! A bf16 C (`gemm_to_bf16`) gets the kernel's f32 tiles rounded once, after the last depth
//! block: with one depth block the kernel sums into an L1 tile buffer that is rounded into C;
//! with several, the partial sums of the current column block wait in an f32 stage.
//!
//! Threads come from the current rayon pool. A batch of problems is spread over the pool
//! one problem per task when that balances (many or small problems). Otherwise a problem
//! whose A is read in place is cut into one independent sub-problem per thread (column
//! ranges when C is wide, else row ranges), each packing its own B into its own core's L2,
//! and so is a problem whose packed A is small beside a wide C that would otherwise be split
//! by rows (column ranges, each packing all of A: `small_packed_a`), and so is a large f32
//! problem with packed A (`partition`'s ranges, each packing its own A and B:
//! `own_packing`); otherwise, with packed A, B is packed once (in parallel) per block and
//! shared by row/column tasks.
//!
//! Here: the entry points, the batch loop and the C and scratch types. `tasks`: how a
//! problem is cut over the threads; `k_split`: depth split for a small C; `columns`: the
//! column and depth block loops; `blocking`: the block sizes; `operands`: where A and B are
//! read from (packed or in place); `block`: one block's sweep of the micro-kernel.

mod block;
mod blocking;
mod columns;
mod k_split;
mod operands;
mod tasks;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::thread::LocalKey;

use rayon::prelude::*;

use half::bf16;

use super::dispense::Dispenser;
use super::kernel::MicroKernel;
use super::pack::{Convert, View};
use super::GemmLayout;

use columns::single;
use k_split::{k_split, split_along_k};
use operands::direct_a;
use tasks::{
    column_parts, dispensed_columns, dispensed_rows, own_packing, partition, rows_dispensed,
    small_packed_a, Task,
};

/// Problems below this many multiply-adds run on the calling thread only: forking costs
/// more than it saves.
pub(super) const PAR_MIN_MACS: usize = 1 << 18;

/// Batched problems below this many multiply-adds each are spread over threads whole.
const SMALL_MACS: usize = 1 << 22;

/// A 64-byte aligned chunk of scratch memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

thread_local! {
    static SCRATCH_A: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_A_WHOLE: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_B: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_STAGE: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` packed elements of per-thread scratch (reused across calls; a fresh
/// buffer if this thread's is already in use, e.g. by a rayon task stolen while waiting).
fn with_scratch<P: Copy + Default, R>(
    key: &'static LocalKey<RefCell<Vec<Line>>>,
    len: usize,
    f: impl FnOnce(&mut [P]) -> R,
) -> R {
    let lines = (len * std::mem::size_of::<P>()).div_ceil(64);
    let as_p = |v: &mut Vec<Line>| -> &mut [P] {
        if v.len() < lines {
            v.resize(lines, Line([0; 64]));
        }
        // SAFETY: P is a packed GEMM element (f32 or bf16: every bit pattern is valid, size
        // divides 64, alignment ≤ 64); the buffer holds at least `len` of them.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut P, len) }
    };
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(as_p(&mut v)),
        Err(_) => f(as_p(&mut Vec::new())),
    })
}

/// C's storage, borrowed for 'a: initialised floats (`From<&mut [f32]>`, for any beta) or
/// uninitialised ones (`COut::uninit`, for beta 0 only: `prescale` refuses any other beta, and
/// with beta 0 every path stores each element of the C blocks and reads none, which the
/// NaN-filled C of the GEMM tests checks path by path).
pub(super) struct COut<'a> {
    ptr: *mut f32,
    len: usize,
    init: bool,
    _borrow: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

impl<'a> From<&'a mut [f32]> for COut<'a> {
    fn from(c: &'a mut [f32]) -> Self {
        COut {
            ptr: c.as_mut_ptr(),
            len: c.len(),
            init: true,
            _borrow: PhantomData,
        }
    }
}

impl<'a> COut<'a> {
    pub(super) fn uninit(c: &'a mut [MaybeUninit<f32>]) -> Self {
        COut {
            ptr: c.as_mut_ptr().cast(),
            len: c.len(),
            init: false,
            _borrow: PhantomData,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The floats, when they are initialised.
    pub(super) fn init_mut(&mut self) -> Option<&mut [f32]> {
        // SAFETY: `init` says the `len` floats at `ptr` are initialised, and they are
        // borrowed mutably for 'a, which outlives this borrow of self.
        self.init
            .then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) })
    }

    /// Marks every element initialised.
    ///
    /// # Safety
    /// All `len` floats have been written since `uninit`.
    pub(super) unsafe fn assume_init(&mut self) {
        self.init = true;
    }

    /// Stores v at element i.
    pub(super) fn set(&mut self, i: usize, v: f32) {
        assert!(i < self.len, "gemm: C element {i} of {}", self.len);
        // SAFETY: i < len, inside the borrowed storage; a store needs no initialised value.
        unsafe { self.ptr.add(i).write(v) }
    }

    /// The base pointer, for tasks that store disjoint tiles.
    pub(super) fn ptr(&mut self) -> CPtr {
        CPtr(self.ptr)
    }
}

/// C's base pointer, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
pub(super) struct CPtr(pub(super) *mut f32);
// SAFETY: tasks only write disjoint tiles of C (disjoint batch blocks, disjoint tiles
// within a problem), and the `COut` it came from outlives every task.
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

impl CPtr {
    pub(super) fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// A bf16 C's base pointer, shared as `CPtr` is.
#[derive(Clone, Copy)]
struct BPtr(*mut bf16);
// SAFETY: as `CPtr`: tasks write disjoint tiles of a C that outlives them.
unsafe impl Send for BPtr {}
// SAFETY: as above.
unsafe impl Sync for BPtr {}

/// Where the kernel's f32 tiles go: C itself (f32), or a bf16 C they are rounded into after
/// the last k block (`round_bf16`). Both index C by its layout's offsets and strides.
#[derive(Clone, Copy)]
enum Dest {
    F32(CPtr),
    Bf16(BPtr),
}

impl Dest {
    fn at(self, off: usize) -> Dest {
        match self {
            Dest::F32(c) => Dest::F32(CPtr(c.at(off))),
            Dest::Bf16(c) => Dest::Bf16(BPtr(c.0.wrapping_add(off))),
        }
    }
}

/// Largest MR · NR of a kernel whose tiles are rounded to a bf16 C (AMX: 32 × 32).
const TILE_MAX: usize = 1024;

/// One kernel tile of f32, 64-byte aligned (whole cache lines, aligned tile stores).
#[repr(C, align(64))]
struct TileBuf([f32; TILE_MAX]);

/// Batched GEMM with beta 0 (overwrite) or 1 (accumulate); bounds were checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm<K, CA, CB>(
    l: &GemmLayout,
    a: &[CA::Src],
    a_offsets: &[usize],
    b: &[CB::Src],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let batch = a_offsets.len();
    if l.m == 0 || l.n == 0 || batch == 0 {
        return;
    }
    let accumulate = beta != 0.0;
    if l.k == 0 {
        // C = A·B + beta·C with an empty sum.
        if !accumulate {
            for &co in c_offsets {
                for i in 0..l.m {
                    for j in 0..l.n {
                        c.set(co + i * l.c_rs + j * l.c_cs, 0.0);
                    }
                }
            }
        }
        return;
    }
    gemm_into::<K, CA, CB>(
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        accumulate,
        Dest::F32(c.ptr()),
        c_offsets,
    );
}

/// Batched GEMM into a bf16 C, rounded from the f32 sums once, after the last k block:
/// C = round(A·B) (`accumulate` false) or round(A·B + C) (true). Bounds were checked by the
/// caller; m, n and k are positive.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_to_bf16<K, CA, CB>(
    l: &GemmLayout,
    a: &[CA::Src],
    a_offsets: &[usize],
    b: &[CB::Src],
    b_offsets: &[usize],
    accumulate: bool,
    c: &mut [bf16],
    c_offsets: &[usize],
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    const { assert!(K::MR * K::NR <= TILE_MAX, "kernel tile larger than TileBuf") };
    debug_assert!(l.m > 0 && l.n > 0 && l.k > 0);
    let dest = Dest::Bf16(BPtr(c.as_mut_ptr()));
    gemm_into::<K, CA, CB>(l, a, a_offsets, b, b_offsets, accumulate, dest, c_offsets);
}

/// The batch loop of `gemm` and `gemm_to_bf16`: m, n, k and the batch are non-empty.
#[allow(clippy::too_many_arguments)]
fn gemm_into<K, CA, CB>(
    l: &GemmLayout,
    a: &[CA::Src],
    a_offsets: &[usize],
    b: &[CB::Src],
    b_offsets: &[usize],
    accumulate: bool,
    cp: Dest,
    c_offsets: &[usize],
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let batch = a_offsets.len();
    let threads = rayon::current_num_threads();
    let macs = l.m * l.n * l.k;
    let view = |i: usize| {
        let av = View {
            data: a,
            off: a_offsets[i],
            rs: l.a_rs,
            cs: l.a_cs,
        };
        let bv = View {
            data: b,
            off: b_offsets[i],
            rs: l.b_rs,
            cs: l.b_cs,
        };
        (av, bv)
    };
    // Whether the problems fork: a small batch of large problems runs each problem over
    // the pool; otherwise each problem runs on one thread (the batch spread over the pool,
    // or everything inline when the work is too small to fork).
    let forks = threads > 1 && macs * batch >= PAR_MIN_MACS;
    let spread = forks
        && batch > 1
        && (batch.is_multiple_of(threads) || batch >= 4 * threads || macs < SMALL_MACS);
    let problem_threads = if forks && !spread { threads } else { 1 };
    // Every problem of the batch has A's strides, so this is decided once.
    let in_place = direct_a::<K, CA, CB>(l, problem_threads);
    let one = |i: usize, threads: usize| {
        let (av, bv) = view(i);
        if threads > 1 && k_split::<K>(l) {
            return split_along_k::<K, CA, CB>(
                l,
                av,
                in_place,
                bv,
                cp.at(c_offsets[i]),
                accumulate,
                threads,
            );
        }
        let small_a = threads > 1 && !in_place && small_packed_a::<K>(l, threads);
        let own = !in_place && !small_a && own_packing::<K>(l, threads);
        if threads > 1 && (in_place || small_a || own) {
            // Independent sub-problems, one per thread, each with its own packed B in its
            // own L2 (A is read in place, so no packing is repeated; or A is small beside
            // each part's B, and each part packs all of it; or the problem is large enough
            // that packing one operand twice costs less than sharing B: `own_packing`).
            let parts = if small_a {
                column_parts(l.m, l.n, K::NR, threads)
            } else {
                partition(l.m, l.k, l.n, K::MR, K::NR, threads)
            };
            // One part: the sub-problem of rows m0..m1 and columns n0..n1.
            let run = |p: &Task| {
                let sub = GemmLayout {
                    m: p.m1 - p.m0,
                    n: p.n1 - p.n0,
                    ..*l
                };
                let a = View {
                    off: av.off + p.m0 * av.rs,
                    ..av
                };
                let b = View {
                    off: bv.off + p.n0 * bv.cs,
                    ..bv
                };
                let c = cp.at(c_offsets[i] + p.m0 * l.c_rs + p.n0 * l.c_cs);
                single::<K, CA, CB>(&sub, a, in_place, b, c, accumulate, 1);
            };
            if let Some(units) = dispensed_columns::<K>(l, in_place && !small_a, &parts) {
                // Column blocks handed out by a dispenser: each part its own half first, in
                // the order of the static split, then the back of a slower part's.
                let disp = Dispenser::new(units.len(), parts.len());
                (0..parts.len()).into_par_iter().for_each(|me| {
                    while let Some(u) = disp.next(me) {
                        run(&units[u]);
                    }
                });
                return;
            }
            if in_place && dispensed_rows::<K>(l, &parts) {
                let disp = Dispenser::new(l.m.div_ceil(K::MR), parts.len());
                let c = cp.at(c_offsets[i]);
                (0..parts.len()).into_par_iter().for_each(|me| {
                    rows_dispensed::<K, CA, CB>(l, av, bv, c, accumulate, &disp, me)
                });
                return;
            }
            parts.par_iter().for_each(run);
        } else {
            let c = cp.at(c_offsets[i]);
            single::<K, CA, CB>(l, av, in_place, bv, c, accumulate, threads);
        }
    };
    if !forks {
        (0..batch).for_each(|i| one(i, 1));
        return;
    }
    // Only a problem that forks opens a region (a small one runs inline, on this thread).
    let _region = crate::backend::cpu::threads::region();
    if spread {
        (0..batch).into_par_iter().for_each(|i| one(i, 1));
    } else {
        (0..batch).for_each(|i| one(i, threads));
    }
}
