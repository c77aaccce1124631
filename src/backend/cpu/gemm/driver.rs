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
//! by rows (column ranges, each packing all of A: `small_packed_a`); otherwise, with packed
//! A, B is packed once (in parallel) per block and shared by row/column tasks.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::thread::LocalKey;

use rayon::prelude::*;

use half::bf16;

use super::dispense::Dispenser;
use super::kernel::{CTile, MicroKernel};
use super::pack::{self, pack, packed_len, Convert, View};
use super::round_bf16::{round_tile, widen_tile, Rounding, Tile};
use super::GemmLayout;
use crate::backend::cpu::isa;

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

/// Whether one problem's threads take parts of k rather than of C: a small C (at most
/// `K_SPLIT_MAX_C` values) over a long k (at least `MicroKernel::K_SPLIT_MIN_BLOCKS` depth
/// blocks), where splitting C gives each depth block's fork and joins (B packed in parallel,
/// then the tiles) too little work per thread.
fn k_split<K: MicroKernel>(l: &GemmLayout) -> bool {
    l.m * l.n <= K_SPLIT_MAX_C && l.k >= K::K_SPLIT_MIN_BLOCKS * K::KC
}
/// In-process alternation, 2 threads, Intel EMR, k split against C split: f32 64 × 65536 ×
/// 64 2.0×, 32 × 32768 × 32 1.8×, 128 × 16384 × 128 1.5×, 256 × 8192 × 256 1.3×, 128 ×
/// 4096 × 512 1.35×, 64 × 2048 × 64 2.4×; bf16 (AMX) 64 × 65536 × 64 1.27×, 128 × 16384 ×
/// 128 1.66×, 256 × 4096 × 256 1.24×; but bf16 512 × 4096 × 512 0.68× (C of 256 Ki values).
const K_SPLIT_MAX_C: usize = 256 * 256;

/// C (+)= A·B with each of `threads` threads taking a contiguous part of k: the first
/// accumulates into C itself (an f32 C) or into f32 sums starting from C widened (a bf16 C),
/// the others into their own m × n f32 sums, added after in order of the parts (and a bf16
/// C rounded once, from the same f32 sums as an f32 C holds). The sums so depend on the
/// thread count (as MKL's do), not on the timing: a thread count gives the same bits every
/// run.
#[allow(clippy::too_many_arguments)]
fn split_along_k<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    in_place: bool,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let part = k.div_ceil(threads).next_multiple_of(K::KU);
    let parts: Vec<(usize, usize)> = (0..k)
        .step_by(part)
        .map(|p0| (p0, (p0 + part).min(k)))
        .collect();
    // Row-major m × n sums of every part but an f32 C's first, uninitialised: each part's
    // kernels store all of its own (beta 0), or, for a bf16 C with beta 1, the first are C
    // widened (zeroing them was a serial pass over m·n values per call).
    let own_first = matches!(c, Dest::Bf16(_));
    let len = (parts.len() - usize::from(!own_first)) * m * n;
    let mut sums: Vec<f32> = Vec::with_capacity(len);
    let sp = CPtr(sums.as_mut_ptr());
    if let (Dest::Bf16(out), true) = (c, accumulate) {
        // SAFETY: C's m × n elements lie inside its checked bounds; the sums hold m × n.
        unsafe {
            widen_tile(
                Tile::new(out.0.cast_const(), l.c_rs, l.c_cs, m, n),
                Tile::new(sp.0, n, 1, m, n),
            )
        };
    }
    parts.par_iter().enumerate().for_each(|(t, &(p0, p1))| {
        let a = View {
            off: a.off + p0 * a.cs,
            ..a
        };
        let b = View {
            off: b.off + p0 * b.rs,
            ..b
        };
        let sub = GemmLayout { k: p1 - p0, ..*l };
        match (t, c) {
            (0, Dest::F32(_)) => single::<K, CA, CB>(&sub, a, in_place, b, c, accumulate, 1),
            _ => {
                let own = GemmLayout {
                    c_rs: n,
                    c_cs: 1,
                    ..sub
                };
                let slot = t - usize::from(!own_first);
                let acc = t == 0 && accumulate;
                let dst = Dest::F32(CPtr(sp.at(slot * m * n)));
                single::<K, CA, CB>(&own, a, in_place, b, dst, acc, 1);
            }
        }
    });
    // SAFETY: every one of the `len` values was stored above (see the allocation).
    unsafe { sums.set_len(len) };
    let (first, rest): (Tile<*mut f32>, &[f32]) = match c {
        Dest::F32(cp) => (Tile::new(cp.0, l.c_rs, l.c_cs, m, n), &sums),
        Dest::Bf16(_) => {
            let (head, tail) = sums.split_at_mut(m * n);
            (Tile::new(head.as_mut_ptr(), n, 1, m, n), tail)
        }
    };
    add_parts(first, rest, threads);
    if let Dest::Bf16(out) = c {
        // SAFETY: the m × n sums and C's m × n elements (inside its checked bounds) are
        // distinct memory; the rounding suits this CPU.
        unsafe {
            round_tile(
                Rounding::at(isa::active()),
                first.as_const(),
                Tile::new(out.0, l.c_rs, l.c_cs, m, n),
            )
        };
    }
}

/// first += Σ parts, the parts row-major m × n sums (first.rows × first.cols) added in their
/// order, so that each value's sum is the same whatever the thread count: rows spread over
/// `threads` threads, a row at a time over contiguous slices where C's columns are. It
/// replaced one thread's scalar loop over (i, j) after a zeroing of the sums: Intel EMR, 2
/// threads, in process against it, the weight gradients of the Shakespeare recipe (A
/// transposed, k = 768) 128 × 768 × 512 +1–11%, 512 × 768 × 128 +9%, 384 × 768 × 128 +7%,
/// 128 × 768 × 128 −1 to +9%; long k (256 × 4096 × 256, 64 × 65536 × 64) within ±1% in
/// quiet rounds; bf16 C 128 × 768 × 512 +3–10%. Timed inside 60-step training runs (three
/// alternating pairs, against the rest of the GEMMs for drift): those products' time ×0.93–1.01.
fn add_parts(first: Tile<*mut f32>, parts: &[f32], threads: usize) {
    let (m, n) = (first.rows, first.cols);
    let dst = CPtr(first.ptr);
    let rows = |r0: usize, r1: usize| {
        for i in r0..r1 {
            let row = dst.at(i * first.rs);
            for part in parts.chunks_exact(m * n) {
                let src = &part[i * n..][..n];
                if first.cs == 1 {
                    // SAFETY: row i of the tile is n contiguous values (unit column stride)
                    // inside C's checked bounds or the first sums, which `parts` does not
                    // overlap; no other task writes row i.
                    let row = unsafe { std::slice::from_raw_parts_mut(row, n) };
                    row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    for (j, s) in src.iter().enumerate() {
                        // SAFETY: (i, j) lies in C's checked bounds; no other task writes
                        // row i.
                        unsafe { *row.add(j * first.cs) += s };
                    }
                }
            }
        }
    };
    let tasks = threads.min(m).max(1);
    if tasks == 1 || m * n < ADD_PARTS_PAR_MIN {
        return rows(0, m);
    }
    (0..tasks)
        .into_par_iter()
        .for_each(|t| rows(t * m / tasks, (t + 1) * m / tasks));
}

/// Values of C from which `add_parts` spreads its rows over the threads.
const ADD_PARTS_PAR_MIN: usize = 1 << 14;

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
    // Every problem of the batch has A's strides, so this is decided once.
    let in_place = direct_a::<K, CA, CB>(l);
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
        if threads > 1 && (in_place || small_a) {
            // Independent sub-problems, one per thread, each with its own packed B in its
            // own L2 (A is read in place, so no packing is repeated; or A is small beside
            // each part's B, and each part packs all of it).
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
    if threads == 1 || macs * batch < PAR_MIN_MACS {
        (0..batch).for_each(|i| one(i, 1));
        return;
    }
    // Only a problem that forks opens a region (a small one runs inline, on this thread).
    let _region = crate::backend::cpu::threads::region();
    if batch > 1 && (batch.is_multiple_of(threads) || batch >= 4 * threads || macs < SMALL_MACS) {
        (0..batch).into_par_iter().for_each(|i| one(i, 1));
    } else {
        (0..batch).for_each(|i| one(i, threads));
    }
}

/// Whether `threads` independent column parts, each packing all of a packed A and its own
/// columns of B, should replace the shared-B path's row tasks: when that path would split
/// rows and A has at most 1/`SMALL_A_SHARE` of a part's columns as rows (m ≤ n /
/// (SMALL_A_SHARE · threads)). Row tasks share each packed block of B: two barriers per
/// block (B packed in parallel, then the tasks), each task reading the half of B the other
/// thread packed, and the packing of B, from memory when B is large, overlapping no
/// products. Intel EMR, bf16
/// C, AMX, 2 threads, in process against row tasks: the tied LM head on 256 tokens (256 ×
/// 768 × 50257, W's rows along k) +30–52%, 128 rows +64–68%, 256 × 768 × 8192 +53–64%, 128
/// × 768 × 3072 +42–70%, 64 × 768 × 2304 +72–133%, A transposed 200 × 1024 × 4096 +77%;
/// f32 A transposed +22–27%, f32 with W's rows along k 0.98–1.03. Where each part packs a
/// large A it lost: 4096 × 768 × 3072 0.42×, 2048³ 0.50×.
fn small_packed_a<K: MicroKernel>(l: &GemmLayout, threads: usize) -> bool {
    let first_nc = n_blocks::<K>(l.n, l.k).next().map_or(l.n, |(_, nc)| nc);
    l.m * SMALL_A_SHARE * threads <= l.n
        && split(l.m, first_nc, K::MR, K::NR, K::MC, threads)
            .iter()
            .all(|t| t.n0 == 0 && t.n1 == first_nc)
}

