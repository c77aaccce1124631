//! AVX2 + FMA micro-kernel: a 6 × 16 tile of C in 12 ymm accumulators. Per k step it loads
//! two 8-wide vectors of B and, for each of the 6 rows, broadcasts A[i, p] and issues two
//! FMAs: acc[i][v] += A[i, p] · B[p, 8v .. 8v+8]. 12 accumulators + 2 B + 2 broadcast
//! registers fill the 16 ymm registers. The k loop is assembly (`avx2_loop`), unrolled four
//! steps deep; A is read from a packed panel or, where its rows are k-contiguous and do not
//! crowd one L1 set, in place (`run_direct_a`: no packing pass over A), as is an A stored
//! transposed against a narrow C (`run_transposed_a`: the 6 values of a k step side by side,
//! prefetched 32 steps ahead); C's rows are prefetched when the kernel starts.
//!
//! Intel EMR, forced to this path (`PRETEXT_ISA=avx2`), in process against MKL's AVX2 path
//! (`MKL_ENABLE_INSTRUCTIONS=AVX2`), medians of 9 alternating pairs, 1 / 2 threads; before
//! (the rolled intrinsics loop, A always packed) → after: sq2048 0.91 → 0.98 / 0.96 → 1.00,
//! sq1024 0.86 → 1.10 / 0.95 → 1.06, sq512 0.83 → 0.94 / 0.94 → 0.98, 4096 × 768 × 3072
//! 0.89 → 0.99 / 0.89 → 0.98, 4096 × 3072 × 768 0.88 → 0.97 / 0.88 → 0.97, 768 × 128 × 512
//! 0.74 → 0.79 / 0.87 → 1.00, 768 × 512 × 128 0.77 → 0.98 / 0.68 → 1.00, 256³ 0.76 → 0.88 /
//! 0.93 → 1.15 (same-path pairs scatter by ±4%). Of that, A in place gave 256³ +11%, 768 ×
//! 512 × 128 +16%; the rest is the loop. A transposed read in place, against packed
//! (attention's dV, 512 × 512 × 64 × 12 heads, ratio to PyTorch held to AVX2 by
//! `tools/bench_vs_torch.py --isa avx2`, 7 pairs, two rounds: 0.89 → 0.94 and 0.86 → 0.91
//! on one thread, 0.84 → 0.91 on two, the second round's two threads too loaded to read;
//! `pretext bench`, three alternations, one thread: 256 × 1024 × 32 48–59 → 63–75 GFLOP/s,
//! 64 × 64 × 32 × 48 heads 39–42 → 39–47, 768 × 768 × 64 unchanged within its scatter).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx2_loop;
use super::kernel::{store_tile_generic, CTile, MicroKernel};

pub(super) struct Avx2;

const MR: usize = 6;
const NR: usize = 16;

impl MicroKernel for Avx2 {
    type P = f32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 1;
    const KC: usize = 256;
    const MC: usize = 96;
    const NC: usize = 1024;

    unsafe fn run(kc: usize, a: *const f32, b: *const f32, ct: CTile, accumulate: bool) {
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX2 and FMA.
        unsafe { kernel(kc, Source::Packed(a), b, ct, accumulate) }
    }

    const DIRECT_A: bool = true;
    /// Six rows may all start in one L1 set at a 4 KiB stride; four of them is half the ways
    /// of the 8-way 32 KiB L1 of most AVX2 CPUs (Zen 2 / 3, Skylake client), beside the B
    /// panel streaming through it.
    const MAX_ROWS_PER_L1_SET: usize = 4;

    unsafe fn run_direct_a(
        kc: usize,
        a: *const f32,
        a_rs: usize,
        b: *const f32,
        ct: CTile,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract; AVX2 and FMA as above.
        unsafe { kernel(kc, Source::InPlace(a, a_rs), b, ct, accumulate) }
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
        // SAFETY: forwarded contract (6 readable values per k step, rows past mr never
        // stored); AVX2 and FMA as above.
        unsafe { kernel(kc, Source::Transposed(a, a_cs), b, ct, accumulate) }
    }
}

