//! AVX-512 micro-kernel: a 12 × 32 tile of C in 24 zmm accumulators. Per k step it loads
//! two 16-wide vectors of B and, for each of the 12 rows, broadcasts A[i, p] and issues two
//! FMAs: acc[i][v] += A[i, p] · B[p, 16v .. 16v+16]. With two FMA ports that is 12 cycles
//! of FMAs per 128 bytes of B streamed from L2, while the A panel (12 × KC) stays in L1.
//! Blocking (as BLIS on Skylake-X): KC = 384 (A panel 18 KiB of the 48 KiB L1; depths up to
//! 640 in one block, see `KC_ONE_BLOCK`), NC = 512
//! (a packed B block of 768 KiB, leaving part of the 2 MiB L2 for C and other processes;
//! up to 768 columns in one block on deep problems, see `NC_ONE_BLOCK`).
//! Partial tiles with unit column stride use masked loads/stores; tiles of ≤ 4 or ≤ 8 valid
//! rows run a 4- or 8-row instance of the kernel. `run_direct_a` broadcasts A from its
//! source rows (k contiguous) instead of a packed panel, `run_transposed_a` from an A
//! stored transposed (the 12 values of a k step contiguous). The k loop of the 12-row tiles is
//! assembly (`avx512_loop`), unrolled four steps deep, in the broadcast form this core runs
//! faster (`broadcast`: A embedded in each FMA's operand, or a `vbroadcastss` per row); the
//! smaller instances and the in-place edge tiles keep the rolled intrinsics loop.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::kernel::{by_rows, store_tile_generic, CTile, MicroKernel};
use super::{avx512_loop, broadcast};

pub(super) struct Avx512;

const MR: usize = 12;
const NR: usize = 32;

impl MicroKernel for Avx512 {
    type P = f32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 1;
    const KC: usize = 384;
    /// Depths up to 640 run as one block (A panel ≤ 30 KiB of the 48 KiB L1; B block ≤ 1.25
    /// MiB of the 2 MiB L2) rather than 384 and a short remainder, whose second pass reloads
    /// and restores all of C for a fraction of the work. Intel EMR, in-process alternation,
    /// medians of 12-15, 1 / 2 threads: 512 × 512 × 64 × 96 heads (attention's P·V at T =
    /// 512) +12% / +7%, 1024 × 512 × 1024 +4% / +4%, 768 × 512 × 128 +2% / +3%, 512³ +1.5% /
    /// +3%, 768 × 640 × 768 +2% / −0.6%; a single block up to 768 lost 2-3% at k = 768.
    const KC_ONE_BLOCK: usize = 640;
    const MC: usize = 192;
    const NC: usize = 512;
    /// Up to 768 columns (a packed B block of 1.15 MiB at KC) run as one block once the
    /// depth takes three blocks, rather than 512 and a remainder. Intel EMR, in-process
    /// alternation, medians of 8-12, 1 / 2 threads: 4096 × 3072 × 768 +3.4–6% / +5–7%,
    /// 768 × 4096 × 768 +6% / +5%, 2048 × 1024 × 768 +4% / +3%, 2048 × 3072 × 640 +5–6%,
    /// 3072 × 4096 × 768 +3%, 1024 × 3072 × 768 +2%; at k = 768 (two depth blocks) one
    /// block lost up to 3% (2048 × 768 × 768), and 1024 columns in one block lost 2–4% at
    /// k = 1024 and 3072.
    const NC_ONE_BLOCK: Option<usize> = Some(768);
    /// Two blocks: a Linear layer's weight gradient over a few hundred tokens (dW = dYᵀ·X,
    /// k = tokens) has a small C and two depth blocks, where the C split pays five forks and
    /// joins (A packed, then B packed and the tiles per block) for a fraction of a
    /// millisecond of work, split unevenly over 11 row panels at m = 128. Intel EMR, 2
    /// threads, in process against the C split (two runs): 128 × 768 × 128 (A transposed)
    /// +21–39%, 128 × 768 × 512 +23–49%, 65 × 768 × 128 +47–67%, 64 × 768 × 64 +59–77%,
    /// 384 × 768 × 128 +3–4%, 512 × 768 × 128 +2–10%, 256 × 768 × 256 −1 to +5%, 128 × 768
    /// × 128 with A not transposed +16%; one block (k = 384, 512) lost 1–9%.
    /// With parts on the depth blocks' bounds (k = 768: 384 + 384) the sums are bit for bit
    /// those of one thread.
    const K_SPLIT_MIN_BLOCKS: usize = 2;
    /// With more column blocks per thread, A packed whole once and read as one stream per
    /// panel beats its 12 rows read in place once per block. Intel Xeon (family 6 model
    /// 167), 1 thread, in process against in place (two runs of 5–7 pairs): 4096 × 768 ×
    /// 3072 (6 blocks) +4.3% / +3.3%, 4096 × 768 × 2304 (5) +2.9% / +1.4%, 4096 × 512 ×
    /// 4096 (8) +3.6% / +0.5%, 2048 × 768 × 3072 +1.9%. On 2 threads, where each part
    /// packed all of A (the blocks counted over the whole problem), the same shapes lost up
    /// to 2.4%; counted per thread (3 blocks each) they stay in place.
    const DIRECT_A_MAX_COLUMN_BLOCKS: usize = 4;

