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
//!
//! Here: the `Convert` element types, `pack` and its plain layouts; `pairs`: the bf16 pair
//! panels; `transpose`: f32 panels from rows along k; `amx_tiles`: AMX A panels transposed.

mod amx_tiles;
mod pairs;
#[cfg(test)]
mod tests;
mod transpose;

use half::bf16;

use amx_tiles::tiles_across_panels;
use pairs::{pack_pairs, pairs_across_panels};
use transpose::transpose_rows;

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
        transpose_rows(blk, rs, kc, out);
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
    #[inline(always)]
    fn cvt_slice(src: &[f32], dst: &mut [bf16]) {
        round_slice(src, dst);
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

/// dst[i] = bf16(src[i]) (`f32_to_bf16_bits`) for equal-length slices: compiled for AVX-512
/// where the CPU has it. The AMX A panels of an f32 A (mixed precision) are rounded 32 values
/// at a time through here; the baseline build's SSE2 loop made packing half of a 768 × 512 ×
/// 128 product's time.
pub(super) fn round_slice(src: &[f32], dst: &mut [bf16]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= 16 && std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512F and BW (every CPU with BW has F), checked above.
        return unsafe { round_slice_avx512(src, dst) };
    }
    round_loop(src, dst);
}

/// `round_loop` compiled for AVX-512.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn round_slice_avx512(src: &[f32], dst: &mut [bf16]) {
    round_loop(src, dst);
}

#[inline(always)]
fn round_loop(src: &[f32], dst: &mut [bf16]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = bf16::from_bits(f32_to_bf16_bits(x));
    }
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
        transpose_rows(blk, rs, kc, out);
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
