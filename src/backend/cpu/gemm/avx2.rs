//! AVX2 + FMA micro-kernel: a 6 × 16 tile of C in 12 ymm accumulators. Per k step it loads
//! two 8-wide vectors of B and, for each of the 6 rows, broadcasts A[i, p] and issues two
//! FMAs: acc[i][v] += A[i, p] · B[p, 8v .. 8v+8]. 12 accumulators + 2 B + 1 broadcast
//! registers fit the 16 ymm registers.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::kernel::{store_tile_generic, MicroKernel};

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

    unsafe fn run(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs: isize,
        cs: isize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX2 and FMA.
        unsafe { kernel(kc, a, b, c, rs, cs, mr, nr, accumulate) }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs: isize,
    cs: isize,
    mr: usize,
    nr: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: the packed panels hold MR (A) and NR (B) values per k step.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
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
        unsafe { store_edge(&spill, c, rs, cs, mr, nr, accumulate) };
    }
}

/// Edge tiles and non-unit column strides: spill the tile and store element by element
/// (out of line so the common path does not reserve the spill buffer).
///
/// # Safety
/// Same C requirements as `MicroKernel::run`; the CPU must support AVX.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_edge(
    acc: &[[__m256; 2]; MR],
    c: *mut f32,
    rs: isize,
    cs: isize,
    mr: usize,
    nr: usize,
    accumulate: bool,
) {
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` has NR floats per row.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_tile_generic(&tile, NR, c, rs, cs, mr, nr, accumulate) };
}