/// `small_packed_a`'s bound: A has at most this fraction of a column part's columns as rows.
const SMALL_A_SHARE: usize = 8;

/// Whether the parts of a problem with A read in place are better run as row tiles handed
/// out by a `Dispenser` (`rows_dispensed`) than as fixed sub-problems: when `partition` split
/// it along m and the whole problem is one block of columns and one of depth (so any thread
/// may run any row tile once its own copy of B is packed, in any order).
fn dispensed_rows<K: MicroKernel>(l: &GemmLayout, parts: &[Task]) -> bool {
    parts.len() > 1
        && parts.iter().all(|p| p.n0 == 0 && p.n1 == l.n)
        && n_blocks::<K>(l.n, l.k).nth(1).is_none()
        && depth_blocks::<K>(l.k, l.n, true).nth(1).is_none()
}

/// Part `me` of a problem split along m (`dispensed_rows`; A read in place): packs its own
/// copy of B (or reads B in place) once it has a row tile to run, then runs the tiles the
/// dispenser hands it, its own share first. With equal cores this is the static row split;
/// when one core runs slower (a busy sibling hyperthread), the other takes over the end of
/// its share instead of waiting for it.
fn rows_dispensed<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    disp: &Dispenser,
    me: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let Some(first) = disp.next(me) else {
        return;
    };
    let run = |bp: BPanels<'_, K::P>| {
        let mut tile = Some(first);
        while let Some(t) = tile {
            let rows = Task {
                m0: t * K::MR,
                m1: ((t + 1) * K::MR).min(m),
                n0: 0,
                n1: n,
            };
            block::<K, CA>(
                l,
                a,
                APanels::InPlace,
                bp,
                c,
                None,
                rows,
                0,
                0,
                k,
                accumulate,
            );
            tile = disp.next(me);
        }
    };
    if let Some(bp) = b_block_in_place::<K, CB>(b, true, m, 0, n, 0, k) {
        return run(bp);
    }
    let bt = b_columns_as_rows(b);
    with_scratch(
        &SCRATCH_B,
        packed_len(n, K::NR, k, K::KU),
        |bp: &mut [K::P]| {
            pack::<CB>(bt, K::NR, K::KU_B, K::KU, 0, n, 0, k, bp);
            run(BPanels::Packed(&*bp));
        },
    );
}

/// The column blocks to hand out by a dispenser, as tasks over every row, when `partition`
/// split a problem with A read in place (`in_place`) along n into parts and the columns
/// make at least two blocks of at most `nc_max` per part: blocks of one width (whole NR
/// panels, the last narrower), as many as a multiple of the parts, so that with the cores
/// alike each part runs its own half as the static split did, and a slower core's last
/// blocks go to the faster one. Each block is a sub-problem of its own (its B packed by the
/// part that runs it); the sums of each element are those of any other split. Intel EMR, 2
/// threads, in process against the static halves (three rounds): 2048 × 512 × 2048 +12%,
/// +5%, +8%; 4096 × 768 × 2304 +1.4%, +3.3%, −1.1%; 4096 × 768 × 3072 +1.3%, +0.1%, +0.6%;
/// 1536 × 768 × 3072 +1.1%, +0.7%; 1024 × 768 × 3072 0%.
fn dispensed_columns<K: MicroKernel>(
    l: &GemmLayout,
    in_place: bool,
    parts: &[Task],
) -> Option<Vec<Task>> {
    let by_columns = parts.len() > 1 && parts.iter().all(|p| p.m0 == 0 && p.m1 == l.m);
    if !in_place || !by_columns {
        return None;
    }
    let units = l.n.div_ceil(nc_max::<K>(l.k)).next_multiple_of(parts.len());
    if units < 2 * parts.len() {
        return None;
    }
    let width = l.n.div_ceil(units).next_multiple_of(K::NR);
    Some(
        (0..l.n)
            .step_by(width)
            .map(|j0| Task {
                m0: 0,
                m1: l.m,
                n0: j0,
                n1: (j0 + width).min(l.n),
            })
            .collect(),
    )
}

/// `threads` balanced ranges of whole NR-column panels of an m × n C, each a sub-problem over
/// every row (at most one per panel).
fn column_parts(m: usize, n: usize, nr: usize, threads: usize) -> Vec<Task> {
    let panels = n.div_ceil(nr);
    let parts = threads.min(panels).max(1);
    (0..parts)
        .map(|t| Task {
            m0: 0,
            m1: m,
            n0: (t * panels / parts) * nr,
            n1: ((t + 1) * panels / parts * nr).min(n),
        })
        .collect()
}

/// Row segments of C shorter than this many columns per thread make a column split costly.
const SHARED_ROW_COLS: usize = 1024;

/// Splits an m × k · k × n problem (A read in place) into `threads` balanced ranges of whole
/// MR-row or NR-column panels.
///
/// - Along n, each part packs only its own columns of B, but every row of C is shared: with
///   short row segments (n/threads < 1024 columns) and a small k (C written after few FMAs)
///   the parts' stores contend for each other's lines (768×128×512 on 2 threads: 10–25%
///   slower than along m).
/// - Along m, each part packs all of B: k·n moves per part against (m/threads)·k·n FMAs,
///   costly when the parts have few rows (96×256×512: 15% slower than along n).
///
/// So rows when each part has at least k/2 of them and short row segments (measured on Zen 4,
/// 2 threads: the crossover lies between rows = k/4 and rows = 3k/4); otherwise columns when
/// there are enough for each part to sweep several B panels per A panel, else rows.
fn partition(m: usize, k: usize, n: usize, mr: usize, nr: usize, threads: usize) -> Vec<Task> {
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    let rows_first = mp >= threads && n / threads < SHARED_ROW_COLS && 2 * (m / threads) >= k;
    let by_n = !rows_first && (np >= 8 * threads || mp < threads);
    let (panels, size) = if by_n { (np, nr) } else { (mp, mr) };
    let parts = threads.min(panels);
    (0..parts)
        .map(|t| {
            let (p0, p1) = (t * panels / parts, (t + 1) * panels / parts);
            let (lo, hi) = (p0 * size, (p1 * size).min(if by_n { n } else { m }));
            if by_n {
                Task {
                    m0: 0,
                    m1: m,
                    n0: lo,
                    n1: hi,
                }
            } else {
                Task {
                    m0: lo,
                    m1: hi,
                    n0: 0,
                    n1: n,
                }
            }
        })
        .collect()
}

/// A rectangle of one packed block handled by one task: rows [m0, m1) of C and packed B
/// columns [n0, n1) relative to the block (n0 a multiple of NR).
#[derive(Clone, Copy, Debug)]
struct Task {
    m0: usize,
    m1: usize,
    n0: usize,
    n1: usize,
}

/// Splits an m × nc block into tasks for `threads` threads: whole MR panels of rows first
/// (each task packs its own A rows), then NR panels of columns when rows run short, and
/// columns alone when fewer than two row panels per thread would split unevenly.
fn split(m: usize, nc: usize, mr: usize, nr: usize, mc: usize, threads: usize) -> Vec<Task> {
    if threads <= 1 {
        return vec![Task {
            m0: 0,
            m1: m,
            n0: 0,
            n1: nc,
        }];
    }
    let mp = m.div_ceil(mr);
    let np = nc.div_ceil(nr);
    let blocks = m.div_ceil(mc);
    // Fewer than two row panels per thread that do not split evenly (16 rows: 12 and 4; 36
    // rows: 3 panels): row tasks would be unequal, so columns instead. Intel EMR, 2 threads,
    // in process: 16 × 4096 × 4096 +54%, 20 × 4096 × 4096 +51%, 36 × 1024 × 4096 +72%.
    let uneven = !mp.is_multiple_of(threads) || !m.is_multiple_of(mr);
    let nm = if mp < 2 * threads && np >= threads && uneven {
        1
    } else if blocks >= threads {
        blocks.next_multiple_of(threads)
    } else {
        threads
    }
    .min(mp);
    let nn = if nm < threads {
        threads.div_ceil(nm).min(np)
    } else {
        1
    };
    // Balanced ranges of whole panels: task t gets panels [t·P/T, (t+1)·P/T).
    let mut tasks = Vec::with_capacity(nm * nn);
    for mi in 0..nm {
        let (pm0, pm1) = (mi * mp / nm, (mi + 1) * mp / nm);
        for ni in 0..nn {
            let (pn0, pn1) = (ni * np / nn, (ni + 1) * np / nn);
            tasks.push(Task {
                m0: pm0 * mr,
                m1: (pm1 * mr).min(m),
                n0: pn0 * nr,
                n1: (pn1 * nr).min(nc),
            });
        }
    }
    tasks
}

