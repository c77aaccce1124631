//! Where the kernel reads its operands: A packed (per block, or whole, once), A in place (rows,
//! or stored transposed), B packed or in place, and the rules that choose between them.

use rayon::prelude::*;

use crate::backend::cpu::gemm::kernel::MicroKernel;
use crate::backend::cpu::gemm::pack::{pack, packed_len, Convert, View};
use crate::backend::cpu::gemm::{pack, GemmLayout};

use super::blocking::{k_blocks, n_blocks};
use super::tasks::{partition, split};

/// How the kernel gets its A panels.
#[derive(Clone, Copy)]
pub(super) enum APanels<'a, P> {
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
pub(super) struct PanelsMut<P> {
    pub(super) ptr: *mut P,
    pub(super) len: usize,
}
// SAFETY: each task writes only the panels of its own rows (`fill_whole_a` checks that no
// two tasks share rows), and the buffer outlives every task.
unsafe impl<P: Send> Send for PanelsMut<P> {}
// SAFETY: as above.
unsafe impl<P: Send> Sync for PanelsMut<P> {}

/// Where `block` reads the B panels of its KC × NC block.
#[derive(Clone, Copy)]
pub(super) enum BPanels<'a, P> {
    /// Packed: panel t (columns NR·t ..) at NR·kc'·t, k steps NR apart.
    Packed(&'a [P]),
    /// B's rows where they lie (`b_block_in_place`): B[pc + p, jc + j] at `from[p·rs + j]`.
    Rows { from: &'a [P], rs: usize },
}

/// Where `block` hands the kernel one tile's A: a packed panel, A's rows in place (row
/// stride, k contiguous), or an A stored transposed in place (stride between k steps, rows
/// contiguous).
#[derive(Clone, Copy)]
pub(super) enum ATile {
    Packed,
    Rows(usize),
    Cols(usize),
}

/// Whether an A stored transposed (rows contiguous, k steps `a_cs` apart: Aᵀ·B, as
/// attention's dV = Pᵀ·dO and a Linear layer's weight gradient Xᵀ·dY) is read in place by
/// the kernel, MR values of one source row per k step (prefetched ahead), instead of packed:
/// against a narrow C (at most the kernel's `TRANSPOSED_A_MAX_N` columns), where each A
/// value serves one or two kernel passes and packing it is a pass over memory of its own,
/// and unless the k steps are a multiple of 4 KiB apart (every step in one L1 set). Intel
/// EMR, f32, in process against packed A, 1 / 2 threads (A's k steps apart): attention's
/// dV at T = 512, 512 × 512 × 64 × 12 (2 KiB) +40% / +28%, the same over 400 heads (A from
/// memory) +36% / +25%, T = 64, 64 × 64 × 32 × 48 (256 B) +24%; 256 × 1024 × 32 (1 KiB)
/// +73%, 128 × 4096 × 64 (512 B) +9% / +2%, 768 × 768 × 64 (3 KiB) +7%, 1536 × 1024 × 64
/// (6 KiB) +8% / −5%. At 4 KiB: 1024 × 768 × 96 −4%, 1024 × 512 × 256 −17%; 16 KiB: 4096 ×
/// 1024 × 64 −13%. 128 columns: +17% to −9% (2 threads −8%), 256: −9%, 512 and more −4% to
/// +4%. bf16 (AVX-512 BF16, pairs interleaved in the kernel): see
/// `Avx512Bf16::TRANSPOSED_A_MAX_N`.
pub(super) fn transposed_a_in_place<K, CA>(l: &GemmLayout) -> bool
where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
{
    K::TRANSPOSED_A
        && CA::IDENTITY
        && l.a_rs == 1
        && l.n <= K::TRANSPOSED_A_MAX_N
        && !(l.a_cs * std::mem::size_of::<CA::Src>()).is_multiple_of(pack::PAGE_BYTES)
}

/// Whether the whole packed A (k contiguous in A) is filled during the first column block,
/// each task packing its own rows' panels as it reaches them while the next panel's source
/// and destination are prefetched under the kernel, rather than in a pass of its own
/// beforehand, which waits on memory for all of A: when no two of that block's tasks share
/// rows. sq1024 f32, 1 thread (Zen 4, huge pages): A's transposes fell from 3.1% to 1.7% of
/// the time, 105.0–106.9 → 106.9–108.7 GFLOP/s. A stored transposed keeps the pass of its
/// own: packed panel by panel its 12-value runs split lines, 4–5% slower.
pub(super) fn fill_whole_a(
    m: usize,
    nc: usize,
    mr: usize,
    nr: usize,
    mc: usize,
    threads: usize,
) -> bool {
    split(m, nc, mr, nr, mc, threads)
        .iter()
        .all(|t| t.n0 == 0 && t.n1 == nc)
}

/// Packs all of A: for each KC block of depth in turn, its ⌈m/MR⌉ panels (the layout `block`
/// packs one MC block at a time), panels spread over the threads.
pub(super) fn pack_whole_a<K, CA>(
    a: View<'_, CA::Src>,
    m: usize,
    k: usize,
    threads: usize,
    ap: &mut [K::P],
) where
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

/// B seen with its columns as rows: the columns of B are the panel rows of its packing.
pub(super) fn b_columns_as_rows<T>(b: View<'_, T>) -> View<'_, T> {
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
pub(super) fn b_in_place<'a, K, CB>(
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
pub(super) fn b_values<'a, K, CB>(b: View<'a, CB::Src>, at: usize) -> &'a [K::P]
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
pub(super) fn b_block_in_place<'a, K, CB>(
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
pub(super) fn few_rows_and_b_rows<K, CB>(m: usize, b_rs: usize, b_cs: usize) -> bool
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
pub(super) const B_ROWS_IN_PLACE_MAX_TILES: usize = 4;

/// Rows of B read in place at most this many values apart (512 bytes in f32): wider rows
/// put each k step's B lines a page or more apart, where L2 sets and TLB entries run short.
pub(super) const B_ROWS_IN_PLACE_MAX_RS: usize = 128;

/// Whether A is read in place rather than packed: when the kernel can (f32 or bf16, no
/// conversion), k is contiguous in A, and the MR rows the kernel streams side by side do
/// not crowd into a few L1 sets. Packing would copy each A block once per NC columns of C,
/// and its transposes cost more than broadcasting from A's rows directly; but with a row
/// stride of 4 KiB (k = 1024 in f32, 2048 in bf16) all 12 rows share one 8-way set and
/// evict each other on every step: sq1024 f32 fell from ~98 to ~70 GFLOP/s, sq2048 bf16
/// from ~185 to ~130 (Zen 4, 1 thread). And while the columns one thread sweeps (on
/// `threads` threads, `partition`'s widest part) make no more column blocks than the kernel
/// reads A in place for (`DIRECT_A_MAX_COLUMN_BLOCKS`), and the problem has few columns
/// or a short depth (`DIRECT_A_MAX_N`, `DIRECT_A_ANY_N_MAX_K`). The L1 sets do not matter
/// up to `DIRECT_A_ANY_STRIDE_MAX_N` columns (a line of A then serves one or two passes of
/// the kernel), nor for few rows beside a B read in place (`few_rows_beside_b_in_place`).
pub(super) fn direct_a<K, CA, CB>(l: &GemmLayout, threads: usize) -> bool
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
        && n_blocks::<K>(part_columns::<K>(l, threads), l.k)
            .nth(K::DIRECT_A_MAX_COLUMN_BLOCKS)
            .is_none()
        && (l.n <= K::DIRECT_A_MAX_N || l.k <= K::DIRECT_A_ANY_N_MAX_K)
}

/// The columns of C that one thread sweeps when a problem with A in place runs on `threads`
/// threads: the widest of `partition`'s parts (every column when it splits the rows).
fn part_columns<K: MicroKernel>(l: &GemmLayout, threads: usize) -> usize {
    if threads <= 1 {
        return l.n;
    }
    partition(l.m, l.k, l.n, K::MR, K::NR, threads)
        .iter()
        .map(|p| p.n1 - p.n0)
        .max()
        .unwrap_or(l.n)
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
pub(super) fn few_rows_beside_b_in_place<K, CB>(l: &GemmLayout) -> bool
where
    K: MicroKernel,
    CB: Convert<Dst = K::P>,
{
    few_rows_and_b_rows::<K, CB>(l.m, l.b_rs, l.b_cs) && l.n <= B_ROWS_IN_PLACE_ANY_STRIDE_MAX_N
}

/// Columns up to which `few_rows_beside_b_in_place` holds: four AVX-512 panels.
pub(super) const B_ROWS_IN_PLACE_ANY_STRIDE_MAX_N: usize = 128;

/// The most of `rows` rows, `stride` bytes apart, whose starts fall in one set of a 64-set
/// L1 (4 KiB per way: 32 KiB 8-way or 48 KiB 12-way).
pub(super) fn rows_per_l1_set(stride: usize, rows: usize) -> usize {
    let mut sets = [0usize; 64];
    for i in 0..rows {
        sets[(i * stride / 64) % 64] += 1;
    }
    sets.into_iter().max().unwrap_or(0)
}
