//! AVX2+FMA tile GEMM of the tiled attention: a register-blocked kernel (6 rows × up to 16
//! columns of C in 12 ymm accumulators, A broadcast from any strides; a full 6 × 16 block
//! whose A is contiguous along k or along its rows runs the assembly k loop of
//! `avx2_loop.rs`). The row operations are in `rows.rs`.
//!
//! The assembly loop against the rolled intrinsics one, Intel EMR forced to AVX2 against
//! PyTorch forced to AVX2 (`tools/bench_vs_torch.py --isa avx2`, 7 pairs), ratio to
//! PyTorch before → after, 1 / 2 threads: forward (8, 12, 512, 64) 0.87 → 1.00 / 0.97 →
//! 1.09, (1, 12, 2048, 64) 0.83 → 0.97 / 0.84 → 1.06; forward + backward 1.02 → 1.08 /
//! 1.08 → 1.17 and 0.91 → 1.03 / 0.95 → 1.08; causal T = 512 forward + backward 1.62 →
//! 1.83 / 1.69 → 1.94.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx2_loop;

/// Lanes of one vector.
pub(super) const W: usize = 8;
/// Rows of C per micro-kernel call.
const MR: usize = 6;
/// Vectors of C per row per micro-kernel call (16 columns).
const NV: usize = 2;

/// C (m × n, row stride ldc) = [C +] A·B with A(r, k) = a[r·rsa + k·csa] (m × kc) and
/// B (kc × n, row stride ldb); n a multiple of 8.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every addressed element of a, b and c lies inside its buffer.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm(
    m: usize,
    n: usize,
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    macro_rules! call {
        ($mr:literal, $nv:expr, $($args:expr),*) => {
            match $nv {
                1 => ukr::<$mr, 1>($($args),*),
                _ => ukr::<$mr, 2>($($args),*),
            }
        };
    }
    let mut r0 = 0;
    while r0 < m {
        let mr = (m - r0).min(MR);
        let mut n0 = 0;
        while n0 < n {
            let nv = ((n - n0) / W).min(NV);
            let (ap, bp, cp) = (a.add(r0 * rsa), b.add(n0), c.add(r0 * ldc + n0));
            match mr {
                1 => call!(1, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
                2 => call!(2, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
                3 => call!(3, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
                4 => call!(4, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
                5 => call!(5, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
                _ => call!(6, nv, kc, ap, rsa, csa, bp, ldb, cp, ldc, acc),
            }
            n0 += nv * W;
        }
        r0 += mr;
    }
}

/// One R × (V·8) block of C: acc[r][v] += Σ_k a(r, k)·b[k, v·8..v·8+8]; a full 6 × 16
/// block with A contiguous along k or along its rows in assembly (`avx2_loop`).
///
/// # Safety
/// As `gemm`.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    acc_in: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    if acc_in {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(c.add(r * ldc + v * W));
            }
        }
    }
    if R == MR && V == NV && (csa == 1 || rsa == 1) {
        // SAFETY: R = 6 and V = 2, so `acc` is an `avx2_loop::Acc`; A(0..6, 0..kc) and B's kc
        // rows of 16 are readable (the caller's contract).
        unsafe {
            let full = &mut *(&mut acc as *mut [[__m256; V]; R] as *mut avx2_loop::Acc);
            if csa == 1 {
                avx2_loop::rows(kc, a, rsa, b, ldb, full)
            } else {
                avx2_loop::cols(kc, a, csa, b, ldb, full)
            }
        }
    } else {
        for k in 0..kc {
            let bk = b.add(k * ldb);
            let mut bv = [_mm256_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(bk.add(v * W));
            }
            let ak = a.add(k * csa);
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm256_broadcast_ss(&*ak.add(r * rsa));
                for (x, &bb) in row.iter_mut().zip(&bv) {
                    *x = _mm256_fmadd_ps(ar, bb, *x);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc + v * W), *x);
        }
    }
}
