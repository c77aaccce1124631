//! The k loop of the 6 × 16 AVX2 micro-kernel (f32), in assembly.
//!
//! For each k step p: load B[p, 0..16] into two ymm registers, then for each row i < 6
//! broadcast A[i, p] (`vbroadcastss`, alternating between two registers) and issue two
//! multiply-adds:
//!   acc[i][v] += A[i, p] · B[p, 8v .. 8v+8],   acc in ymm0..ymm11 (row i: ymm2i, ymm2i+1).
//! A step reads 6 values of A (24 bytes of a packed panel or of an A stored transposed, or
//! one from each of A's rows read in place) and 64 bytes of packed B: 20 µops for 12
//! multiply-adds (six cycles on two FMA ports). AVX2 has no embedded broadcast, so a row read
//! in place costs the same `vbroadcastss` as a packed one (an indexed address is fine for a
//! plain load). The steps are unrolled four at a time with constant displacements, as the
//! AVX-512 loop (`avx512_loop`), so the pointers and the counter advance once per four steps.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

use super::super::simd::k_loop::k_loop_6x16;

/// The 12 accumulators of a 6 × 16 tile: row i, vectors 0 and 1.
pub(super) type Acc = [[__m256; 2]; 6];

/// One row of one step: broadcast A[i, p] from `$addr` into ymm`$x` and issue its two
/// multiply-adds into ymm`$c0`, ymm`$c1` (B in ymm12, ymm13: `simd::k_loop::k_loop_6x16`).
#[rustfmt::skip]
macro_rules! row {
    ($addr:expr, $x:literal, $c0:literal, $c1:literal) => {
        concat!(
            "vbroadcastss ymm", $x, ", dword ptr ", $addr, "\n",
            "vfmadd231ps ymm", $c0, ", ymm", $x, ", ymm12\n",
            "vfmadd231ps ymm", $c1, ", ymm", $x, ", ymm13\n",
        )
    };
}

/// Step `$u` of the unrolled group: B[p, 0..16] at b + 64u, then the six rows, A[i, p] at
/// `$at!(i, u)`.
#[rustfmt::skip]
macro_rules! step {
    ($at:ident, $u:tt) => {
        concat!(
            "vmovups ymm12, ymmword ptr [{b} + 64*", $u, "]\n",
            "vmovups ymm13, ymmword ptr [{b} + 64*", $u, " + 32]\n",
            row!($at!(0, $u), 14, 0, 1),
            row!($at!(1, $u), 15, 2, 3),
            row!($at!(2, $u), 14, 4, 5),
            row!($at!(3, $u), 15, 6, 7),
            row!($at!(4, $u), 14, 8, 9),
            row!($at!(5, $u), 15, 10, 11),
        )
    };
}

/// A[i, p] of step `$u` in a packed panel: a + 4·(6u + i).
#[rustfmt::skip]
macro_rules! packed_at {
    ($i:literal, $u:literal) => { concat!("[{a} + 4*(6*", $u, " + ", $i, ")]") };
}

/// A[i, p] of step `$u` with A's rows in place: rows 0..2 off `{g0}`, rows 3..5 off `{g1}`
/// (row stride `{rs}` bytes), step p 4u bytes on.
#[rustfmt::skip]
macro_rules! in_place_at {
    (0, $u:literal) => { concat!("[{g0} + 4*", $u, "]") };
    (1, $u:literal) => { concat!("[{g0} + {rs} + 4*", $u, "]") };
    (2, $u:literal) => { concat!("[{g0} + {rs}*2 + 4*", $u, "]") };
    (3, $u:literal) => { concat!("[{g1} + 4*", $u, "]") };
    (4, $u:literal) => { concat!("[{g1} + {rs} + 4*", $u, "]") };
    (5, $u:literal) => { concat!("[{g1} + {rs}*2 + 4*", $u, "]") };
}

/// A[i, p] of step `$u` with A stored transposed and read in place: the 6 values of a step
/// side by side, step u at `{a}` + u·`{lda}` (`{lda3}` = 3·`{lda}`).
#[rustfmt::skip]
macro_rules! transposed_at {
    ($i:literal, 0) => { concat!("[{a} + 4*", $i, "]") };
    ($i:literal, 1) => { concat!("[{a} + {lda} + 4*", $i, "]") };
    ($i:literal, 2) => { concat!("[{a} + {lda}*2 + 4*", $i, "]") };
    ($i:literal, 3) => { concat!("[{a} + {lda3} + 4*", $i, "]") };
}

