//! The "high" matmul precision: each f32 operand as the sum of two bf16 values, and the
//! product as three bf16 products with f32 sums (PyTorch's "high": "treat each float32
//! number as the sum of two bfloat16 numbers"):
//!   x = hi(x) + lo(x) + r(x),  hi = bf16(x), lo = bf16(x − hi)  (nearest even),
//!   |x − hi| ≤ 2⁻⁸·|x|,  |r| ≤ 2⁻⁸·|x − hi| ≤ 2⁻¹⁶·|x|  (bf16: 8 significant bits),
//!   A·B ≈ Ah·Bl + Al·Bh + Ah·Bh,
//! dropping Al·Bl and the remainders: per product a·b the error is at most
//! (3·2⁻¹⁶ + …)·|a||b| < 2⁻¹⁴·|a||b| (about 16 significant bits where f32 keeps 24
//! and "medium", one bf16 product, 8). Each bf16 product is exact in f32 and the sums are
//! f32 as in any f32 GEMM. The three products run on the bf16 kernels (AMX tiles), where
//! three bf16 GEMMs take about half the time of one f32 FMA GEMM; elsewhere, and for the
//! shapes that take the memory-bound gemv forms, "high" is computed as "highest" (faster
//! there, and exact to f32).
//!
//! x − hi is exact in f32 (hi is x rounded to 8 significant bits, so within a factor of two
//! of x: Sterbenz). Where rounding to bf16 would overflow (|x| within half a bf16 ulp of
//! f32::MAX) hi is x truncated instead, so hi + lo stays finite. An operand holding ±∞ or
//! NaN is multiplied in f32 instead: ∞ times a value whose lo is 0 (Ah·Bl) would give a NaN
//! where f32 gives ∞ (`split_bf16x2` still splits them: hi carries them, NaN quieted, lo = 0).
//! The tile unit reads subnormal bf16 values as zero, so
//! below about 2⁻¹¹⁸ in magnitude lo, and below 2⁻¹²⁶ hi, count as zero (as in "medium").

use std::mem::MaybeUninit;

use half::bf16;
use rayon::prelude::*;

use super::driver::COut;
use super::{bgemm_path, check_bounds, pack::f32_to_bf16_bits, sgemm_isa, Bf16Path, GemmLayout};
use crate::backend::cpu::isa::{self, Isa};
use crate::error::{Error, Result};

/// (hi, lo) bits of x: x = hi + lo + r with |r| ≤ 2⁻¹⁶·|x| (2⁻¹⁵ where hi is truncated, near
/// f32::MAX; see the module). Selects rather than branches, so that `split_span`'s loop
/// vectorises.
#[inline(always)]
pub fn split_bf16x2(x: f32) -> (u16, u16) {
    let b = x.to_bits();
    let finite = b & 0x7F80_0000 != 0x7F80_0000;
    let nearest = f32_to_bf16_bits(x);
    // Rounding up into the exponent of ∞: truncate instead (never overflows).
    let overflow = finite & (nearest & 0x7F80 == 0x7F80);
    let hi = if overflow { (b >> 16) as u16 } else { nearest };
    let rest = x - f32::from_bits((hi as u32) << 16);
    let lo = f32_to_bf16_bits(rest) & if finite { 0xFFFF } else { 0 };
    (hi, lo)
}

/// hi[i], lo[i] = split_bf16x2(src[i]) for equal-length slices: the loop compiled for
/// AVX-512 where the CPU has it (16 values a step; the baseline build's SSE2 loop took a
/// quarter of a 2048² product's time at "high").
/// Returns whether every value was finite.
fn split_slice(src: &[f32], hi: &mut [MaybeUninit<bf16>], lo: &mut [MaybeUninit<bf16>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa::detected() >= Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F and BW (`isa::detected`).
        return unsafe { split_slice_avx512(src, hi, lo) };
    }
    split_loop(src, hi, lo)
}

