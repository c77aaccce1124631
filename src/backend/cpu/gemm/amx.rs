//! AMX micro-kernel: bf16 inputs, f32 accumulation, a 32 × 32 tile of C held in four
//! 16 × 16 f32 tile registers (tmm0–3). Per 32-long k block it loads two A tiles (rows
//! 0–15 / 16–31, 16 rows × 32 bf16) and two B tiles (columns 0–15 / 16–31, 16 k-pair rows ×
//! 16 column pairs) and issues four `tdpbf16ps`:
//!   C[i, j] += Σ_q A[i, 2q]·B[2q, j] + A[i, 2q+1]·B[2q+1, j].
//! Packing: A with whole 32-long k rows (KU_A = 32: a 16-row slab is one tile, stride 64
//! bytes), B in k pairs (KU_B = 2: a 32-column panel row is 128 bytes, each tile takes half),
//! k zero-padded to 32. A bf16 A with k contiguous is instead read in place (a tile row is
//! 64 bytes of one A row, rows `a_rs` apart), which saves packing it when C has few columns.
//! A full 32 × 32 C tile with unit column stride is loaded (when accumulating) and stored by
//! the tile instructions; edge and strided tiles go through a buffer. Tile instructions are
//! not exposed as stable intrinsics, so the loop is inline assembly. Only used when
//! `isa::amx_bf16_usable()` (CPU, XCR0 and the Linux permission grant); each thread loads
//! the tile configuration once. The kernel is generic over its tile unit: the CPU's
//! (`Hardware`, the assembly) or a scalar model of it (`tile_emu::Emulated`), on which the
//! unit tests, and with feature `emu` the GEMM tests, run everything but the assembly on CPUs
//! without AMX.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use half::bf16;

use super::kernel::{store_tile_generic, CTile, MicroKernel};
use super::round_bf16::{round_tile, Rounding, Tile};
use crate::backend::cpu::isa;

/// The AMX micro-kernel on tile unit `T`: the CPU's (`Amx`) or, with feature `emu`, a scalar
/// model of it (`AmxEmulated`) that runs the same packing, driver and kernel code on any CPU.
pub(super) struct AmxKernel<T>(PhantomData<T>);

/// The AMX micro-kernel on the CPU's tile unit.
pub(super) type Amx = AmxKernel<Hardware>;
/// The AMX micro-kernel on the scalar model of the tile unit (`tile_emu`).
#[cfg(feature = "emu")]
pub(super) type AmxEmulated = AmxKernel<super::tile_emu::Emulated>;

/// One 32 × 32 tile product: C[0..32, 0..32] (= or +=) Σ over `blocks` k blocks of 32 of
/// A·B, C at `c` with a row stride of `c_stride` bytes (columns contiguous): tmm0/tmm1 are
/// rows 0–15 at columns 0–15 / 16–31, tmm2/tmm3 rows 16–31. C is loaded first when `load`.
#[derive(Clone, Copy)]
pub(super) struct TileProduct {
    pub(super) blocks: usize,
    pub(super) rows: TileRows,
    pub(super) a: *const bf16,
    pub(super) b: *const bf16,
    pub(super) c: *mut f32,
    pub(super) c_stride: isize,
    pub(super) load: bool,
}

/// One step of the rounding pipeline (`AmxKernel::run_rounded_row`): the sums of the
/// current 32 × 32 tile (`blocks`, `rows`, `a`, `b` as in `TileProduct`, from zero), rows
/// 0–15 stored at `cur` (a 32 × 32 f32 tile, 128-byte rows) and rows 16–31 left pending in
/// the unit (tmm2 / tmm3); and, between its products, the previous tile's pending rows
/// stored at `prev` + 16 rows, then that whole tile (32 × 32 f32 at `prev`) rounded to bf16
/// (nearest even, `vcvtne2ps2bf16`) into `prev_out`, rows `out_stride` bytes apart.
#[derive(Clone, Copy)]
pub(super) struct PipelinedProduct {
    pub(super) blocks: usize,
    pub(super) rows: TileRows,
    pub(super) a: *const bf16,
    pub(super) b: *const bf16,
    pub(super) cur: *mut f32,
    pub(super) prev: *mut f32,
    pub(super) prev_out: *mut bf16,
    pub(super) out_stride: isize,
}

/// What computes a `TileProduct`: the CPU's tile unit or a model of it.
pub(super) trait Tiles: Sync {
    /// Computes and stores the tile; afterwards tmm2 / tmm3 still hold its rows 16–31, as a
    /// pipeline step leaves them (`run_rounded_row` starts a row of tiles with this).
    ///
    /// # Safety
    /// The unit must be usable (for the hardware, `isa::amx_bf16_usable()`); A holds
    /// `blocks` k blocks laid out as `rows` says (32 rows × 32 bf16 each) and `b` as many
    /// packed B blocks (16 pair rows × 32 column pairs); the 32 × 32 f32 at `c` with that row
    /// stride are readable (when `load`) and writable.
    unsafe fn tile_product(t: TileProduct);

    /// Whether `pipelined_product` can run here (the hardware's rounds with AVX-512 BF16).
    fn pipeline_usable() -> bool;