/// The unrolled loop (`simd::k_loop::k_loop_6x16`) with B packed (64 bytes per step).
macro_rules! k_loop {
    ($acc:ident, $at:ident, $advance4:expr, $advance1:expr, $($operands:tt)*) => {
        k_loop_6x16!($acc, step($at,), $advance4, $advance1, $($operands)*
            ldb = const 64, ldb4 = const 256,)
    };
}

/// f32: acc += A·B over `kc` steps, A packed (6 values per step), B packed (16 per step).
///
/// # Safety
/// `a` must hold 6·kc and `b` 16·kc readable floats; the CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn packed_f32(kc: usize, a: *const f32, b: *const f32, acc: &mut Acc) {
    // SAFETY: the loop reads a[0 .. 6·kc] and b[0 .. 16·kc] (the caller's contract) and
    // writes only registers.
    unsafe {
        k_loop!(acc, packed_at, "add {a}, 96", "add {a}, 24",
            a = inout(reg) a => _, b = inout(reg) b => _, n = inout(reg) kc => _,)
    }
}

/// f32: acc += A·B over `kc` steps with A's 6 rows read in place (row i at `a + i·a_rs`
/// floats, k contiguous); B packed (16 per step).
///
/// # Safety
/// Rows 0..6 of A must hold kc readable floats each and `b` 16·kc; the CPU must support AVX2
/// and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn direct_f32(
    kc: usize,
    a: *const f32,
    a_rs: usize,
    b: *const f32,
    acc: &mut Acc,
) {
    let rs = a_rs * size_of::<f32>();
    let (g0, g1) = (a as *const u8, (a as *const u8).wrapping_add(3 * rs));
    // SAFETY: the loop reads columns 0..kc of rows 0..6 of A and b[0 .. 16·kc] (the caller's
    // contract) and writes only registers.
    unsafe {
        k_loop!(acc, in_place_at, "add {g0}, 16\nadd {g1}, 16", "add {g0}, 4\nadd {g1}, 4",
            g0 = inout(reg) g0 => _, g1 = inout(reg) g1 => _, rs = in(reg) rs,
            b = inout(reg) b => _, n = inout(reg) kc => _,)
    }
}

/// How many k steps ahead `transposed_f32` prefetches A's runs into L2, as the AVX-512 loop
/// does (`avx512_loop::TRANSPOSED_PREFETCH_STEPS`, measured there): the hardware prefetchers
/// do not follow a stride across rows.
const TRANSPOSED_PREFETCH_STEPS: usize = 32;

/// f32: acc += A·B over `kc` steps with A stored transposed and read in place: A[i, p] at
/// `a + p·a_cs + i` (the 6 rows of a step contiguous, 24 bytes: at most two lines, both
/// prefetched `TRANSPOSED_PREFETCH_STEPS` ahead); B packed (16 per step).
///
/// # Safety
/// For p < kc, `a + p·a_cs` must hold 6 readable floats and `b` 16·kc; the CPU must support
/// AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn transposed_f32(
    kc: usize,
    a: *const f32,
    a_cs: usize,
    b: *const f32,
    acc: &mut Acc,
) {
    let lda = a_cs * size_of::<f32>();
    let pf = (a as *const u8).wrapping_add(TRANSPOSED_PREFETCH_STEPS * lda);
    // SAFETY: the loop reads 6 floats at a + p·a_cs for p < kc and b[0 .. 16·kc] (the
    // caller's contract) and writes only registers; its prefetches past A never fault.
    unsafe {
        k_loop!(acc, transposed_at,
            concat!(
                "prefetcht1 [{pf}]\nprefetcht1 [{pf} + 20]\n",
                "prefetcht1 [{pf} + {lda}]\nprefetcht1 [{pf} + {lda} + 20]\n",
                "prefetcht1 [{pf} + {lda}*2]\nprefetcht1 [{pf} + {lda}*2 + 20]\n",
                "prefetcht1 [{pf} + {lda3}]\nprefetcht1 [{pf} + {lda3} + 20]\n",
                "add {pf}, {lda4}\nadd {a}, {lda4}",
            ),
            "add {a}, {lda}",
            a = inout(reg) a => _, pf = inout(reg) pf => _, lda = in(reg) lda,
            lda3 = in(reg) 3 * lda, lda4 = in(reg) 4 * lda, b = inout(reg) b => _,
            n = inout(reg) kc => _,)
    }
}