/// `split_loop` compiled for AVX-512.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn split_slice_avx512(
    src: &[f32],
    hi: &mut [MaybeUninit<bf16>],
    lo: &mut [MaybeUninit<bf16>],
) -> bool {
    split_loop(src, hi, lo)
}

#[inline(always)]
fn split_loop(src: &[f32], hi: &mut [MaybeUninit<bf16>], lo: &mut [MaybeUninit<bf16>]) -> bool {
    // Set by any ∞ or NaN (exponent all ones).
    let mut special = 0u32;
    for ((h, l), &x) in hi.iter_mut().zip(lo.iter_mut()).zip(src) {
        let (hb, lb) = split_bf16x2(x);
        h.write(bf16::from_bits(hb));
        l.write(bf16::from_bits(lb));
        special |= (x.to_bits() & 0x7F80_0000 == 0x7F80_0000) as u32;
    }
    special == 0
}

/// Elements split per parallel chunk (a few hundred KiB of source: far above rayon's cost per
/// task, small enough that both cores share a 2048² operand).
const SPLIT_CHUNK: usize = 1 << 16;

/// One operand split: the span of `src` its batch entries read, as hi and lo parts in the
/// same layout, and the entries' offsets into them.
struct Split {
    hi: Vec<bf16>,
    lo: Vec<bf16>,
    offsets: Vec<usize>,
}

/// Splits `src[min offset .. max offset + extent]` (the elements the batch entries may read;
/// entries whose span is empty read nothing) element by element, in parallel; `None` if any
/// of them is ∞ or NaN.
fn split_span(src: &[f32], offsets: &[usize], extent: usize) -> Option<Split> {
    let (start, end) = match (offsets.iter().min(), offsets.iter().max()) {
        (Some(&lo), Some(&hi)) if extent > 0 => (lo, hi + extent),
        _ => (0, 0),
    };
    let span = &src[start..end];
    let mut hi: Vec<bf16> = Vec::with_capacity(span.len());
    let mut lo: Vec<bf16> = Vec::with_capacity(span.len());
    let finite = hi.spare_capacity_mut()[..span.len()]
        .par_chunks_mut(SPLIT_CHUNK)
        .zip(lo.spare_capacity_mut()[..span.len()].par_chunks_mut(SPLIT_CHUNK))
        .zip(span.par_chunks(SPLIT_CHUNK))
        .map(|((h, l), s)| split_slice(s, h, l))
        .reduce(|| true, |x, y| x & y);
    // SAFETY: the loop above wrote every one of the first span.len() elements of both.
    unsafe {
        hi.set_len(span.len());
        lo.set_len(span.len());
    }
    finite.then(|| Split {
        hi,
        lo,
        offsets: offsets.iter().map(|&o| o.saturating_sub(start)).collect(),
    })
}

/// Where "high" takes the three bf16 products on AMX: problems (per batch entry) of at least
/// `HIGH_MIN_MACS` multiply-adds, `HIGH_MIN_ROWS` rows, `HIGH_MIN_COLUMNS` columns and
/// `HIGH_MIN_DEPTH` k. Intel Xeon (family 6 model 167), f32 time over "high" time (split and
/// three products), operands hot in cache, 1 / 2 threads: 2048³ 1.93 / 1.94, 1024³ 1.75 /
/// 1.79, 4096 × 768 × 3072 1.78 / 1.99, 4096 × 3072 × 768 1.82 / 1.75, 2048 × 128 × 2048
/// 1.85 / 1.65, 512³ 1.51 / 1.29, 768 × 128 × 512 1.63 / 1.37, 768 × 512 × 128 1.29 / 1.18,
/// 256 × 512 × 256 1.44 / 1.15; below the row, column and depth bounds it lost: 128 × 1024 ×
/// 1024 1.13 / 0.68, 64 × 768 × 768 0.90 / 0.38, 32 × 768 × 3072 0.70 / 0.47, 1024 × 64 ×
/// 1024 0.97 / 0.97, 512 × 64 × 512 × 12 0.95 / 0.92, attention's 64 × 64 × 64 × 48 0.54 /
/// 0.31 (three products' fixed costs). In training the operands arrive cold and the split
/// costs twice its share: nanoGPT's CPU Shakespeare model (768 tokens, width 128: products
/// of 3.8–5 · 10⁷) trained at 30.9–32.6k tokens/s at "high" against 33.1–34.7k at
/// "highest", so the bound on multiply-adds leaves them to f32; its GPU configuration (16384
/// tokens, width 384) trained 1.47× faster.
pub(super) const HIGH_MIN_MACS: usize = 1 << 26;
pub(super) const HIGH_MIN_ROWS: usize = 256;
pub(super) const HIGH_MIN_COLUMNS: usize = 128;
pub(super) const HIGH_MIN_DEPTH: usize = 128;