    /// One step of the rounding pipeline.
    ///
    /// # Safety
    /// As `tile_product` for the current tile; `cur` and `prev` are distinct 32 × 32 f32
    /// tiles (4 KiB, 128-byte rows) valid for writes, `prev`'s rows 0–15 written by the
    /// previous product (`tile_product` or a step); the 32 rows of 64 bytes at `prev_out`
    /// with that stride are writable; `pipeline_usable()`.
    unsafe fn pipelined_product(t: PipelinedProduct);

    /// Stores the rows 16–31 the last pipeline step left pending at `cur` + 16 rows.
    ///
    /// # Safety
    /// A pipeline step ran last on this thread's unit; `cur` is a 32 × 32 f32 tile as above.
    unsafe fn store_pending(cur: *mut f32);
}

/// The CPU's tile unit (inline assembly).
pub(super) struct Hardware;

const MR: usize = 32;
const NR: usize = 32;

/// LDTILECFG operand: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1; // palette 1
    let mut t = 0;
    while t < 8 {
        // colsb[t] (u16 little-endian at 16 + 2t) = 64 bytes; rows[t] (u8 at 48 + t) = 16.
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
}

static CONFIG: TileConfig = tile_config();

impl<T: Tiles> MicroKernel for AmxKernel<T> {
    type P = bf16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 32;
    const KU_A: usize = 32;
    const KU_B: usize = 2;
    /// A tile product does 16 times the work per byte of A and B that the f32 kernel does,
    /// so C's traffic weighs: each further depth block loads and stores all of C once more,
    /// and each further column block reads A once more. So the depth blocks are as deep as
    /// 768 and even (k = 768 in one block, not 512 + 256), and the column blocks as wide as
    /// a B block of at most 768 × 768 values (1.1 MiB of the 2 MiB L2) allows at that depth.
    /// Against KC = 512, NC = 1024 (Intel Xeon Emerald Rapids, 1 thread, best of 4
    /// alternations): 4096 × 768 × 3072 +7–10%, 4096 × 3072 × 768 +3–10%, 2048³ +2%,
    /// 1024³ and 512³ unchanged; 2 threads +7% / +5.5%. KC = 1024 with NC = 512 lost 17% on
    /// 4096 × 3072 × 768 (A read twice), a B block of 1.5 MiB lost on every shape.
    const KC: usize = 768;
    /// Up to k = 1024 in one block: C (or a bf16 C's f32 stage) is then written once, not
    /// stored and reloaded between two blocks of 512, at the cost of a second pass over A
    /// (the column blocks narrow to 576 values at that depth). 1024³, 1 thread, bf16 C,
    /// medians of 6 alternations: 1178 → 1299 GFLOP/s; deeper problems lost with KC = 1024
    /// throughout (4096 × 3072 × 768 −5%), so they keep KC.
    const KC_ONE_BLOCK: usize = 1024;
    /// A 32-row A panel of depth 768 is 48 KiB, the whole L1, so each of its tiles' k
    /// blocks came from L2 beside B's (4 KiB of tile loads per four 16-cycle products):
    /// swept in sub-blocks of about 256 (past depth 512; 16 KiB of A stays in L1, B's 16 KiB
    /// per panel streams, prefetched) the tiles wait on half the traffic. The full tiles'
    /// sums stay in C, the stage or one f32 tile per B panel between sweeps; the depth
    /// blocks, B blocks and packing stay as they are. Figures at `driver::block` and in the
    /// commit (4096 × 3072 × 768 bf16 C +16–18%, 2048³ +13–18%).
    const KC_INNER: usize = 256;
    const MC: usize = 128;
    const NC: usize = 768;
    const EVEN_BLOCKS: bool = true;
    const B_BLOCK: Option<usize> = Some(768 * 768);

    unsafe fn run(kc: usize, a: *const bf16, b: *const bf16, ct: CTile, accumulate: bool) {
        // SAFETY: forwarded contract (the dispatcher selects this kernel only when
        // `amx_bf16_usable()`); packed A blocks are 32 rows of 64 bytes, 2048 bytes apart.
        unsafe { product::<T>(kc.div_ceil(32), PACKED_A, a, b, ct, accumulate) }
    }

