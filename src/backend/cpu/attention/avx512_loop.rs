//! The k loop of the attention tile GEMM's full 6 × 64 block, in assembly (as the GEMM's
//! `gemm/avx512_loop.rs`, whose notes apply): per step k, load B[k, 0..64] into zmm24..27,
//! then for each row r < 6 broadcast A(r, k) and issue four FMAs
//!   acc[r][v] += A(r, k) · B[k, 16v .. 16v+16],   acc in zmm0..zmm23 (row r: zmm4r ..= zmm4r+3).
//! Four steps per iteration with the step offsets in addressing modes, so the pointers and
//! the counter advance once per four steps. B rows are `ldb` bytes apart (unpacked tiles).
//! Two layouts of A, the two the attention passes use:
//! - `rows`: k contiguous, rows `rs` bytes apart (Q·Kᵀ, P·V, dO·Vᵀ, dS·K): row 3g + j at
//!   g_g + j·rs;
//! - `cols`: rows contiguous, k `cs` bytes apart (Pᵀ·dO, dSᵀ·Q): row r at a + 4r.
//!
//! The AVX2 loop (`avx2_loop.rs`, 6 × 16 blocks) addresses A and B through the same macros.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m512;

use super::super::simd::k_loop::k_loop_24;

/// The 24 accumulators of a 6 × 64 block: row r, vectors 0..4.
pub(super) type Acc = [[__m512; 4]; 6];

/// B[k, 0..64] of step `$u` (`{b}` plus u row strides: `{ldb3}` holds 3·ldb).
macro_rules! b_at {
    (0) => {
        "{b}"
    };
    (1) => {
        "{b} + {ldb}"
    };
    (2) => {
        "{b} + {ldb}*2"
    };
    (3) => {
        "{b} + {ldb3}"
    };
}

pub(super) use b_at;

/// A(r, k) of step `$u` with rows contiguous (`{cs3}` holds 3·cs).
macro_rules! a_col_at {
    (0, $r:literal) => {
        concat!("[{a} + 4*", $r, "]")
    };
    (1, $r:literal) => {
        concat!("[{a} + {cs} + 4*", $r, "]")
    };
    (2, $r:literal) => {
        concat!("[{a} + {cs}*2 + 4*", $r, "]")
    };
    (3, $r:literal) => {
        concat!("[{a} + {cs3} + 4*", $r, "]")
    };
}

pub(super) use a_col_at;

/// Broadcast one A value and issue the row's four FMAs into zmm$c .. zmm$c+3.
#[rustfmt::skip]
macro_rules! row {
    ($addr:expr, $c0:literal, $c1:literal, $c2:literal, $c3:literal) => {
        concat!(
            "vbroadcastss zmm28, dword ptr ", $addr, "\n",
            "vfmadd231ps zmm", $c0, ", zmm28, zmm24\n",
            "vfmadd231ps zmm", $c1, ", zmm28, zmm25\n",
            "vfmadd231ps zmm", $c2, ", zmm28, zmm26\n",
            "vfmadd231ps zmm", $c3, ", zmm28, zmm27\n",
        )
    };
}

/// Loads B[k, 0..64] of step `$u`.
#[rustfmt::skip]
macro_rules! load_b {
    ($u:tt) => {
        concat!(
            "vmovups zmm24, zmmword ptr [", b_at!($u), "]\n",
            "vmovups zmm25, zmmword ptr [", b_at!($u), " + 64]\n",
            "vmovups zmm26, zmmword ptr [", b_at!($u), " + 128]\n",
            "vmovups zmm27, zmmword ptr [", b_at!($u), " + 192]\n",
        )
    };
}

/// Step `$u`, A by rows: row 3g + j at g_g + j·rs, step k at + 4u.
macro_rules! rows_step {
    ($u:tt) => {
        concat!(
            load_b!($u),
            row!(concat!("[{g0} + 4*", $u, "]"), 0, 1, 2, 3),
            row!(concat!("[{g0} + {rs} + 4*", $u, "]"), 4, 5, 6, 7),
            row!(concat!("[{g0} + {rs}*2 + 4*", $u, "]"), 8, 9, 10, 11),
            row!(concat!("[{g1} + 4*", $u, "]"), 12, 13, 14, 15),
            row!(concat!("[{g1} + {rs} + 4*", $u, "]"), 16, 17, 18, 19),
            row!(concat!("[{g1} + {rs}*2 + 4*", $u, "]"), 20, 21, 22, 23),
        )
    };
}

