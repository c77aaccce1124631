//! The row operations of attention's online softmax and its backward, written once over
//! `Simd` (AVX-512 and AVX2 from the same body) with the scalar loops of `scalar.rs` as the
//! reference. Rows are padded to whole vectors (`kernels::lanes`).
//!
//! e^{s − m} is `exp_nonpositive_flushed` (s ≤ m in every call): ≤ 2.5·10⁻⁷ relative error
//! down to −87, exactly 0 below, so masked scores (f32::MIN − m) and far-below-max keys give
//! 0 without subnormal results; the scalar reference is `f32::exp`.

use super::super::simd::{self, simd_kernel, Simd};
use super::scalar;

simd_kernel! {
    /// max_j s_j, at least f32::MIN.
    pub(super) fn row_max(s: &[f32]) -> f32 = row_max_simd | scalar::row_max;
}
simd_kernel! {
    /// s_j ← e^{s_j − m}; returns Σ_j s_j.
    pub(super) fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 = exp_sub_sum_simd | scalar::exp_sub_sum;
}
simd_kernel! {
    /// s_j ← e^{s_j − m}·c.
    pub(super) fn exp_sub_mul(s: &mut [f32], m: f32, c: f32) = exp_sub_mul_simd | scalar::exp_sub_mul;
}
simd_kernel! {
    /// p_j ← p_j·(dp_j − δ).
    pub(super) fn dsoftmax(p: &mut [f32], dp: &[f32], delta: f32) = dsoftmax_simd | scalar::dsoftmax;
}
simd_kernel! {
    /// x_j ← x_j·c.
    pub(super) fn scale(x: &mut [f32], c: f32) = scale_simd | scalar::scale;
}

// Each body walks whole vectors: the caller (`kernels.rs`) checks that the lengths are
// multiples of S::LANES, so every load and store stays inside its slice.

#[inline(always)]
unsafe fn row_max_simd<S: Simd>(s: &[f32]) -> f32 {
    let mut m = S::splat(f32::MIN);
    for ch in s.chunks_exact(S::LANES) {
        m = S::max(m, S::load(ch.as_ptr()));
    }
    S::hmax(m)
}

#[inline(always)]
unsafe fn exp_sub_sum_simd<S: Simd>(s: &mut [f32], m: f32) -> f32 {
    let mv = S::splat(m);
    let mut acc = S::splat(0.0);
    for ch in s.chunks_exact_mut(S::LANES) {
        let e = simd::exp_nonpositive_flushed::<S>(S::sub(S::load(ch.as_ptr()), mv));
        S::store(ch.as_mut_ptr(), e);
        acc = S::add(acc, e);
    }
    S::hsum(acc)
}

#[inline(always)]
unsafe fn exp_sub_mul_simd<S: Simd>(s: &mut [f32], m: f32, c: f32) {
    let (mv, cv) = (S::splat(m), S::splat(c));
    for ch in s.chunks_exact_mut(S::LANES) {
        let e = simd::exp_nonpositive_flushed::<S>(S::sub(S::load(ch.as_ptr()), mv));
        S::store(ch.as_mut_ptr(), S::mul(e, cv));
    }
}

#[inline(always)]
unsafe fn dsoftmax_simd<S: Simd>(p: &mut [f32], dp: &[f32], delta: f32) {
    let dv = S::splat(delta);
    for (ch, g) in p.chunks_exact_mut(S::LANES).zip(dp.chunks_exact(S::LANES)) {
        let y = S::sub(S::load(g.as_ptr()), dv);
        S::store(ch.as_mut_ptr(), S::mul(S::load(ch.as_ptr()), y));
    }
}

#[inline(always)]
unsafe fn scale_simd<S: Simd>(x: &mut [f32], c: f32) {
    let cv = S::splat(c);
    for ch in x.chunks_exact_mut(S::LANES) {
        S::store(ch.as_mut_ptr(), S::mul(S::load(ch.as_ptr()), cv));
    }
}
