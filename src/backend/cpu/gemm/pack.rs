//! Packing of GEMM operands into the panel layouts the micro-kernels stream through.
//!
//! A block of A (rows × kc, any strides) becomes ⌈rows/MR⌉ panels; panel r holds rows
//! r·MR .. r·MR+MR, and within it the element (i, p) sits at
//!   (p / KU)·MR·KU + i·KU + p % KU,
//! i.e. for KU = 1 each k step is MR consecutive values (one broadcast per row), and for
//! KU = 2 (bf16 pair dot products) each pair step holds MR pairs (A[i,p], A[i,p+1]).
//! B (kc × cols) becomes ⌈cols/NR⌉ panels with (p, j) at (p / KU)·NR·KU + j·KU + p % KU.
//! Rows/columns past the edge and k past kc (up to a multiple of KU) are zero, so the
//! kernels always run full MR × NR tiles. Transposed or strided operands cost nothing extra:
//! they only change which source strides are read.

use half::bf16;

/// How a source element becomes a packed element (identity, widening or rounding to bf16).
pub(super) trait Convert: Sync {
    type Src: Copy + Sync;
    type Dst: Copy + Default + Send + Sync;
    /// `cvt` is the identity (Src and Dst are the same type): the kernels may then read
    /// the source in place.
    const IDENTITY: bool = false;
    /// Fills one KU = 2 panel of bf16 pairs from `blk` (`nr` panel rows, `kc` steps) when
    /// the source is contiguous along k (`ks == 1`: `pairs_along_k`, rows `rs` apart) or along
    /// the panel rows (`rs == 1`: `interleave_k_pairs`, k rows `ks` apart). Returns false
    /// where it does not apply (the caller then packs element by element).
    fn pack_pairs<const R: usize>(
        _blk: &[Self::Src],
        _rs: usize,
        _ks: usize,
        _nr: usize,
        _kc: usize,
        _out: &mut [Self::Dst],
    ) -> bool {
        false
    }
    fn cvt(x: Self::Src) -> Self::Dst;
    /// Fills the AMX A panels (R = KU = 32) of `rows` rows from `blk` when the panel rows are
    /// contiguous in the source (A transposed: k rows `ks` apart): `tiles_across_panels`.
    /// Returns false, having done nothing, where it does not apply (the caller then packs
    /// element by element).
    fn pack_tiles(
        _blk: &[Self::Src],
        _ks: usize,
        _rows: usize,
        _kc: usize,
        _out: &mut [Self::Dst],
    ) -> bool {
        false
    }
    /// Fast path for f32 / bf16 → f32 with k contiguous: out[p·r + i] = blk[i·rs + p] for all
    /// r = out.len() / kc rows. Returns false where it does not apply (the caller then
    /// packs element by element).
    fn transpose_f32(_blk: &[Self::Src], _rs: usize, _kc: usize, _out: &mut [Self::Dst]) -> bool {
        false
    }
    /// dst[i] = cvt(src[i]) for equal-length slices.
    #[inline(always)]
    fn cvt_slice(src: &[Self::Src], dst: &mut [Self::Dst]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = Self::cvt(x);
        }
    }
}