    /// A tiles loaded straight from A's rows (16 rows of 64 bytes, `a_rs` apart) for whole
    /// 32-row tiles and whole 32-long k blocks; a k tail shorter than 32 goes through a
    /// zero-padded copy, and an edge tile of fewer rows through the packed kernel (a tile
    /// load would read rows past the end of A).
    const DIRECT_A: bool = true;
    /// In place only with one column block: each further block reads A's 32-row panels
    /// again, row by row from L2 or beyond, where a packed panel is one stream. Packed whole
    /// against in place (bf16 C, 1 thread, medians of 15–21 alternations): 4096 × 768 × 3072
    /// (4 column blocks) +15%, 2048 × 768 × 3072 +15%, 4096 × 768 × 2304 +11%, 1024 × 768 ×
    /// 3072 +8%, 4096 × 768 × 1536 (2 blocks) +7%, 1024³ and 2048³ ±1%; 2 threads
    /// 4096 × 768 × 3072 +10%, 4096 × 768 × 2304 +4%. With one block, packing only costs:
    /// P·V 512 × 512 × 64 × 12 −21%, 768 × 512 × 128 −10%. Counted per thread: 4096 × 256
    /// × 4096 on 2 threads (one block each) in place against packed, bf16 / f32 C, +9% /
    /// +11% (Intel Xeon, family 6 model 167, 7 pairs).
    const DIRECT_A_MAX_COLUMN_BLOCKS: usize = 1;
    /// And with one block, in place only up to 256 columns or a depth of 256 (an A tile of
    /// 32 × 256 bf16 values, 16 KiB, stays in L1 across the B panels). Past both, every B
    /// panel re-reads the tile's 32 rows from L2, and a packed tile, one stream, is faster.
    /// Packed against in place, bf16 C, in process, medians of 11–15 (two or three rounds
    /// each), 1 / 2 threads: 512³ +7% / −7% to +43%, 4096 × 768 × 768 +2–15% / +16–86%,
    /// 2048 × 768 × 768 +10–13% / +6–82%, 4096 × 768 × 512 +12% / +1–80%, 4096 × 512 × 768
    /// +9–11% / +8–76%, 1024 × 768 × 768 +7–13% / +3–6%, 4096 × 768 × 384 −1% to +9% / −1%
    /// to +2%. At 256 columns or fewer packing lost (1 thread): 4096 × 768 × 256 −2% to
    /// −6%, × 128 −13% to −23%, 768 × 512 × 256 −6% to −21%, P·V 512 × 512 × 64 × 12 −21%
    /// to −36%; and at a depth of 64 (1024 × 64 × 1024) −3% to −5%. The paired check against
    /// PyTorch at a loaded moment showed no gain (tools/results, session 24): to watch.
    const DIRECT_A_MAX_N: usize = 256;
    const DIRECT_A_ANY_N_MAX_K: usize = 256;
    /// 32 rows, each touched once per 32-long k block: at 8 per set (rows 1 KiB apart) the
    /// A block still fits the 12 ways beside the streaming B tiles.
    const MAX_ROWS_PER_L1_SET: usize = 8;
    /// Each 64-byte line of an A row is one tile row, loaded once per column tile: with
    /// three column tiles or fewer, rows crowding one L1 set cost less than packing. A bf16,
    /// 1 thread, in place against packed (rows 4–8 KiB apart, in-process alternation, medians
    /// of 15): 4096 × 4096 × 16 1.44×, × 32 1.45×, 2048 × 2048 × 32 1.45×, 4096 × 1024 × 32
    /// 1.56×, 4096 × 2048 × 64 1.29×, 2048 × 4096 × 64 1.10×, × 96 1.10×; but × 128 0.97×,
    /// 2048 × 2048 × 128 0.96×, × 192 0.85×.
    const DIRECT_A_ANY_STRIDE_MAX_N: usize = 96;

    unsafe fn run_direct_a(
        kc: usize,
        a: *const bf16,
        a_rs: usize,
        b: *const bf16,
        ct: CTile,
        accumulate: bool,
    ) {
        if ct.mr < MR {
            // SAFETY: forwarded contract.
            return unsafe { edge_rows::<T>(kc, a, a_rs, b, ct, accumulate) };
        }
        let whole = kc / 32;
        let mut acc = accumulate;
        if whole > 0 {
            let rows = in_place_rows(a_rs);
            // SAFETY: 32 rows of A from `a` hold ≥ 32·whole values each (the caller's
            // contract); the rest is forwarded.
            unsafe { product::<T>(whole, rows, a, b, ct, acc) };
            acc = true;
        }
        if kc > whole * 32 {
            // SAFETY: forwarded contract; `whole` whole k blocks are done.
            unsafe { k_tail::<T>(kc, whole, a, a_rs, b, ct, acc) };
        }
    }

    /// The rounding of a bf16 C's tiles overlapped with the next tile's products (as oneDNN's
    /// AMX kernels interleave their tile stores and conversions): tile t's rows 0–15 are
    /// stored right after its last products, its rows 16–31 during tile t + 1's first
    /// products, and tile t is rounded from L1 between tile t + 1's products. Rounding after
    /// each tile instead waited on the tile stores and left the tile unit idle: Q·Kᵀ of
    /// 64-wide heads (512 × 64 × 512 × 12, k = 64) spent as long rounding as multiplying.
    /// A in place with a k tail goes tile by tile (its tail is copied per tile).
    unsafe fn run_rounded_row(
        kc: usize,
        a: *const bf16,
        a_rs: usize,
        b: *const bf16,
        tiles: usize,
        out: *mut bf16,
        out_rs: usize,
        after_tile: &mut dyn FnMut(usize),
    ) -> bool {
        let blocks = kc.div_ceil(32);
        if tiles == 0
            || !PIPELINE_BLOCKS.contains(&blocks)
            || (a_rs != 0 && !kc.is_multiple_of(32))
            || !T::pipeline_usable()
        {
            return false;
        }
        let rows = if a_rs == 0 {
            PACKED_A
        } else {
            in_place_rows(a_rs)
        };
        let panel = NR * blocks * 32;
        let mut sums = MaybeUninit::<[SumTile; 2]>::uninit();
        let sums0 = sums.as_mut_ptr().cast::<f32>();
        let sum = |t: usize| sums0.wrapping_add((t % 2) * MR * NR);
        let out_tile = |t: usize| Tile::new(out.wrapping_add(t * NR), out_rs, 1, MR, NR);
        let rounding = Rounding::at(isa::active());
        // SAFETY: A's blocks where `rows` says and B's panel 0 (the caller's contract); the
        // sums into `sum(0)`, 32 rows of 128 bytes. Tile 0 has no previous tile to round: a
        // plain product, which leaves its rows 16–31 in tmm2 / tmm3 as a step does.
        unsafe {
            T::tile_product(TileProduct {
                blocks,
                rows,
                a,
                b,
                c: sum(0),
                c_stride: 128,
                load: false,
            })
        };
        after_tile(0);
        for t in 1..tiles {
            // SAFETY: A's blocks where `rows` says and B's panel t (the caller's contract);
            // `sum(t)` and `sum(t - 1)` are distinct 4 KiB tiles, the latter's rows 0–15
            // written by the previous product; C's tile t − 1 is the caller's; checked usable
            // above.
            unsafe {
                T::pipelined_product(PipelinedProduct {
                    blocks,
                    rows,
                    a,
                    b: b.wrapping_add(t * panel),
                    cur: sum(t),
                    prev: sum(t - 1),
                    prev_out: out_tile(t - 1).ptr,
                    out_stride: out_rs as isize * 2,
                })
            };
            after_tile(t);
        }
        let last = tiles - 1;
        // SAFETY: the last step left its rows 16–31 pending; then the tile is complete, and
        // C's tile `last` is the caller's.
        unsafe {
            T::store_pending(sum(last));
            round_tile(
                rounding,
                Tile::new(sum(last), NR, 1, MR, NR),
                out_tile(last),
            );
        }
        true
    }
}

