//! AMX A panels from an A stored transposed: 32 × 32 blocks of 16-bit values transposed in
//! zmm registers into whole 32-long k rows (one 64-byte tile row each).

use half::bf16;

use super::pairs::PairBits;

/// Tile rows (and k values per tile row) of an AMX A panel.
pub(super) const TILE: usize = 32;

/// `Convert::pack_tiles`: the AMX A panels (R = KU = 32) of `rows` rows from a source whose
/// panel rows are contiguous (A transposed, k rows `ks` apart),
///   out[pi·P + kb·1024 + i·32 + q] = bf16(x[32·kb + q, 32·pi + i]),  P = 32·kc',
/// each 32 × 32 tile transposed in registers (`transpose_tile`), one k block of 32 rows
/// across every panel before the next (the source read line after line, as
/// `pairs_across_panels` does), the k tail element by element; panels short of rows or k
/// are zeroed first. Element by element, panel after panel, this packing took 78% of a
/// 512 × 512 × 64 × 12 bf16 product with A transposed (attention's dV = Pᵀ·dO). Returns
/// false, having done nothing, without AVX-512 BW.
pub(super) fn tiles_across_panels<T: PairBits>(
    blk: &[T],
    ks: usize,
    rows: usize,
    kc: usize,
    out: &mut [bf16],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return false;
        }
        let kcp = kc.next_multiple_of(TILE);
        let panel = TILE * kcp;
        let panels = rows.div_ceil(TILE);
        assert!(
            rows > 0
                && kc > 0
                && blk.len() > (kc - 1) * ks + rows - 1
                && out.len() >= panels * panel
        );
        let nr = |pi: usize| (rows - pi * TILE).min(TILE);
        for pi in 0..panels {
            if nr(pi) < TILE || kcp != kc {
                out[pi * panel..][..panel].fill(bf16::ZERO);
            }
        }
        let full = kc / TILE;
        // One k block across every panel, then the next: the block's 32 source rows are
        // read line after line (512 × 512 × 64 × 12 and 512 × 768 × 128, 1 thread: 5–10%
        // faster than panel after panel; a software prefetch of the next block's lines,
        // into L1 or L2, lost 4–12%).
        for kb in 0..full {
            for pi in 0..panels {
                // SAFETY: AVX-512F/BW (checked); k rows 32·kb .. 32·kb + 32 < kc of the block
                // hold the panel's nr(pi) values from column 32·pi (asserted: the block
                // spans kc rows of `rows` values), and the tile's 1024 values lie in the
                // panel's part of `out` (asserted).
                unsafe {
                    transpose_tile::<T>(
                        blk.as_ptr().add(kb * TILE * ks + pi * TILE),
                        ks,
                        nr(pi),
                        out.as_mut_ptr().add(pi * panel + kb * TILE * TILE) as *mut u16,
                    )
                };
            }
        }
        for p in full * TILE..kc {
            let o = (p / TILE) * TILE * TILE + p % TILE;
            for i in 0..rows {
                let at = (i / TILE) * panel + o + (i % TILE) * TILE;
                out[at] = bf16::from_bits(blk[p * ks + i].bits());
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (blk, ks, rows, kc, out);
        false
    }
}

/// One 32 × 32 block: out[i·32 + q] = bits(x[q·ks + i]) for i < 32 (rows i ≥ nr read as 0),
/// q < 32. Rows q and q + 1 are interleaved into 32-bit pairs (`unpack*_epi16`: within each
/// 128-bit lane, lanes 0–3 of the low result hold the pairs of columns 8L + 0..4, of the
/// high result 8L + 4..8), which leaves two 16 × 16 transposes of 32-bit values
/// (`transpose_16x16`): row e of the low one is out's row 8·(e / 4) + e % 4, of the high
/// one row 8·(e / 4) + 4 + e % 4, each 16 pairs = the row's 32 k values in order.
///
/// # Safety
/// AVX-512F/BW; rows q < 32 at `x + q·ks` hold `nr` readable values; `out` holds 1024
/// writable u16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn transpose_tile<T: PairBits>(x: *const T, ks: usize, nr: usize, out: *mut u16) {
    use std::arch::x86_64::*;
    let mut lo = [_mm512_setzero_si512(); 16];
    let mut hi = [_mm512_setzero_si512(); 16];
    for q in 0..16 {
        // SAFETY: rows 2q and 2q + 1 hold nr readable values (the caller's contract).
        let (r0, r1) = unsafe {
            (
                T::load32(x.add(2 * q * ks), nr),
                T::load32(x.add((2 * q + 1) * ks), nr),
            )
        };
        lo[q] = _mm512_unpacklo_epi16(r0, r1);
        hi[q] = _mm512_unpackhi_epi16(r0, r1);
    }
    transpose_16x16(&mut lo);
    transpose_16x16(&mut hi);
    for e in 0..16 {
        let row = 8 * (e / 4) + e % 4;
        // SAFETY: rows `row` and `row + 4` < 32 of the 32 × 32 output lie in `out`.
        unsafe {
            _mm512_storeu_si512(out.add(row * TILE) as *mut _, lo[e]);
            _mm512_storeu_si512(out.add((row + 4) * TILE) as *mut _, hi[e]);
        }
    }
}

/// In place: m[e] lane r = m[r] lane e (32-bit lanes), as four 4 × 4 stages: pairs of rows
/// (`unpack*_epi32`), pairs of pairs (`unpack*_epi64`), then the 4 × 4 transpose of 128-bit
/// lanes among each group of four rows (`shuffle_i32x4`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transpose_16x16(m: &mut [std::arch::x86_64::__m512i; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for j in 0..8 {
        t[2 * j] = _mm512_unpacklo_epi32(m[2 * j], m[2 * j + 1]);
        t[2 * j + 1] = _mm512_unpackhi_epi32(m[2 * j], m[2 * j + 1]);
    }
    // u[4j + c], 128-bit lane L: rows 4j .. 4j + 4 of column 4L + c.
    let mut u = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        u[4 * j] = _mm512_unpacklo_epi64(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = _mm512_unpackhi_epi64(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = _mm512_unpacklo_epi64(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = _mm512_unpackhi_epi64(t[4 * j + 1], t[4 * j + 3]);
    }
    // Column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
    for c in 0..4 {
        let (v0, v1, v2, v3) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
        let x0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v0, v1);
        let x1 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v0, v1);
        let x2 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v2, v3);
        let x3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v2, v3);
        m[c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x0, x2);
        m[4 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x0, x2);
        m[8 + c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x1, x3);
        m[12 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x1, x3);
    }
}