    unsafe fn run(kc: usize, a: *const f32, b: *const f32, ct: CTile, accumulate: bool) {
        let CTile { mr, .. } = ct;
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX-512F.
        unsafe {
            match mr {
                0..=4 => kernel::<4>(kc, a, b, ct, accumulate),
                5..=8 => kernel::<8>(kc, a, b, ct, accumulate),
                _ => kernel_asm(kc, Source::Packed(a), b, NR, ct, accumulate),
            }
        }
    }

    const PREFETCHES_NEXT_PANEL: bool = true;

    unsafe fn run_prefetch_next(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ct: CTile,
        accumulate: bool,
        next: *const f32,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: as `run`; prefetches never fault.
        unsafe {
            match mr {
                0..=8 => Self::run(kc, a, b, ct, accumulate),
                _ => kernel_asm(
                    kc,
                    Source::PackedPrefetchNext(a, next),
                    b,
                    NR,
                    ct,
                    accumulate,
                ),
            }
        }
    }

    const DIRECT_A: bool = true;
    /// With one or two B panels each A line serves its 16 k steps in one pass (or two) and is
    /// not needed again, so 12 rows crowding one L1 set (the limit measured on Zen 4's 8-way
    /// L1) cost less here than packing A by 4 × 4 transposes. Intel EMR (12-way L1), in
    /// process, rows 4–128 KiB apart, in place against packed, 1 thread: 32 × 32768 × 32
    /// 1.67×, 4096 × 4096 × 16 1.60×, × 32 1.30–1.37×, × 48 1.15×, × 64 1.16×, 4096 × 1024 ×
    /// 32 1.62×, 512 × 8192 × 16 1.50×; 2 threads 1.45–1.81×; but 128 columns +11% and 256
    /// −10%, so two panels at most.
    const DIRECT_A_ANY_STRIDE_MAX_N: usize = 2 * NR;

    unsafe fn run_direct_a(
        kc: usize,
        a: *const f32,
        a_rs: usize,
        b: *const f32,
        ct: CTile,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract (the packed panel is B with rows NR apart); AVX-512F as
        // above.
        unsafe { Self::run_direct_ab(kc, a, a_rs, b, NR, ct, accumulate) }
    }

    const DIRECT_B: bool = true;

    unsafe fn run_direct_ab(
        kc: usize,
        a: *const f32,
        a_rs: usize,
        b: *const f32,
        b_rs: usize,
        ct: CTile,
        accumulate: bool,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: forwarded contract; AVX-512F as above.
        unsafe {
            match mr {
                MR => kernel_asm(kc, Source::InPlace(a, a_rs), b, b_rs, ct, accumulate),
                _ => by_rows!(
                    mr,
                    MR,
                    kernel_direct_a(kc, a, a_rs, b, b_rs, ct, accumulate)
                ),
            }
        }
    }

    const TRANSPOSED_A: bool = true;

