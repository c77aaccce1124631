//! AVX2+FMA micro-kernels of the tiled attention: a register-blocked tile GEMM (6 rows × up to
//! 16 columns of C in 12 ymm accumulators, A broadcast from any strides) and the row-wise
//! online-softmax pieces with a vectorised exp.
//!
//! exp(x): as the AVX-512 kernel (Cody–Waite reduction, Cephes degree-5 minimax, relative
//! error ≤ 2·10⁻⁷ ≈ 2 ulp, exp(0) = 1 exactly) except that 2ⁿ is built in the exponent bits,
//! so x is clamped to [−87, 88.3] (the softmax only takes x ≤ 0) and x < −87 gives 0 (no
//! result is subnormal, which would cost a microcode assist: an absolute error < 1.7·10⁻³⁸).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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

/// One R × (V·8) block of C: acc[r][v] += Σ_k a(r, k)·b[k, v·8..v·8+8].
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
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc + v * W), *x);
        }
    }
}

/// eˣ lane-wise (see the module doc for the method and its error).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_ps(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
    // Operand order keeps a NaN x (max/min return their second operand on NaN).
    let x = _mm256_min_ps(
        _mm256_set1_ps(88.3),
        _mm256_max_ps(_mm256_set1_ps(-87.0), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // 2ⁿ from the exponent bits: n ∈ [−126, 127] after the clamp.
    let ni = _mm256_cvtps_epi32(n);
    let pow = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        ni,
        _mm256_set1_epi32(127),
    )));
    let y = _mm256_mul_ps(e, pow);
    _mm256_andnot_ps(tiny, y)
}

/// Horizontal sum of 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// max_j s_j (s.len() a multiple of 8).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn row_max(s: &[f32]) -> f32 {
    let mut m = _mm256_set1_ps(f32::MIN);
    for ch in s.chunks_exact(W) {
        m = _mm256_max_ps(m, _mm256_loadu_ps(ch.as_ptr()));
    }
    let mut lanes = [0.0f32; W];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    lanes.iter().fold(f32::MIN, |a, &b| a.max(b))
}

/// s_j ← e^{s_j − m}; returns Σ_j s_j (s.len() a multiple of 8).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut acc = _mm256_setzero_ps();
    for ch in s.chunks_exact_mut(W) {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(ch.as_ptr()), mv));
        _mm256_storeu_ps(ch.as_mut_ptr(), e);
        acc = _mm256_add_ps(acc, e);
    }
    hsum(acc)
}

/// s_j ← e^{s_j − m}·c (s.len() a multiple of 8).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_sub_mul(s: &mut [f32], m: f32, c: f32) {
    let (mv, cv) = (_mm256_set1_ps(m), _mm256_set1_ps(c));
    for ch in s.chunks_exact_mut(W) {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(ch.as_ptr()), mv));
        _mm256_storeu_ps(ch.as_mut_ptr(), _mm256_mul_ps(e, cv));
    }
}

/// p_j ← p_j·(dp_j − δ) (lengths equal, a multiple of 8).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dsoftmax(p: &mut [f32], dp: &[f32], delta: f32) {
    let dv = _mm256_set1_ps(delta);
    for (ch, g) in p.chunks_exact_mut(W).zip(dp.chunks_exact(W)) {
        let x = _mm256_loadu_ps(ch.as_ptr());
        let y = _mm256_sub_ps(_mm256_loadu_ps(g.as_ptr()), dv);
        _mm256_storeu_ps(ch.as_mut_ptr(), _mm256_mul_ps(x, y));
    }
}

/// x_j ← x_j·c (x.len() a multiple of 8).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scale(x: &mut [f32], c: f32) {
    let cv = _mm256_set1_ps(c);
    for ch in x.chunks_exact_mut(W) {
        _mm256_storeu_ps(
            ch.as_mut_ptr(),
            _mm256_mul_ps(_mm256_loadu_ps(ch.as_ptr()), cv),
        );
    }
}
