//! The micro-kernel contract shared by every ISA.
//!
//! A micro-kernel computes one MR × NR tile of C from an A panel (MR rows × kc) and a B
//! panel (kc × NR columns), both packed by `pack::pack`:
//!   C[i, j] = Σ_p A[i, p] · B[p, j]  (+ C[i, j] when `accumulate`),  i < mr, j < nr,
//! where mr ≤ MR and nr ≤ NR are the valid rows/columns of an edge tile (the packed
//! panels are zero there). C is written at `c + i·rs + j·cs`.

/// Calls the instance of a row-generic kernel sized for an `mr`-row tile: 4 or 8 rows when
/// the tile has that few (edge tiles do no work for absent rows), else `$full` (the kernel's
/// MR). The AVX-512 kernels' `run` / `run_direct_a` dispatch through this.
macro_rules! by_rows {
    ($mr:expr, $full:ident, $kernel:ident($($arg:expr),* $(,)?)) => {
        match $mr {
            0..=4 => $kernel::<4>($($arg),*),
            5..=8 => $kernel::<8>($($arg),*),
            _ => $kernel::<$full>($($arg),*),
        }
    };
}
pub(super) use by_rows;

/// The tile of C one kernel call writes: C[i, j] at `c + i·rs + j·cs` for its valid rows
/// i < mr (≤ MR) and columns j < nr (≤ NR).
#[derive(Clone, Copy)]
pub(super) struct CTile {
    pub(super) c: *mut f32,
    pub(super) rs: isize,
    pub(super) cs: isize,
    pub(super) mr: usize,
    pub(super) nr: usize,
}

impl CTile {
    pub(super) fn new(c: *mut f32, rs: isize, cs: isize, mr: usize, nr: usize) -> CTile {
        CTile { c, rs, cs, mr, nr }
    }
}

/// One micro-kernel and the cache blocking that suits it.
pub(super) trait MicroKernel: Sync {
    /// Packed element type (f32, or bf16 for the pair-dot-product kernels).
    type P: Copy + Default + Send + Sync;
    /// Tile rows (broadcast side) and columns (vector side).
    const MR: usize;
    const NR: usize;
    /// k is zero-padded to a multiple of KU in both packed panels (2 for bf16 pair dot
    /// products, 32 for AMX tiles).
    const KU: usize;
    /// k interleave of the A panel: (i, p) at (p / KU_A)·MR·KU_A + i·KU_A + p % KU_A.
    const KU_A: usize = Self::KU;
    /// k interleave of the B panel: (p, j) at (p / KU_B)·NR·KU_B + j·KU_B + p % KU_B.
    const KU_B: usize = Self::KU;
    /// Depth of one packed block: an A panel MR × KC stays in L1 while B panels stream.
    const KC: usize;
    /// Depths up to this run as one block (at least KC).
    const KC_ONE_BLOCK: usize = Self::KC;
    /// When non-zero, a packed A panel deeper than twice this sweeps its B panels in depth
    /// sub-blocks of about this many k steps (whole KU_A and KU steps), one sweep per sub-block, each tile's sums
    /// carried from one sweep to the next in C (or in a row of f32 tiles for a bf16 C):
    /// the panel's sub-block stays in L1 while the B panels stream, where a whole deep
    /// panel would come from L2 for every tile (`driver::block`). Only full tiles with
    /// contiguous columns are swept so, and a kernel that sets this must accumulate those in
    /// its registers (C loaded into them), so that their sums equal one sweep's bit for bit.
    /// 0: one sweep at the block's depth.
    const KC_INNER: usize = 0;
    /// Rows of A packed per task (a multiple of MR).
    const MC: usize;
    /// Columns of B packed per block: KC × NC packed values should sit in L2.
    const NC: usize;
    /// Whether depth and columns are cut into ⌈k/KC⌉ and ⌈n/NC⌉ blocks as equal as whole KU
    /// steps and NR panels allow, instead of KC, KC, …, remainder (`driver::blocks`).
    const EVEN_BLOCKS: bool = false;
    /// With several threads, a small C over at least this many KC blocks of depth is split
    /// along k, each thread summing a contiguous part of k (`driver::k_split`). Two AMX
    /// blocks lost (bf16 128 × 1536 × 128: 0.96× against the C split, 2 threads, Intel EMR)
    /// where f32 128 × 1024 × 128 gained 1.29×, so four unless a kernel measured fewer.
    const K_SPLIT_MIN_BLOCKS: usize = 4;
    /// When set, the column blocks are as wide as this many packed B values allow at the
    /// problem's depth block (⌊B_BLOCK / kc⌋, whole NR panels) instead of NC: a shallow
    /// problem gets wider blocks, so fewer passes over A (`driver::nc_max`).
    const B_BLOCK: Option<usize> = None;
    /// When set, columns up to this many (more than NC) run as one block on deep problems
    /// (`driver::n_blocks`).
    const NC_ONE_BLOCK: Option<usize> = None;

