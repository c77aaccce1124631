//! AVX-512 BF16 micro-kernel: bf16 inputs, f32 accumulation, a 12 × 32 tile in 24 zmm.
//! `vdpbf16ps` multiplies bf16 pairs and adds both products into one f32 lane:
//!   acc[i][j] += A[i, 2q]·B[2q, j] + A[i, 2q+1]·B[2q+1, j],
//! so A and B are packed with KU = 2 (pairs along k): per pair step the kernel loads two
//! vectors of 16 column pairs of B and broadcasts the 32-bit pair (A[i,2q], A[i,2q+1]).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::bf16;

use super::avx512::store_acc;
use super::kernel::MicroKernel;

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

    unsafe fn run(
        kc: usize,
        a: *const bf16,
        b: *const bf16,
        c: *mut f32,
        rs: isize,
        cs: isize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX-512F and AVX-512 BF16.
        unsafe { kernel(kc, a, b, c, rs, cs, mr, nr, accumulate) }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(
    kc: usize,
    a: *const bf16,
    b: *const bf16,
    c: *mut f32,
    rs: isize,
    cs: isize,
    mr: usize,
    nr: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a as *const u32, b as *const __m512i);
    for _ in 0..kc.div_ceil(2) {
        // SAFETY: per pair step the packed A panel holds MR pairs (one u32 each) and the B
        // panel NR pairs (two 64-byte vectors); bf16 is a plain 16-bit value, so the
        // reinterpretations are bit casts.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(1)));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(a.add(i).read_unaligned() as i32));
                row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
            }
            a = a.add(MR);
            b = b.add(2);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, c, rs, cs, mr, nr, accumulate) };
}
