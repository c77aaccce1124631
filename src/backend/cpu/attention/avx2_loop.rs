//! The k loop of the AVX2 attention tile GEMM's full 6 × 16 block, in assembly (the AVX-512
//! loop of `avx512_loop.rs` at half the width, B and A addressed by its macros): per step k,
//! load B[k, 0..16] into ymm12, ymm13, then for each row r < 6 broadcast A(r, k) (into ymm14
//! and ymm15 in turn) and issue two FMAs
//!   acc[r][v] += A(r, k) · B[k, 8v .. 8v+8],   acc in ymm0..ymm11 (row r: ymm2r, ymm2r+1).
//! Four steps per iteration, B rows `ldb` bytes apart; A by rows (k contiguous) or by
//! columns (rows contiguous), as the AVX-512 loop.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

use super::avx512_loop::{a_col_at, b_at, cols_loop, rows_loop};
use crate::backend::cpu::simd::k_loop::k_loop_6x16;

/// The 12 accumulators of a 6 × 16 block: row r, vectors 0 and 1.
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

/// Loads B[k, 0..16] of step `$u`.
#[rustfmt::skip]
macro_rules! load_b {
    ($u:tt) => {
        concat!(
            "vmovups ymm12, ymmword ptr [", b_at!($u), "]\n",
            "vmovups ymm13, ymmword ptr [", b_at!($u), " + 32]\n",
        )
    };
}

/// Step `$u`, A by rows: row 3g + j at g_g + j·rs, step k at + 4u.
macro_rules! rows_step {
    ($u:tt) => {
        concat!(
            load_b!($u),
            row!(concat!("[{g0} + 4*", $u, "]"), 14, 0, 1),
            row!(concat!("[{g0} + {rs} + 4*", $u, "]"), 15, 2, 3),
            row!(concat!("[{g0} + {rs}*2 + 4*", $u, "]"), 14, 4, 5),
            row!(concat!("[{g1} + 4*", $u, "]"), 15, 6, 7),
            row!(concat!("[{g1} + {rs} + 4*", $u, "]"), 14, 8, 9),
            row!(concat!("[{g1} + {rs}*2 + 4*", $u, "]"), 15, 10, 11),
        )
    };
}

/// Step `$u`, A by columns: row r at a + 4r (+ u·cs).
macro_rules! cols_step {
    ($u:tt) => {
        concat!(
            load_b!($u),
            row!(a_col_at!($u, 0), 14, 0, 1),
            row!(a_col_at!($u, 1), 15, 2, 3),
            row!(a_col_at!($u, 2), 14, 4, 5),
            row!(a_col_at!($u, 3), 15, 6, 7),
            row!(a_col_at!($u, 4), 14, 8, 9),
            row!(a_col_at!($u, 5), 15, 10, 11),
        )
    };
}

/// acc += A·B over `kc` steps, A(r, k) at a[r·rsa + k] (k contiguous), B row k at b + k·ldb.
///
/// # Safety
/// Rows 0..6 of A must hold kc readable floats each, B kc rows of 16; AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn rows(
    kc: usize,
    a: *const f32,
    rsa: usize,
    b: *const f32,
    ldb: usize,
    acc: &mut Acc,
) {
    // SAFETY: the loop reads columns 0..kc of rows 0..6 of A and rows 0..kc of B (the
    // caller's contract) and writes only registers.
    unsafe { rows_loop!(k_loop_6x16, kc, a, rsa, b, ldb, acc) }
}

/// acc += A·B over `kc` steps, A(r, k) at a[r + k·csa] (rows contiguous), B row k at
/// b + k·ldb.
///
/// # Safety
/// A(r, k) for r < 6, k < kc and B's kc rows of 16 must be readable; AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn cols(
    kc: usize,
    a: *const f32,
    csa: usize,
    b: *const f32,
    ldb: usize,
    acc: &mut Acc,
) {
    // SAFETY: the loop reads A(0..6, 0..kc) and rows 0..kc of B (the caller's contract) and
    // writes only registers.
    unsafe { cols_loop!(k_loop_6x16, kc, a, csa, b, ldb, acc) }
}