/// Whether "high" runs `l` as three bf16 products on `path` (otherwise as "highest"): on the
/// AMX tiles (or their model, for tests), for problems within the bounds above (which leave
/// out the gemv forms, a few rows or columns read where they lie at memory speed).
pub(super) fn high_uses_bf16x3(path: Bf16Path, l: &GemmLayout) -> bool {
    #[cfg(feature = "emu")]
    let tiles = matches!(path, Bf16Path::Amx | Bf16Path::AmxEmulated);
    #[cfg(not(feature = "emu"))]
    let tiles = path == Bf16Path::Amx;
    tiles
        && l.m >= HIGH_MIN_ROWS
        && l.n >= HIGH_MIN_COLUMNS
        && l.k >= HIGH_MIN_DEPTH
        && l.m * l.n * l.k >= HIGH_MIN_MACS
}

/// C_i = A_i·B_i + beta·C_i at "high" precision on `path`: Ah·Bl + Al·Bh + Ah·Bh, the two
/// small products first (each bf16 GEMM sums into C in f32). An uninitialised C must be the
/// row-major blocks of `gemm::new_c` (beta 0), which the first product fills.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm_bf16x3(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    if c.init_mut().is_none() && (beta != 0.0 || !fills_whole(l, c.len(), c_offsets)) {
        return Err(Error::msg(format!(
            "gemm (high precision): an uninitialised C must be filled whole with beta 0 \
             ({l:?}, {} elements, beta {beta})",
            c.len()
        )));
    }
    let ea = GemmLayout::extent(l.m, l.k, l.a_rs, l.a_cs);
    let eb = GemmLayout::extent(l.k, l.n, l.b_rs, l.b_cs);
    // An ∞ times a value whose low part is 0 would make a NaN of the first product where f32
    // gives ∞: operands holding ∞ or NaN are multiplied in f32.
    let (Some(sa), Some(sb)) = (split_span(a, a_offsets, ea), split_span(b, b_offsets, eb)) else {
        let level = match path {
            Bf16Path::F32(level) => level,
            _ => isa::active(),
        };
        return sgemm_isa(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    };
    let (ao, bo) = (&sa.offsets, &sb.offsets);
    bgemm_path(path, l, &sa.hi, ao, &sb.lo, bo, beta, c, c_offsets)?;
    // SAFETY: C was initialised, or it is the row-major blocks that tile its whole length
    // (`fills_whole`) and the product above, with beta 0, stored every element of them.
    unsafe { c.assume_init() };
    bgemm_path(path, l, &sa.lo, ao, &sb.hi, bo, 1.0, c, c_offsets)?;
    bgemm_path(path, l, &sa.hi, ao, &sb.hi, bo, 1.0, c, c_offsets)
}

