//! A bf16 C: the f32 tiles the kernels accumulate, rounded to bf16 once, after the last k
//! block (`bgemm_batched_to_bf16`). Per element, exactly `half::bf16::from_f32`:
//!   bits(x) ↦ (bits + 0x7FFF + lsb) >> 16,  lsb = bit 16 of bits (nearest, ties to even),
//! NaN quieted (bits >> 16 | 0x40), subnormal f32 kept (not flushed as `vcvtne2ps2bf16` does),
//! so the result equals the f32 GEMM's C rounded afterwards, bit for bit, on every path.
//! And the way back for beta = 1: a bf16 C tile widened (exactly) to f32 before the kernel
//! accumulates into it.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::bf16;

use super::pack::f32_to_bf16_bits;
use crate::backend::cpu::isa::{self, Isa};

/// A tile of f32 values: element (i, j) at `ptr + i·rs + j·cs`, i < rows, j < cols.
#[derive(Clone, Copy)]
pub(super) struct Tile<T> {
    pub(super) ptr: T,
    pub(super) rs: usize,
    pub(super) cs: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
}

impl<T> Tile<T> {
    pub(super) fn new(ptr: T, rs: usize, cs: usize, rows: usize, cols: usize) -> Self {
        Tile {
            ptr,
            rs,
            cs,
            rows,
            cols,
        }
    }
}

