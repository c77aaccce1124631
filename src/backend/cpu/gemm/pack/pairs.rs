//! KU = 2 panels for the bf16 pair kernels (`vdpbf16ps`): the pair (x[i, 2q], x[i, 2q+1]) of
//! each row side by side, from sources whose k pairs are adjacent (moved as 32-bit values)
//! or whose k rows are (interleaved in registers), f32 sources rounded to bf16 on the way.

use half::bf16;

use super::{f32_to_bf16_bits, Convert, View};
use crate::backend::cpu::isa::{self, Isa};

/// A source element of a bf16 panel: its bf16 bits, and a k pair (x[p], x[p+1]) as one
/// 32-bit value, first element in the low half.
pub(super) trait PairBits: Copy {
    /// The source already holds bf16 bit patterns, so a pair is the 4 bytes at its address.
    const ADJACENT: bool = false;
    /// The source is f32 (rounded to bf16 while packing).
    const F32: bool = false;
    fn bits(self) -> u16;
    /// The first `n` ≤ 32 values at `p` as bf16 bits in the 16-bit lanes of one vector, the
    /// other lanes 0.
    ///
    /// # Safety
    /// AVX-512F/BW (the caller's target features); the `n` values at `p` are readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load32(p: *const Self, n: usize) -> std::arch::x86_64::__m512i;
    /// # Safety
    /// `p` and `p + 1` must be readable.
    #[inline(always)]
    unsafe fn pair(p: *const Self) -> u32 {
        // SAFETY: the caller's contract.
        unsafe { Self::bits(*p) as u32 | (Self::bits(*p.add(1)) as u32) << 16 }
    }
}

impl PairBits for bf16 {
    const ADJACENT: bool = true;
    #[inline(always)]
    fn bits(self) -> u16 {
        self.to_bits()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load32(p: *const bf16, n: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        // SAFETY: the lanes under `mask` are readable (the caller's contract); masked-off
        // lanes are not accessed.
        unsafe { _mm512_maskz_loadu_epi16(mask, p as *const i16) }
    }
    /// Adjacent bf16 values already are the pair: one unaligned 32-bit load.
    #[inline(always)]
    unsafe fn pair(p: *const bf16) -> u32 {
        // SAFETY: the caller's contract; bf16 is a plain 16-bit value.
        unsafe { (p as *const u32).read_unaligned() }
    }
}

impl PairBits for f32 {
    const F32: bool = true;
    #[inline(always)]
    fn bits(self) -> u16 {
        f32_to_bf16_bits(self)
    }
    /// Each half of 16 rounded as `f32_to_bf16_bits` (`bf16_upper`), its upper 16-bit halves
    /// narrowed into one 256-bit half of the result.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load32(p: *const f32, n: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        let mask = |n: usize| if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
        // SAFETY: the lanes under each mask are readable (the caller's contract).
        let (lo, hi) = unsafe {
            (
                bf16_upper(p, mask(n.min(16))),
                bf16_upper(p.wrapping_add(16), mask(n.saturating_sub(16))),
            )
        };
        let narrow = |x: __m512i| _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(x));
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(narrow(lo)), narrow(hi))
    }
}

/// `Convert::pack_pairs` for a source whose elements become bf16 bits by `PairBits`.
pub(super) fn pack_pairs<T: PairBits, const R: usize>(
    blk: &[T],
    rs: usize,
    ks: usize,
    nr: usize,
    kc: usize,
    out: &mut [bf16],
) -> bool {
    // SAFETY: bf16 is a plain 16-bit value: the panel is viewed as the u16 bits it holds,
    // length unchanged.
    let d16 = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u16, out.len()) };
    if ks == 1 {
        pairs_along_k::<T, R>(blk, rs, nr, kc, d16);
    } else if rs == 1 {
        interleave_k_pairs::<T, R>(blk, ks, nr, kc, d16);
    } else {
        return false;
    }
    true
}

