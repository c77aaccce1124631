//! f32 panels from rows contiguous along k (a row-major A): 4 × 4 blocks transposed in SSE
//! registers, bf16 sources widened on the way.

use half::bf16;

/// Four consecutive source values widened to f32 in an SSE register.
#[cfg(target_arch = "x86_64")]
pub(super) trait Load4: Copy {
    /// # Safety
    /// `p .. p + 4` must be readable.
    unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m128;
    fn to_f32(self) -> f32;
}

#[cfg(target_arch = "x86_64")]
impl Load4 for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> std::arch::x86_64::__m128 {
        // SAFETY: the caller guarantees 4 readable floats.
        unsafe { std::arch::x86_64::_mm_loadu_ps(p) }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

#[cfg(target_arch = "x86_64")]
impl Load4 for bf16 {
    /// bf16 → f32 is a 16-bit left shift: interleave zeros below each value.
    #[inline(always)]
    unsafe fn load4(p: *const bf16) -> std::arch::x86_64::__m128 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 4 readable bf16 (8 bytes).
        unsafe {
            let x = _mm_loadl_epi64(p as *const __m128i);
            _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), x))
        }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// One panel of r = out.len() / kc rows: out[p·r + i] = blk[i·rs + p] (as f32) for i < r,
/// p < kc: 4 × 4 blocks transposed in SSE registers (baseline on x86-64); leftover rows and
/// the k tail element by element.
#[cfg(target_arch = "x86_64")]
pub(super) fn transpose_rows<T: Load4>(blk: &[T], rs: usize, kc: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let r = out.len() / kc;
    assert!(r > 0 && blk.len() > (r - 1) * rs + kc - 1);
    let k4 = kc / 4 * 4;
    let r4 = r / 4 * 4;
    let (src, dst) = (blk.as_ptr(), out.as_mut_ptr());
    for i in r4..r {
        for p in 0..kc {
            out[p * r + i] = blk[i * rs + p].to_f32();
        }
    }
    for i in (0..r4).step_by(4) {
        for p in (0..k4).step_by(4) {
            if p % 16 == 0 {
                // The same line of the next 4 rows (for the last group, the next panel's
                // first rows): every row is its own page at large strides, where the
                // hardware prefetchers do not follow.
                for q in 4..8 {
                    let next = src.wrapping_add((i + q) * rs + p) as *const i8;
                    // SAFETY: prefetching is a hint and never faults.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(next) };
                }
            }
            // SAFETY: rows i..i+4 and columns p..p+4 lie in `blk` and the four 4-float
            // destinations (p+q)·r + i .. +4 in `out` (asserted bounds above).
            unsafe {
                let s = src.add(i * rs + p);
                let r0 = T::load4(s);
                let r1 = T::load4(s.add(rs));
                let r2 = T::load4(s.add(2 * rs));
                let r3 = T::load4(s.add(3 * rs));
                let t0 = _mm_unpacklo_ps(r0, r1);
                let t1 = _mm_unpacklo_ps(r2, r3);
                let t2 = _mm_unpackhi_ps(r0, r1);
                let t3 = _mm_unpackhi_ps(r2, r3);
                let d = dst.add(p * r + i);
                _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
                _mm_storeu_ps(d.add(r), _mm_movehl_ps(t1, t0));
                _mm_storeu_ps(d.add(2 * r), _mm_movelh_ps(t2, t3));
                _mm_storeu_ps(d.add(3 * r), _mm_movehl_ps(t3, t2));
            }
        }
        for p in k4..kc {
            for q in 0..4 {
                out[p * r + i + q] = blk[(i + q) * rs + p].to_f32();
            }
        }
    }
}
