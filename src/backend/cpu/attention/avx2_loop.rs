//! The k loop of the AVX2 attention tile GEMM's full 6 × 16 block, in assembly (the AVX-512
//! loop of `avx512_loop.rs` at half the width, B and A addressed by its macros): per step k,
//! load B[k, 0..16] into ymm12, ymm13, then for each row r < 6 broadcast A(r, k) (into ymm14
//! and ymm15 in turn) and issue two FMAs
//!   acc[r][v] += A(r, k) · B[k, 8v .. 8v+8],   acc in ymm0..ymm11 (row r: ymm2r, ymm2r+1).
//! Four steps per iteration, B rows `ldb` bytes apart; A by rows (k contiguous) or by
//! columns (rows contiguous), as the AVX-512 loop.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

use super::avx512_loop::{a_col_at, b_at};
use crate::backend::cpu::simd::k_loop::k_loop_12;

/// The 12 accumulators of a 6 × 16 block: row r, vectors 0 and 1.
pub(super) type Acc = [[__m256; 2]; 6];

/// Broadcast one A value into ymm`$x` and issue the row's two FMAs into ymm`$c0`, ymm`$c1`.
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

/// The unrolled loop (`simd::k_loop::k_loop_12`) with the block's accumulators in
/// ymm0..ymm11; the caller's operands give B's row stride.
macro_rules! k_loop {
    ($acc:ident, $step:ident, $advance4:expr, $advance1:expr, $($operands:tt)*) => {{
        let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7],
            [mut c8, mut c9], [mut c10, mut c11]] = *$acc;
        k_loop_12!(
            [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11],
            $step(), $advance4, $advance1,
            $($operands)*
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
        );
        *$acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11]];
    }};
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
    let (rs, ldb) = (4 * rsa, 4 * ldb);
    let (g0, g1) = (a, a.wrapping_add(3 * rsa));
    // SAFETY: the loop reads columns 0..kc of rows 0..6 of A and rows 0..kc of B (the
    // caller's contract) and writes only registers.
    unsafe {
        k_loop!(acc, rows_step, "add {g0}, 16\nadd {g1}, 16", "add {g0}, 4\nadd {g1}, 4",
            g0 = inout(reg) g0 => _, g1 = inout(reg) g1 => _, rs = in(reg) rs,
            b = inout(reg) b => _, ldb = in(reg) ldb, ldb3 = in(reg) 3 * ldb,
            ldb4 = in(reg) 4 * ldb, n = inout(reg) kc => _,)
    }
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
    let (cs, ldb) = (4 * csa, 4 * ldb);
    // SAFETY: the loop reads A(0..6, 0..kc) and rows 0..kc of B (the caller's contract) and
    // writes only registers.
    unsafe {
        k_loop!(acc, cols_step, "add {a}, {cs4}", "add {a}, {cs}",
            a = inout(reg) a => _, cs = in(reg) cs, cs3 = in(reg) 3 * cs, cs4 = in(reg) 4 * cs,
            b = inout(reg) b => _, ldb = in(reg) ldb, ldb3 = in(reg) 3 * ldb,
            ldb4 = in(reg) 4 * ldb, n = inout(reg) kc => _,)
    }
}