impl<T> Tile<*mut T> {
    pub(super) fn as_const(self) -> Tile<*const T> {
        Tile {
            ptr: self.ptr.cast_const(),
            rs: self.rs,
            cs: self.cs,
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// How a row of f32 is rounded to bf16 (the same bits every way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rounding {
    /// `vcvtne2ps2bf16`, 32 values per instruction (AVX-512 BF16); it reads subnormal
    /// inputs as 0, so a group of 32 holding one (`vfpclassps`) is rounded as `Avx512` is.
    Cvtne,
    /// The module's formula on 16 lanes of AVX-512F integers.
    Avx512,
    /// One element at a time.
    Scalar,
}

impl Rounding {
    /// The fastest way at `level` on this CPU.
    pub(super) fn at(level: Isa) -> Rounding {
        let level = level.min(isa::detected());
        if level >= Isa::Avx512 && isa::has_avx512_bf16() {
            Rounding::Cvtne
        } else if level >= Isa::Avx512 {
            Rounding::Avx512
        } else {
            Rounding::Scalar
        }
    }
}

/// dst (bf16) = src (f32) rounded to nearest even, row by row (the vector ways only on
/// contiguous rows).
///
/// # Safety
/// Every (i, j) element of both tiles lies in memory valid for reading (src) and writing
/// (dst), and the two do not overlap; `how` came from `Rounding::at` (the CPU has its
/// instructions).
pub(super) unsafe fn round_tile(how: Rounding, src: Tile<*const f32>, dst: Tile<*mut bf16>) {
    debug_assert_eq!((src.rows, src.cols), (dst.rows, dst.cols));
    let how = if src.cs == 1 && dst.cs == 1 {
        how
    } else {
        Rounding::Scalar
    };
    // SAFETY: the rows' elements are valid and, for the vector ways, contiguous (the
    // caller's contract and the check above); the CPU has `how`'s instructions.
    unsafe {
        match how {
            Rounding::Cvtne => rows_cvtne(src, dst),
            Rounding::Avx512 => rows_avx512(src, dst),
            Rounding::Scalar => {
                let round = |i: usize, j: usize| {
                    let x = *src.ptr.add(i * src.rs + j * src.cs);
                    *dst.ptr.add(i * dst.rs + j * dst.cs) = bf16::from_bits(f32_to_bf16_bits(x));
                };
                // Along dst's shorter stride (a column-major C column by column).
                if dst.cs > dst.rs {
                    for j in 0..src.cols {
                        for i in 0..src.rows {
                            round(i, j);
                        }
                    }
                } else {
                    for i in 0..src.rows {
                        for j in 0..src.cols {
                            round(i, j);
                        }
                    }
                }
            }
        }
    }
}

/// `round_tile`'s rows by `vcvtne2ps2bf16`, 32 values per instruction with no branch per
/// group (a row's tail of fewer than 32 by `round_row_avx512`); the `vfpclassps` subnormal
/// masks are OR-ed over the tile, and should any value be subnormal the whole tile is rounded
/// again by `rows_avx512` (32 × 32 Q·Kᵀ tiles at k = 64: a branch per group, with the row
/// loop around it, took a third of the GEMM's time).
///
/// # Safety
/// As `round_tile`, rows contiguous; the CPU has AVX-512 F, BW, DQ and BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512bf16")]
unsafe fn rows_cvtne(src: Tile<*const f32>, dst: Tile<*mut bf16>) {
    let (groups, tail) = (src.cols / 32, src.cols % 32);
    let mut sub: __mmask16 = 0;
    let (mut s, mut d) = (src.ptr, dst.ptr);
    for _ in 0..src.rows {
        let (mut sg, mut dg) = (s, d);
        for _ in 0..groups {
            // SAFETY: 32 values at `sg` readable and at `dg` writable, inside the current row
            // of each tile (the caller's contract).
            unsafe {
                let (lo, hi) = (_mm512_loadu_ps(sg), _mm512_loadu_ps(sg.add(16)));
                _mm512_storeu_si512(dg.cast(), cvtne32(lo, hi, &mut sub));
            }
            (sg, dg) = (sg.wrapping_add(32), dg.wrapping_add(32));
        }
        if tail > 0 {
            // SAFETY: the row's last `tail` values, inside the current row of each tile.
            unsafe { round_row_avx512(sg, dg, tail) };
        }
        (s, d) = (s.wrapping_add(src.rs), d.wrapping_add(dst.rs));
    }
    if sub != 0 {
        // SAFETY: as above.
        unsafe { rows_avx512(src, dst) };
    }
}

/// 32 f32 values (lo: the first 16) as 32 bf16 by `vcvtne2ps2bf16`, which reads a subnormal
/// input as 0: the lanes holding one are OR-ed into `sub`, and the caller rounds its values
/// again the exact way (`rows_avx512`) when `sub` ends non-zero.
///
/// # Safety
/// The caller must run with AVX-512 F, DQ and BF16 (a plain function, so `inline(always)`
/// applies and the intrinsics inline into that caller).
#[inline(always)]
pub(super) unsafe fn cvtne32(lo: __m512, hi: __m512, sub: &mut __mmask16) -> __m512i {
    const SUBNORMAL: i32 = 0x20;
    // SAFETY: the caller's target features.
    unsafe {
        *sub |= _mm512_fpclass_ps_mask::<SUBNORMAL>(lo) | _mm512_fpclass_ps_mask::<SUBNORMAL>(hi);
        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
    }
}

/// `round_tile`'s rows by `round_row_avx512`.
///
/// # Safety
/// As `round_tile`, rows contiguous; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(src: Tile<*const f32>, dst: Tile<*mut bf16>) {
    for i in 0..src.rows {
        // SAFETY: row i of each tile (the caller's contract).
        unsafe { round_row_avx512(src.ptr.add(i * src.rs), dst.ptr.add(i * dst.rs), src.cols) };
    }
}

/// dst (f32) = src (bf16), exactly.
///
/// # Safety
/// As `round_tile`, with the roles of the element types swapped.
pub(super) unsafe fn widen_tile(src: Tile<*const bf16>, dst: Tile<*mut f32>) {
    for i in 0..src.rows {
        for j in 0..src.cols {
            // SAFETY: (i, j) lies in both tiles (the caller's contract).
            unsafe {
                *dst.ptr.add(i * dst.rs + j * dst.cs) =
                    (*src.ptr.add(i * src.rs + j * src.cs)).to_f32();
            }
        }
    }
}

/// `n` contiguous f32 at `s` rounded to bf16 at `d`, 16 per step (the tail masked): the
/// formula of the module, on 32-bit lanes, then each lane's low half kept (`vpmovdw`).
///
/// # Safety
/// `s[0..n]` readable, `d[0..n]` writable; the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn round_row_avx512(s: *const f32, d: *mut bf16, n: usize) {
    let bias = _mm512_set1_epi32(0x7FFF);
    let one = _mm512_set1_epi32(1);
    let quiet = _mm512_set1_epi32(0x40);
    let abs = _mm512_set1_epi32(0x7FFF_FFFF);
    let inf = _mm512_set1_epi32(0x7F80_0000);
    let mut j = 0;
    while j < n {
        let mask: __mmask16 = if n - j >= 16 {
            0xFFFF
        } else {
            ((1u32 << (n - j)) - 1) as __mmask16
        };
        // SAFETY: the lanes under `mask` are s[j..min(j + 16, n)], readable; masked-off
        // lanes are not touched.
        let x = unsafe { _mm512_maskz_loadu_epi32(mask, s.add(j).cast()) };
        let hi = _mm512_srli_epi32::<16>(x);
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
            x,
            _mm512_add_epi32(bias, _mm512_and_si512(hi, one)),
        ));
        let nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs), inf);
        let r = _mm512_mask_or_epi32(rounded, nan, hi, quiet);
        // SAFETY: as the load: d[j..min(j + 16, n)] are writable.
        unsafe { _mm512_mask_cvtepi32_storeu_epi16(d.add(j).cast(), mask, r) };
        j += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values whose rounding is delicate: ties both ways, carries into the exponent,
    /// overflow to ∞, subnormals, ±0, ±∞, NaNs (quiet and signalling, with payloads).
    fn delicate() -> Vec<f32> {
        let bits = [
            0x3F80_8000u32, // 1 + 2^-8: a tie, kept part even → down
            0x3F81_8000,    // a tie, kept part odd → up
            0x3F80_8001,    // just above a tie → up
            0x3F80_7FFF,    // just below → down
            0x3FFF_FFFF,    // carries into the exponent
            0x7F7F_FFFF,    // f32::MAX → ∞
            0xFF7F_8000,    // −(largest finite bf16 + tie) → −∞
            0x0000_0001,    // the smallest subnormal → +0
            0x0000_8000,    // a subnormal tie
            0x0001_8000,    // a subnormal tie, odd → up
            0x807F_FFFF,    // −largest subnormal → −min normal
            0x0000_0000,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0000, // quiet NaN
            0x7F80_0001, // signalling NaN, payload in the low half only
            0xFFA0_1234, // negative signalling NaN
        ];
        let mut v: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        let mut s = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..200 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.push(f32::from_bits((s >> 32) as u32));
        }
        v
    }

    /// Every element of a rows × cols row-major tile rounded `how`, as bits.
    fn round_with(how: Rounding, src: &[f32], rows: usize, cols: usize) -> Vec<u16> {
        let mut out = vec![bf16::from_bits(0xDEAD); rows * cols];
        let tile = |rows, cols| (cols, 1, rows, cols);
        let (rs, cs, r, c) = tile(rows, cols);
        // SAFETY: both buffers hold rows × cols elements, row-major, and do not overlap.
        unsafe {
            round_tile(
                how,
                Tile {
                    ptr: src.as_ptr(),
                    rs,
                    cs,
                    rows: r,
                    cols: c,
                },
                Tile {
                    ptr: out.as_mut_ptr(),
                    rs,
                    cs,
                    rows: r,
                    cols: c,
                },
            )
        };
        out.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn rounding_matches_half_on_every_path_and_width() {
        let v = delicate();
        // Normal values only, so that every group of 32 takes `vcvtne2ps2bf16`.
        let normal: Vec<f32> = v.iter().copied().filter(|x| !x.is_subnormal()).collect();
        let mut ways = vec![Rounding::Scalar];
        if isa::detected() >= Isa::Avx512 {
            ways.push(Rounding::Avx512);
        }
        if Rounding::at(Isa::Avx512) == Rounding::Cvtne {
            ways.push(Rounding::Cvtne);
        }
        if ways.len() < 3 {
            eprintln!("round_bf16: only {ways:?} run on this CPU");
        }
        for how in ways {
            for v in [&v, &normal] {
                for cols in [1, 7, 15, 16, 17, 32, 33, 50] {
                    let rows = v.len().div_ceil(cols);
                    let src: Vec<f32> = (0..rows * cols).map(|i| v[i % v.len()]).collect();
                    let want: Vec<u16> = src.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
                    assert_eq!(
                        round_with(how, &src, rows, cols),
                        want,
                        "{how:?}, {cols} columns"
                    );
                }
            }
        }
    }

    #[test]
    fn whole_tile_rows_with_one_subnormal_and_padding() {
        // Rows of 32 (one `vcvtne2ps2bf16` each) 40 apart: one subnormal in the last row sends the whole
        // tile down the exact path; the 8 padding slots of each row stay untouched.
        let (rows, rs) = (5, 40);
        let mut src: Vec<f32> = (0..rows * rs).map(|i| 1.0 + i as f32 / 7.0).collect();
        src[(rows - 1) * rs + 31] = f32::from_bits(0x0001_8000);
        for how in [Rounding::at(Isa::Avx512), Rounding::Scalar] {
            let mut dst = vec![bf16::from_bits(0xDEAD); rows * rs];
            // SAFETY: the tiles' elements lie inside both buffers.
            unsafe {
                round_tile(
                    how,
                    Tile::new(src.as_ptr(), rs, 1, rows, 32),
                    Tile::new(dst.as_mut_ptr(), rs, 1, rows, 32),
                )
            };
            for (idx, d) in dst.iter().enumerate() {
                let want = if idx % rs < 32 {
                    bf16::from_f32(src[idx]).to_bits()
                } else {
                    0xDEAD
                };
                assert_eq!(d.to_bits(), want, "{how:?}: slot {idx}");
            }
        }
    }

    #[test]
    fn strided_tiles_touch_only_their_elements() {
        // A 3 × 4 tile of a 5-wide source, written transposed into a 4 × 6 destination.
        let src: Vec<f32> = (0..15).map(|i| i as f32 + 0.5).collect();
        let mut dst = vec![bf16::from_bits(0xDEAD); 24];
        // SAFETY: the tile's elements lie inside both buffers.
        unsafe {
            round_tile(
                Rounding::at(Isa::Avx512),
                Tile {
                    ptr: src.as_ptr(),
                    rs: 5,
                    cs: 1,
                    rows: 3,
                    cols: 4,
                },
                Tile {
                    ptr: dst.as_mut_ptr(),
                    rs: 1,
                    cs: 6,
                    rows: 3,
                    cols: 4,
                },
            )
        };
        for (idx, d) in dst.iter().enumerate() {
            let (j, i) = (idx / 6, idx % 6);
            if i < 3 && j < 4 {
                assert_eq!(d.to_f32(), src[i * 5 + j], "element ({i}, {j})");
            } else {
                assert_eq!(d.to_bits(), 0xDEAD, "untouched slot {idx}");
            }
        }
        let mut back = vec![f32::NAN; 15];
        // SAFETY: as above, the way back.
        unsafe {
            widen_tile(
                Tile {
                    ptr: dst.as_ptr(),
                    rs: 1,
                    cs: 6,
                    rows: 3,
                    cols: 4,
                },
                Tile {
                    ptr: back.as_mut_ptr(),
                    rs: 5,
                    cs: 1,
                    rows: 3,
                    cols: 4,
                },
            )
        };
        for (idx, b) in back.iter().enumerate() {
            let j = idx % 5;
            assert_eq!(b.is_nan(), j == 4, "slot {idx}");
            if j < 4 {
                assert_eq!(*b, src[idx]);
            }
        }
    }
}