    /// # Safety
    /// `a` must hold MR·kc' packed values and `b` NR·kc' (kc' = kc rounded up to KU);
    /// every element of the tile `ct` (i < ct.mr, j < ct.nr) must be valid for reads and
    /// writes, and no other thread may access them during the call. The CPU must support the kernel's ISA.
    unsafe fn run(kc: usize, a: *const Self::P, b: *const Self::P, ct: CTile, accumulate: bool);

    /// Whether `run_prefetch_next` brings the next A panel into L2 (otherwise the driver
    /// does not ask for it).
    const PREFETCHES_NEXT_PANEL: bool = false;

    /// `run`, while bringing the packed A panel at `next` (MR·kc' values, the one swept after
    /// `a`) into L2 from inside the k loop, a few lines per group of steps, rather than in
    /// bursts between calls that wait on the fill buffers.
    ///
    /// # Safety
    /// As `run` (`next` need not be valid: prefetches never fault).
    unsafe fn run_prefetch_next(
        kc: usize,
        a: *const Self::P,
        b: *const Self::P,
        ct: CTile,
        accumulate: bool,
        next: *const Self::P,
    ) {
        let _ = next;
        // SAFETY: forwarded contract.
        unsafe { Self::run(kc, a, b, ct, accumulate) }
    }

    /// Whether `run_direct_a` reads A in place (f32 kernels); otherwise the driver packs A.
    const DIRECT_A: bool = false;
    /// A is read in place only while the columns one thread sweeps make at most this many
    /// column blocks (`driver::n_blocks`); with more, A packed whole once (`driver::single`)
    /// can be cheaper than A read in place once per block.
    const DIRECT_A_MAX_COLUMN_BLOCKS: usize = usize::MAX;
    /// A is read in place only while C has at most this many columns or the depth is at most
    /// `DIRECT_A_ANY_N_MAX_K`: each B panel re-reads the MR rows of A in place over the whole
    /// depth block, which a deep block no longer holds in L1 (`driver::direct_a`).
    const DIRECT_A_MAX_N: usize = usize::MAX;
    /// See `DIRECT_A_MAX_N`.
    const DIRECT_A_ANY_N_MAX_K: usize = usize::MAX;
    /// A is read in place only while no more than this many of its MR rows start in one
    /// 64-set L1 set (each k step touches a line of every row; `driver::direct_a`). For the
    /// 12-row kernels 6 of 8 ways: k = 512 in f32 (a 2 KiB stride) still runs at full speed
    /// in place, 12 rows in one set (a 4 KiB stride) evict each other on every step.
    const MAX_ROWS_PER_L1_SET: usize = 6;
    /// Up to this many columns of C, A is read in place whatever its row stride
    /// (`MAX_ROWS_PER_L1_SET` does not apply): with so few column tiles each line of A
    /// serves one or two passes of the kernel and is not needed again, so rows crowding one
    /// L1 set cost less than packing A. For the same reason such problems take depth blocks
    /// sized to the packed B rather than KC (`driver::deep_kc`).
    const DIRECT_A_ANY_STRIDE_MAX_N: usize = 0;