/// How the kernel gets its A panels.
#[derive(Clone, Copy)]
enum APanels<'a, P> {
    /// Broadcast from A where it lies (`direct_a`).
    InPlace,
    /// Broadcast from an A stored transposed where it lies (`transposed_a_in_place`).
    InPlaceTransposed,
    /// Packed by each task: with k contiguous in A one panel at a time, the next one's rows
    /// prefetched under the kernel (4096 × 3072 × 768 bf16, 1 thread: +7%); otherwise one
    /// MC block at a time.
    PerBlock,
    /// Packed whole (`single`): in `columns` all KC blocks one after another, in `block` the
    /// current KC block's panels.
    Whole(&'a [P]),
    /// The current KC block's part of the whole buffer, packed by `block` panel by panel as
    /// the first column block sweeps it (the later column blocks read it as `Whole`).
    FillWhole(PanelsMut<P>),
}

/// Packed A panels written by tasks that own disjoint rows (so disjoint panels).
#[derive(Clone, Copy)]
struct PanelsMut<P> {
    ptr: *mut P,
    len: usize,
}
// SAFETY: each task writes only the panels of its own rows (`fill_whole_a` checks that no
// two tasks share rows), and the buffer outlives every task.
unsafe impl<P: Send> Send for PanelsMut<P> {}
// SAFETY: as above.
unsafe impl<P: Send> Sync for PanelsMut<P> {}

/// Where `block` reads the B panels of its KC × NC block.
#[derive(Clone, Copy)]
enum BPanels<'a, P> {
    /// Packed: panel t (columns NR·t ..) at NR·kc'·t, k steps NR apart.
    Packed(&'a [P]),
    /// B's rows where they lie (`b_block_in_place`): B[pc + p, jc + j] at `from[p·rs + j]`.
    Rows { from: &'a [P], rs: usize },
}

/// Where `block` hands the kernel one tile's A: a packed panel, A's rows in place (row
/// stride, k contiguous), or an A stored transposed in place (stride between k steps, rows
/// contiguous).
#[derive(Clone, Copy)]
enum ATile {
    Packed,
    Rows(usize),
    Cols(usize),
}

/// Whether an A stored transposed (rows contiguous, k steps `a_cs` apart: Aᵀ·B, as
/// attention's dV = Pᵀ·dO and a Linear layer's weight gradient Xᵀ·dY) is read in place by
/// the kernel, MR values of one source row per k step (prefetched ahead), instead of packed:
/// against a narrow C (at most `TRANSPOSED_A_MAX_N` columns), where each A value serves one
/// or two kernel passes and packing it is a pass over memory of its own, and unless the k
/// steps are a multiple of 4 KiB apart (every step in one L1 set). Intel EMR, f32, in
/// process against packed A, 1 / 2 threads (A's k steps apart): attention's dV at T = 512,
/// 512 × 512 × 64 × 12 (2 KiB) +40% / +28%, the same over 400 heads (A from memory) +36% /
/// +25%, T = 64, 64 × 64 × 32 × 48 (256 B) +24%; 256 × 1024 × 32 (1 KiB) +73%, 128 × 4096
/// × 64 (512 B) +9% / +2%, 768 × 768 × 64 (3 KiB) +7%, 1536 × 1024 × 64 (6 KiB) +8% / −5%.
/// At 4 KiB: 1024 × 768 × 96 −4%, 1024 × 512 × 256 −17%; 16 KiB: 4096 × 1024 × 64 −13%.
/// 128 columns: +17% to −9% (2 threads −8%), 256: −9%, 512 and more −4% to +4%.
fn transposed_a_in_place<K, CA>(l: &GemmLayout) -> bool
where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
{
    K::TRANSPOSED_A
        && CA::IDENTITY
        && l.a_rs == 1
        && l.n <= TRANSPOSED_A_MAX_N
        && !(l.a_cs * std::mem::size_of::<CA::Src>()).is_multiple_of(pack::PAGE_BYTES)
}

/// Columns of C up to which `transposed_a_in_place` reads A in place: two AVX-512 panels.
const TRANSPOSED_A_MAX_N: usize = 64;

/// One problem; `c` points at C[0, 0]; `in_place`: A is read where it lies (`direct_a`).
#[allow(clippy::too_many_arguments)]
fn single<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    in_place: bool,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let whole_a_len: usize = k_blocks::<K>(k)
        .map(|(_, kc)| packed_len(m, K::MR, kc, K::KU))
        .sum();
    let mut columns_of_c = n_blocks::<K>(n, k);
    let first_nc = columns_of_c.next().map_or(n, |(_, nc)| nc);
    let several_column_blocks = columns_of_c.next().is_some();
    if several_column_blocks && !in_place && whole_a_len * size_of::<K::P>() <= WHOLE_A_MAX_BYTES {
        // A is needed by every NC block of columns: pack all of it once instead of once per
        // block (sq2048 f32: 4 passes over A become 1).
        with_scratch(&SCRATCH_A_WHOLE, whole_a_len, |ap: &mut [K::P]| {
            if a.cs == 1 && fill_whole_a(m, first_nc, K::MR, K::NR, K::MC, threads) {
                let whole = PanelsMut {
                    ptr: ap.as_mut_ptr(),
                    len: ap.len(),
                };
                columns::<K, CA, CB>(l, a, APanels::FillWhole(whole), b, c, accumulate, threads);
            } else {
                pack_whole_a::<K, CA>(a, m, k, threads, ap);
                columns::<K, CA, CB>(l, a, APanels::Whole(ap), b, c, accumulate, threads);
            }
        });
    } else {
        let panels = if in_place {
            APanels::InPlace
        } else if transposed_a_in_place::<K, CA>(l) {
            APanels::InPlaceTransposed
        } else {
            APanels::PerBlock
        };
        columns::<K, CA, CB>(l, a, panels, b, c, accumulate, threads);
    }
}

/// The blocks (start, length) that cut `total` into pieces of at most `max`: max, max, …,
/// the remainder; or, when `even`, ⌈total/max⌉ pieces of one size rounded up to a multiple
/// of `unit` (max must be one), the last one shorter. AMX: k = 1100 in 576 + 524 rather than
/// 768 + 332, n = 1024 (at k = 768) in 512 + 512 rather than 768 + 256.
fn blocks(
    total: usize,
    max: usize,
    unit: usize,
    even: bool,
) -> impl Iterator<Item = (usize, usize)> {
    let size = if even && total > 0 {
        total
            .div_ceil(total.div_ceil(max))
            .next_multiple_of(unit)
            .min(max)
    } else {
        max
    };
    (0..total)
        .step_by(size)
        .map(move |s| (s, (total - s).min(size)))
}

/// The depth blocks of kernel K for depth k: one block when k ≤ `KC_ONE_BLOCK`, else
/// blocks of at most KC.
fn k_blocks<K: MicroKernel>(k: usize) -> impl Iterator<Item = (usize, usize)> {
    blocks(k, k_block_max::<K>(k), K::KU, K::EVEN_BLOCKS)
}

/// The largest depth block of `k_blocks`.
fn k_block_max<K: MicroKernel>(k: usize) -> usize {
    if k <= K::KC_ONE_BLOCK {
        k.max(1)
    } else {
        K::KC
    }
}

/// Packed bytes of B in one deep depth block (`deep_kc`): a quarter of the 2 MiB L2.
const DEEP_B_BLOCK_BYTES: usize = 512 << 10;

/// The depth of one block when A is read in place against a narrow C, at most
/// `DIRECT_A_ANY_STRIDE_MAX_N` columns (`None` for wider C): KC × n packed values of B
/// within `DEEP_B_BLOCK_BYTES`, in whole KU steps, at least KC.
///
/// KC bounds the depth so that a packed A panel stays in L1 while every B panel of a column
/// block streams past it. With A in place against one or two B panels (three on AMX), each
/// line of A serves those passes and is not needed again, so only the packed B block, which
/// every row panel reads, needs to stay (in L2). Blocks of KC cut each row of A into short
/// runs (1.5 KiB in f32 at KC = 384, in bf16 at AMX's 768), each a new stream for the
/// hardware prefetchers, which then reached ~5 GB/s of A from memory where PyTorch reads
/// 7–9. Intel EMR, in process, against KC, 1 / 2 threads: f32 4096 × 4096 × 16 +15% /
/// +12%, × 32 +14%, × 64 +8% / +10%, 1024 × 16384 × 32 (2 threads) +11%; bf16 (AMX)
/// 4096 × 4096 × 16 +36–44% / +15%, × 32 +30–39%, 2048 × 4096 × 64 +28–40% / +10–13%,
/// 64 × 65536 × 64 0–1% / +7%. Past half the L2 it lost: f32 × 64 columns at depth 8192
/// −7% to −24%, bf16 96 columns at 8192 −35%.
fn deep_kc<K: MicroKernel>(n: usize) -> Option<usize> {
    if n == 0 || n > K::DIRECT_A_ANY_STRIDE_MAX_N {
        return None;
    }
    let step_bytes = n.next_multiple_of(K::NR) * std::mem::size_of::<K::P>();
    let kc = (DEEP_B_BLOCK_BYTES / step_bytes) / K::KU * K::KU;
    Some(kc.max(K::KC))
}

/// The depth blocks of one problem's column loops (`columns`): `k_blocks`, or, with A read
/// in place against a narrow C, blocks of up to `deep_kc` (one block when k fits in it).
fn depth_blocks<K: MicroKernel>(
    k: usize,
    n: usize,
    in_place: bool,
) -> impl Iterator<Item = (usize, usize)> {
    let max = match deep_kc::<K>(n).filter(|_| in_place) {
        Some(kc) if k <= kc => k.max(1),
        Some(kc) => kc,
        None => k_block_max::<K>(k),
    };
    blocks(k, max, K::KU, K::EVEN_BLOCKS)
}