/// KU = 2 panels from a source whose panel rows are contiguous (B row-major, k rows `cs`
/// apart): a few k rows at a time across every panel, rather than panel by panel down the
/// whole depth, whose every pair step lands on a new page once rows are 2 KiB apart, where
/// the hardware prefetchers stop (1024³ bf16, 1 thread: packing B panel by panel was 10% of
/// the GEMM). Returns false, before packing anything, where `C` does not pack pairs.
#[allow(clippy::too_many_arguments)]
pub(super) fn pairs_across_panels<C: Convert, const R: usize>(
    src: View<'_, C::Src>,
    kpad: usize,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) -> bool {
    /// k rows per sweep across the panels (even, so every sweep starts on a pair).
    const STEPS: usize = 16;
    let kcp = kc.next_multiple_of(kpad);
    let panel = R * kcp;
    let panels = rows.div_ceil(R);
    for k0 in (0..kc).step_by(STEPS) {
        let ks = (kc - k0).min(STEPS);
        for pi in 0..panels {
            let nr = (rows - pi * R).min(R);
            let out = &mut dst[pi * panel..][..panel];
            if k0 == 0 && (nr < R || kcp != kc) {
                out.fill(C::Dst::default());
            }
            let base = src.off + r0 + pi * R + (p0 + k0) * src.cs;
            let blk = &src.data[base..=base + (ks - 1) * src.cs + nr - 1];
            let out = &mut out[(k0 / 2) * 2 * R..][..ks.div_ceil(2) * 2 * R];
            if !C::pack_pairs::<R>(blk, 1, src.cs, nr, ks, out) {
                assert!(k0 == 0 && pi == 0, "pair packing refused part way");
                return false;
            }
        }
    }
    true
}

/// One KU = 2 panel from rows that are contiguous along k (A row-major, or Bᵀ): the pair
/// (x[i, 2q], x[i, 2q+1]) is already adjacent in the source, so each pair moves as one 32-bit
/// value: out[q·2R + 2i ..][..2] = row_i[2q ..][..2]. An odd kc leaves the last pair's second
/// half as the zero the caller filled in.
pub(super) fn pairs_along_k<T: PairBits, const R: usize>(
    blk: &[T],
    rs: usize,
    nr: usize,
    kc: usize,
    out: &mut [u16],
) {
    let kh = kc / 2;
    assert!(nr <= R && blk.len() >= (nr - 1) * rs + kc && out.len() >= kc.div_ceil(2) * 2 * R);
    // Groups of 4 rows × 4 pairs in place as 4 × 4 transposes of 32-bit lanes.
    let (i4, q4) = if T::ADJACENT && cfg!(target_arch = "x86_64") {
        (nr / 4 * 4, kh / 4 * 4)
    } else {
        (0, 0)
    };
    #[cfg(target_arch = "x86_64")]
    for i in (0..i4).step_by(4) {
        use std::arch::x86_64::*;
        for q in (0..q4).step_by(4) {
            // SAFETY: rows i..i+4 < nr hold kc ≥ 2q + 8 values from i·rs (asserted above), read
            // as 16 unaligned bytes each (ADJACENT: 2-byte plain values); the four stores of
            // 16 bytes at out[(q+r)·2R + 2i ..] end below kh·2R ≤ out.len() since i + 4 ≤ R.
            unsafe {
                let src = |r: usize| blk.as_ptr().add((i + r) * rs + 2 * q) as *const __m128i;
                let (r0, r1) = (_mm_loadu_si128(src(0)), _mm_loadu_si128(src(1)));
                let (r2, r3) = (_mm_loadu_si128(src(2)), _mm_loadu_si128(src(3)));
                let (t0, t1) = (_mm_unpacklo_epi32(r0, r1), _mm_unpacklo_epi32(r2, r3));
                let (t2, t3) = (_mm_unpackhi_epi32(r0, r1), _mm_unpackhi_epi32(r2, r3));
                let base = out.as_mut_ptr() as *mut u32;
                let d = |r: usize| base.add((q + r) * R + i);
                _mm_storeu_si128(d(0) as *mut __m128i, _mm_unpacklo_epi64(t0, t1));
                _mm_storeu_si128(d(1) as *mut __m128i, _mm_unpackhi_epi64(t0, t1));
                _mm_storeu_si128(d(2) as *mut __m128i, _mm_unpacklo_epi64(t2, t3));
                _mm_storeu_si128(d(3) as *mut __m128i, _mm_unpackhi_epi64(t2, t3));
            }
        }
    }
    for i in 0..nr {
        let row = &blk[i * rs..i * rs + kc];
        // Pairs the transposes above did not cover.
        let q0 = if i < i4 { q4 } else { 0 };
        // SAFETY: q < kh reads row[2q ..= 2q+1] (2q + 1 < kc) and writes
        // out[q·2R + 2i ..= q·2R + 2i + 1] (< kh·2R ≤ out.len(), as i < R) as one unaligned
        // 32-bit store of plain u16 data.
        unsafe {
            let d = out.as_mut_ptr() as *mut u32;
            for q in q0..kh {
                d.add(q * R + i)
                    .write_unaligned(T::pair(row.as_ptr().add(2 * q)));
            }
        }
        if kc % 2 == 1 {
            out[kh * 2 * R + 2 * i] = row[kc - 1].bits();
        }
    }
}

