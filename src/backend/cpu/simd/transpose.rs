//! Scaled transpose of an f32 block: dst[c·dst_ld + r] = α·src[r·src_ld + c] for r < rows,
//! c < cols (packing keys as the transposed panels of attention's S = Q·Kᵀ). With AVX-512
//! every whole 16 × 16 block goes through registers: 16 row loads, four rounds of 16 shuffles
//! (32-bit, 64-bit, then two of 128-bit lanes), 16 multiplies and 16 column stores, where the
//! element loop stores one float at a time, 4·BC bytes apart. The edges, and the other levels,
//! go element by element.

use super::super::isa::Isa;

/// dst[c·dst_ld + r] = alpha·src[r·src_ld + c] for r < rows, c < cols.
///
/// # Panics
/// When `src` or `dst` is too short for the block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transpose_scaled(
    isa: Isa,
    src: &[f32],
    src_ld: usize,
    rows: usize,
    cols: usize,
    alpha: f32,
    dst: &mut [f32],
    dst_ld: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src.len() >= (rows - 1) * src_ld + cols && dst.len() >= (cols - 1) * dst_ld + rows,
        "transpose_scaled: {rows} × {cols} block, source {} floats (row stride {src_ld}), \
         destination {} floats (row stride {dst_ld})",
        src.len(),
        dst.len()
    );
    // Rows and columns covered by whole 16 × 16 blocks.
    let (r16, c16) = if cfg!(target_arch = "x86_64") && isa >= Isa::Avx512 {
        (rows / 16 * 16, cols / 16 * 16)
    } else {
        (0, 0)
    };
    #[cfg(target_arch = "x86_64")]
    for r0 in (0..r16).step_by(16) {
        for c0 in (0..c16).step_by(16) {
            // SAFETY: rows r0..r0+16 of src hold columns c0..c0+16 and rows c0..c0+16 of dst
            // hold columns r0..r0+16 (asserted bounds, r0 + 16 ≤ rows, c0 + 16 ≤ cols); the
            // level is AVX-512, which `isa` never exceeds on this CPU.
            unsafe {
                block16(
                    src.as_ptr().add(r0 * src_ld + c0),
                    src_ld,
                    dst.as_mut_ptr().add(c0 * dst_ld + r0),
                    dst_ld,
                    alpha,
                )
            }
        }
    }
    for r in 0..rows {
        let first = if r < r16 { c16 } else { 0 };
        for c in first..cols {
            dst[c * dst_ld + r] = alpha * src[r * src_ld + c];
        }
    }
}

/// One 16 × 16 block: dst[c·dst_ld + r] = alpha·src[r·src_ld + c], r, c < 16.
///
/// # Safety
/// 16 rows of 16 floats at `src` (stride `src_ld`) readable, at `dst` (stride `dst_ld`)
/// writable; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block16(src: *const f32, src_ld: usize, dst: *mut f32, dst_ld: usize, alpha: f32) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every load and store; the rest are register ops.
    unsafe {
        let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(i * src_ld)));
        // Round 1, 32-bit interleave of row pairs (2i, 2i+1): lo[k] pairs elements 4k, 4k+1 of
        // each 128-bit lane, hi the elements 4k+2, 4k+3.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Round 2, 64-bit interleave of (t[4g], t[4g+2]) and (t[4g+1], t[4g+3]): each 128-bit
        // lane of u[4g + j] now holds column 4l + j of rows 4g .. 4g+4.
        let pd = |x: __m512| _mm512_castps_pd(x);
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        // Rounds 3 and 4, 128-bit lanes: gather lane l of the four row groups into one
        // register, which is column 4l + j of all 16 rows.
        let mut w = [_mm512_setzero_ps(); 16];
        for j in 0..4 {
            w[j] = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            w[4 + j] = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
            w[8 + j] = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            w[12 + j] = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
        }
        let a = _mm512_set1_ps(alpha);
        for j in 0..4 {
            let cols = [
                _mm512_shuffle_f32x4::<0x88>(w[j], w[8 + j]),
                _mm512_shuffle_f32x4::<0x88>(w[4 + j], w[12 + j]),
                _mm512_shuffle_f32x4::<0xDD>(w[j], w[8 + j]),
                _mm512_shuffle_f32x4::<0xDD>(w[4 + j], w[12 + j]),
            ];
            for (l, col) in cols.into_iter().enumerate() {
                _mm512_storeu_ps(dst.add((4 * l + j) * dst_ld), _mm512_mul_ps(a, col));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::isa;
    use super::*;

    /// Every level this CPU has against the element loop's exact values (a transpose and one
    /// multiply per element), on blocks around the 16 × 16 grid, with padded strides, and
    /// with everything outside the block left untouched.
    #[test]
    fn transpose_scaled_matches_elementwise_at_every_level() {
        for level in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if level > isa::detected() {
                continue;
            }
            for (rows, cols) in [(1, 1), (16, 16), (64, 32), (33, 47), (15, 17), (48, 16)] {
                let (src_ld, dst_ld) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * src_ld).map(|x| x as f32 * 0.5 - 7.0).collect();
                let mut dst = vec![f32::NAN; cols * dst_ld];
                transpose_scaled(level, &src, src_ld, rows, cols, 0.25, &mut dst, dst_ld);
                for c in 0..cols {
                    for r in 0..dst_ld {
                        let got = dst[c * dst_ld + r];
                        if r < rows {
                            let want = 0.25 * src[r * src_ld + c];
                            assert_eq!(got, want, "{level:?} {rows}×{cols} at ({r}, {c})");
                        } else {
                            assert!(got.is_nan(), "{level:?} {rows}×{cols}: wrote padding");
                        }
                    }
                }
            }
        }
    }
}