    /// `run` with A read where it lies instead of from a packed panel: A[i, p] at
    /// `a + i·a_rs + p` (k contiguous), for rows i < mr. This default packs the rows into a
    /// panel and calls `run`; kernels with `DIRECT_A` broadcast straight from A.
    ///
    /// # Safety
    /// As `run`, with rows i < mr of A holding kc readable values each.
    unsafe fn run_direct_a(
        kc: usize,
        a: *const Self::P,
        a_rs: usize,
        b: *const Self::P,
        ct: CTile,
        accumulate: bool,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: row i < mr holds kc values (the caller's contract).
        let panel = panel_of(Self::MR, Self::KU, Self::KU, mr, kc, |i, p| unsafe {
            *a.add(i * a_rs + p)
        });
        // SAFETY: the panel holds MR·kc' values; the rest is the caller's contract.
        unsafe { Self::run(kc, panel.as_ptr(), b, ct, accumulate) }
    }

    /// Whether `run_direct_ab` reads B in place too (the f32 AVX-512 kernel); otherwise the
    /// driver packs B.
    const DIRECT_B: bool = false;

    /// `run_direct_a` with B also read where it lies: B[p, j] at `b + p·b_rs + j` for every
    /// j < NR (columns contiguous; lanes j ≥ nr are computed and never stored). This default
    /// packs the kc × NR values into a panel and calls `run_direct_a`; kernels with
    /// `DIRECT_B` load B's rows straight from memory.
    ///
    /// # Safety
    /// As `run_direct_a`, with rows p < kc of B holding NR readable values each.
    unsafe fn run_direct_ab(
        kc: usize,
        a: *const Self::P,
        a_rs: usize,
        b: *const Self::P,
        b_rs: usize,
        ct: CTile,
        accumulate: bool,
    ) {
        // SAFETY: row p < kc of B holds NR values (the caller's contract).
        let panel = panel_of(
            Self::NR,
            Self::KU_B,
            Self::KU,
            Self::NR,
            kc,
            |j, p| unsafe { *b.add(p * b_rs + j) },
        );
        // SAFETY: the panel holds NR·kc' values; the rest is the caller's contract.
        unsafe { Self::run_direct_a(kc, a, a_rs, panel.as_ptr(), ct, accumulate) }
    }

    /// Whether `run_transposed_a` reads an A stored transposed in place (the f32 AVX-512 and
    /// AVX2 kernels, the AVX-512 BF16 one); otherwise the driver packs such an A.
    const TRANSPOSED_A: bool = false;

    /// Columns of C up to which the driver reads an A stored transposed in place
    /// (`driver::operands::transposed_a_in_place`): two AVX-512 panels of f32.
    const TRANSPOSED_A_MAX_N: usize = 64;

    /// `run` with A stored transposed and read where it lies: A[i, p] at `a + i + p·a_cs`,
    /// the MR values of a k step side by side. This default packs them into a panel and
    /// calls `run`; kernels with `TRANSPOSED_A` broadcast straight from A.
    ///
    /// # Safety
    /// As `run`, with MR readable values at `a + p·a_cs` for every p < kc (whatever mr is:
    /// rows i ≥ mr are read and never stored).
    unsafe fn run_transposed_a(
        kc: usize,
        a: *const Self::P,
        a_cs: usize,
        b: *const Self::P,
        ct: CTile,
        accumulate: bool,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: MR values are readable at a + p·a_cs (the caller's contract).
        let panel = panel_of(Self::MR, Self::KU_A, Self::KU, mr, kc, |i, p| unsafe {
            *a.add(p * a_cs + i)
        });
        // SAFETY: the panel holds MR·kc' values; the rest is the caller's contract.
        unsafe { Self::run(kc, panel.as_ptr(), b, ct, accumulate) }
    }

    /// One row of `tiles` full MR × NR tiles of a bf16 C, beta = 0, in one pipeline that
    /// rounds each tile's f32 sums to bf16 (nearest even) while the next tile's products run:
    ///   C[i, NR·t + j] = bf16(Σ_p A[i, p] · B_t[p, j]),  i < MR, j < NR, t < tiles,
    /// A as `run` (a packed panel, `a_rs` = 0) or `run_direct_a` (in place, rows `a_rs`
    /// apart) reads it, B_t the packed panel at `b + t·NR·kc'`, C at `out + i·out_rs + j`.
    /// `after_tile(t)` runs once tile t's products are issued. Returns false, having done
    /// nothing, when the kernel has no such pipeline for these operands (the default): the
    /// caller then computes and rounds tile by tile.
    ///
    /// # Safety
    /// As `run` / `run_direct_a` for each tile with mr = MR, nr = NR; the tiles × MR × NR
    /// bf16 of C are valid for writes and touched by no other thread during the call; the
    /// CPU supports the kernel's ISA.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_rounded_row(
        kc: usize,
        a: *const Self::P,
        a_rs: usize,
        b: *const Self::P,
        tiles: usize,
        out: *mut half::bf16,
        out_rs: usize,
        after_tile: &mut dyn FnMut(usize),
    ) -> bool {
        let _ = (kc, a, a_rs, b, tiles, out, out_rs, after_tile);
        false
    }
}

/// Writes an MR × NR tile held in `acc` (row-major, stride `nr_full`) to C: the generic
/// edge/strided path every kernel falls back to.
///
/// # Safety
/// Same C requirements as `MicroKernel::run`.
/// One packed panel of `r` rows (A) or columns (B) for the defaults above: `at(i, p)` for
/// i < `rows` and p < kc at (p / ku)·r·ku + i·ku + p % ku, zero elsewhere (rows past `rows`,
/// k up to a multiple of `kpad`).
fn panel_of<P: Copy + Default>(
    r: usize,
    ku: usize,
    kpad: usize,
    rows: usize,
    kc: usize,
    at: impl Fn(usize, usize) -> P,
) -> Vec<P> {
    let mut panel = vec![P::default(); r * kc.next_multiple_of(kpad)];
    for p in 0..kc {
        for i in 0..rows {
            panel[(p / ku) * r * ku + i * ku + p % ku] = at(i, p);
        }
    }
    panel
}

#[inline(always)]
pub(super) unsafe fn store_tile_generic(acc: &[f32], nr_full: usize, ct: CTile, accumulate: bool) {
    let CTile { c, rs, cs, mr, nr } = ct;
    let store = |i: usize, j: usize| {
        // SAFETY: (i, j) is inside the valid tile, which the caller guarantees.
        let p = unsafe { c.offset(i as isize * rs + j as isize * cs) };
        let v = acc[i * nr_full + j];
        // SAFETY: as above.
        unsafe { *p = if accumulate { *p + v } else { v } };
    };
    // Along C's shorter stride: a column-major C (a transposed product, `amx_transposed`)
    // column by column, so that the stores run along memory.
    if cs.unsigned_abs() > rs.unsigned_abs() {
        for j in 0..nr {
            for i in 0..mr {
                store(i, j);
            }
        }
    } else {
        for i in 0..mr {
            for j in 0..nr {
                store(i, j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{panel_of, CTile, MicroKernel};

    /// `run_direct_a` on A rows in place equals `run` on the packed panel, for every
    /// number of valid rows (rows past mr are never read: A ends right after row mr − 1).
    fn direct_matches_packed<K: MicroKernel<P = f32>>() {
        // k of a single step, of less than, exactly and past one unrolled group of the
        // assembly loops (`avx512_loop`: four steps), with and without a tail.
        // Rows apart (a_rs = 41) and dense (a_rs = kc: the loop that also prefetches the next
        // tile, with its own addressing of the last rows).
        for kc in [1, 3, 4, 8, 37] {
            direct_matches_packed_at::<K>(kc, 41);
            direct_matches_packed_at::<K>(kc, kc);
        }
    }

    fn direct_matches_packed_at<K: MicroKernel<P = f32>>(kc: usize, a_rs: usize) {
        let b: Vec<f32> = (0..K::NR * kc).map(|x| (x % 13) as f32 - 6.0).collect();
        for mr in 1..=K::MR {
            let a: Vec<f32> = (0..(mr - 1) * a_rs + kc)
                .map(|x| (x % 7) as f32 - 3.0)
                .collect();
            let mut panel = vec![0.0f32; K::MR * kc];
            for i in 0..mr {
                for p in 0..kc {
                    panel[p * K::MR + i] = a[i * a_rs + p];
                }
            }
            let (mut want, mut got) = (vec![1.0f32; K::MR * K::NR], vec![1.0f32; K::MR * K::NR]);
            let nr = K::NR - 1;
            // SAFETY: panels hold MR·kc and NR·kc values, A rows < mr hold kc values, and C
            // is a full MR × NR row-major tile; the kernels run only where the CPU has them.
            unsafe {
                K::run(
                    kc,
                    panel.as_ptr(),
                    b.as_ptr(),
                    CTile::new(want.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                    true,
                );
                K::run_direct_a(
                    kc,
                    a.as_ptr(),
                    a_rs,
                    b.as_ptr(),
                    CTile::new(got.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                    true,
                );
            }
            assert_eq!(got, want, "mr {mr}, kc {kc}, a_rs {a_rs}");
            // Both against the plain sum (small integers: every sum is exact in f32); C
            // outside the mr × nr tile keeps its 1.0.
            let naive: Vec<f32> = (0..K::MR * K::NR)
                .map(|x| {
                    let (i, j) = (x / K::NR, x % K::NR);
                    if i < mr && j < nr {
                        1.0 + (0..kc)
                            .map(|p| a[i * a_rs + p] * b[p * K::NR + j])
                            .sum::<f32>()
                    } else {
                        1.0
                    }
                })
                .collect();
            assert_eq!(
                want, naive,
                "mr {mr}, kc {kc}: packed kernel vs the plain sum"
            );
        }
    }

    /// `run_direct_ab` on B's rows in place (rows `b_rs` apart, NaN between them and in the
    /// lanes past nr) equals `run_direct_a` on the packed panel, full tiles and edges.
    fn direct_b_matches_packed<K: MicroKernel<P = f32>>() {
        let (a_rs, b_rs) = (41, K::NR + 5);
        for kc in [1, 3, 4, 8, 37] {
            let a: Vec<f32> = (0..K::MR * a_rs).map(|x| (x % 7) as f32 - 3.0).collect();
            let mut b = vec![f32::NAN; kc * b_rs];
            let mut panel = vec![0.0f32; K::NR * kc];
            for p in 0..kc {
                for j in 0..K::NR {
                    let x = ((p * K::NR + j) % 13) as f32 - 6.0;
                    b[p * b_rs + j] = x;
                    panel[p * K::NR + j] = x;
                }
            }
            for (mr, nr) in [
                (K::MR, K::NR),
                (K::MR, K::NR - 3),
                (K::MR - 1, K::NR),
                (1, 2),
            ] {
                // Lanes past nr of B in place are NaN (computed, never stored).
                let mut b = b.clone();
                for p in 0..kc {
                    b[p * b_rs + nr..p * b_rs + K::NR].fill(f32::NAN);
                }
                let (mut want, mut got) =
                    (vec![1.0f32; K::MR * K::NR], vec![1.0f32; K::MR * K::NR]);
                // SAFETY: A's rows < MR hold kc values, B's kc rows NR values b_rs apart, the
                // panel NR·kc values, and C is a full MR × NR row-major tile; the kernels run
                // only where the CPU has them.
                unsafe {
                    K::run_direct_a(
                        kc,
                        a.as_ptr(),
                        a_rs,
                        panel.as_ptr(),
                        CTile::new(want.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                        true,
                    );
                    K::run_direct_ab(
                        kc,
                        a.as_ptr(),
                        a_rs,
                        b.as_ptr(),
                        b_rs,
                        CTile::new(got.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                        true,
                    );
                }
                assert_eq!(got, want, "mr {mr}, nr {nr}, kc {kc}");
                assert!(
                    want.iter().all(|x| x.is_finite()),
                    "mr {mr}, nr {nr}, kc {kc}"
                );
            }
        }
    }

    /// `run_transposed_a` (A[i, p] at a + i + p·a_cs) against `run` on the packed panel, at
    /// every tile height, full and partial widths, k of 1 to 37 (the unrolled groups, the
    /// single steps and, with KU = 2, an odd last step); rows i ≥ mr of each step and the
    /// gap to the next step are NaN (read by the kernel, never stored). `p_of` converts the
    /// small integers used (exact in bf16 and in the f32 sums).
    fn transposed_matches_packed<K: MicroKernel>(p_of: impl Fn(f32) -> K::P) {
        let a_cs = K::MR + 5;
        let panel_b: Vec<K::P> = (0..K::NR * 40)
            .map(|x| p_of((x % 13) as f32 - 6.0))
            .collect();
        for kc in [1, 3, 4, 5, 8, 37] {
            for (mr, nr) in [
                (K::MR, K::NR),
                (K::MR, K::NR - 3),
                (K::MR - 1, K::NR),
                (5, 7),
                (1, 2),
            ]
            .into_iter()
            .filter(|&(mr, _)| mr <= K::MR)
            {
                let mut a = vec![p_of(f32::NAN); kc * a_cs];
                for p in 0..kc {
                    for i in 0..mr {
                        a[p * a_cs + i] = p_of(((p * 5 + i * 3) % 7) as f32 - 3.0);
                    }
                }
                let panel = panel_of(K::MR, K::KU_A, K::KU, mr, kc, |i, p| a[p * a_cs + i]);
                let (mut want, mut got) =
                    (vec![1.0f32; K::MR * K::NR], vec![1.0f32; K::MR * K::NR]);
                // SAFETY: each of A's kc steps holds MR readable values (a_cs ≥ MR), the
                // panels MR·kc' and NR·kc' values (kc' ≤ 38), and C is a full MR × NR
                // row-major tile; the kernels run only where the CPU has them.
                unsafe {
                    K::run(
                        kc,
                        panel.as_ptr(),
                        panel_b.as_ptr(),
                        CTile::new(want.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                        true,
                    );
                    K::run_transposed_a(
                        kc,
                        a.as_ptr(),
                        a_cs,
                        panel_b.as_ptr(),
                        CTile::new(got.as_mut_ptr(), K::NR as isize, 1, mr, nr),
                        true,
                    );
                }
                assert_eq!(got, want, "mr {mr}, nr {nr}, kc {kc}");
                assert!(
                    want.iter().all(|x| x.is_finite()),
                    "mr {mr}, nr {nr}, kc {kc}"
                );
            }
        }
    }

    #[test]
    fn transposed_a_matches_packed_panel() {
        transposed_matches_packed::<super::super::scalar::Scalar>(|x| x);
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
            transposed_matches_packed::<super::super::avx512::Avx512>(|x| x);
            if crate::backend::cpu::isa::has_avx512_bf16() {
                transposed_matches_packed::<super::super::avx512_bf16::Avx512Bf16>(
                    half::bf16::from_f32,
                );
            } else {
                println!("AVX-512 BF16 transposed-A kernel: not on this CPU, skipped");
            }
        }
    }

    #[test]
    fn direct_b_matches_packed_panel() {
        direct_b_matches_packed::<super::super::scalar::Scalar>();
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
            direct_b_matches_packed::<super::super::avx512::Avx512>();
        }
    }

    #[test]
    fn direct_a_matches_packed() {
        direct_matches_packed::<super::super::scalar::Scalar>();
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
            direct_matches_packed::<super::super::avx512::Avx512>();
        }
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx2 {
            direct_matches_packed::<super::super::avx2::Avx2>();
        }
    }
}