/// The widest column block of kernel K at depth k: NC, or what `B_BLOCK` allows beside the
/// first (deepest) depth block.
fn nc_max<K: MicroKernel>(k: usize) -> usize {
    match K::B_BLOCK {
        None => K::NC,
        Some(values) => {
            let kc = k_blocks::<K>(k)
                .next()
                .map_or(K::KC, |(_, kc)| kc)
                .next_multiple_of(K::KU);
            (values / kc / K::NR * K::NR).max(K::NR)
        }
    }
}

/// Depth blocks from which columns up to `NC_ONE_BLOCK` run as one block.
const NC_ONE_BLOCK_MIN_K_BLOCKS: usize = 3;

/// The column blocks of kernel K for n columns at depth k: one block when n ≤
/// `NC_ONE_BLOCK` and the depth takes at least `NC_ONE_BLOCK_MIN_K_BLOCKS` blocks, else
/// blocks of at most `nc_max`. A second column block sweeps all of A again (packed whole:
/// written once and read twice; in place: read twice) and, for a narrow remainder, reads
/// each A panel for few B panels. Measured against the wider B block in L2, one block paid
/// from three depth blocks on and lost at two (f32 figures at `Avx512::NC_ONE_BLOCK`).
fn n_blocks<K: MicroKernel>(n: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    let one = K::NC_ONE_BLOCK.is_some_and(|cols| n <= cols)
        && k_blocks::<K>(k)
            .nth(NC_ONE_BLOCK_MIN_K_BLOCKS - 1)
            .is_some();
    let max = if one { n.max(1) } else { nc_max::<K>(k) };
    blocks(n, max, K::NR, K::EVEN_BLOCKS)
}

/// Whether the whole packed A (k contiguous in A) is filled during the first column block,
/// each task packing its own rows' panels as it reaches them while the next panel's source
/// and destination are prefetched under the kernel, rather than in a pass of its own
/// beforehand, which waits on memory for all of A: when no two of that block's tasks share
/// rows. sq1024 f32, 1 thread (Zen 4, huge pages): A's transposes fell from 3.1% to 1.7% of
/// the time, 105.0–106.9 → 106.9–108.7 GFLOP/s. A stored transposed keeps the pass of its
/// own: packed panel by panel its 12-value runs split lines, 4–5% slower.
fn fill_whole_a(m: usize, nc: usize, mr: usize, nr: usize, mc: usize, threads: usize) -> bool {
    split(m, nc, mr, nr, mc, threads)
        .iter()
        .all(|t| t.n0 == 0 && t.n1 == nc)
}

/// Packs all of A: for each KC block of depth in turn, its ⌈m/MR⌉ panels (the layout `block`
/// packs one MC block at a time), panels spread over the threads.
fn pack_whole_a<K, CA>(a: View<'_, CA::Src>, m: usize, k: usize, threads: usize, ap: &mut [K::P])
where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
{
    let mut rest = ap;
    for (pc, kc) in k_blocks::<K>(k) {
        let panel = K::MR * kc.next_multiple_of(K::KU);
        let (blk, tail) = rest.split_at_mut(packed_len(m, K::MR, kc, K::KU));
        rest = tail;
        // Runs of whole panels, about MC rows each (one task each when single-threaded).
        let per = if threads > 1 {
            K::MC.div_ceil(K::MR)
        } else {
            blk.len() / panel
        };
        blk.par_chunks_mut(per * panel)
            .enumerate()
            .for_each(|(ci, chunk)| {
                let i0 = ci * per * K::MR;
                let rows = (m - i0).min(per * K::MR);
                pack::<CA>(a, K::MR, K::KU_A, K::KU, i0, rows, pc, kc, chunk);
            });
    }
}

/// The column and depth loops of one problem.
fn columns<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let in_place = matches!(panels, APanels::InPlace);
    if matches!(c, Dest::Bf16(_)) && depth_blocks::<K>(k, n, in_place).nth(1).is_some() {
        // The partial sums of a bf16 C wait in f32 between k blocks: one column block of
        // them at a time, in this thread's stage.
        // Rows one line longer than the block, so that rows are not 4 KiB apart (all in one
        // L1 set) when the block is a multiple of 1024 columns.
        let rs = n_blocks::<K>(n, k).map(|(_, nc)| nc).max().unwrap_or(0) + 16;
        with_scratch(&SCRATCH_STAGE, m * rs, |st: &mut [f32]| {
            let stage = Some(Stage {
                ptr: CPtr(st.as_mut_ptr()),
                rs,
            });
            column_blocks::<K, CA, CB>(l, a, panels, b, c, stage, accumulate, threads)
        })
    } else {
        column_blocks::<K, CA, CB>(l, a, panels, b, c, None, accumulate, threads)
    }
}

/// The f32 partial sums of a bf16 C's current column block (rows of the problem, columns
/// from jc): element (i, j) at `ptr + i·rs + j`.
#[derive(Clone, Copy)]
struct Stage {
    ptr: CPtr,
    rs: usize,
}

/// The loops of `columns` over column and depth blocks.
#[allow(clippy::too_many_arguments)]
fn column_blocks<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
    b: View<'_, CB::Src>,
    cp: Dest,
    stage: Option<Stage>,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let bt = b_columns_as_rows(b);
    let in_place = matches!(panels, APanels::InPlace);
    for (jc, nc) in n_blocks::<K>(n, k) {
        let mut whole = panels;
        for (pc, kc) in depth_blocks::<K>(k, n, in_place) {
            let kcp = kc.next_multiple_of(K::KU);
            let acc = accumulate || pc > 0;
            let a_block = match whole {
                APanels::Whole(ap) => {
                    let (blk, rest) = ap.split_at(packed_len(m, K::MR, kc, K::KU));
                    whole = APanels::Whole(rest);
                    APanels::Whole(blk)
                }
                APanels::FillWhole(ap) => {
                    let len = packed_len(m, K::MR, kc, K::KU);
                    assert!(len <= ap.len, "whole A buffer too short");
                    whole = APanels::FillWhole(PanelsMut {
                        ptr: ap.ptr.wrapping_add(len),
                        len: ap.len - len,
                    });
                    if jc == 0 {
                        APanels::FillWhole(PanelsMut { ptr: ap.ptr, len })
                    } else {
                        // SAFETY: the first column block packed these `len` values (every
                        // panel of this KC block); no task writes them any more.
                        APanels::Whole(unsafe { std::slice::from_raw_parts(ap.ptr, len) })
                    }
                }
                other => other,
            };
            if let Some(bp) = b_block_in_place::<K, CB>(b, in_place, m, jc, nc, pc, kc) {
                let tasks = split(m, nc, K::MR, K::NR, K::MC, threads);
                let run =
                    |t: &Task| block::<K, CA>(l, a, a_block, bp, cp, stage, *t, jc, pc, kc, acc);
                if tasks.len() > 1 {
                    for_tasks::<K>(&tasks, m, nc, threads, run);
                } else {
                    run(&tasks[0]);
                }
                continue;
            }
            with_scratch(
                &SCRATCH_B,
                packed_len(nc, K::NR, kc, K::KU),
                |bp: &mut [K::P]| {
                    let tasks = split(m, nc, K::MR, K::NR, K::MC, threads);
                    if tasks.len() > 1 {
                        // Pack B in parallel, a run of whole panels per chunk.
                        let per = nc.div_ceil(K::NR).div_ceil(threads) * K::NR;
                        bp.par_chunks_mut(per * kcp)
                            .enumerate()
                            .for_each(|(ci, chunk)| {
                                let c0 = ci * per;
                                let cols = (nc - c0).min(per);
                                pack::<CB>(bt, K::NR, K::KU_B, K::KU, jc + c0, cols, pc, kc, chunk);
                            });
                        let bp = BPanels::Packed(&*bp);
                        for_tasks::<K>(&tasks, m, nc, threads, |t: &Task| {
                            block::<K, CA>(l, a, a_block, bp, cp, stage, *t, jc, pc, kc, acc);
                        });
                    } else {
                        pack::<CB>(bt, K::NR, K::KU_B, K::KU, jc, nc, pc, kc, bp);
                        let bp = BPanels::Packed(&*bp);
                        block::<K, CA>(l, a, a_block, bp, cp, stage, tasks[0], jc, pc, kc, acc);
                    }
                },
            );
        }
    }
}

/// Runs `run` over the tasks of one block of an m × nc C in parallel: when they are all
/// rows of the block's full width, as row tiles handed out by a `Dispenser` (one share per
/// thread, in row order), so that a slower core's last tiles go to the faster one; else
/// task by task.
fn for_tasks<K: MicroKernel>(
    tasks: &[Task],
    m: usize,
    nc: usize,
    threads: usize,
    run: impl Fn(&Task) + Sync + Send,
) {
    if !tasks.iter().all(|t| t.n0 == 0 && t.n1 == nc) {
        tasks.par_iter().for_each(run);
        return;
    }
    let parts = threads.min(tasks.len());
    let disp = Dispenser::new(m.div_ceil(K::MR), parts);
    (0..parts).into_par_iter().for_each(|me| {
        while let Some(t) = disp.next(me) {
            run(&Task {
                m0: t * K::MR,
                m1: ((t + 1) * K::MR).min(m),
                n0: 0,
                n1: nc,
            });
        }
    });
}