/// Step `$u`, A by columns: row r at a + 4r (+ u·cs).
macro_rules! cols_step {
    ($u:tt) => {
        concat!(
            load_b!($u),
            row!(a_col_at!($u, 0), 0, 1, 2, 3),
            row!(a_col_at!($u, 1), 4, 5, 6, 7),
            row!(a_col_at!($u, 2), 8, 9, 10, 11),
            row!(a_col_at!($u, 3), 12, 13, 14, 15),
            row!(a_col_at!($u, 4), 16, 17, 18, 19),
            row!(a_col_at!($u, 5), 20, 21, 22, 23),
        )
    };
}

/// The unrolled loop (`simd::k_loop::k_loop_24`) with the block's accumulators in
/// zmm0..zmm23 (row r: zmm4r ..= zmm4r+3); the caller's operands give B's row stride.
macro_rules! k_loop {
    ($acc:ident, $step:ident(), $advance4:expr, $advance1:expr, $($operands:tt)*) => {{
        let [[mut c0, mut c1, mut c2, mut c3], [mut c4, mut c5, mut c6, mut c7],
            [mut c8, mut c9, mut c10, mut c11], [mut c12, mut c13, mut c14, mut c15],
            [mut c16, mut c17, mut c18, mut c19], [mut c20, mut c21, mut c22, mut c23]] = *$acc;
        k_loop_24!(
            [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17,
             c18, c19, c20, c21, c22, c23],
            $step(), $advance4, $advance1,
            $($operands)*
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _,
        );
        *$acc = [[c0, c1, c2, c3], [c4, c5, c6, c7], [c8, c9, c10, c11], [c12, c13, c14, c15],
            [c16, c17, c18, c19], [c20, c21, c22, c23]];
    }};
}

/// The loop by rows through `$k_loop` (this file's, or the AVX2 file's, with its own
/// `rows_step`): A(r, k) at `$a`[r·`$rsa` + k], B row k at `$b` + k·`$ldb` (in floats).
macro_rules! rows_loop {
    ($k_loop:ident, $kc:expr, $a:expr, $rsa:expr, $b:expr, $ldb:expr, $acc:ident) => {{
        let (rs, ldb) = (4 * $rsa, 4 * $ldb);
        let (g0, g1) = ($a, $a.wrapping_add(3 * $rsa));
        $k_loop!($acc, rows_step(), "add {g0}, 16\nadd {g1}, 16", "add {g0}, 4\nadd {g1}, 4",
            g0 = inout(reg) g0 => _, g1 = inout(reg) g1 => _, rs = in(reg) rs,
            b = inout(reg) $b => _, ldb = in(reg) ldb, ldb3 = in(reg) 3 * ldb,
            ldb4 = in(reg) 4 * ldb, n = inout(reg) $kc => _,)
    }};
}
pub(super) use rows_loop;

/// The loop by columns through `$k_loop` (with its own `cols_step`): A(r, k) at
/// `$a`[r + k·`$csa`], B row k at `$b` + k·`$ldb` (in floats).
macro_rules! cols_loop {
    ($k_loop:ident, $kc:expr, $a:expr, $csa:expr, $b:expr, $ldb:expr, $acc:ident) => {{
        let (cs, ldb) = (4 * $csa, 4 * $ldb);
        $k_loop!($acc, cols_step(), "add {a}, {cs4}", "add {a}, {cs}",
            a = inout(reg) $a => _, cs = in(reg) cs, cs3 = in(reg) 3 * cs, cs4 = in(reg) 4 * cs,
            b = inout(reg) $b => _, ldb = in(reg) ldb, ldb3 = in(reg) 3 * ldb,
            ldb4 = in(reg) 4 * ldb, n = inout(reg) $kc => _,)
    }};
}
pub(super) use cols_loop;

/// acc += A·B over `kc` steps, A(r, k) at a[r·rsa + k] (k contiguous), B row k at b + k·ldb.
///
/// # Safety
/// Rows 0..6 of A must hold kc readable floats each, B kc rows of 64; AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
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
    unsafe { rows_loop!(k_loop, kc, a, rsa, b, ldb, acc) }
}

/// acc += A·B over `kc` steps, A(r, k) at a[r + k·csa] (rows contiguous), B row k at
/// b + k·ldb.
///
/// # Safety
/// A(r, k) for r < 6, k < kc and B's kc rows of 64 must be readable; AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
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
    unsafe { cols_loop!(k_loop, kc, a, csa, b, ldb, acc) }
}