/// f32 → f32.
pub(super) struct F32;
impl Convert for F32 {
    type Src = f32;
    type Dst = f32;
    const IDENTITY: bool = true;
    #[inline(always)]
    fn cvt(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn cvt_slice(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    #[cfg(target_arch = "x86_64")]
    fn transpose_f32(blk: &[f32], rs: usize, kc: usize, out: &mut [f32]) -> bool {
        let r = out.len() / kc;
        transpose_rows(blk, rs, r, kc, out);
        true
    }
}

/// bf16 → bf16.
pub(super) struct Bf16;
impl Convert for Bf16 {
    type Src = bf16;
    type Dst = bf16;
    const IDENTITY: bool = true;
    #[inline(always)]
    fn cvt(x: bf16) -> bf16 {
        x
    }
    #[inline(always)]
    fn cvt_slice(src: &[bf16], dst: &mut [bf16]) {
        dst.copy_from_slice(src);
    }
    fn pack_pairs<const R: usize>(
        blk: &[bf16],
        rs: usize,
        ks: usize,
        nr: usize,
        kc: usize,
        out: &mut [bf16],
    ) -> bool {
        pack_pairs::<bf16, R>(blk, rs, ks, nr, kc, out)
    }
    fn pack_tiles(blk: &[bf16], ks: usize, rows: usize, kc: usize, out: &mut [bf16]) -> bool {
        tiles_across_panels::<bf16>(blk, ks, rows, kc, out)
    }
}

/// f32 → bf16, round to nearest even (mixed precision with f32 master weights).
pub(super) struct F32ToBf16;
impl Convert for F32ToBf16 {
    type Src = f32;
    type Dst = bf16;
    #[inline(always)]
    fn cvt(x: f32) -> bf16 {
        bf16::from_bits(f32_to_bf16_bits(x))
    }
    fn pack_pairs<const R: usize>(
        blk: &[f32],
        rs: usize,
        ks: usize,
        nr: usize,
        kc: usize,
        out: &mut [bf16],
    ) -> bool {
        pack_pairs::<f32, R>(blk, rs, ks, nr, kc, out)
    }
    fn pack_tiles(blk: &[f32], ks: usize, rows: usize, kc: usize, out: &mut [bf16]) -> bool {
        tiles_across_panels::<f32>(blk, ks, rows, kc, out)
    }
}

/// A source element of a bf16 panel: its bf16 bits, and a k pair (x[p], x[p+1]) as one
/// 32-bit value, first element in the low half.
trait PairBits: Copy {
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
fn pack_pairs<T: PairBits, const R: usize>(
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

/// Tile rows (and k values per tile row) of an AMX A panel.
const TILE: usize = 32;

/// `Convert::pack_tiles`: the AMX A panels (R = KU = 32) of `rows` rows from a source whose
/// panel rows are contiguous (A transposed, k rows `ks` apart),
///   out[pi·P + kb·1024 + i·32 + q] = bf16(x[32·kb + q, 32·pi + i]),  P = 32·kc',
/// each 32 × 32 tile transposed in registers (`transpose_tile`), one k block of 32 rows
/// across every panel before the next (the source read line after line, as
/// `pairs_across_panels` does), the k tail element by element; panels short of rows or k
/// are zeroed first. Element by element, panel after panel, this packing took 78% of a
/// 512 × 512 × 64 × 12 bf16 product with A transposed (attention's dV = Pᵀ·dO). Returns
/// false, having done nothing, without AVX-512 BW.
fn tiles_across_panels<T: PairBits>(
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
unsafe fn transpose_tile<T: PairBits>(x: *const T, ks: usize, nr: usize, out: *mut u16) {
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
fn transpose_16x16(m: &mut [std::arch::x86_64::__m512i; 16]) {
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

/// The bits of x rounded to bf16, to nearest even, as `bf16::from_f32` (NaN stays NaN,
/// quieted; overflow rounds to ±∞), but without branches so packing loops vectorise:
/// adding 0x7FFF plus the kept lowest bit carries into the upper half exactly when the
/// dropped half is above ½ ulp, or at ½ ulp with an odd kept part.
#[inline(always)]
pub(crate) fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
    let quiet_nan = (b >> 16) | 0x40;
    (if b & 0x7FFF_FFFF > 0x7F80_0000 {
        quiet_nan
    } else {
        rounded
    }) as u16
}

/// bf16 → f32 (exact), for running bf16 inputs through an f32 kernel.
pub(super) struct Bf16ToF32;
impl Convert for Bf16ToF32 {
    type Src = bf16;
    type Dst = f32;
    #[inline(always)]
    fn cvt(x: bf16) -> f32 {
        x.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    fn transpose_f32(blk: &[bf16], rs: usize, kc: usize, out: &mut [f32]) -> bool {
        let r = out.len() / kc;
        transpose_rows(blk, rs, r, kc, out);
        true
    }
}

/// f32 → bf16 → f32: the f32 kernel then computes exactly the bf16-input products, so the
/// fallback path agrees with `vdpbf16ps` up to summation order.
pub(super) struct F32RoundBf16;
impl Convert for F32RoundBf16 {
    type Src = f32;
    type Dst = f32;
    #[inline(always)]
    fn cvt(x: f32) -> f32 {
        bf16::from_f32(x).to_f32()
    }
}

/// A strided view of one source matrix: element (r, c) at `off + r·rs + c·cs`.
#[derive(Clone, Copy)]
pub(super) struct View<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Number of packed elements for `rows` rows (or columns) in panels of `r` and `kc` k steps
/// padded to a multiple of `kpad`.
pub(super) fn packed_len(rows: usize, r: usize, kc: usize, kpad: usize) -> usize {
    rows.div_ceil(r) * r * kc.next_multiple_of(kpad)
}

/// Packs the `rows × kc` block of `src` starting at (r0, p0) into panels of `r` rows, where
/// the "row" index is the panel dimension: for A call it with A's (rs, cs); for B call it
/// with B's strides swapped (cs, rs) so columns of B become the panel rows. `ku` is the k
/// interleave (1, 2, or 32 for AMX A tiles: whole 32-long k rows); k is zero-padded to a
/// multiple of `kpad` (a multiple of `ku`). `r` is one of the kernels' tile sizes
/// (4, 6, 8, 12, 16, 32).
#[allow(clippy::too_many_arguments)]
pub(super) fn pack<C: Convert>(
    src: View<'_, C::Src>,
    r: usize,
    ku: usize,
    kpad: usize,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) {
    macro_rules! go {
        ($($r:literal),*) => {
            match (r, ku) {
                $(($r, 1) => pack_r::<C, $r, 1>(src, kpad, r0, rows, p0, kc, dst),
                  ($r, 2) => pack_r::<C, $r, 2>(src, kpad, r0, rows, p0, kc, dst),)*
                (32, 32) => pack_r::<C, 32, 32>(src, kpad, r0, rows, p0, kc, dst),
                _ => unreachable!("no packing for panel {r} × group {ku}"),
            }
        };
    }
    go!(4, 6, 8, 12, 16, 32)
}

fn pack_r<C: Convert, const R: usize, const KU: usize>(
    src: View<'_, C::Src>,
    kpad: usize,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) {
    debug_assert!(kpad.is_multiple_of(KU));
    let kcp = kc.next_multiple_of(kpad);
    if src.rs == 1 && KU == 1 && kcp == kc {
        pack_contiguous_rows::<C, R>(src, r0, rows, p0, kc, dst);
        return;
    }
    if KU == 2
        && src.rs == 1
        && src.cs > 1
        && rows > R
        && pairs_across_panels::<C, R>(src, kpad, r0, rows, p0, kc, dst)
    {
        return;
    }
    if KU == R && src.rs == 1 && src.cs > 1 {
        // AMX A panels from a transposed A: 32 × 32 tiles transposed in registers.
        let base = src.off + r0 + p0 * src.cs;
        let blk = &src.data[base..=base + (kc - 1) * src.cs + rows - 1];
        let out = &mut dst[..rows.div_ceil(R) * R * kcp];
        if C::pack_tiles(blk, src.cs, rows, kc, out) {
            return;
        }
    }
    let panel = R * kcp;
    for (pi, out) in dst[..rows.div_ceil(R) * panel]
        .chunks_exact_mut(panel)
        .enumerate()
    {
        let base_r = r0 + pi * R;
        let nr = (rows - pi * R).min(R);
        if nr < R || kcp != kc {
            out.fill(C::Dst::default());
        }
        let base = src.off + base_r * src.rs + p0 * src.cs;
        // The whole source block of this panel, bounds-checked once.
        let last = base + (nr - 1) * src.rs + (kc - 1) * src.cs;
        let blk = &src.data[base..=last];
        if KU == 2 && C::pack_pairs::<R>(blk, src.rs, src.cs, nr, kc, out) {
            // Done pair by pair.
        } else if src.cs == 1
            && KU == 1
            && nr == R
            && kcp == kc
            && C::transpose_f32(blk, src.rs, kc, out)
        {
            // Done by the 4 × 4 SIMD transposes.
        } else if src.cs == 1 && KU == R {
            // AMX A tiles (KU = R = 32): each 32-long k run of a row is one 64-byte tile row,
            // out[kb·R·KU + i·KU ..][..32] = row_i[kb·32 ..][..32], moved as a slice.
            for i in 0..nr {
                let row = &blk[i * src.rs..i * src.rs + kc];
                for (kb, run) in row.chunks(KU).enumerate() {
                    let at = kb * R * KU + i * KU;
                    let dst = &mut out[at..at + run.len()];
                    // Whole runs as fixed-length arrays: a few vector moves, not a call to
                    // memcpy per 64 bytes (5–7% of a 1024³ bf16 GEMM).
                    match (
                        <&[C::Src; KU]>::try_from(run),
                        <&mut [C::Dst; KU]>::try_from(dst),
                    ) {
                        (Ok(run), Ok(dst)) => C::cvt_slice(run, dst),
                        _ => C::cvt_slice(run, &mut out[at..at + run.len()]),
                    }
                }
            }
        } else if src.cs == 1 {
            // Each panel row is contiguous along k.
            for i in 0..nr {
                let row = &blk[i * src.rs..i * src.rs + kc];
                for (p, &x) in row.iter().enumerate() {
                    out[(p / KU) * R * KU + i * KU + p % KU] = C::cvt(x);
                }
            }
        } else {
            for p in 0..kc {
                let o = (p / KU) * R * KU + p % KU;
                for i in 0..nr {
                    out[o + i * KU] = C::cvt(blk[p * src.cs + i * src.rs]);
                }
            }
        }
    }
}

/// KU = 2 panels from a source whose panel rows are contiguous (B row-major, k rows `cs`
/// apart): a few k rows at a time across every panel, rather than panel by panel down the
/// whole depth, whose every pair step lands on a new page once rows are 2 KiB apart, where
/// the hardware prefetchers stop (1024³ bf16, 1 thread: packing B panel by panel was 10% of
/// the GEMM). Returns false, before packing anything, where `C` does not pack pairs.
#[allow(clippy::too_many_arguments)]
fn pairs_across_panels<C: Convert, const R: usize>(
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
fn pairs_along_k<T: PairBits, const R: usize>(
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
fn interleave_k_pairs<T: PairBits, const R: usize>(
    blk: &[T],
    ks: usize,
    nr: usize,
    kc: usize,
    out: &mut [u16],
) {
    let kh = kc / 2;
    assert!(nr <= R && blk.len() >= (kc - 1) * ks + nr && out.len() >= kc.div_ceil(2) * 2 * R);
    // f32 sources with AVX-512 (every CPU whose bf16 kernels pack pairs): 16 columns at a
    // time, the last run masked, rounded and paired in zmm registers.
    #[cfg(target_arch = "x86_64")]
    if T::F32 && crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
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
    for q in 0..kh {
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

/// out[j] = bf16(r0[j]) | bf16(r1[j]) << 16 for the first `n` ≤ 16 lanes (r1 absent: zero
/// upper halves), with the rounding of `f32_to_bf16_bits` per lane: to nearest even by
/// adding 0x7FFF plus the kept lowest bit, a NaN quieted (bit 6 of its bf16 set).
///
/// # Safety
/// AVX-512F; `n` values readable at r0 (and r1), `n` u32 writable at `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn round_pairs16(r0: *const f32, r1: Option<*const f32>, out: *mut u32, n: usize) {
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
unsafe fn bf16_upper(
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

/// Packing when the panel dimension is contiguous in the source (`rs == 1`, KU = 1, e.g. a
/// row-major B): each source line p holds the `rows` values of every panel at that k step,
/// so the block is read line by line (sequential reads; a panel-by-panel walk would jump a
/// whole line per k step) and written as R-value runs into each panel:
///   dst[pi·R·kc + p·R + i] = src[p, pi·R + i].
fn pack_contiguous_rows<C: Convert, const R: usize>(
    src: View<'_, C::Src>,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) {
    let panels = rows.div_ceil(R);
    let panel = R * kc;
    let tail = rows - (panels - 1) * R;
    if tail < R {
        dst[(panels - 1) * panel..panels * panel].fill(C::Dst::default());
    }
    // Lines less than a page apart are left to the hardware prefetchers.
    let far = src.cs * std::mem::size_of::<C::Src>() >= PAGE_BYTES;
    for p in 0..kc {
        let base = src.off + r0 + (p0 + p) * src.cs;
        if far {
            prefetch_line(src.data, base + PREFETCH_LINES * src.cs, rows);
        }
        let line = &src.data[base..base + rows];
        let full = line.chunks_exact(R);
        let rest = full.remainder();
        for (pi, run) in full.enumerate() {
            let o = pi * panel + p * R;
            // Fixed-length arrays: the copy compiles to a few vector moves, not a call
            // (64 × 32 f32 panels of attention's P·V spent 18% of the GEMM packing).
            let run: &[C::Src; R] = run.try_into().expect("chunks_exact(R) yields R values");
            let out: &mut [C::Dst; R] = (&mut dst[o..o + R]).try_into().expect("R values");
            C::cvt_slice(run, out);
        }
        if !rest.is_empty() {
            let o = (panels - 1) * panel + p * R;
            C::cvt_slice(rest, &mut dst[o..o + rest.len()]);
        }
    }
}

/// Source lines are prefetched this many k steps ahead by `pack_contiguous_rows`: each line
/// starts a new page when B's rows are ≥ 4 KiB apart, where the hardware prefetchers stop.
const PREFETCH_LINES: usize = 2;
/// The page size the hardware prefetchers do not cross.
pub(super) const PAGE_BYTES: usize = 4096;

/// Prefetches `data[at .. at + len]` into L1 (nothing past the end of `data`).
#[inline(always)]
fn prefetch_line<T>(data: &[T], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = (at + len).min(data.len());
        let step = (64 / std::mem::size_of::<T>()).max(1);
        for i in (at..end).step_by(step) {
            // SAFETY: prefetching is a hint and never faults; the address lies in `data`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    data.as_ptr().add(i) as *const i8,
                )
            };
        }
    }
}

/// Four consecutive source values widened to f32 in an SSE register.
#[cfg(target_arch = "x86_64")]
trait Load4: Copy {
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

/// out[p·r + i] = blk[i·rs + p] (as f32) for i < r, p < kc: 4 × 4 blocks transposed in SSE
/// registers (baseline on x86-64); leftover rows and the k tail element by element.
#[cfg(target_arch = "x86_64")]
fn transpose_rows<T: Load4>(blk: &[T], rs: usize, r: usize, kc: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(out.len() >= r * kc && blk.len() > (r - 1) * rs + kc - 1);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free rounding agrees bit for bit with `half` on every class of input:
    /// ties both ways, carries into the exponent, overflow, subnormals, ±0, ±∞ and NaNs.
    #[test]
    fn f32_to_bf16_bits_matches_half() {
        let mut bits: Vec<u32> = vec![
            0,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0000,
            0x7F80_0001,
            0xFFFF_FFFF,
            0x7F7F_FFFF,
            0x7F7F_8000,
            0x7F7E_8000,
            0x0000_0001,
            0x0000_8000,
            0x0001_8000,
            0x3F80_8000,
            0x3F81_8000,
            0x3F80_8001,
            0x3F80_7FFF,
            0x007F_FFFF,
            0x807F_8000,
        ];
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bits.push(s as u32);
            // Exact ties and their neighbours.
            bits.push((s as u32 & 0xFFFF_0000) | 0x8000);
            bits.push((s as u32 & 0xFFFF_0000) | 0x7FFF);
        }
        for &b in &bits {
            let x = f32::from_bits(b);
            assert_eq!(
                f32_to_bf16_bits(x),
                bf16::from_f32(x).to_bits(),
                "f32 bits {b:#010x}"
            );
        }
        round_pairs16_matches_scalar(&bits);
    }

    /// AMX A panels (32 × 32 tiles) from a transposed source, bf16 and f32 rounded on the
    /// way, equal the element-by-element definition: one to three panels, the last short of
    /// rows (zero past the edge), k tails inside and past a whole tile, padded k rows, blocks
    /// at an offset row and k step;
    /// the f32 values include ties, NaNs, infinities and subnormals.
    #[test]
    fn amx_a_panels_from_a_transposed_source() {
        let specials = [
            0x3F80_8000u32,
            0x3F81_8000,
            0x7FC0_0001,
            0xFF80_0000,
            0x0000_8001,
            0x8000_0000,
            0x7F7F_FFFF,
        ];
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let shapes: [(usize, usize); 9] = [
            (32, 32),
            (32, 64),
            (32, 100),
            (31, 33),
            (5, 64),
            (1, 1),
            (32, 7),
            (70, 100),
            (96, 64),
        ];
        for &(nr, kc) in &shapes {
            for (pad, r0, p0) in [(0, 0, 0), (3, 3, 2)] {
                let ks = nr + pad + 40; // k rows of a wider matrix
                let off = 5;
                let len = off + (p0 + kc) * ks;
                let x: Vec<f32> = (0..len)
                    .map(|_| {
                        let r = next();
                        if r % 17 == 0 {
                            f32::from_bits(specials[(r >> 8) as usize % specials.len()])
                        } else {
                            f32::from_bits(((r as u32) & 0x807F_FFFF) | 0x3F00_0000)
                        }
                    })
                    .collect();
                let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                let kcp = kc.next_multiple_of(32);
                let mut want = vec![0u16; nr.div_ceil(32) * 32 * kcp];
                for p in 0..kc {
                    for i in 0..nr {
                        let at = (i / 32) * 32 * kcp + (p / 32) * 1024 + (i % 32) * 32 + p % 32;
                        want[at] = xb[off + (p0 + p) * ks + r0 + i].to_bits();
                    }
                }
                // The panels packed by `C` from `data` (A transposed: k rows ks apart), as bits.
                fn packed<C: Convert<Dst = bf16>>(
                    data: &[C::Src],
                    (off, ks, r0, rows, p0, kc): (usize, usize, usize, usize, usize, usize),
                ) -> Vec<u16> {
                    let mut got = vec![
                        bf16::from_bits(0xFFFF);
                        rows.div_ceil(32) * 32 * kc.next_multiple_of(32)
                    ];
                    let view = View {
                        data,
                        off,
                        rs: 1,
                        cs: ks,
                    };
                    pack::<C>(view, 32, 32, 32, r0, rows, p0, kc, &mut got);
                    got.iter().map(|v| v.to_bits()).collect()
                }
                let what = format!("rows {nr} kc {kc} pad {pad} from ({r0}, {p0})");
                let at = (off, ks, r0, nr, p0, kc);
                assert!(packed::<Bf16>(&xb, at) == want, "bf16 {what}");
                assert!(packed::<F32ToBf16>(&x, at) == want, "f32 {what}");
            }
        }
    }

    /// KU = 2 panels from a source whose panel rows are contiguous (B row-major, or an A
    /// stored transposed), bf16 bits, equal the definition
    /// out[q·2R + 2i + h] = x[2q + h, i] for every row count up to 32 (runs of 8, a run of 4,
    /// single pairs), even and odd depths (the last pair's second half left as the caller's
    /// zero), rows of a wider matrix; the rest of the panel untouched.
    #[test]
    fn pair_panels_from_contiguous_panel_rows() {
        const R: usize = 32;
        let mut s = 0x1234_5678_9ABC_DEF1u64;
        for nr in 1..=R {
            for kc in [1usize, 2, 3, 8, 9] {
                let ks = nr + 7;
                let x: Vec<bf16> = (0..(kc - 1) * ks + nr)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        bf16::from_bits(s as u16)
                    })
                    .collect();
                let len = kc.div_ceil(2) * 2 * R;
                let mut want = vec![0xAAAAu16; len];
                let mut got = vec![0xAAAAu16; len];
                for q in 0..kc.div_ceil(2) {
                    for i in 0..nr {
                        for h in 0..2 {
                            let p = 2 * q + h;
                            want[q * 2 * R + 2 * i + h] =
                                if p < kc { x[p * ks + i].to_bits() } else { 0 };
                            if p == kc {
                                got[q * 2 * R + 2 * i + h] = 0;
                            }
                        }
                    }
                }
                interleave_k_pairs::<bf16, R>(&x, ks, nr, kc, &mut got);
                assert_eq!(got, want, "rows {nr} kc {kc}");
            }
        }
    }

    /// The AVX-512 pairing of two f32 rows equals the scalar rounding lane by lane, for every
    /// run length 1..=16 (masked lanes neither read nor written) and without a second row.
    fn round_pairs16_matches_scalar(bits: &[u32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
            let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            for (c, chunk) in x.chunks_exact(32).enumerate() {
                let n = c % 16 + 1;
                let (r0, r1) = chunk.split_at(16);
                for second in [true, false] {
                    let mut out = [0xDEAD_BEEFu32; 17];
                    // SAFETY: AVX-512F checked above; 16 values per row, 17 u32 out.
                    unsafe {
                        round_pairs16(
                            r0.as_ptr(),
                            second.then_some(r1.as_ptr()),
                            out.as_mut_ptr(),
                            n,
                        )
                    };
                    for j in 0..17 {
                        let want = if j >= n {
                            0xDEAD_BEEF
                        } else {
                            let hi = if second { f32_to_bf16_bits(r1[j]) } else { 0 };
                            f32_to_bf16_bits(r0[j]) as u32 | (hi as u32) << 16
                        };
                        assert_eq!(out[j], want, "lane {j} of {n}, {:?}", (r0[j], r1[j]));
                    }
                }
            }
        }
    }
}