/// B seen with its columns as rows: the columns of B are the panel rows of its packing.
fn b_columns_as_rows<T>(b: View<'_, T>) -> View<'_, T> {
    View {
        rs: b.cs,
        cs: b.rs,
        ..b
    }
}

/// The KC × NC block of B at (pc, jc) as the kernel's packed panel, read where it lies, when
/// B already has that layout: one NR-wide panel (nc = NR) of the kernel's own element type,
/// one value per k step (KU = 1), columns contiguous and k steps NR apart, as attention's V
/// with 32-wide heads (P·V, 64 × 64 × 32 × 64 heads: packing it was 11% of the GEMM).
fn b_in_place<'a, K, CB>(
    b: View<'a, CB::Src>,
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
) -> Option<&'a [K::P]>
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    if !(CB::IDENTITY && K::KU == 1 && K::KU_B == 1 && nc == K::NR && b.cs == 1 && b.rs == K::NR) {
        return None;
    }
    let at = b.off + pc * b.rs + jc;
    let len = kc * K::NR;
    assert!(at + len <= b.data.len(), "B block past the end of B");
    Some(&b_values::<K, CB>(b, at)[..len])
}

/// B's values from index `at` of its slice to the end, as the kernel's element type.
/// `CB::IDENTITY` must hold (Src and P the same type).
fn b_values<'a, K, CB>(b: View<'a, CB::Src>, at: usize) -> &'a [K::P]
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    assert!(
        CB::IDENTITY && at <= b.data.len(),
        "B read in place without conversion"
    );
    debug_assert_eq!(std::mem::size_of::<CB::Src>(), std::mem::size_of::<K::P>());
    // SAFETY: `CB::IDENTITY` (asserted) says Src and P are the same type; the values from
    // `at` (inside the slice, asserted) to its end are only read while `b` is borrowed.
    unsafe { std::slice::from_raw_parts(b.data.as_ptr().add(at) as *const K::P, b.data.len() - at) }
}

/// The KC × NC block of B at (pc, jc) read where it lies, when it can be: already in the
/// packed panel layout (`b_in_place`), else by rows (`BPanels::Rows`, below); `None` when it
/// must be packed.
///
/// By rows: B's rows `b.rs` apart, by a kernel that can (`DIRECT_B`), beside A read in
/// place (`direct_a`) in at most `B_ROWS_IN_PLACE_MAX_TILES` row tiles: columns contiguous,
/// rows at most `B_ROWS_IN_PLACE_MAX_RS` apart, and every panel's NR values of every row
/// inside B's slice (an edge panel reads past the block's last column; those lanes are never
/// stored).
///
/// A packed B block serves every row tile; with so few, packing it (from memory, on a long
/// reduction) is a pass of its own that overlaps no products, while the kernel reads B's
/// lines where they lie as it goes. Intel EMR, f32, k = 32768, in process against packed B,
/// 1 / 2 threads (two rounds): 16 × 64 columns +20% / +17–20%, 24 × 64 +21% / +8–20%, 32 ×
/// 64 +5–13% / +14%, 48 × 64 +9–10% / +4–8%, 32 × 48 +19% / +16–18%, 32 × 16 +34% / +23%;
/// with more rows it gained nothing (64 × 65536 × 64 −3% to +1%, 128 × 16384 × 64 0–2%) or
/// lost (4096 × 4096 × 64 on 2 threads −9%).
fn b_block_in_place<'a, K, CB>(
    b: View<'a, CB::Src>,
    a_in_place: bool,
    m: usize,
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
) -> Option<BPanels<'a, K::P>>
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    if let Some(panel) = b_in_place::<K, CB>(b, jc, nc, pc, kc) {
        return Some(BPanels::Packed(panel));
    }
    if !(a_in_place && few_rows_and_b_rows::<K, CB>(m, b.rs, b.cs)) {
        return None;
    }
    let at = b.off + pc * b.rs + jc;
    let last_panel = (nc - 1) / K::NR * K::NR;
    if at + (kc - 1) * b.rs + last_panel + K::NR > b.data.len() {
        return None;
    }
    let from = b_values::<K, CB>(b, at);
    Some(BPanels::Rows { from, rs: b.rs })
}

/// Whether a kernel that reads B in place (`DIRECT_B`, no conversion) can for `m` rows: at
/// most `B_ROWS_IN_PLACE_MAX_TILES` row tiles, B's columns contiguous and its rows at most
/// `B_ROWS_IN_PLACE_MAX_RS` apart.
fn few_rows_and_b_rows<K, CB>(m: usize, b_rs: usize, b_cs: usize) -> bool
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    K::DIRECT_B
        && CB::IDENTITY
        && m <= B_ROWS_IN_PLACE_MAX_TILES * K::MR
        && b_cs == 1
        && b_rs <= B_ROWS_IN_PLACE_MAX_RS
}

/// Row tiles (of MR rows) up to which B may be read in place (`b_block_in_place`).
const B_ROWS_IN_PLACE_MAX_TILES: usize = 4;
/// Rows of B read in place at most this many values apart (512 bytes in f32): wider rows
/// put each k step's B lines a page or more apart, where L2 sets and TLB entries run short.
const B_ROWS_IN_PLACE_MAX_RS: usize = 128;