/// The depths (in k blocks of 32) that `run_rounded_row` pipelines. Against rounding tile by
/// tile (Intel Xeon Emerald Rapids, medians of 25 alternations, 1 / 2 threads): k = 64 +25–41%
/// / +36% (512 × 64 × 512 × 12 Q·Kᵀ), k = 96 +18%, k = 128 +15–25% / +16%, k = 160 +16%,
/// k = 256 +3–7% / +7%; but k = 32 −11–16% (four products cannot cover a tile's rounding)
/// and deeper products lose (k = 384 −8%, k = 512 P·V −7.5%, k = 768 −7%): the rounding is a
/// small part of them.
const PIPELINE_BLOCKS: std::ops::RangeInclusive<usize> = 2..=8;

/// A 32 × 32 f32 tile on a cache line boundary (128-byte rows).
#[repr(C, align(64))]
struct SumTile([f32; MR * NR]);

/// Copies `rows` rows of A (k contiguous, `a_rs` apart), columns p0 .. p0 + len, into the
/// 32-value rows of a packed A block.
///
/// # Safety
/// Rows i < rows of A from `a` hold p0 + len readable values.
#[inline(always)]
unsafe fn copy_rows(
    panel: &mut [bf16],
    a: *const bf16,
    a_rs: usize,
    p0: usize,
    len: usize,
    rows: usize,
) {
    for (i, out) in panel.chunks_exact_mut(32).take(rows).enumerate() {
        // SAFETY: the caller's contract.
        let row = unsafe { std::slice::from_raw_parts(a.add(i * a_rs + p0), len) };
        out[..len].copy_from_slice(row);
    }
}

/// `run_direct_a` for an edge tile of mr < 32 rows: packs up to GROUP k blocks at a time
/// (tail included) and runs the packed kernel on them, accumulating after the first group.
/// Out of line, as is `k_tail`: their 32 KiB and 2 KiB buffers would otherwise enlarge the
/// frame of every full-tile call, whose prologue then probes each stack page (with k = 64,
/// Q·Kᵀ of 64-wide heads, that probe loop took about 5% of the GEMM).
///
/// # Safety
/// `MicroKernel::run_direct_a`'s contract.
#[inline(never)]
unsafe fn edge_rows<T: Tiles>(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    const GROUP: usize = 16;
    let mut packed = [bf16::ZERO; GROUP * MR * 32];
    let mut acc = accumulate;
    for p0 in (0..kc).step_by(GROUP * 32) {
        let len = (kc - p0).min(GROUP * 32);
        let blocks = len.div_ceil(32);
        for (kb, blk) in packed.chunks_exact_mut(MR * 32).take(blocks).enumerate() {
            blk.fill(bf16::ZERO);
            // SAFETY: rows i < mr of A hold kc values, and this copy ends at or before kc.
            unsafe { copy_rows(blk, a, a_rs, p0 + kb * 32, (len - kb * 32).min(32), ct.mr) };
        }
        let bg = b.wrapping_add(p0 * NR);
        // SAFETY: `packed` holds `blocks` packed A blocks and the B panel the blocks from
        // p0 / 32 on; the rest is forwarded.
        unsafe { product::<T>(blocks, PACKED_A, packed.as_ptr(), bg, ct, acc) };
        acc = true;
    }
}

