//! AVX-512 micro-kernels of the tiled attention: a register-blocked tile GEMM (6 rows × up to
//! 64 columns of C in 24 zmm accumulators, A broadcast from any strides) and the row-wise
//! online-softmax pieces with a vectorised exp.
//!
//! exp(x): x is clamped to [−87, 88.7]; n = round(x·log₂e), r = x − n·ln2 (ln2 in two parts,
//! Cody–Waite), eʳ ≈ 1 + r + r²·p(r) with Cephes' degree-5 minimax p on |r| ≤ ln2/2, then
//! eˣ = 2ⁿ·eʳ by `vscalefps`. Relative error ≤ 2·10⁻⁷ (≈ 2 ulp) on [−87, 88]; exp(0) = 1
//! exactly; x < −87 (also −∞ and the masked score f32::MIN − m) gives 0, an absolute error
//! below 1.7·10⁻³⁸ (the subnormal range is flushed).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx512_loop;

/// Lanes of one vector.
pub(super) const W: usize = 16;
/// Rows of C per micro-kernel call.
const MR: usize = 6;
/// Vectors of C per row per micro-kernel call (64 columns).
const NV: usize = 4;

/// C (m × n, row stride ldc) = [C +] A·B with A(r, k) = a[r·rsa + k·csa] (m × kc) and
/// B (kc × n, row stride ldb); n a multiple of 16.
///
/// # Safety
/// The CPU supports AVX-512F; every addressed element of a, b and c lies inside its buffer.
#[target_feature(enable = "avx512f")]
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
                2 => ukr::<$mr, 2>($($args),*),
                3 => ukr::<$mr, 3>($($args),*),
                _ => ukr::<$mr, 4>($($args),*),
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

/// One R × (V·16) block of C: acc[r][v] += Σ_k a(r, k)·b[k, v·16..v·16+16]. A full 6 × 64
/// block whose A is contiguous along k or along its rows (every product of the attention
/// passes) runs its k loop in assembly (`avx512_loop`).
///
/// # Safety
/// As `gemm`.
#[target_feature(enable = "avx512f")]
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
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if acc_in {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(c.add(r * ldc + v * W));
            }
        }
    }
    if R == MR && V == NV && (csa == 1 || rsa == 1) {
        // SAFETY: R = 6 and V = 4, so `acc` is an `avx512_loop::Acc`; A(0..6, 0..kc) and B's kc
        // rows of 64 are readable (the caller's contract).
        unsafe {
            let full = &mut *(&mut acc as *mut [[__m512; V]; R] as *mut avx512_loop::Acc);
            if csa == 1 {
                avx512_loop::rows(kc, a, rsa, b, ldb, full)
            } else {
                avx512_loop::cols(kc, a, csa, b, ldb, full)
            }
        }
    } else {
        for k in 0..kc {
            let bk = b.add(k * ldb);
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(bk.add(v * W));
            }
            let ak = a.add(k * csa);
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm512_set1_ps(*ak.add(r * rsa));
                for (x, &bb) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(ar, bb, *x);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc + v * W), *x);
        }
    }
}

/// eˣ lane-wise (see the module doc for the method and its error).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp_ps(x: __m512) -> __m512 {
    // Lanes below −87 give 0 through the zero-mask: no result is subnormal and no lane
    // underflows, which would cost a microcode assist per element (half the keys of a causal
    // diagonal tile are masked).
    let live = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(-87.0));
    // Operand order keeps a NaN x (max/min return their second operand on NaN).
    let x = _mm512_min_ps(
        _mm512_set1_ps(88.7),
        _mm512_max_ps(_mm512_set1_ps(-87.0), x),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    _mm512_maskz_scalef_ps(live, e, n)
}

/// max_j s_j (s.len() a multiple of 16).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row_max(s: &[f32]) -> f32 {
    let mut m = _mm512_set1_ps(f32::MIN);
    for ch in s.chunks_exact(W) {
        m = _mm512_max_ps(m, _mm512_loadu_ps(ch.as_ptr()));
    }
    _mm512_reduce_max_ps(m)
}

/// s_j ← e^{s_j − m}; returns Σ_j s_j (s.len() a multiple of 16).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mv = _mm512_set1_ps(m);
    let mut acc = _mm512_setzero_ps();
    for ch in s.chunks_exact_mut(W) {
        let e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(ch.as_ptr()), mv));
        _mm512_storeu_ps(ch.as_mut_ptr(), e);
        acc = _mm512_add_ps(acc, e);
    }
    _mm512_reduce_add_ps(acc)
}

/// s_j ← e^{s_j − m}·c (s.len() a multiple of 16).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn exp_sub_mul(s: &mut [f32], m: f32, c: f32) {
    let (mv, cv) = (_mm512_set1_ps(m), _mm512_set1_ps(c));
    for ch in s.chunks_exact_mut(W) {
        let e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(ch.as_ptr()), mv));
        _mm512_storeu_ps(ch.as_mut_ptr(), _mm512_mul_ps(e, cv));
    }
}

/// p_j ← p_j·(dp_j − δ) (lengths equal, a multiple of 16).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dsoftmax(p: &mut [f32], dp: &[f32], delta: f32) {
    let dv = _mm512_set1_ps(delta);
    for (ch, g) in p.chunks_exact_mut(W).zip(dp.chunks_exact(W)) {
        let x = _mm512_loadu_ps(ch.as_ptr());
        let y = _mm512_sub_ps(_mm512_loadu_ps(g.as_ptr()), dv);
        _mm512_storeu_ps(ch.as_mut_ptr(), _mm512_mul_ps(x, y));
    }
}

/// x_j ← x_j·c (x.len() a multiple of 16).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scale(x: &mut [f32], c: f32) {
    let cv = _mm512_set1_ps(c);
    for ch in x.chunks_exact_mut(W) {
        _mm512_storeu_ps(
            ch.as_mut_ptr(),
            _mm512_mul_ps(_mm512_loadu_ps(ch.as_ptr()), cv),
        );
    }
}