/// One task: sweeps its B panels with the kernel for each of its A panels (read in place,
/// packed whole beforehand, packed here into the whole buffer one panel at a time, or packed
/// here in MC chunks). While the kernel sweeps a panel packed into the whole buffer, the next
/// panel's source lines (into L2) and destination lines are prefetched, a share after each
/// kernel call, so that packing it does not wait on memory.
#[allow(clippy::too_many_arguments)]
fn block<K, CA>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
    bp: BPanels<'_, K::P>,
    c: Dest,
    stage: Option<Stage>,
    t: Task,
    jc: usize,
    pc: usize,
    kc: usize,
    acc: bool,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
{
    let kcp = kc.next_multiple_of(K::KU);
    let panel = K::MR * kcp;
    // No prefetch of the next C tile beyond the kernel's own: with short k and C in memory
    // (512 × 64 × 512 ×12 Q·Kᵀ, 768 × 128 × 512) it made the GEMM 1–7% slower on Zen 4, with
    // and without huge pages, since the assembly k loops and inlined tile stores.
    let calls = (t.n1 - t.n0).div_ceil(K::NR);
    // A bf16 C's tile of f32 sums with a single k block, rounded from here (uninitialised:
    // the kernel stores every element it covers before the rounding reads it, or, with
    // beta = 1, the widened C does).
    let mut buf_space = MaybeUninit::<TileBuf>::uninit();
    let buf: Option<*mut f32> =
        (matches!(c, Dest::Bf16(_)) && stage.is_none()).then(|| buf_space.as_mut_ptr().cast());
    let last = pc + kc == l.k;
    let rounding = Rounding::at(isa::active());
    // The kernel over one A panel and every B panel of the task; `next`: the panel swept
    // after this one, prefetched a share after each kernel call.
    let tile = |i0: usize, apanel: *const K::P, src: ATile, next: Option<NextPanel<K::P>>| {
        let mr = (t.m1 - i0).min(K::MR);
        let bytes = panel * std::mem::size_of::<K::P>();
        // After kernel call `call` of `calls`: a share of the next panel's prefetches.
        let prefetch_next = |call: usize| match next {
            Some(NextPanel::Pack { row, dst }) => {
                prefetch_rows(a, row, (t.m1 - row).min(K::MR), pc, kc, call, calls);
                if let Some(dst) = dst {
                    prefetch_share_for_write(dst as *const u8, bytes, call, calls);
                }
            }
            // The kernel's first call over this panel prefetches it (`run_prefetch_next`).
            Some(NextPanel::Packed(_)) | None => {}
        };
        // A bf16 C from a single k block (beta = 0): the kernel may compute and round the
        // full tiles in one pipeline (AMX, AVX-512 BF16); the rest, if any, go tile by tile
        // below.
        let mut piped = 0;
        let rows_at = match src {
            ATile::Packed => Some(0),
            ATile::Rows(rs) => Some(rs),
            ATile::Cols(_) => None,
        };
        if let (Dest::Bf16(out), Some(_), BPanels::Packed(bp), Some(a_rs)) = (c, buf, bp, rows_at) {
            let tiles = (t.n1 - t.n0) / K::NR;
            if !acc && mr == K::MR && l.c_cs == 1 && tiles > 0 {
                let out = out.0.wrapping_add(i0 * l.c_rs + jc + t.n0);
                let b0 = bp[(t.n0 / K::NR) * K::NR * kcp..].as_ptr();
                // SAFETY: as the kernel calls below, for the `tiles` full tiles of rows
                // i0 .. i0 + MR from column jc + t.n0 of C (inside its checked bounds, this
                // task's alone, columns contiguous), B panels t.n0 / NR on.
                let done = unsafe {
                    K::run_rounded_row(kc, apanel, a_rs, b0, tiles, out, l.c_rs, &mut |call| {
                        prefetch_next(call)
                    })
                };
                if done {
                    piped = tiles;
                }
            }
        }
        for (call, j0) in (t.n0..t.n1).step_by(K::NR).enumerate().skip(piped) {
            let nr = (t.n1 - j0).min(K::NR);
            // B's row stride when its rows are read in place (which may be 0: one row for
            // every k step).
            let (bpanel, b_rows) = match bp {
                BPanels::Packed(bp) => (&bp[(j0 / K::NR) * K::NR * kcp..][..K::NR * kcp], None),
                BPanels::Rows { from, rs } => (&from[j0..][..(kc - 1) * rs + K::NR], Some(rs)),
            };
            let off = i0 * l.c_rs + (jc + j0) * l.c_cs;
            // Where the kernel's f32 sums go: C itself, or, for a bf16 C, the stage (several k
            // blocks; the previous blocks' sums are there when pc > 0) or the tile buffer,
            // rounded into C after the last block. One kernel call site, so that the
            // dispatch below stays inline in this loop.
            let (sums, bf16_out) = match c {
                Dest::F32(cp) => (Tile::new(cp.at(off), l.c_rs, l.c_cs, mr, nr), None),
                Dest::Bf16(out) => {
                    let out = Tile::new(out.0.wrapping_add(off), l.c_rs, l.c_cs, mr, nr);
                    let staged =
                        stage.map(|s| Tile::new(s.ptr.at(i0 * s.rs + j0), s.rs, 1, mr, nr));
                    let sums = match (staged, buf) {
                        (Some(s), _) => s,
                        (None, Some(b)) => Tile::new(b, K::NR, 1, mr, nr),
                        (None, None) => unreachable!("a bf16 C has a tile buffer"),
                    };
                    if acc && pc == 0 {
                        // beta = 1: the sums start from C.
                        // SAFETY: `out` is this task's tile of the bf16 C (inside its checked
                        // bounds), `sums` its f32 sums (the stage's or the buffer's), distinct
                        // memory.
                        unsafe { widen_tile(out.as_const(), sums) };
                    }
                    (sums, Some(out))
                }
            };
            let ct = CTile::new(sums.ptr, sums.rs as isize, sums.cs as isize, mr, nr);
            let b = bpanel.as_ptr();
            // SAFETY: the A panel holds MR·kcp packed values (or, read in place, rows
            // i0 .. i0+mr of A hold kc values from column pc, inside A's checked bounds); the
            // B panel NR·kcp (or, read in place, kc rows of NR values `b_rs` apart, inside
            // the slice `bpanel`); `ct` is the tile of f32 sums (mr × nr): C's own (at row i0,
            // column jc+j0, inside C's checked bounds), the stage's or the tile buffer's,
            // which belongs to this task alone; the dispatcher chose K for this CPU.
            unsafe {
                match (src, b_rows) {
                    (ATile::Rows(a_rs), Some(b_rs)) => {
                        K::run_direct_ab(kc, apanel, a_rs, b, b_rs, ct, acc)
                    }
                    (_, Some(_)) => unreachable!("B in place only beside A's rows in place"),
                    (ATile::Packed, None) => match next {
                        Some(NextPanel::Packed(p)) if call == 0 => {
                            K::run_prefetch_next(kc, apanel, b, ct, acc, p)
                        }
                        _ => K::run(kc, apanel, b, ct, acc),
                    },
                    (ATile::Rows(a_rs), None) => K::run_direct_a(kc, apanel, a_rs, b, ct, acc),
                    (ATile::Cols(a_cs), None) => K::run_transposed_a(kc, apanel, a_cs, b, ct, acc),
                }
            }
            if let (Some(out), true) = (bf16_out, last) {
                // SAFETY: as for the widening above.
                unsafe { round_tile(rounding, sums.as_const(), out) };
            }
            prefetch_next(call);
        }
    };
    match panels {
        APanels::Whole(ap) => {
            // Task rows start on a panel boundary.
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                let at = (i0 / K::MR) * panel;
                // The next panel into L2 during this one's first kernel call, where the kernel
                // can: the whole packed A of a large problem lies past L2 (sq2048: 3 MiB per
                // depth block), so each new panel would otherwise start its first tile waiting
                // on L3. From inside the k loop rather than in bursts between calls, whose
                // prefetches waited on the fill buffers (sq2048, 1 thread: this closure then
                // held 4% of the GEMM's samples, 2.4% since).
                let next = (K::PREFETCHES_NEXT_PANEL && i0 + K::MR < t.m1)
                    .then(|| NextPanel::Packed(ap[at + panel..].as_ptr()));
                tile(i0, ap[at..].as_ptr(), ATile::Packed, next);
            }
        }
        APanels::FillWhole(ap) => {
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                // Task rows start on a panel boundary.
                let at = (i0 / K::MR) * panel;
                assert!(at + panel <= ap.len, "whole A buffer too short");
                // SAFETY: panel i0 / MR of this KC block lies in the buffer (asserted); this
                // task alone owns rows i0 .. i0 + MR (`fill_whole_a`), so no other task
                // touches these values while this one packs and reads them.
                let out = unsafe { std::slice::from_raw_parts_mut(ap.ptr.add(at), panel) };
                pack::<CA>(
                    a,
                    K::MR,
                    K::KU_A,
                    K::KU,
                    i0,
                    (t.m1 - i0).min(K::MR),
                    pc,
                    kc,
                    out,
                );
                let next = i0 + K::MR;
                let next = (next < t.m1).then_some(NextPanel::Pack {
                    row: next,
                    dst: Some(out.as_ptr().wrapping_add(panel)),
                });
                tile(i0, out.as_ptr(), ATile::Packed, next);
            }
        }
        APanels::InPlace => {
            debug_assert_eq!(std::mem::size_of::<CA::Src>(), std::mem::size_of::<K::P>());
            let base = a.data.as_ptr() as *const K::P;
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                tile(
                    i0,
                    base.wrapping_add(a.off + i0 * a.rs + pc),
                    ATile::Rows(a.rs),
                    None,
                );
            }
        }
        APanels::InPlaceTransposed => {
            debug_assert_eq!(std::mem::size_of::<CA::Src>(), std::mem::size_of::<K::P>());
            let base = a.data.as_ptr() as *const K::P;
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                let first = a.off + i0 + pc * a.cs;
                if first + (kc - 1) * a.cs + K::MR <= a.data.len() {
                    tile(i0, base.wrapping_add(first), ATile::Cols(a.cs), None);
                } else {
                    // The kernel reads MR values per k step: past the end of A's storage for
                    // the last rows of its last k step, so this panel is packed.
                    with_scratch(&SCRATCH_A, panel, |ap: &mut [K::P]| {
                        let rows = (t.m1 - i0).min(K::MR);
                        pack::<CA>(a, K::MR, K::KU_A, K::KU, i0, rows, pc, kc, ap);
                        tile(i0, ap.as_ptr(), ATile::Packed, None);
                    });
                }
            }
        }
        APanels::PerBlock if a.cs == 1 => {
            // One panel at a time into one buffer (L1), the next panel's rows prefetched
            // under the kernel calls of this one, so that packing does not wait on memory.
            with_scratch(&SCRATCH_A, panel, |ap: &mut [K::P]| {
                for i0 in (t.m0..t.m1).step_by(K::MR) {
                    let rows = (t.m1 - i0).min(K::MR);
                    pack::<CA>(a, K::MR, K::KU_A, K::KU, i0, rows, pc, kc, ap);
                    let next = i0 + K::MR;
                    tile(
                        i0,
                        ap.as_ptr(),
                        ATile::Packed,
                        (next < t.m1).then_some(NextPanel::Pack {
                            row: next,
                            dst: None,
                        }),
                    );
                }
            });
        }
        APanels::PerBlock => {
            let mc_max = (t.m1 - t.m0).min(K::MC);
            with_scratch(
                &SCRATCH_A,
                packed_len(mc_max, K::MR, kc, K::KU),
                |ap: &mut [K::P]| {
                    for ic in (t.m0..t.m1).step_by(K::MC) {
                        let mc = (t.m1 - ic).min(K::MC);
                        pack::<CA>(a, K::MR, K::KU_A, K::KU, ic, mc, pc, kc, ap);
                        for (ir, apanel) in
                            ap.chunks_exact(panel).take(mc.div_ceil(K::MR)).enumerate()
                        {
                            tile(ic + ir * K::MR, apanel.as_ptr(), ATile::Packed, None);
                        }
                    }
                },
            );
        }
    }
}