/// The last, partial k block (kc − 32·whole < 32 values) of a full 32-row tile with A in
/// place: through a zero-padded copy of it.
///
/// # Safety
/// `MicroKernel::run_direct_a`'s contract, with mr = 32.
#[inline(never)]
unsafe fn k_tail<T: Tiles>(
    kc: usize,
    whole: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    acc: bool,
) {
    let mut panel = [bf16::ZERO; MR * 32];
    // SAFETY: the 32 rows of A hold kc values each.
    unsafe { copy_rows(&mut panel, a, a_rs, whole * 32, kc - whole * 32, MR) };
    // The B panel's k blocks are 2048 bytes (16 pair rows × 32 columns) each.
    let b_tail = b.wrapping_add(whole * 32 * NR);
    // SAFETY: `panel` is one packed A block, zero past the tail; the B panel holds
    // `whole + 1` blocks (kc padded to 32); the rest is forwarded.
    unsafe { product::<T>(1, PACKED_A, panel.as_ptr(), b_tail, ct, acc) };
}

/// Where the two 16-row A tiles of a k block lie: rows `stride` bytes apart, rows 16–31
/// `second_half` bytes after rows 0–15, the next k block `step` bytes on.
#[derive(Clone, Copy)]
pub(super) struct TileRows {
    pub(super) stride: isize,
    pub(super) second_half: isize,
    pub(super) step: isize,
}

/// A read in place: rows `a_rs` values apart, each k block the next 32 values (64 bytes) of
/// the rows.
fn in_place_rows(a_rs: usize) -> TileRows {
    TileRows {
        stride: a_rs as isize * 2,
        second_half: 16 * a_rs as isize * 2,
        step: 64,
    }
}

/// A packed A panel: per k block 32 rows × 64 bytes (two 1024-byte tiles), blocks 2048 bytes
/// apart.
const PACKED_A: TileRows = TileRows {
    stride: 64,
    second_half: 1024,
    step: 2048,
};