    unsafe fn run_transposed_a(
        kc: usize,
        a: *const f32,
        a_cs: usize,
        b: *const f32,
        ct: CTile,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract (12 readable values per k step, rows past mr never
        // stored); AVX-512F as above.
        unsafe { kernel_asm(kc, Source::Transposed(a, a_cs), b, NR, ct, accumulate) }
    }
}

/// Where the 12-row kernel reads A: a packed panel, rows in place (pointer, row stride), or
/// an A stored transposed in place (pointer, stride between k steps).
#[derive(Clone, Copy)]
enum Source {
    Packed(*const f32),
    /// A packed panel, and the next one to bring into L2 meanwhile.
    PackedPrefetchNext(*const f32, *const f32),
    InPlace(*const f32, usize),
    Transposed(*const f32, usize),
}

/// The 12-row kernel with its k loop in assembly (`avx512_loop`): every packed tile of 9 to
/// 12 rows (the panel is zero past mr), and full 12-row tiles with A in place. B's rows are
/// `b_rs` floats apart: NR for a packed panel, which a packed A always has; with A in place
/// B may also be read in place.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_asm(
    kc: usize,
    a: Source,
    b: *const f32,
    b_rs: usize,
    ct: CTile,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: forwarded A and B contracts (a packed panel of 12·kc values, or 12 rows of kc
    // values in place, which the caller passes only for full tiles).
    unsafe {
        match a {
            Source::Packed(a) => {
                debug_assert_eq!(b_rs, NR, "a packed A runs against a packed B");
                avx512_loop::packed_f32(broadcast::active(), kc, a, b, &mut acc)
            }
            Source::PackedPrefetchNext(a, next) => {
                debug_assert_eq!(b_rs, NR, "a packed A runs against a packed B");
                let form = broadcast::active();
                avx512_loop::packed_f32_prefetch_next(form, kc, a, b, next, &mut acc)
            }
            Source::InPlace(a, a_rs) if b_rs == NR => {
                avx512_loop::direct_f32(broadcast::active(), kc, a, a_rs, b, &mut acc)
            }
            Source::InPlace(a, a_rs) => {
                avx512_loop::direct_f32_strided_b(kc, a, a_rs, b, b_rs, &mut acc)
            }
            Source::Transposed(a, a_cs) => {
                debug_assert_eq!(b_rs, NR, "a transposed A runs against a packed B");
                avx512_loop::transposed_f32(kc, a, a_cs, b, &mut acc)
            }
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The rolled intrinsics kernel, for tiles of at most 8 rows (4- and 8-row instances).
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const ROWS: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ct: CTile,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: the packed panels hold MR (A) and NR (B) values per k step.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The kernel with A read in place, k contiguous: A[i, p] at a[i·a_rs + p], for edge tiles
/// (mr < 12); B[p, j] at b[p·b_rs + j] (a packed panel: b_rs = NR). Rows i ≥ mr re-read row
/// mr − 1 (their results are never stored), so no row past the edge is read.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_direct_a<const ROWS: usize>(
    kc: usize,
    a: *const f32,
    a_rs: usize,
    b: *const f32,
    b_rs: usize,
    ct: CTile,
    accumulate: bool,
) {
    let CTile { mr, .. } = ct;
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    let rows: [*const f32; ROWS] = std::array::from_fn(|i| a.wrapping_add(i.min(mr - 1) * a_rs));
    let mut b = b;
    for p in 0..kc {
        // SAFETY: rows < mr of A hold kc values each and rows < kc of B NR values each (the
        // caller's contract).
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (row, &ap) in acc.iter_mut().zip(&rows) {
                let ai = _mm512_set1_ps(*ap.add(p));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            b = b.add(b_rs);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// Prefetches the C tile's rows (two lines of 32 floats each) at the start of the kernel, so
/// that its final loads or stores do not wait on memory:
/// - when the kernel will load them (`accumulate`), for reading. Intel Xeon host (1 thread,
///   alternating, medians of 7): Q·Kᵀ at T = 64 (64 × 32 × 64, 64 heads) +2–7%, P·V at
///   T = 64 +1–3%, sq2048 and 512 × 64 × 512 unchanged.
/// - when it only stores them (beta 0, unit column stride), for writing (`prefetchw`: the
///   lines arrive owned). A training step writes each product into an output buffer that no
///   nearby cache holds, so without it each of the tile's 24 lines was fetched only when
///   its store came to be written. Intel EMR, in process, 48 rotating sets of A, B and C
///   (cold, as in training), against no prefetch, 2 threads (rounds): x·Wᵀ 768 × 128 × 512
///   +10%, +20%; 768 × 128 × 384 +4%, +29%; 768 × 128 × 128 +1%, +17%; 768 × 512 × 128 +1%,
///   +2%; 1 thread +1–2% in a quiet round, +22% (768 × 128 × 512) in a loaded one; warm
///   (one set) −3% to +5%. Inside training (nanogpt-shakespeare-cpu, 2 threads, 8
///   alternating runs of one binary): each product's median time ×0.91–1.01, the GEMMs'
///   total ×0.976. The bf16 pair kernels, which prefetched no C, now do the same: cold 768
///   × 128 × 512 +21% / +10% (1 / 2 threads), warm and the rest within ±3% (1024³ cold −8%,
///   −2%, +3% in three rounds).
///
/// # Safety
/// The CPU must support SSE (baseline) and `prefetchw` (every AVX-512 CPU does); the
/// addresses need not be valid.
#[inline(always)]
pub(super) unsafe fn prefetch_c(ct: CTile, accumulate: bool) {
    let CTile { c, rs, cs, mr, .. } = ct;
    if !accumulate && cs != 1 {
        return;
    }
    for i in 0..mr {
        let p = c.wrapping_offset(i as isize * rs) as *const i8;
        // SAFETY: prefetching is a hint and never faults.
        unsafe {
            if accumulate {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            } else {
                prefetch_for_write(p);
                prefetch_for_write(p.wrapping_add(64));
            }
        }
    }
}

/// `prefetchw`: brings the line holding `p` into the cache owned, ready to be written.
/// (`_mm_prefetch::<_MM_HINT_ET0>` emits it only where `prfchw` is enabled, else a read
/// prefetch.)
///
/// # Safety
/// The CPU must support `prefetchw` (the `prfchw` feature, on every AVX-512 CPU); `p` need
/// not be valid.
#[inline(always)]
unsafe fn prefetch_for_write(p: *const i8) {
    // SAFETY: a prefetch is a hint: it never faults and changes no register, flag or memory.
    unsafe {
        std::arch::asm!("prefetchw byte ptr [{p}]", p = in(reg) p,
            options(nostack, preserves_flags, readonly))
    }
}

/// Writes the ROWS × 32 accumulators to C (shared with the bf16 kernel). Full-width tiles
/// with unit column stride, the common case, are stored here, inlined into the kernel, from
/// the registers; the masked and strided edges go through `store_acc_edge` (out of line: the
/// call spills every accumulator to the stack first).
///
/// # Safety
/// Same C requirements as `MicroKernel::run`; the caller must run with AVX-512F (a plain
/// function, so `inline(always)` applies and the intrinsics inline into that caller).
#[inline(always)]
pub(super) unsafe fn store_acc<const ROWS: usize>(
    acc: [[__m512; 2]; ROWS],
    ct: CTile,
    accumulate: bool,
) {
    let CTile { c, rs, cs, mr, nr } = ct;
    if cs != 1 || nr < NR {
        // SAFETY: forwarded contract.
        return unsafe { store_acc_edge(acc, ct, accumulate) };
    }
    // Plain stores (masked ones cost more, on Zen 4 at least).
    for (i, row) in acc.iter().enumerate().take(mr) {
        // SAFETY: row i < mr holds 32 valid columns at unit stride (the caller's contract).
        unsafe {
            let p = c.offset(i as isize * rs);
            let (mut v0, mut v1) = (row[0], row[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
            }
            _mm512_storeu_ps(p, v0);
            _mm512_storeu_ps(p.add(16), v1);
        }
    }
}

/// `store_acc` for tiles of fewer than 32 columns (masked) or a non-unit column stride.
///
/// # Safety
/// As `store_acc`.
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn store_acc_edge<const ROWS: usize>(acc: [[__m512; 2]; ROWS], ct: CTile, accumulate: bool) {
    let CTile { c, rs, cs, mr, nr } = ct;
    if cs == 1 {
        // Lanes j < nr of each half: bits of a 32-bit mask split into two 16-bit masks.
        let m32: u32 = (1u32 << nr) - 1;
        let (m0, m1) = (m32 as u16, (m32 >> 16) as u16);
        for (i, row) in acc.iter().enumerate().take(mr) {
            // SAFETY: masked lanes cover exactly the valid columns j < nr of row i < mr.
            unsafe {
                let p = c.offset(i as isize * rs);
                let (mut v0, mut v1) = (row[0], row[1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, p));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, p.add(16)));
                }
                _mm512_mask_storeu_ps(p, m0, v0);
                _mm512_mask_storeu_ps(p.add(16), m1, v1);
            }
        }
    } else {
        let spill = acc;
        // SAFETY: forwarded C contract.
        unsafe { store_strided(&spill, ct, accumulate) };
    }
}

/// Non-unit column stride: spill the tile and store element by element (kept out of line
/// so the common path does not reserve the spill buffer).
///
/// # Safety
/// Same as `store_acc`.
#[cold]
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn store_strided<const ROWS: usize>(acc: &[[__m512; 2]; ROWS], ct: CTile, accumulate: bool) {
    let mut tile = [[0.0f32; NR]; ROWS];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` has NR floats per row.
        unsafe {
            _mm512_storeu_ps(tile[i].as_mut_ptr(), row[0]);
            _mm512_storeu_ps(tile[i].as_mut_ptr().add(16), row[1]);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_tile_generic(tile.as_flattened(), NR, ct, accumulate) };
}