/// Prefetches into L2 share `part` of `parts` of the source lines that packing the A panel
/// of `rows` rows from row `r0`, k steps `p0 .. p0 + kc` (k contiguous in A), reads. Rows a
/// page or more apart are where the hardware prefetchers stop.
#[allow(clippy::too_many_arguments)]
fn prefetch_rows<T>(
    a: View<'_, T>,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    part: usize,
    parts: usize,
) {
    debug_assert_eq!(a.cs, 1);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        const LINE: usize = 64;
        let size = std::mem::size_of::<T>();
        let first = a.data.as_ptr().wrapping_add(a.off + r0 * a.rs + p0) as *const i8;
        for row in part * rows / parts..(part + 1) * rows / parts {
            let start = first.wrapping_add(row * a.rs * size);
            // From the line holding the row's first byte to the one holding its last.
            let skew = start as usize % LINE;
            let line0 = start.wrapping_sub(skew);
            for off in (0..kc * size + skew).step_by(LINE) {
                // SAFETY: prefetching is a hint and never faults.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(line0.wrapping_add(off)) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, r0, rows, p0, kc, part, parts);
}

/// The A panel that `block` sweeps after the current one, prefetched under the current
/// one's kernel calls.
#[derive(Clone, Copy)]
enum NextPanel<P> {
    /// Rows from `row`, packed next (their source lines into L2), into `dst` when that is
    /// not the buffer just used (its lines prefetched for writing).
    Pack { row: usize, dst: Option<*const P> },
    /// Already packed, at this address: brought into L2 by the kernel
    /// (`MicroKernel::run_prefetch_next`).
    Packed(*const P),
}

/// Prefetches share `part` of `parts` of the `bytes` bytes at `dst` (line aligned) for
/// writing: the packed panel written next, whose lines would otherwise be fetched one store
/// miss at a time.
fn prefetch_share_for_write(dst: *const u8, bytes: usize, part: usize, parts: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let lines = bytes.div_ceil(64);
        for line in part * lines / parts..(part + 1) * lines / parts {
            // SAFETY: prefetching is a hint and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(dst.wrapping_add(line * 64) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, bytes, part, parts);
}

/// Whether A is read in place rather than packed: when the kernel can (f32 or bf16, no
/// conversion), k is contiguous in A, and the MR rows the kernel streams side by side do
/// not crowd into a few L1 sets. Packing would copy each A block once per NC columns of C,
/// and its transposes cost more than broadcasting from A's rows directly; but with a row
/// stride of 4 KiB (k = 1024 in f32, 2048 in bf16) all 12 rows share one 8-way set and
/// evict each other on every step: sq1024 f32 fell from ~98 to ~70 GFLOP/s, sq2048 bf16
/// from ~185 to ~130 (Zen 4, 1 thread). And while the problem has no more column blocks
/// than the kernel reads A in place for (`DIRECT_A_MAX_COLUMN_BLOCKS`), and has few columns
/// or a short depth (`DIRECT_A_MAX_N`, `DIRECT_A_ANY_N_MAX_K`). The L1 sets do not matter
/// up to `DIRECT_A_ANY_STRIDE_MAX_N` columns (a line of A then serves one or two passes of
/// the kernel), nor for few rows beside a B read in place (`few_rows_beside_b_in_place`).
fn direct_a<K, CA, CB>(l: &GemmLayout) -> bool
where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    K::DIRECT_A
        && CA::IDENTITY
        && l.a_cs == 1
        // `block` passes a row stride of 0 for a packed panel: a broadcast A (every row the
        // same, a_rs = 0) is packed.
        && l.a_rs != 0
        && (l.n <= K::DIRECT_A_ANY_STRIDE_MAX_N
            || few_rows_beside_b_in_place::<K, CB>(l)
            || rows_per_l1_set(l.a_rs * std::mem::size_of::<CA::Src>(), K::MR)
                <= K::MAX_ROWS_PER_L1_SET)
        && n_blocks::<K>(l.n, l.k)
            .nth(K::DIRECT_A_MAX_COLUMN_BLOCKS)
            .is_none()
        && (l.n <= K::DIRECT_A_MAX_N || l.k <= K::DIRECT_A_ANY_N_MAX_K)
}

/// Whether A is read in place whatever its row stride because the problem has few rows (at
/// most `B_ROWS_IN_PLACE_MAX_TILES` tiles) and up to `B_ROWS_IN_PLACE_ANY_STRIDE_MAX_N`
/// columns of a B the kernel reads in place (`b_block_in_place`): then nothing is packed, and
/// B, the larger operand of a long reduction, streams through the kernel once. Intel EMR,
/// f32, in process against A and B packed (two rounds each), 1 / 2 threads: 16 × 65536 ×
/// 128 +0–4% / +19–23%, 32 × 32768 × 128 +18–30% / +9–11%, 48 × 16384 × 128 +21–23% /
/// +2–16%, 24 × 8192 × 96 +33% / +12%, 48 × 4096 × 128 +23–28% / +3–11%, 16 × 2048 × 128
/// +55–59% / +30–34%, 32 × 32768 × 100 +31–33% / +15–17%; with 256 columns 48 × 16384 ×
/// 256 +7% / −12%, 48 × 4096 × 256 +25% / −1%, so four panels at most.
fn few_rows_beside_b_in_place<K, CB>(l: &GemmLayout) -> bool
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    few_rows_and_b_rows::<K, CB>(l.m, l.b_rs, l.b_cs) && l.n <= B_ROWS_IN_PLACE_ANY_STRIDE_MAX_N
}

/// Columns up to which `few_rows_beside_b_in_place` holds: four AVX-512 panels.
const B_ROWS_IN_PLACE_ANY_STRIDE_MAX_N: usize = 128;

/// Largest A packed whole (`pack_whole_a`), in packed bytes: the buffer is kept by the calling
/// thread for the next call, like the per-block scratch.
const WHOLE_A_MAX_BYTES: usize = 64 << 20;

/// The most of `rows` rows, `stride` bytes apart, whose starts fall in one set of a 64-set
/// L1 (4 KiB per way: 32 KiB 8-way or 48 KiB 12-way).
fn rows_per_l1_set(stride: usize, rows: usize) -> usize {
    let mut sets = [0usize; 64];
    for i in 0..rows {
        sets[(i * stride / 64) % 64] += 1;
    }
    sets.into_iter().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(m: usize, nc: usize, mr: usize, nr: usize, mc: usize, threads: usize) {
        let tasks = split(m, nc, mr, nr, mc, threads);
        let mut seen = vec![0u8; m * nc];
        for t in &tasks {
            assert!(t.n0 % nr == 0 && t.m0 % mr == 0, "{t:?}");
            for i in t.m0..t.m1 {
                for j in t.n0..t.n1 {
                    seen[i * nc + j] += 1;
                }
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "split({m},{nc},..,{threads}) not a partition"
        );
        if threads > 1 && m.div_ceil(mr) * nc.div_ceil(nr) >= threads {
            assert!(
                tasks.len() >= threads,
                "split({m},{nc}) gave {} tasks",
                tasks.len()
            );
        }
    }

    #[test]
    fn rows_per_l1_set_counts_aliased_strides() {
        assert_eq!(rows_per_l1_set(4096, 12), 12); // k = 1024 f32: one set
        assert_eq!(rows_per_l1_set(8192, 12), 12);
        assert_eq!(rows_per_l1_set(2048, 12), 6); // two sets
        assert_eq!(rows_per_l1_set(3072, 12), 3); // four sets
        assert_eq!(rows_per_l1_set(1536, 12), 2); // k = 384: eight sets
        assert_eq!(rows_per_l1_set(4 * 1040, 12), 1);
    }

    #[test]
    fn partition_covers_once_and_balances() {
        for &(m, n) in &[
            (1, 1),
            (7, 13),
            (64, 32),
            (100, 3),
            (4096, 3072),
            (768, 128),
            (768, 512),
            (250, 700),
        ] {
            for (threads, k) in (1..=5).flat_map(|t| [(t, 1), (t, 128), (t, 4096)]) {
                let parts = partition(m, k, n, 12, 32, threads);
                let mut seen = vec![0u8; m * n];
                for t in &parts {
                    assert!(t.m0 % 12 == 0 && t.n0 % 32 == 0, "{t:?}");
                    for i in t.m0..t.m1 {
                        for j in t.n0..t.n1 {
                            seen[i * n + j] += 1;
                        }
                    }
                }
                assert!(
                    seen.iter().all(|&s| s == 1),
                    "partition({m},{k},{n},{threads})"
                );
                let most = m.div_ceil(12).max(n.div_ceil(32));
                assert_eq!(
                    parts.len(),
                    threads.min(most),
                    "partition({m},{k},{n},{threads})"
                );
            }
        }
    }

    #[test]
    fn partition_splits_rows_only_where_columns_would_share_short_rows() {
        // (m, k, n) on 2 threads: true = along m.
        for &(m, k, n, rows) in &[
            (768, 128, 512, true),
            (768, 512, 512, true),
            (192, 128, 512, true),
            (96, 256, 512, false),
            (192, 512, 512, false),
            (4096, 128, 3072, false),
            (4096, 768, 3072, false),
            (768, 512, 128, true),
        ] {
            let parts = partition(m, k, n, 12, 32, 2);
            let along_m = parts.iter().all(|t| t.n0 == 0 && t.n1 == n);
            assert_eq!(along_m, rows, "partition({m},{k},{n},2): {parts:?}");
        }
    }

    #[test]
    fn amx_reads_a_in_place_with_one_column_block() {
        use super::super::amx::Amx;
        use super::super::avx512::Avx512;
        use super::super::pack::{Bf16, F32};
        // (m, n, k): P·V of 64-wide heads and 768 × 512 × 128 have one AMX column block,
        // GPT-2's 4096 × 768 × 3072 four, 4096 × 768 × 1536 and 1024³ two. With one block,
        // past 256 columns only up to a depth of 256.
        for &(m, n, k, in_place) in &[
            (512, 64, 512, true),
            (768, 128, 512, true),
            (512, 512, 64, true),
            (4096, 256, 768, true),
            (1024, 1024, 64, true),
            (2048, 2048, 256, true),
            (512, 512, 512, false),
            (4096, 768, 768, false),
            (4096, 384, 768, false),
            (4096, 3072, 768, false),
            (4096, 1536, 768, false),
            (1024, 1024, 1024, false),
            // Rows 8 KiB and 4 KiB apart (all 32 in one L1 set): in place only up to
            // DIRECT_A_ANY_STRIDE_MAX_N columns.
            (4096, 8, 4096, true),
            (4096, 96, 4096, true),
            (2048, 128, 2048, false),
        ] {
            let l = GemmLayout::row_major(m, n, k);
            assert_eq!(direct_a::<Amx, Bf16, Bf16>(&l), in_place, "AMX {m}x{n}x{k}");
        }
        // The f32 kernel reads A in place whatever its column blocks (here six); with rows
        // 16 KiB apart (12 in one L1 set) up to two B panels of columns.
        // With at most four row tiles, up to four panels of a row-major B read in place.
        for &(m, n, k, in_place) in &[
            (4096, 3072, 768, true),
            (4096, 16, 4096, true),
            (4096, 64, 4096, true),
            (4096, 65, 4096, false),
            (48, 128, 4096, true),
            (49, 128, 4096, false),
            (48, 129, 4096, false),
        ] {
            let l = GemmLayout::row_major(m, n, k);
            assert_eq!(
                direct_a::<Avx512, F32, F32>(&l),
                in_place,
                "f32 {m}x{n}x{k}"
            );
        }
    }

    #[test]
    fn deep_problems_take_up_to_nc_one_block_columns_in_one_block() {
        use super::super::avx512::Avx512;
        // (n, k, column blocks) for the AVX-512 f32 kernel (NC 512, NC_ONE_BLOCK 768, KC
        // 384, depths up to 640 in one block).
        for &(n, k, count) in &[
            (768, 3072, 1),
            (700, 1200, 1),
            (768, 769, 1),
            (768, 768, 2),
            (768, 640, 2),
            (512, 100, 1),
            (769, 3072, 2),
            (1024, 3072, 2),
        ] {
            let b: Vec<(usize, usize)> = n_blocks::<Avx512>(n, k).collect();
            assert_eq!(b.len(), count, "n {n} k {k}: {b:?}");
            assert_eq!(
                b.iter().map(|&(_, len)| len).sum::<usize>(),
                n,
                "n {n} k {k}"
            );
        }
    }

    #[test]
    fn small_packed_a_against_wide_c_takes_column_parts() {
        use super::super::amx::Amx;
        use super::super::avx512::Avx512;
        let l = |m, k, n| GemmLayout::row_major(m, n, k);
        // f32: 40 rows (4 panels of 12, split by rows on 2 threads), n ≥ 8 · 2 · m.
        assert!(small_packed_a::<Avx512>(&l(40, 300, 1010), 2));
        assert!(!small_packed_a::<Avx512>(&l(40, 300, 1010), 3));
        assert!(!small_packed_a::<Avx512>(&l(4096, 768, 3072), 2));
        // AMX: 64 rows split by rows; 96 rows (3 panels) are split by columns already.
        assert!(small_packed_a::<Amx>(&l(64, 300, 2100), 2));
        assert!(small_packed_a::<Amx>(&l(256, 768, 50257), 2));
        assert!(!small_packed_a::<Amx>(&l(96, 768, 3072), 2));
        let parts = column_parts(40, 1010, 32, 3);
        assert_eq!(parts.len(), 3);
        assert!(parts
            .iter()
            .all(|t| t.m0 == 0 && t.m1 == 40 && t.n0 % 32 == 0));
        assert_eq!(parts[0].n0, 0);
        assert_eq!(parts[2].n1, 1010);
        assert!(parts.windows(2).all(|w| w[0].n1 == w[1].n0));
    }

    #[test]
    fn few_rows_beside_a_in_place_take_b_rows_in_place() {
        use super::super::avx512::Avx512;
        use super::super::pack::F32;
        use super::super::scalar::Scalar;
        // B: 100 rows of 64 values, row-major.
        let data = vec![0.0f32; 100 * 64];
        let b = View {
            data: &data,
            off: 0,
            rs: 64,
            cs: 1,
        };
        let rows = |b: View<'_, f32>, a_in_place: bool, m: usize, pc: usize, kc: usize| {
            match b_block_in_place::<Avx512, F32>(b, a_in_place, m, 0, 64, pc, kc) {
                Some(BPanels::Rows { from, rs }) => Some((from.len(), rs)),
                _ => None,
            }
        };
        // Up to four 12-row tiles, beside A in place.
        assert_eq!(rows(b, true, 48, 10, 50), Some((90 * 64, 64)));
        assert_eq!(rows(b, true, 49, 10, 50), None);
        assert_eq!(rows(b, false, 12, 10, 50), None);
        // The last block: its last row's two panels end at B's end.
        assert_eq!(rows(b, true, 12, 60, 40), Some((40 * 64, 64)));
        // Columns 40.. of a 64-wide row: the second panel's loads would pass the end.
        let narrow = View { off: 40, ..b };
        assert_eq!(rows(narrow, true, 12, 0, 90), Some((100 * 64 - 40, 64)));
        assert_eq!(rows(narrow, true, 12, 10, 90), None);
        // Rows too far apart, columns not contiguous, a kernel that packs B.
        let wide = View { rs: 130, ..b };
        assert_eq!(rows(wide, true, 12, 0, 10), None);
        let strided = View { cs: 2, ..b };
        assert_eq!(rows(strided, true, 12, 0, 10), None);
        assert!(b_block_in_place::<Scalar, F32>(b, true, 8, 0, 64, 0, 10).is_none());
    }

    /// Aᵀ·B reads A in place against at most 64 columns unless A's k steps are a multiple
    /// of 4 KiB apart, and only on the kernel that can (f32 AVX-512).
    #[test]
    fn transposed_a_in_place_for_narrow_c_off_4k_strides() {
        use super::super::avx512::Avx512;
        use super::super::pack::F32;
        use super::super::scalar::Scalar;
        let ta = |m: usize, k: usize, n: usize, a_cs: usize| GemmLayout {
            a_rs: 1,
            a_cs,
            ..GemmLayout::row_major(m, n, k)
        };
        for (l, want) in [
            (ta(512, 512, 64, 512), true),
            (ta(64, 64, 32, 64), true),
            (ta(1536, 1024, 64, 1536), true),
            (ta(512, 768, 65, 512), false),
            (ta(1024, 768, 64, 1024), false),
            (ta(2048, 2048, 64, 2048), false),
            (ta(8, 100, 16, 0), false),
            (GemmLayout::row_major(512, 64, 512), false),
        ] {
            assert_eq!(transposed_a_in_place::<Avx512, F32>(&l), want, "{l:?}");
            assert!(!transposed_a_in_place::<Scalar, F32>(&l), "{l:?}");
        }
    }

    #[test]
    fn narrow_c_with_a_in_place_takes_deep_depth_blocks() {
        use super::super::amx::Amx;
        use super::super::avx512::Avx512;
        // Packed B within 512 KiB: f32 32 columns a step (128 bytes) up to 32, 64 up to 64.
        assert_eq!(deep_kc::<Avx512>(1), Some(4096));
        assert_eq!(deep_kc::<Avx512>(32), Some(4096));
        assert_eq!(deep_kc::<Avx512>(40), Some(2048));
        assert_eq!(deep_kc::<Avx512>(64), Some(2048));
        assert_eq!(deep_kc::<Avx512>(65), None);
        // AMX: bf16 pairs, whole 32-step blocks (96 columns: 2730 → 2720).
        assert_eq!(deep_kc::<Amx>(20), Some(8192));
        assert_eq!(deep_kc::<Amx>(64), Some(4096));
        assert_eq!(deep_kc::<Amx>(90), Some(2720));
        assert_eq!(deep_kc::<Amx>(97), None);
        let f32_blocks =
            |k, n, in_place| depth_blocks::<Avx512>(k, n, in_place).collect::<Vec<_>>();
        assert_eq!(
            f32_blocks(4100, 40, true),
            [(0, 2048), (2048, 2048), (4096, 4)]
        );
        assert_eq!(f32_blocks(2000, 40, true), [(0, 2000)]);
        // Packed A, or a wider C: KC's blocks.
        assert_eq!(
            f32_blocks(1000, 40, false),
            [(0, 384), (384, 384), (768, 232)]
        );
        assert_eq!(
            f32_blocks(1000, 65, true),
            [(0, 384), (384, 384), (768, 232)]
        );
        // AMX cuts even blocks of whole 32-step units.
        let amx: Vec<_> = depth_blocks::<Amx>(5600, 70, true).collect();
        assert_eq!(amx, [(0, 1888), (1888, 1888), (3776, 1824)]);
    }

    #[test]
    fn blocks_cover_once_within_max_and_even() {
        for total in [1, 31, 32, 100, 512, 768, 769, 1024, 2048, 3072, 3100] {
            for (max, unit) in [(384, 1), (768, 32), (512, 32)] {
                for even in [false, true] {
                    let b: Vec<(usize, usize)> = blocks(total, max, unit, even).collect();
                    let what = format!("total {total} max {max} unit {unit} even {even}");
                    assert_eq!(b.len(), total.div_ceil(max), "{what}: block count");
                    let mut next = 0;
                    for (i, &(s, len)) in b.iter().enumerate() {
                        assert_eq!(s, next, "{what}: gap or overlap");
                        assert!(len > 0 && len <= max, "{what}: block length {len}");
                        if i + 1 < b.len() {
                            assert_eq!(len % unit, 0, "{what}: inner block not whole units");
                            if even {
                                assert_eq!(len, b[0].1, "{what}: uneven inner blocks");
                            }
                        }
                        next = s + len;
                    }
                    assert_eq!(next, total, "{what}: coverage");
                }
            }
        }
        // Even: 1024 in two halves, not 768 + 256.
        assert_eq!(
            blocks(1024, 768, 32, true).collect::<Vec<_>>(),
            [(0, 512), (512, 512)]
        );
    }

    #[test]
    fn split_partitions_every_shape() {
        for &(m, nc) in &[
            (1, 1),
            (7, 13),
            (12, 32),
            (64, 1024),
            (100, 3),
            (4096, 1024),
            (250, 700),
        ] {
            for threads in 1..=5 {
                covers(m, nc, 12, 32, 192, threads);
                covers(m, nc, 6, 16, 96, threads);
            }
        }
    }
}