/// C (= or +=) A·B over `blocks` k blocks of 32 for one 32 × 32 tile (mr × nr valid): a full
/// tile with unit column stride is loaded and stored by the tile instructions in place,
/// any other through a 32 × 32 buffer.
///
/// # Safety
/// AMX tiles must be usable; A's tiles as `rows` says and `blocks` packed B blocks must be
/// readable; the mr × nr tile of C at `c` (strides `rs`, `cs`) must be valid.
#[inline(always)]
unsafe fn product<T: Tiles>(
    blocks: usize,
    rows: TileRows,
    a: *const bf16,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let CTile { c, rs, cs, mr, nr } = ct;
    if mr == MR && nr == NR && cs == 1 {
        // SAFETY: a full tile with unit column stride: 32 rows of 32 f32, rs apart.
        unsafe {
            T::tile_product(TileProduct {
                blocks,
                rows,
                a,
                b,
                c,
                c_stride: rs * 4,
                load: accumulate,
            })
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { product_through_buffer::<T>(blocks, rows, a, b, ct, accumulate) }
    }
}

/// `product` for an edge or strided tile of C, through a 32 × 32 buffer. Out of line so that
/// the 4 KiB buffer is not in the frame (and stack probe) of every full-tile call.
///
/// # Safety
/// As `product`.
#[inline(never)]
unsafe fn product_through_buffer<T: Tiles>(
    blocks: usize,
    rows: TileRows,
    a: *const bf16,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let mut tile = [0.0f32; MR * NR];
    // SAFETY: `tile` is 32 rows of 128 bytes; the rest is the caller's contract.
    unsafe {
        T::tile_product(TileProduct {
            blocks,
            rows,
            a,
            b,
            c: tile.as_mut_ptr(),
            c_stride: NR as isize * 4,
            load: false,
        });
        store_tile_generic(&tile, NR, ct, accumulate);
    }
}

thread_local! {
    /// Whether this thread's tile configuration is loaded. It is loaded once, at a thread's
    /// first AMX tile, and kept (never `tilerelease`d): LDTILECFG costs about as much as
    /// a short tile product, and Linux saves the tile state on context switches.
    static CONFIGURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Loads this thread's tile configuration unless it already is.
///
/// # Safety
/// AMX tiles must be usable (`isa::amx_bf16_usable()`).
#[inline(always)]
unsafe fn configure() {
    if !CONFIGURED.get() {
        // SAFETY: the operand is a 64-byte aligned palette-1 configuration; the tile state is
        // permitted (the caller's contract).
        unsafe {
            std::arch::asm!("ldtilecfg [{cfg}]", cfg = in(reg) CONFIG.0.as_ptr(),
            options(nostack, readonly));
        }
        CONFIGURED.set(true);
    }
}

/// A 16 × 64-byte tile's worth of memory on a cache line boundary.
#[repr(C, align(64))]
struct TileMem([u16; 512]);

/// The tile unit's multiply-add peak: `iters` rounds of four independent `tdpbf16ps`
/// (tmm0–3 += tmm4/5 · tmm6/7, the operands loaded once, so no memory in the loop), each
/// 16 × 16 × 32 multiply-adds. Returns one sum of the result (keeps the work observable).
///
/// # Safety
/// AMX tiles must be usable (`isa::amx_bf16_usable()`).
pub(super) unsafe fn tdp_probe(iters: usize) -> f32 {
    // bf16 2^-10 everywhere: each product adds 32 · 2^-20 per element, far from overflow.
    let ones = TileMem([0x3A80; 512]);
    let mut out = TileMem([0; 512]);
    // SAFETY: tiles are usable (the caller's contract); the loads read 16 rows of 64 bytes
    // from `ones` (1 KiB), the store writes as many into `out`; the tiles are configured.
    unsafe {
        configure();
        std::arch::asm!(
            "tileloadd tmm4, [{p} + {s}*1]",
            "tileloadd tmm5, [{p} + {s}*1]",
            "tileloadd tmm6, [{p} + {s}*1]",
            "tileloadd tmm7, [{p} + {s}*1]",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "test {n}, {n}",
            "jz 3f",
            "2:",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            "3:",
            "tilestored [{o} + {s}*1], tmm3",
            p = in(reg) ones.0.as_ptr(),
            o = in(reg) out.0.as_mut_ptr(),
            s = in(reg) 64usize,
            n = inout(reg) iters => _,
            options(nostack),
        );
    }
    f32::from_bits(out.0[0] as u32 | (out.0[1] as u32) << 16)
}

impl Tiles for Hardware {
    #[inline(always)]
    unsafe fn tile_product(t: TileProduct) {
        let TileProduct {
            blocks,
            rows,
            a,
            b,
            c,
            c_stride,
            load,
        } = t;
        // SAFETY: the caller's contract (tiles usable).
        unsafe { configure() };
        // SAFETY: each k block of A is two tiles of 16 rows × 64 bytes where `rows` says, and of
        // the B panel 16 pair rows × 128 bytes (two tiles at +0 / +64 with stride 128), `blocks`
        // ≥ 1 of each; C spans 32 rows of `c_stride` bytes, 128 bytes each (the caller's
        // contract). The tiles are configured above.
        unsafe {
            std::arch::asm!(
                "test {ld}, {ld}",
                "jz 3f",
                "tileloadd tmm0, [{c} + {cs}*1]",
                "tileloadd tmm1, [{c} + {cs}*1 + 64]",
                "tileloadd tmm2, [{c16} + {cs}*1]",
                "tileloadd tmm3, [{c16} + {cs}*1 + 64]",
                "jmp 2f",
                "3:",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                block_products!(),
                next_block!(),
                "dec {n}",
                "jnz 2b",
                "tilestored [{c} + {cs}*1], tmm0",
                "tilestored [{c} + {cs}*1 + 64], tmm1",
                "tilestored [{c16} + {cs}*1], tmm2",
                "tilestored [{c16} + {cs}*1 + 64], tmm3",
                ld = in(reg) load as usize,
                a = inout(reg) a => _,
                a16 = inout(reg) a.wrapping_byte_offset(rows.second_half) => _,
                ars = in(reg) rows.stride,
                astep = in(reg) rows.step,
                b = inout(reg) b => _,
                n = inout(reg) blocks => _,
                c = in(reg) c,
                c16 = in(reg) c.wrapping_byte_offset(16 * c_stride),
                cs = in(reg) c_stride,
                s128 = in(reg) 128usize,
                options(nostack),
            );
        }
    }

    fn pipeline_usable() -> bool {
        isa::has_avx512_bf16()
    }

    #[inline(always)]
    unsafe fn pipelined_product(t: PipelinedProduct) {
        debug_assert!(
            t.blocks >= 2,
            "the pipeline's first and last k blocks are distinct"
        );
        let PipelinedProduct {
            blocks,
            rows,
            a,
            b,
            cur,
            prev,
            prev_out,
            out_stride,
        } = t;
        // SAFETY: the caller's contract (tiles usable).
        unsafe { configure() };
        // SAFETY: A's and B's blocks, `cur`, `prev` and `prev_out` as `Tiles` requires (the
        // caller's contract); the CPU has AVX-512 BF16 (`pipeline_usable`); zmm0 and zmm1
        // are declared clobbered.
        unsafe {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                pipeline_first_products!(),
                // Middle blocks: plain products.
                "sub {n}, 2",
                "jz 3f",
                "2:",
                next_block!(),
                block_products!(),
                "dec {n}",
                "jnz 2b",
                "3:",
                // Last block: the previous tile's rows 16–31 rounded between its
                // products, this tile's rows 0–15 stored as soon as they are done.
                next_block!(),
                "tileloadd tmm4, [{a} + {ars}*1]",
                "tileloadd tmm6, [{b} + {s128}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                round_8_rows!(),
                "tileloadd tmm7, [{b} + {s128}*1 + 64]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                round_8_rows!(),
                "tileloadd tmm5, [{a16} + {ars}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tilestored [{cur} + {s128}*1], tmm0",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tilestored [{cur} + {s128}*1 + 64], tmm1",
                a = inout(reg) a => _,
                a16 = inout(reg) a.wrapping_byte_offset(rows.second_half) => _,
                ars = in(reg) rows.stride,
                astep = in(reg) rows.step,
                b = inout(reg) b => _,
                n = inout(reg) blocks => _,
                cur = in(reg) cur,
                p = inout(reg) prev => _,
                o = inout(reg) prev_out => _,
                ors = in(reg) out_stride,
                s128 = in(reg) 128usize,
                out("zmm0") _, out("zmm1") _,
                options(nostack),
            );
        }
    }

    #[inline(always)]
    unsafe fn store_pending(cur: *mut f32) {
        // SAFETY: `cur` is a 32 × 32 f32 tile (the caller's contract); rows 16–31 are at
        // +2048 bytes, columns 16–31 at +64.
        unsafe {
            std::arch::asm!(
                "tilestored [{c} + {s128}*1 + 2048], tmm2",
                "tilestored [{c} + {s128}*1 + 2112], tmm3",
                c = in(reg) cur,
                s128 = in(reg) 128usize,
                options(nostack),
            );
        }
    }
}

/// The packed B block two k blocks ahead (2 KiB at `{b}` + 4096: 16 pair rows of 128 bytes,
/// 32 lines) brought into L1 under this block's products. The tile loads from L2 otherwise
/// wait on each line: bf16 C, `tools/ab_bins.py` against no prefetch (Intel AMX host, KVM
/// family 6 model 167, 5 pairs, old/new time 1 / 2 threads): 4096 × 768 × 3072 1.09 /
/// 1.08, 1024³ 1.04 / 1.07, 2048³ 1.02 / 1.04. One block ahead: 0.96–1.00 of two; four:
/// 0.99–1.03; A's next-but-one block as well (another 32 lines): 0.95–0.99.
macro_rules! prefetch_b_ahead {
    () => {
        concat!(
            "prefetcht0 [{b} + 4096]\n",
            "prefetcht0 [{b} + 4160]\n",
            "prefetcht0 [{b} + 4224]\n",
            "prefetcht0 [{b} + 4288]\n",
            "prefetcht0 [{b} + 4352]\n",
            "prefetcht0 [{b} + 4416]\n",
            "prefetcht0 [{b} + 4480]\n",
            "prefetcht0 [{b} + 4544]\n",
            "prefetcht0 [{b} + 4608]\n",
            "prefetcht0 [{b} + 4672]\n",
            "prefetcht0 [{b} + 4736]\n",
            "prefetcht0 [{b} + 4800]\n",
            "prefetcht0 [{b} + 4864]\n",
            "prefetcht0 [{b} + 4928]\n",
            "prefetcht0 [{b} + 4992]\n",
            "prefetcht0 [{b} + 5056]\n",
            "prefetcht0 [{b} + 5120]\n",
            "prefetcht0 [{b} + 5184]\n",
            "prefetcht0 [{b} + 5248]\n",
            "prefetcht0 [{b} + 5312]\n",
            "prefetcht0 [{b} + 5376]\n",
            "prefetcht0 [{b} + 5440]\n",
            "prefetcht0 [{b} + 5504]\n",
            "prefetcht0 [{b} + 5568]\n",
            "prefetcht0 [{b} + 5632]\n",
            "prefetcht0 [{b} + 5696]\n",
            "prefetcht0 [{b} + 5760]\n",
            "prefetcht0 [{b} + 5824]\n",
            "prefetcht0 [{b} + 5888]\n",
            "prefetcht0 [{b} + 5952]\n",
            "prefetcht0 [{b} + 6016]\n",
            "prefetcht0 [{b} + 6080]\n",
        )
    };
}
use prefetch_b_ahead;

/// One k block's products: C tiles tmm0–3 (rows 0–15 / 16–31 × columns 0–15 / 16–31) +=
/// A tiles tmm4 / tmm5 (rows 0–15 at `{a}`, 16–31 at `{a16}`, rows `{ars}` apart) · B tiles
/// tmm6 / tmm7 (columns 0–15 / 16–31 of the pair rows at `{b}`, 128 bytes apart). Each tile
/// load just before its first product, so loads overlap the products already issued (sq2048,
/// 1 thread: about 2% over four loads first).
macro_rules! block_products {
    () => {
        concat!(
            "tileloadd tmm4, [{a} + {ars}*1]\n",
            "tileloadd tmm6, [{b} + {s128}*1]\n",
            "tdpbf16ps tmm0, tmm4, tmm6\n",
            "tileloadd tmm7, [{b} + {s128}*1 + 64]\n",
            "tdpbf16ps tmm1, tmm4, tmm7\n",
            "tileloadd tmm5, [{a16} + {ars}*1]\n",
            "tdpbf16ps tmm2, tmm5, tmm6\n",
            "tdpbf16ps tmm3, tmm5, tmm7\n",
            prefetch_b_ahead!(),
        )
    };
}
use block_products;

/// A's and B's pointers on to the next k block.
macro_rules! next_block {
    () => {
        concat!(
            "add {a}, {astep}\n",
            "add {a16}, {astep}\n",
            "add {b}, 2048\n",
        )
    };
}
use next_block;

/// The first k block of a pipeline step: this tile's first products, the previous tile's
/// pending rows 16–31 (tmm2 / tmm3) stored at `{p}` + 16 rows and the tiles zeroed just
/// before their first product here, and the previous tile's rows 0–15 rounded between them.
macro_rules! pipeline_first_products {
    () => {
        concat!(
            "tileloadd tmm4, [{a} + {ars}*1]\n",
            "tileloadd tmm6, [{b} + {s128}*1]\n",
            "tdpbf16ps tmm0, tmm4, tmm6\n",
            "tilestored [{p} + {s128}*1 + 2048], tmm2\n",
            "tilezero tmm2\n",
            "tileloadd tmm7, [{b} + {s128}*1 + 64]\n",
            "tdpbf16ps tmm1, tmm4, tmm7\n",
            "tilestored [{p} + {s128}*1 + 2112], tmm3\n",
            "tilezero tmm3\n",
            "tileloadd tmm5, [{a16} + {ars}*1]\n",
            "tdpbf16ps tmm2, tmm5, tmm6\n",
            round_8_rows!(),
            "tdpbf16ps tmm3, tmm5, tmm7\n",
            round_8_rows!(),
        )
    };
}
use pipeline_first_products;

/// One row of the previous tile rounded: 32 f32 at `{p}` → 32 bf16 at `{o}`; then `{p}` and
/// `{o}` step to the next row. `vcvtne2ps2bf16` would read a subnormal as zero, but these
/// sums come straight from `tdpbf16ps`, which flushes subnormal results to zero.
macro_rules! round_row {
    () => {
        concat!(
            "vmovups zmm0, [{p}]\n",
            "vmovups zmm1, [{p} + 64]\n",
            "vcvtne2ps2bf16 zmm0, zmm1, zmm0\n",
            "vmovups [{o}], zmm0\n",
            "add {p}, 128\n",
            "add {o}, {ors}\n",
        )
    };
}
use round_row;

/// Eight rows of the previous tile rounded (`round_row`).
macro_rules! round_8_rows {
    () => {
        concat!(
            round_row!(),
            round_row!(),
            round_row!(),
            round_row!(),
            round_row!(),
            round_row!(),
            round_row!(),
            round_row!(),
        )
    };
}
use round_8_rows;

#[cfg(test)]
mod tests {
    //! The kernel's Rust side on the scalar model of the tile unit (`tile_emu`), which reads
    //! exactly the addresses and strides the assembly does: packed panels and A read in place
    //! give A·B on full, edge and strided tiles, with k tails, overwriting and accumulating.
    //! (`tests/gemm_bf16.rs` runs the whole driver on it with feature `emu`.)
    use super::*;
    use crate::backend::cpu::gemm::pack::{pack, packed_len, Bf16, View};
    use crate::backend::cpu::gemm::tile_emu::Emulated;

    type Model = AmxKernel<Emulated>;

    fn val(i: usize) -> bf16 {
        bf16::from_f32(((i * 37 % 101) as f32 - 50.0) / 16.0)
    }

    /// C (m × n, row stride `rs`, column stride `cs`) from A (m × k, rows `a_rs` apart) and
    /// B (k × n), through `run` on packed panels or `run_direct_a`, against the plain sum.
    fn check(m: usize, n: usize, k: usize, a_rs: usize, (rs, cs): (usize, usize), direct: bool) {
        let a: Vec<bf16> = (0..m * a_rs).map(val).collect();
        let b: Vec<bf16> = (0..k * n).map(|i| val(i + 7)).collect();
        let mut ap = vec![bf16::ZERO; packed_len(m, MR, k, Model::KU)];
        let mut bp = vec![bf16::ZERO; packed_len(n, NR, k, Model::KU)];
        let av = View {
            data: &a,
            off: 0,
            rs: a_rs,
            cs: 1,
        };
        // pack takes B as its panel sees it: column j along `rs`, k along `cs`.
        let bv = View {
            data: &b,
            off: 0,
            rs: 1,
            cs: n,
        };
        pack::<Bf16>(av, MR, Model::KU_A, Model::KU, 0, m, 0, k, &mut ap);
        pack::<Bf16>(bv, NR, Model::KU_B, Model::KU, 0, n, 0, k, &mut bp);
        let c0: Vec<f32> = (0..(m - 1) * rs + (n - 1) * cs + 1)
            .map(|i| val(i + 3).to_f32())
            .collect();
        for accumulate in [false, true] {
            let mut c = c0.clone();
            // SAFETY: the panels hold MR·kc' and NR·kc' packed values; A's m rows hold k
            // values `a_rs` apart; C holds the m × n tile at these strides.
            unsafe {
                let cp = c.as_mut_ptr();
                let (rs, cs) = (rs as isize, cs as isize);
                if direct {
                    Model::run_direct_a(
                        k,
                        a.as_ptr(),
                        a_rs,
                        bp.as_ptr(),
                        CTile::new(cp, rs, cs, m, n),
                        accumulate,
                    )
                } else {
                    Model::run(
                        k,
                        ap.as_ptr(),
                        bp.as_ptr(),
                        CTile::new(cp, rs, cs, m, n),
                        accumulate,
                    )
                }
            };
            for i in 0..m {
                for j in 0..n {
                    let base = if accumulate { c0[i * rs + j * cs] } else { 0.0 };
                    let want: f32 = base
                        + (0..k)
                            .map(|p| a[i * a_rs + p].to_f32() * b[p * n + j].to_f32())
                            .sum::<f32>();
                    let got = c[i * rs + j * cs];
                    assert!(
                        (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{m}x{n}x{k} direct {direct} acc {accumulate}: C[{i},{j}] {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_and_in_place_tiles_on_the_tile_model() {
        // Full tiles stored in place (unit column stride), at a row stride that is not a
        // multiple of 16; edge tiles and strided C through the buffer; k of one block, a
        // tail, and more than GROUP blocks of edge rows.
        for &(m, n, k) in &[
            (32, 32, 32),
            (32, 32, 45),
            (29, 27, 45),
            (32, 17, 600),
            (5, 32, 64),
        ] {
            for direct in [false, true] {
                check(m, n, k, k + 3, (n + 5, 1), direct);
                check(m, n, k, k, (1, m + 2), direct);
            }
        }
    }
}