/// Whether the C blocks at `c_offsets` are row-major m × n blocks that tile all `len`
/// elements (block i at i·m·n), as `gemm::new_c` lays them out.
fn fills_whole(l: &GemmLayout, len: usize, c_offsets: &[usize]) -> bool {
    let block = l.m * l.n;
    l.c_rs == l.n
        && l.c_cs == 1
        && len == c_offsets.len() * block
        && c_offsets.iter().enumerate().all(|(i, &o)| o == i * block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::isa::Isa;

    /// Into an uninitialised C (as `sgemm_batched_new`): the first product fills the blocks
    /// that tile it, and the result is the initialised C's bit for bit; a C it would not fill
    /// whole is refused.
    #[test]
    fn new_c_is_filled_by_the_first_product() {
        let (m, n, k, batch) = (5, 7, 9, 2);
        let l = GemmLayout::row_major(m, n, k);
        let a: Vec<f32> = (0..batch * m * k)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let b: Vec<f32> = (0..batch * k * n)
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        let (ao, bo, co) = ([0, m * k], [0, k * n], [0, m * n]);
        let path = Bf16Path::F32(Isa::Scalar);
        let mut want = vec![f32::NAN; batch * m * n];
        let c = &mut COut::from(&mut want[..]);
        sgemm_bf16x3(path, &l, &a, &ao, &b, &bo, 0.0, c, &co).unwrap();
        let mut got = vec![MaybeUninit::<f32>::uninit(); batch * m * n];
        let c = &mut COut::uninit(&mut got);
        sgemm_bf16x3(path, &l, &a, &ao, &b, &bo, 0.0, c, &co).unwrap();
        // SAFETY: the product returned Ok into blocks that tile `got` (checked by it).
        let got: Vec<f32> = got.iter().map(|x| unsafe { x.assume_init() }).collect();
        assert_eq!(got, want);
        assert!(fills_whole(&l, batch * m * n, &co));
        assert!(!fills_whole(&l, batch * m * n + 1, &co));
        assert!(!fills_whole(&l, batch * m * n, &[m * n, 0]));
        let mut short = vec![MaybeUninit::<f32>::uninit(); batch * m * n + 1];
        let c = &mut COut::uninit(&mut short);
        let e = sgemm_bf16x3(path, &l, &a, &ao, &b, &bo, 0.0, c, &co).unwrap_err();
        assert!(e.to_string().contains("uninitialised C"), "{e}");
    }

    fn parts(x: f32) -> (f32, f32) {
        let (h, l) = split_bf16x2(x);
        (
            f32::from_bits((h as u32) << 16),
            f32::from_bits((l as u32) << 16),
        )
    }

    #[test]
    fn split_keeps_sixteen_bits() {
        // Normal values over the whole exponent range of products that stay normal.
        let mut s = 0x1234_5678_u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s & 0xBFFF_FFFF | 0x1000_0000);
            let (h, l) = parts(x);
            let r = (x as f64 - h as f64 - l as f64).abs();
            assert!(r <= x.abs() as f64 * 2f64.powi(-16), "{x:e}: {h:e} + {l:e}");
            assert!((x as f64 - h as f64).abs() <= x.abs() as f64 * 2f64.powi(-8));
        }
        // 1 + 2⁻¹⁰ + 2⁻²⁰: hi 1, lo 2⁻¹⁰, the rest dropped.
        assert_eq!(
            parts(1.0 + 2f32.powi(-10) + 2f32.powi(-20)),
            (1.0, 2f32.powi(-10))
        );
    }

    #[test]
    fn split_of_extremes_stays_finite_or_carries_them() {
        let (h, l) = parts(f32::MAX);
        assert!(h.is_finite() && l.is_finite(), "{h} {l}");
        assert!(((h as f64 + l as f64) / f32::MAX as f64 - 1.0).abs() < 2f64.powi(-16));
        let (h, l) = parts(-f32::MAX);
        assert!(h.is_finite() && h < 0.0 && l <= 0.0);
        assert_eq!(parts(f32::INFINITY), (f32::INFINITY, 0.0));
        assert_eq!(parts(f32::NEG_INFINITY), (f32::NEG_INFINITY, 0.0));
        let (h, l) = parts(f32::from_bits(0x7F80_0001));
        assert!(h.is_nan() && l == 0.0);
        assert_eq!(parts(0.0), (0.0, 0.0));
        assert_eq!(parts(-0.0).0.to_bits(), (-0.0f32).to_bits());
    }
}