/// One KU = 2 panel from a source whose panel dimension is contiguous (B row-major): k rows
/// 2q and 2q+1 are interleaved, out[q·2R + 2j] = x[2q, j], out[q·2R + 2j + 1] = x[2q+1, j]
/// (an odd kc pairs its last row with the caller's zeros). `ks` is the stride between k rows.
pub(super) fn interleave_k_pairs<T: PairBits, const R: usize>(
    blk: &[T],
    ks: usize,
    nr: usize,
    kc: usize,
    out: &mut [u16],
) {
    interleave_k_pairs_at::<T, R>(isa::detected(), blk, ks, nr, kc, out)
}

/// `interleave_k_pairs` with the instructions of `level` (at most the CPU's): AVX-512 pairs
/// 32 columns of bf16 (16 of f32) per step in zmm registers; below it, bf16 runs of 8 and 4
/// in SSE registers and single pairs.
pub(super) fn interleave_k_pairs_at<T: PairBits, const R: usize>(
    level: Isa,
    blk: &[T],
    ks: usize,
    nr: usize,
    kc: usize,
    out: &mut [u16],
) {
    let kh = kc / 2;
    assert!(nr <= R && blk.len() >= (kc - 1) * ks + nr && out.len() >= kc.div_ceil(2) * 2 * R);
    let avx512 = level.min(isa::detected()) >= Isa::Avx512;
    // bf16 sources with AVX-512: 32 columns of both rows at a time, the last run masked,
    // interleaved by two word permutes (one per half of the 64 output values). 1024³ bf16
    // (AMX), 1 thread: the SSE runs of 8 packed B at ~17 GB/s, 6% of the GEMM's samples.
    // Intel Xeon (family 6 model 167), bf16 C, 1 thread, in process against the SSE runs
    // (two runs of 9 and 7 pairs): 4096 × 768 × 3072 +4.9% / +4.9%, 768 × 512 × 128 +3.5% /
    // +2.5%, 1024³ +3.8% / +0.2%, 512³ +1.6% / −0.7%.
    let in_zmm = cfg!(target_arch = "x86_64") && T::ADJACENT && avx512;
    #[cfg(target_arch = "x86_64")]
    if in_zmm {
        // SAFETY: T holds bf16 bits (ADJACENT: 2-byte plain values); k rows 0..2·kh hold nr
        // values each, `ks` apart, and `out` kc.div_ceil(2)·2R values, nr ≤ R (asserted
        // above); the level (AVX-512F and BW) is at most the CPU's.
        unsafe { interleave_rows(blk.as_ptr() as *const u16, ks, nr, kh, out.as_mut_ptr(), R) };
    }
    // f32 sources with AVX-512 (every CPU whose bf16 kernels pack pairs): 16 columns at a
    // time, the last run masked, rounded and paired in zmm registers.
    #[cfg(target_arch = "x86_64")]
    if T::F32 && avx512 {
        for q in 0..kc.div_ceil(2) {
            let r0 = blk[2 * q * ks..][..nr].as_ptr() as *const f32;
            // An odd kc's last row pairs with zeros (its second row is never read).
            let r1 = (2 * q + 1 < kc).then(|| blk[(2 * q + 1) * ks..][..nr].as_ptr() as *const f32);
            let o = out[q * 2 * R..][..2 * nr].as_mut_ptr();
            for j in (0..nr).step_by(16) {
                // SAFETY: T is f32 (T::F32), rows r0 / r1 hold nr values and `o` 2·nr u16;
                // the lanes j..min(j + 16, nr) are masked in; AVX-512F was checked above.
                unsafe {
                    round_pairs16(
                        r0.add(j),
                        r1.map(|r| r.add(j)),
                        o.add(2 * j) as *mut u32,
                        (nr - j).min(16),
                    )
                };
            }
        }
        return;
    }
    // Runs of 8 columns interleaved in SSE registers when the source holds bf16 bits, and a
    // run of 4 after them (a 12-row A panel: 8 + 4).
    let (j8, j4) = if T::ADJACENT && cfg!(target_arch = "x86_64") {
        (nr / 8 * 8, nr / 4 * 4)
    } else {
        (0, 0)
    };
    // The pairs left to this loop: all of them, or none when paired in zmm registers above.
    let left = if in_zmm { 0 } else { kh };
    for q in 0..left {
        let r0 = &blk[2 * q * ks..][..nr];
        let r1 = &blk[(2 * q + 1) * ks..][..nr];
        let o = &mut out[q * 2 * R..][..2 * nr];
        #[cfg(target_arch = "x86_64")]
        for j in (0..j8).step_by(8) {
            use std::arch::x86_64::*;
            // SAFETY: j + 8 ≤ nr, so 16 bytes of each row (ADJACENT: 2-byte plain values) are
            // read at j and 32 bytes of `o` (2·nr values) written at 2j.
            unsafe {
                let a = _mm_loadu_si128(r0.as_ptr().add(j) as *const __m128i);
                let b = _mm_loadu_si128(r1.as_ptr().add(j) as *const __m128i);
                let d = o.as_mut_ptr().add(2 * j) as *mut __m128i;
                _mm_storeu_si128(d, _mm_unpacklo_epi16(a, b));
                _mm_storeu_si128(d.add(1), _mm_unpackhi_epi16(a, b));
            }
        }
        #[cfg(target_arch = "x86_64")]
        if j4 > j8 {
            use std::arch::x86_64::*;
            // SAFETY: j8 + 4 = j4 ≤ nr, so 8 bytes of each row are read at j8 and 16 bytes of
            // `o` written at 2·j8.
            unsafe {
                let a = _mm_loadl_epi64(r0.as_ptr().add(j8) as *const __m128i);
                let b = _mm_loadl_epi64(r1.as_ptr().add(j8) as *const __m128i);
                let d = o.as_mut_ptr().add(2 * j8) as *mut __m128i;
                _mm_storeu_si128(d, _mm_unpacklo_epi16(a, b));
            }
        }
        for ((pair, &a), &b) in o[2 * j4..]
            .chunks_exact_mut(2)
            .zip(&r0[j4..])
            .zip(&r1[j4..])
        {
            pair[0] = a.bits();
            pair[1] = b.bits();
        }
    }
    if kc % 2 == 1 {
        let r0 = &blk[(kc - 1) * ks..][..nr];
        let o = &mut out[kh * 2 * R..][..2 * nr];
        for (pair, &a) in o.chunks_exact_mut(2).zip(r0) {
            pair[0] = a.bits();
        }
    }
}