/// Where the kernel reads A: a packed panel, rows in place (pointer, row stride), or an A
/// stored transposed in place (pointer, stride between k steps).
#[derive(Clone, Copy)]
enum Source {
    Packed(*const f32),
    InPlace(*const f32, usize),
    Transposed(*const f32, usize),
}

#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(kc: usize, a: Source, b: *const f32, ct: CTile, accumulate: bool) {
    let CTile { c, rs, cs, mr, nr } = ct;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: forwarded A and B contracts: a packed panel of 6·kc values (zero past the
    // tile's edge), rows 0..mr of A holding kc values each in place, or 6 readable values
    // per k step of an A stored transposed (rows past mr never stored); B a packed panel of
    // 16·kc values.
    unsafe {
        match a {
            Source::Packed(a) => avx2_loop::packed_f32(kc, a, b, &mut acc),
            Source::InPlace(a, a_rs) if mr == MR => avx2_loop::direct_f32(kc, a, a_rs, b, &mut acc),
            Source::InPlace(a, a_rs) => direct_edge(kc, a, a_rs, mr, b, &mut acc),
            Source::Transposed(a, a_cs) => avx2_loop::transposed_f32(kc, a, a_cs, b, &mut acc),
        }
    }
    if mr == MR && nr == NR && cs == 1 {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: the full tile is valid and row i has NR contiguous elements.
            unsafe {
                let p = c.offset(i as isize * rs);
                let (mut v0, mut v1) = (row[0], row[1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
                }
                _mm256_storeu_ps(p, v0);
                _mm256_storeu_ps(p.add(8), v1);
            }
        }
    } else {
        let spill = acc;
        // SAFETY: forwarded C contract.
        unsafe { store_edge(&spill, ct, accumulate) };
    }
}

/// acc += A·B over `kc` steps for an edge tile of `mr` < 6 rows read in place: rows i ≥ mr
/// re-read row mr − 1 (their sums are never stored), so no row past the edge is read.
///
/// # Safety
/// Rows 0..mr of A must hold kc readable floats each (`a + i·a_rs`) and `b` 16·kc; the CPU
/// must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_edge(
    kc: usize,
    a: *const f32,
    a_rs: usize,
    mr: usize,
    b: *const f32,
    acc: &mut avx2_loop::Acc,
) {
    let rows: [*const f32; MR] = std::array::from_fn(|i| a.wrapping_add(i.min(mr - 1) * a_rs));
    let mut b = b;
    for p in 0..kc {
        // SAFETY: rows < mr hold kc values each and the panel NR values per step (the
        // caller's contract).
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (row, &ap) in acc.iter_mut().zip(&rows) {
                let ai = _mm256_broadcast_ss(&*ap.add(p));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            b = b.add(NR);
        }
    }
}

/// Edge tiles and non-unit column strides: spill the tile and store element by element
/// (out of line so the common path does not reserve the spill buffer).
///
/// # Safety
/// Same C requirements as `MicroKernel::run`; the CPU must support AVX.
#[cold]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_edge(acc: &[[__m256; 2]; MR], ct: CTile, accumulate: bool) {
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` has NR floats per row.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_tile_generic(&tile, NR, ct, accumulate) };
}

/// Prefetches the C tile's rows (64 bytes each, which may span two lines) at the start of
/// the kernel, so that its final loads or stores do not wait on memory.
///
/// # Safety
/// None beyond SSE (baseline): the addresses need not be valid.
#[inline(always)]
unsafe fn prefetch_c(ct: CTile, accumulate: bool) {
    let CTile { c, rs, cs, mr, .. } = ct;
    if !accumulate && cs != 1 {
        return;
    }
    for i in 0..mr {
        let p = c.wrapping_offset(i as isize * rs) as *const i8;
        // SAFETY: prefetching is a hint and never faults.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(63));
        }
    }
}
