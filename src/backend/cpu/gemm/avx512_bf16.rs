//! AVX-512 BF16 micro-kernel: bf16 inputs, f32 accumulation, a 12 × 32 tile in 24 zmm.
//! `vdpbf16ps` multiplies bf16 pairs and adds both products into one f32 lane:
//!   acc[i][j] += A[i, 2q]·B[2q, j] + A[i, 2q+1]·B[2q+1, j],
//! so A and B are packed with KU = 2 (pairs along k): per pair step the kernel loads two
//! vectors of 16 column pairs of B and broadcasts the 32-bit pair (A[i,2q], A[i,2q+1]).
//! With k contiguous in A that pair is already adjacent in A's row, so A is also read in
//! place (`run_direct_a`, no packing): small and skinny problems, where packing A cost as
//! much as the products, then run at the kernel's speed. The pair steps of packed tiles and
//! of full in-place tiles run in the assembly loop shared with the f32 kernel
//! (`avx512_loop`); in-place edge tiles keep the intrinsics loop below.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::bf16;

use super::avx512::{prefetch_c, store_acc};
use super::avx512_loop;
use super::kernel::{by_rows, CTile, MicroKernel};

pub(super) struct Avx512Bf16;

const MR: usize = 12;
const NR: usize = 32;

impl MicroKernel for Avx512Bf16 {
    type P = bf16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 2;
    const KC: usize = 512;
    const MC: usize = 192;
    const NC: usize = 1024;

    unsafe fn run(kc: usize, a: *const bf16, b: *const bf16, ct: CTile, accumulate: bool) {
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX-512F and AVX-512 BF16.
        unsafe { kernel(kc, a, b, ct, accumulate) }
    }

    const DIRECT_A: bool = true;

    unsafe fn run_direct_a(
        kc: usize,
        a: *const bf16,
        a_rs: usize,
        b: *const bf16,
        ct: CTile,
        accumulate: bool,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: forwarded contract; AVX-512F and AVX-512 BF16 as above.
        unsafe {
            match mr {
                MR => kernel_direct_a_full(kc, a, a_rs, b, ct, accumulate),
                _ => by_rows!(mr, MR, kernel_direct_a(kc, a, a_rs, b, ct, accumulate)),
            }
        }
    }
}

/// Full 12-row tiles with A read in place: the pair steps in the assembly loop
/// (`avx512_loop::direct_bf16`), then an odd kc's last value as in `kernel_direct_a`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_direct_a_full(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: rows 0..12 of A hold kc values each (the caller's contract: a full tile), so
    // kc / 2 pairs each; the B panel holds NR pairs per pair step.
    unsafe { avx512_loop::direct_bf16(kc / 2, a as *const u16, a_rs, b as *const u16, &mut acc) };
    if kc % 2 == 1 {
        let rows: [*const bf16; MR] = std::array::from_fn(|i| a.wrapping_add(i * a_rs));
        let b_last = (b as *const __m512i).wrapping_add(2 * (kc / 2));
        // SAFETY: as above, for the single value at kc − 1 and B's last (padded) pair step.
        unsafe { dp_rows::<MR, true>(&mut acc, &rows, kc - 1, b_last) };
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The kernel with A read in place, k contiguous: A[i, p] at a[i·a_rs + p], the pair
/// (A[i,2q], A[i,2q+1]) one unaligned 32-bit broadcast. An odd kc ends with A[i, kc−1]
/// alone (upper half zero; B's padded row is zero too). Rows i ≥ mr re-read row mr − 1
/// (their results are never stored), so nothing past the edge of A is read.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_direct_a<const ROWS: usize>(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let CTile { mr, .. } = ct;
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    let rows: [*const bf16; ROWS] = std::array::from_fn(|i| a.wrapping_add(i.min(mr - 1) * a_rs));
    let mut b = b as *const __m512i;
    for q in 0..kc / 2 {
        // SAFETY: rows < mr of A hold kc values each (the caller's contract), so the pair at
        // 2q, 2q + 1 < kc is readable; the B panel holds NR pairs per pair step.
        unsafe { dp_rows::<ROWS, false>(&mut acc, &rows, 2 * q, b) };
        b = b.wrapping_add(2);
    }
    if kc % 2 == 1 {
        // SAFETY: as above, for the single value at kc − 1.
        unsafe { dp_rows::<ROWS, true>(&mut acc, &rows, kc - 1, b) };
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// One pair step of `kernel_direct_a`: acc[i] += (A[i, at], A[i, at+1]) · (b0, b1), the
/// pair one unaligned 32-bit broadcast from row i; with SINGLE (an odd kc's last step) the
/// pair is (A[i, at], 0). Inlined into its AVX-512 BF16 caller (a plain function, so
/// `inline(always)` applies; closures there would not be inlined).
///
/// # Safety
/// Each row pointer must be readable at `at` (and `at + 1` unless SINGLE); `b` must hold
/// two 64-byte vectors; the caller must run with AVX-512F and AVX-512 BF16.
#[inline(always)]
unsafe fn dp_rows<const ROWS: usize, const SINGLE: bool>(
    acc: &mut [[__m512; 2]; ROWS],
    rows: &[*const bf16; ROWS],
    at: usize,
    b: *const __m512i,
) {
    // SAFETY: the caller's contract; bf16 is a plain 16-bit value, so the reinterpretations
    // are bit casts.
    unsafe {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(1)));
        for (row, &ap) in acc.iter_mut().zip(rows) {
            let pair = if SINGLE {
                ap.add(at).read().to_bits() as u32
            } else {
                (ap.add(at) as *const u32).read_unaligned()
            };
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(kc: usize, a: *const bf16, b: *const bf16, ct: CTile, accumulate: bool) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: per pair step the packed A panel holds MR pairs and the B panel NR pairs, for
    // ⌈kc/2⌉ steps (k is padded to even); bf16 is a plain 16-bit value.
    unsafe { avx512_loop::packed_bf16(kc.div_ceil(2), a as *const u16, b as *const u16, &mut acc) };
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}
