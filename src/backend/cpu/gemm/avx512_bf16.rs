//! AVX-512 BF16 micro-kernel: bf16 inputs, f32 accumulation, a 12 × 32 tile in 24 zmm.
//! `vdpbf16ps` multiplies bf16 pairs and adds both products into one f32 lane:
//!   acc[i][j] += A[i, 2q]·B[2q, j] + A[i, 2q+1]·B[2q+1, j],
//! so A and B are packed with KU = 2 (pairs along k): per pair step the kernel loads two
//! vectors of 16 column pairs of B and broadcasts the 32-bit pair (A[i,2q], A[i,2q+1]).
//! With k contiguous in A that pair is already adjacent in A's row, so A is also read in
//! place (`run_direct_a`, no packing): small and skinny problems, where packing A cost as
//! much as the products, then run at the kernel's speed; an A stored transposed against a
//! narrow C is read in place too (`run_transposed_a`), its pairs interleaved per pair step
//! inside the k loop. The pair steps of packed tiles and of full in-place tiles run in the
//! assembly loop shared with the f32 kernel (`avx512_loop`); in-place edge tiles and the
//! transposed A keep the intrinsics loops below.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::bf16;

use super::avx512::{prefetch_c, store_acc};
use super::avx512_loop;
use super::kernel::{by_rows, CTile, MicroKernel};
use super::round_bf16::{cvtne32, round_tile, Rounding, Tile};

pub(super) struct Avx512Bf16;

const MR: usize = 12;
const NR: usize = 32;

impl MicroKernel for Avx512Bf16 {
    type P = bf16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 2;
    const KC: usize = 512;
    const MC: usize = 192;
    const NC: usize = 1024;

    unsafe fn run(kc: usize, a: *const bf16, b: *const bf16, ct: CTile, accumulate: bool) {
        // SAFETY: forwarded contract; the dispatcher only selects this kernel when the CPU
        // has AVX-512F and AVX-512 BF16.
        unsafe { kernel(kc, a, b, ct, accumulate) }
    }

    const DIRECT_A: bool = true;

    unsafe fn run_direct_a(
        kc: usize,
        a: *const bf16,
        a_rs: usize,
        b: *const bf16,
        ct: CTile,
        accumulate: bool,
    ) {
        let CTile { mr, .. } = ct;
        // SAFETY: forwarded contract; AVX-512F and AVX-512 BF16 as above.
        unsafe {
            match mr {
                MR => kernel_direct_a_full(kc, a, a_rs, b, ct, accumulate),
                _ => by_rows!(mr, MR, kernel_direct_a(kc, a, a_rs, b, ct, accumulate)),
            }
        }
    }

    const TRANSPOSED_A: bool = true;

    /// Four panels: each value of A interleaved in the kernel serves up to four tiles, where
    /// the packed path interleaves it once for all of them. Zen 4, 1 / 2 threads, against
    /// packed A (`tools/ab_bins.py`, 7 pairs, bf16 C): 512 × 512 × 96 × 12 +16% / +7%, 512 ×
    /// 768 × 128 +4% / +1%, 768 × 768 × 256 −1% / −2%.
    const TRANSPOSED_A_MAX_N: usize = 128;