/// out[q·2r + 2j + h] = x[(2q + h)·ks + j] for q < kh, j < nr, h < 2: the k rows of 16-bit
/// values at x paired, 32 columns at a time (`interleave32`), in one call.
///
/// # Safety
/// AVX-512F and BW; rows 0..2·kh of `nr` values readable at x + row·ks, and out[q·2r ..
/// q·2r + 2·nr] writable for q < kh.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave_rows(x: *const u16, ks: usize, nr: usize, kh: usize, out: *mut u16, r: usize) {
    for q in 0..kh {
        let (r0, r1) = (x.wrapping_add(2 * q * ks), x.wrapping_add((2 * q + 1) * ks));
        let o = out.wrapping_add(q * 2 * r);
        for j in (0..nr).step_by(32) {
            // SAFETY: lanes j..min(j + 32, nr) of both rows and 2·(those) of `o` (the
            // caller's contract).
            unsafe { interleave32(r0.add(j), r1.add(j), o.add(2 * j), (nr - j).min(32)) };
        }
    }
}

/// out[2j] = r0[j], out[2j + 1] = r1[j] for the first `n` ≤ 32 values of two rows of 16-bit
/// values: `vpermt2w` picks words 0..16 of each row for the first 32 outputs, 16..32 for
/// the next 32.
///
/// # Safety
/// AVX-512F and BW; `n` values readable at r0 and r1, 2·`n` writable at `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn interleave32(r0: *const u16, r1: *const u16, out: *mut u16, n: usize) {
    use std::arch::x86_64::*;
    // Word 2t of the first half takes word t of r0 (index t), word 2t + 1 word t of r1
    // (index 32 + t); the second half the same from t + 16.
    const LO: [i16; 32] = {
        let mut idx = [0i16; 32];
        let mut t = 0;
        while t < 16 {
            idx[2 * t] = t as i16;
            idx[2 * t + 1] = 32 + t as i16;
            t += 1;
        }
        idx
    };
    let mask = |n: usize| if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
    // SAFETY: the index vectors are 64 bytes each; the lanes under each mask are readable
    // and writable (the caller's contract).
    unsafe {
        let lo = _mm512_loadu_si512(LO.as_ptr() as *const __m512i);
        let hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
        let a = _mm512_maskz_loadu_epi16(mask(n), r0 as *const i16);
        let b = _mm512_maskz_loadu_epi16(mask(n), r1 as *const i16);
        let out = out as *mut i16;
        _mm512_mask_storeu_epi16(out, mask(2 * n), _mm512_permutex2var_epi16(a, lo, b));
        if n > 16 {
            let rest = _mm512_permutex2var_epi16(a, hi, b);
            _mm512_mask_storeu_epi16(out.add(32), mask(2 * n - 32), rest);
        }
    }
}