    unsafe fn run_transposed_a(
        kc: usize,
        a: *const bf16,
        a_cs: usize,
        b: *const bf16,
        ct: CTile,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract (12 readable values per k step, rows past mr never
        // stored); AVX-512F and AVX-512 BF16 as above.
        unsafe { kernel_transposed_a(kc, a, a_cs, b, ct, accumulate) }
    }

    /// Each full tile's sums rounded to the bf16 C from the registers (`store_rounded`)
    /// rather than stored to a tile buffer and rounded from there: Q·Kᵀ at T = 512 in bf16
    /// (512 × 64 × 512 × 12, bf16 C, k = 64) spent 8% of its time on the buffer's round trip.
    unsafe fn run_rounded_row(
        kc: usize,
        a: *const bf16,
        a_rs: usize,
        b: *const bf16,
        tiles: usize,
        out: *mut bf16,
        out_rs: usize,
        after_tile: &mut dyn FnMut(usize),
    ) -> bool {
        let panel = NR * kc.next_multiple_of(2);
        for t in 0..tiles {
            let bt = b.wrapping_add(t * panel);
            // SAFETY: A as `run` (a packed panel, a_rs = 0) or `run_direct_a` (12 rows in
            // place) reads it, B's panel t, C's tile t: 12 rows of 32 bf16 from column 32t
            // (the caller's contract); the dispatcher selected this kernel for a CPU with
            // AVX-512 F, BW, DQ and BF16.
            unsafe { rounded_tile(kc, a, a_rs, bt, out.wrapping_add(t * NR), out_rs) };
            after_tile(t);
        }
        true
    }
}

/// The 24 accumulators of a 12 × 32 tile: row i, vectors 0 and 1.
type Acc = [[__m512; 2]; MR];

/// Full 12-row tiles with A read in place: the pair steps in the assembly loop
/// (`avx512_loop::direct_bf16`), then an odd kc's last value as in `kernel_direct_a`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_direct_a_full(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: forwarded A and B contracts.
    let acc = unsafe { sums_direct_full(kc, a, a_rs, b) };
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The 12 × 32 sums of a full tile with A's 12 rows read in place (`a_rs` apart, kc values
/// each) against a packed B panel.
///
/// # Safety
/// As `kernel_direct_a_full` for A and B; the caller must run with AVX-512F and AVX-512 BF16
/// (a plain function, so `inline(always)` applies: out of line, its two callers would take
/// the accumulators back through memory).
#[inline(always)]
unsafe fn sums_direct_full(kc: usize, a: *const bf16, a_rs: usize, b: *const bf16) -> Acc {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: rows 0..12 of A hold kc values each (the caller's contract: a full tile), so
    // kc / 2 pairs each; the B panel holds NR pairs per pair step.
    unsafe { avx512_loop::direct_bf16(kc / 2, a as *const u16, a_rs, b as *const u16, &mut acc) };
    if kc % 2 == 1 {
        let rows: [*const bf16; MR] = std::array::from_fn(|i| a.wrapping_add(i * a_rs));
        let b_last = (b as *const __m512i).wrapping_add(2 * (kc / 2));
        // SAFETY: as above, for the single value at kc − 1 and B's last (padded) pair step.
        unsafe { dp_rows::<MR, true>(&mut acc, &rows, kc - 1, b_last) };
    }
    acc
}

/// The kernel with A read in place, k contiguous: A[i, p] at a[i·a_rs + p], the pair
/// (A[i,2q], A[i,2q+1]) one unaligned 32-bit broadcast. An odd kc ends with A[i, kc−1]
/// alone (upper half zero; B's padded row is zero too). Rows i ≥ mr re-read row mr − 1
/// (their results are never stored), so nothing past the edge of A is read.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_direct_a<const ROWS: usize>(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let CTile { mr, .. } = ct;
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    let rows: [*const bf16; ROWS] = std::array::from_fn(|i| a.wrapping_add(i.min(mr - 1) * a_rs));
    let mut b = b as *const __m512i;
    for q in 0..kc / 2 {
        // SAFETY: rows < mr of A hold kc values each (the caller's contract), so the pair at
        // 2q, 2q + 1 < kc is readable; the B panel holds NR pairs per pair step.
        unsafe { dp_rows::<ROWS, false>(&mut acc, &rows, 2 * q, b) };
        b = b.wrapping_add(2);
    }
    if kc % 2 == 1 {
        // SAFETY: as above, for the single value at kc − 1.
        unsafe { dp_rows::<ROWS, true>(&mut acc, &rows, kc - 1, b) };
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// One pair step of `kernel_direct_a`: acc[i] += (A[i, at], A[i, at+1]) · (b0, b1), the
/// pair one unaligned 32-bit broadcast from row i; with SINGLE (an odd kc's last step) the
/// pair is (A[i, at], 0). Inlined into its AVX-512 BF16 caller (a plain function, so
/// `inline(always)` applies; closures there would not be inlined).
///
/// # Safety
/// Each row pointer must be readable at `at` (and `at + 1` unless SINGLE); `b` must hold
/// two 64-byte vectors; the caller must run with AVX-512F and AVX-512 BF16.
#[inline(always)]
unsafe fn dp_rows<const ROWS: usize, const SINGLE: bool>(
    acc: &mut [[__m512; 2]; ROWS],
    rows: &[*const bf16; ROWS],
    at: usize,
    b: *const __m512i,
) {
    // SAFETY: the caller's contract; bf16 is a plain 16-bit value, so the reinterpretations
    // are bit casts.
    unsafe {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(1)));
        for (row, &ap) in acc.iter_mut().zip(rows) {
            let pair = if SINGLE {
                ap.add(at).read().to_bits() as u32
            } else {
                (ap.add(at) as *const u32).read_unaligned()
            };
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
    }
}

/// The kernel with A stored transposed and read in place (Aᵀ·B against a narrow C, as
/// attention's dV = Pᵀ·dO and a weight gradient Xᵀ·dY): A[i, p] at a + i + p·a_cs, the 12
/// values of a k step side by side. Per pair step the 12 pairs (A[i, 2q], A[i, 2q+1]) are
/// interleaved from steps 2q and 2q+1 (three 16-bit unpacks) into a 48-byte buffer that
/// the broadcasts read as they read a packed panel; an odd kc's last step pairs with zeros
/// (B's padded row is zero too). This is the pair packing of `pack::pairs` done per tile
/// inside the k loop, so a transposed A of a narrow product (each value used by one or two
/// tiles) is not written to a panel and read back. The source steps are prefetched into L2
/// `TRANSPOSED_PREFETCH_STEPS` ahead: the hardware prefetchers do not follow a stride across
/// rows.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_transposed_a(
    kc: usize,
    a: *const bf16,
    a_cs: usize,
    b: *const bf16,
    ct: CTile,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    let mut pairs = Pairs([0; MR]);
    let mut b = b as *const __m512i;
    let step = |p: usize| a.wrapping_add(p * a_cs);
    for q in 0..kc / 2 {
        // SAFETY: steps 2q and 2q + 1 < kc hold 12 readable values each (the caller's
        // contract); the B panel holds NR pairs per pair step; prefetches never fault.
        unsafe {
            prefetch_step(step(2 * q + TRANSPOSED_PREFETCH_STEPS));
            prefetch_step(step(2 * q + 1 + TRANSPOSED_PREFETCH_STEPS));
            interleave_step(&mut pairs, step(2 * q), Some(step(2 * q + 1)));
            dp_pairs(&mut acc, &pairs, b);
        }
        b = b.wrapping_add(2);
    }
    if kc % 2 == 1 {
        // SAFETY: as above, for the single step kc − 1 (paired with zeros).
        unsafe {
            interleave_step(&mut pairs, step(kc - 1), None);
            dp_pairs(&mut acc, &pairs, b);
        }
    }
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The 12 pairs of one pair step of `kernel_transposed_a`, as 32-bit values.
#[repr(C, align(64))]
struct Pairs([u32; MR]);

/// Pair steps ahead that `kernel_transposed_a` prefetches A's steps into L2 (32 k steps, as
/// the f32 kernel's `TRANSPOSED_PREFETCH_STEPS`).
const TRANSPOSED_PREFETCH_STEPS: usize = 32;

/// Both lines that the 12 values (24 bytes) at `p` may span, into L2.
#[inline(always)]
unsafe fn prefetch_step(p: *const bf16) {
    // SAFETY: prefetching is a hint and never faults.
    unsafe {
        _mm_prefetch::<_MM_HINT_T1>(p as *const i8);
        _mm_prefetch::<_MM_HINT_T1>((p as *const i8).wrapping_add(23));
    }
}

/// pairs[i] = A[i, 2q] | A[i, 2q+1] << 16 for i < 12, from the 12 values at `s0` and at `s1`
/// (none: zeros).
///
/// # Safety
/// 12 bf16 readable at `s0` (and `s1`); the caller runs with SSE2 (AVX-512F implies it).
#[inline(always)]
unsafe fn interleave_step(pairs: &mut Pairs, s0: *const bf16, s1: Option<*const bf16>) {
    // SAFETY: 16 + 8 bytes at each source (12 bf16), the caller's contract; 48 bytes of
    // `pairs` written.
    unsafe {
        let lo0 = _mm_loadu_si128(s0 as *const __m128i);
        let hi0 = _mm_loadl_epi64(s0.wrapping_add(8) as *const __m128i);
        let (lo1, hi1) = match s1 {
            Some(s1) => (
                _mm_loadu_si128(s1 as *const __m128i),
                _mm_loadl_epi64(s1.wrapping_add(8) as *const __m128i),
            ),
            None => (_mm_setzero_si128(), _mm_setzero_si128()),
        };
        let out = pairs.0.as_mut_ptr() as *mut __m128i;
        _mm_store_si128(out, _mm_unpacklo_epi16(lo0, lo1));
        _mm_store_si128(out.add(1), _mm_unpackhi_epi16(lo0, lo1));
        _mm_store_si128(out.add(2), _mm_unpacklo_epi16(hi0, hi1));
    }
}

/// One pair step: acc[i] += pairs[i] · (b0, b1), each pair broadcast from the buffer.
///
/// # Safety
/// `b` holds two 64-byte vectors; the caller runs with AVX-512F and AVX-512 BF16.
#[inline(always)]
unsafe fn dp_pairs(acc: &mut Acc, pairs: &Pairs, b: *const __m512i) {
    // The buffer is read through memory (not forwarded into register shuffles, which would
    // take the vector ports the dot products need).
    let pairs = std::hint::black_box(pairs);
    // SAFETY: the caller's contract; bf16 is a plain 16-bit value, so the reinterpretations
    // are bit casts.
    unsafe {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(1)));
        for (row, &pair) in acc.iter_mut().zip(&pairs.0) {
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(kc: usize, a: *const bf16, b: *const bf16, ct: CTile, accumulate: bool) {
    // SAFETY: forwarded C contract (prefetches never fault).
    unsafe { prefetch_c(ct, accumulate) };
    // SAFETY: forwarded A and B contracts.
    let acc = unsafe { sums_packed(kc, a, b) };
    // SAFETY: forwarded C contract.
    unsafe { store_acc(acc, ct, accumulate) };
}

/// The 12 × 32 sums of a packed A panel against a packed B panel.
///
/// # Safety
/// As `MicroKernel::run` for A and B; the caller must run with AVX-512F and AVX-512 BF16
/// (inlined as `sums_direct_full` is).
#[inline(always)]
unsafe fn sums_packed(kc: usize, a: *const bf16, b: *const bf16) -> Acc {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: per pair step the packed A panel holds MR pairs and the B panel NR pairs, for
    // ⌈kc/2⌉ steps (k is padded to even); bf16 is a plain 16-bit value.
    unsafe { avx512_loop::packed_bf16(kc.div_ceil(2), a as *const u16, b as *const u16, &mut acc) };
    acc
}

/// One full tile of `run_rounded_row`: the sums (A packed when `a_rs` = 0, else 12 rows in
/// place) and their rounding, in one function so that the accumulators stay in registers.
///
/// # Safety
/// As `run_rounded_row` for one tile.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512bf16")]
unsafe fn rounded_tile(
    kc: usize,
    a: *const bf16,
    a_rs: usize,
    b: *const bf16,
    out: *mut bf16,
    out_rs: usize,
) {
    // SAFETY: the caller's contract.
    unsafe {
        let acc = if a_rs == 0 {
            sums_packed(kc, a, b)
        } else {
            sums_direct_full(kc, a, a_rs, b)
        };
        store_rounded(acc, out, out_rs);
    }
}

/// A full tile's sums rounded to bf16 from the registers (beta = 0) into C at `out`, rows
/// `out_rs` apart, 32 values per `cvtne32` (as `round_bf16::rows_cvtne` rounds from memory);
/// should any sum be subnormal, the tile is rounded again by `round_tile`'s exact integer
/// way.
///
/// # Safety
/// 12 rows of 32 bf16 writable at `out`, `out_rs` apart; AVX-512 F, BW, DQ and BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512bf16")]
#[inline]
unsafe fn store_rounded(acc: Acc, out: *mut bf16, out_rs: usize) {
    let mut sub: __mmask16 = 0;
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i of the tile: 32 bf16 (64 bytes) writable (the caller's contract);
        // this function's target features are `cvtne32`'s.
        unsafe {
            let r = cvtne32(row[0], row[1], &mut sub);
            _mm512_storeu_si512(out.wrapping_add(i * out_rs).cast(), r)
        };
    }
    if sub != 0 {
        let mut spill = [[0.0f32; NR]; MR];
        for (dst, row) in spill.iter_mut().zip(&acc) {
            // SAFETY: each spill row holds 32 floats.
            unsafe {
                _mm512_storeu_ps(dst.as_mut_ptr(), row[0]);
                _mm512_storeu_ps(dst.as_mut_ptr().add(16), row[1]);
            }
        }
        let src = Tile::new(spill.as_flattened().as_ptr(), NR, 1, MR, NR);
        // SAFETY: the spill is 12 rows of 32 floats; `out` as above; AVX-512F.
        unsafe { round_tile(Rounding::Avx512, src, Tile::new(out, out_rs, 1, MR, NR)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `store_rounded` writes each sum as `half`'s rounding does, bit for bit: normal values
    /// (ties both ways), ±0, ±∞, NaN, and subnormal sums, which `vcvtne2ps2bf16` alone would
    /// flush (the tile is then rounded again the exact way), at a row stride wider than the
    /// tile; the bf16 values between the tile's rows stay untouched.
    #[test]
    fn store_rounded_matches_half_bit_for_bit() {
        if !(crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512
            && crate::backend::cpu::isa::has_avx512_bf16())
        {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let specials = [
            0x3F80_8000u32, // tie, rounds down to even
            0x3F81_8000,    // tie, rounds up to even
            0x0000_8001,    // subnormal
            0x8040_0000,    // negative subnormal
            0x7FC0_0001,    // NaN
            0xFF80_0000,    // −∞
            0x8000_0000,    // −0
            0x7F7F_FFFF,    // rounds to +∞
        ];
        for with_subnormals in [false, true] {
            let mut s = 0x9E37_79B9_7F4A_7C15u64;
            let sums: Vec<f32> = (0..MR * NR)
                .map(|i| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let special = specials[i % specials.len()];
                    if i % 5 == 0 && (with_subnormals || special & 0x7F80_0000 != 0) {
                        f32::from_bits(special)
                    } else {
                        f32::from_bits(((s as u32) & 0x807F_FFFF) | 0x3F00_0000)
                    }
                })
                .collect();
            let out_rs = NR + 3;
            let mut out = vec![bf16::from_bits(0xABCD); MR * out_rs];
            // SAFETY: AVX-512 F, BW, DQ and BF16 checked above; the accumulators are loaded
            // from 12 rows of 32 floats; `out` holds 12 rows of 32 bf16, out_rs apart.
            unsafe {
                let acc: Acc = std::array::from_fn(|i| {
                    let row = sums[i * NR..].as_ptr();
                    [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))]
                });
                store_rounded(acc, out.as_mut_ptr(), out_rs);
            }
            for i in 0..MR {
                for j in 0..out_rs {
                    let got = out[i * out_rs + j].to_bits();
                    let want = if j < NR {
                        bf16::from_f32(sums[i * NR + j]).to_bits()
                    } else {
                        0xABCD
                    };
                    assert_eq!(got, want, "({i}, {j}) of {:?}", sums.get(i * NR + j));
                }
            }
        }
    }
}