/// out[j] = bf16(r0[j]) | bf16(r1[j]) << 16 for the first `n` ≤ 16 lanes (r1 absent: zero
/// upper halves), with the rounding of `f32_to_bf16_bits` per lane: to nearest even by
/// adding 0x7FFF plus the kept lowest bit, a NaN quieted (bit 6 of its bf16 set).
///
/// # Safety
/// AVX-512F; `n` values readable at r0 (and r1), `n` u32 writable at `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn round_pairs16(
    r0: *const f32,
    r1: Option<*const f32>,
    out: *mut u32,
    n: usize,
) {
    use std::arch::x86_64::*;
    let mask: __mmask16 = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
    // SAFETY (both): lanes under `mask` are readable (the caller's contract).
    let lo = _mm512_srli_epi32::<16>(unsafe { bf16_upper(r0, mask) });
    let pairs = match r1 {
        Some(r1) => {
            let hi = unsafe { bf16_upper(r1, mask) };
            _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi32(-65536)))
        }
        None => lo,
    };
    // SAFETY: lanes under `mask` are writable (the caller's contract).
    unsafe { _mm512_mask_storeu_epi32(out as *mut i32, mask, pairs) };
}

/// The lanes of `p` under `mask` rounded to bf16, the bits in each lane's upper half (the
/// lower half is garbage); see `round_pairs16`.
///
/// # Safety
/// AVX-512F; the lanes under `mask` readable at `p`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn bf16_upper(
    p: *const f32,
    mask: std::arch::x86_64::__mmask16,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract.
    let b = _mm512_castps_si512(unsafe { _mm512_maskz_loadu_ps(mask, p) });
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
    let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFF_FFFF));
    let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F80_0000));
    let quiet = _mm512_or_si512(b, _mm512_set1_epi32(0x0040_0000));
    _mm512_mask_blend_epi32(nan, rounded, quiet)
}
