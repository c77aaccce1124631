//! The k loop of the 12 × 32 AVX-512 f32 micro-kernel, in assembly.
//!
//! For each k step p: load B[p, 0..32] into two zmm registers, then for each row i < 12
//! broadcast A[i, p] and issue two FMAs:
//!   acc[i][v] += A[i, p] · B[p, 16v .. 16v+16],   acc in zmm0..zmm23 (row i: zmm2i, zmm2i+1).
//! The steps are unrolled four at a time with constant displacements, so the pointers and the
//! counter advance once per four steps (the rolled loop spent three integer µops per step on
//! ports that Golden Cove shares with its two 512-bit FMA units, and, with A in place, one
//! more per row). Assembly, because LLVM, given the unrolled intrinsics, hoists all 48
//! broadcasts of an iteration above the FMAs and spills them to the stack.
//!
//! Two sources for A:
//! - `packed`: a packed panel, 12 values per step. Each FMA takes A[i, p] as an embedded
//!   broadcast of its memory operand ({1to16}): 26 fused µops per step instead of 38.
//! - `direct`: A's rows in place, k contiguous. Row 3g + j is at `g_g + j·rs` (bytes), so every
//!   broadcast is one addressing mode off four group pointers. Here a separate `vbroadcastss`
//!   feeds the two FMAs: an FMA with an indexed memory operand is not micro-fused on Intel.
//!
//! Measured on the Intel Xeon (Sapphire Rapids class) host of a lent machine, 1 thread, in
//! one process alternating with the rolled intrinsics loop (median of 3 rounds): packed
//! sq1024 / sq2048 / 4096×3072×768 +14 / +15 / +17%; direct sq512 / 4096×768×3072 / attention
//! P·V (512×512×64) +8 / +7 / +11%. Neutral on Zen 4, whose FMA throughput is the limit.

#[cfg(target_arch = "x86_64")]
use std::arch::{asm, x86_64::__m512};

/// The 24 accumulators of a 12 × 32 tile: row i, vectors 0 and 1.
pub(super) type Acc = [[__m512; 2]; 12];

/// One row of one k step: broadcast A[i, p] from `$addr` and issue its two FMAs
/// (accumulators zmm$c0, zmm$c1; B in zmm24, zmm25).
macro_rules! row {
    ($addr:expr, $c0:literal, $c1:literal) => {
        concat!(
            "vbroadcastss zmm31, dword ptr ",
            $addr,
            "\n",
            "vfmadd231ps zmm",
            $c0,
            ", zmm31, zmm24\n",
            "vfmadd231ps zmm",
            $c1,
            ", zmm31, zmm25\n",
        )
    };
}

/// `row` with the broadcast embedded in the FMAs' memory operands (A[i, p] loaded twice, by
/// the load ports, without a separate µop).
macro_rules! row_ebc {
    ($addr:expr, $c0:literal, $c1:literal) => {
        concat!(
            "vfmadd231ps zmm",
            $c0,
            ", zmm24, dword ptr ",
            $addr,
            "{{1to16}}\n",
            "vfmadd231ps zmm",
            $c1,
            ", zmm25, dword ptr ",
            $addr,
            "{{1to16}}\n",
        )
    };
}

/// Loads B[p, 0..32] for step `$u` of the unrolled group (128 bytes per step).
macro_rules! load_b {
    ($u:literal) => {
        concat!(
            "vmovups zmm24, zmmword ptr [{b} + 128*",
            $u,
            "]\n",
            "vmovups zmm25, zmmword ptr [{b} + 128*",
            $u,
            " + 64]\n",
        )
    };
}

/// Step `$u` with a packed A panel: A[i, p] at a + 4·(12u + i).
macro_rules! packed_step {
    ($row:ident, $u:literal) => {
        concat!(
            load_b!($u),
            $row!(concat!("[{a} + 4*(12*", $u, " + 0)]"), 0, 1),
            $row!(concat!("[{a} + 4*(12*", $u, " + 1)]"), 2, 3),
            $row!(concat!("[{a} + 4*(12*", $u, " + 2)]"), 4, 5),
            $row!(concat!("[{a} + 4*(12*", $u, " + 3)]"), 6, 7),
            $row!(concat!("[{a} + 4*(12*", $u, " + 4)]"), 8, 9),
            $row!(concat!("[{a} + 4*(12*", $u, " + 5)]"), 10, 11),
            $row!(concat!("[{a} + 4*(12*", $u, " + 6)]"), 12, 13),
            $row!(concat!("[{a} + 4*(12*", $u, " + 7)]"), 14, 15),
            $row!(concat!("[{a} + 4*(12*", $u, " + 8)]"), 16, 17),
            $row!(concat!("[{a} + 4*(12*", $u, " + 9)]"), 18, 19),
            $row!(concat!("[{a} + 4*(12*", $u, " + 10)]"), 20, 21),
            $row!(concat!("[{a} + 4*(12*", $u, " + 11)]"), 22, 23),
        )
    };
}

/// Step `$u` with A in place: row 3g + j at g_g + j·rs, column p at + 4u.
macro_rules! direct_step {
    ($row:ident, $u:literal) => {
        concat!(
            load_b!($u),
            $row!(concat!("[{g0} + 4*", $u, "]"), 0, 1),
            $row!(concat!("[{g0} + {rs} + 4*", $u, "]"), 2, 3),
            $row!(concat!("[{g0} + {rs}*2 + 4*", $u, "]"), 4, 5),
            $row!(concat!("[{g1} + 4*", $u, "]"), 6, 7),
            $row!(concat!("[{g1} + {rs} + 4*", $u, "]"), 8, 9),
            $row!(concat!("[{g1} + {rs}*2 + 4*", $u, "]"), 10, 11),
            $row!(concat!("[{g2} + 4*", $u, "]"), 12, 13),
            $row!(concat!("[{g2} + {rs} + 4*", $u, "]"), 14, 15),
            $row!(concat!("[{g2} + {rs}*2 + 4*", $u, "]"), 16, 17),
            $row!(concat!("[{g3} + 4*", $u, "]"), 18, 19),
            $row!(concat!("[{g3} + {rs} + 4*", $u, "]"), 20, 21),
            $row!(concat!("[{g3} + {rs}*2 + 4*", $u, "]"), 22, 23),
        )
    };
}

/// The asm block: `n4` groups of four steps, then `n1` single steps; `$advance4` /
/// `$advance1` move the A pointers past them. The accumulators stay in zmm0..zmm23.
macro_rules! k_loop {
    ($acc:ident, $step:ident, $row:ident, $advance4:expr, $advance1:expr, $($operands:tt)*) => {{
        let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7],
            [mut c8, mut c9], [mut c10, mut c11], [mut c12, mut c13], [mut c14, mut c15],
            [mut c16, mut c17], [mut c18, mut c19], [mut c20, mut c21], [mut c22, mut c23]] = *$acc;
        asm!(
            "test {n4}, {n4}",
            "jz 3f",
            "2:",
            $step!($row, 0),
            $step!($row, 1),
            $step!($row, 2),
            $step!($row, 3),
            $advance4,
            "add {b}, 512",
            "dec {n4}",
            "jnz 2b",
            "3:",
            "test {n1}, {n1}",
            "jz 5f",
            "4:",
            $step!($row, 0),
            $advance1,
            "add {b}, 128",
            "dec {n1}",
            "jnz 4b",
            "5:",
            $($operands)*
            inout("zmm0") c0, inout("zmm1") c1, inout("zmm2") c2, inout("zmm3") c3,
            inout("zmm4") c4, inout("zmm5") c5, inout("zmm6") c6, inout("zmm7") c7,
            inout("zmm8") c8, inout("zmm9") c9, inout("zmm10") c10, inout("zmm11") c11,
            inout("zmm12") c12, inout("zmm13") c13, inout("zmm14") c14, inout("zmm15") c15,
            inout("zmm16") c16, inout("zmm17") c17, inout("zmm18") c18, inout("zmm19") c19,
            inout("zmm20") c20, inout("zmm21") c21, inout("zmm22") c22, inout("zmm23") c23,
            out("zmm24") _, out("zmm25") _, out("zmm31") _,
            options(nostack, readonly),
        );
        *$acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11], [c12, c13],
            [c14, c15], [c16, c17], [c18, c19], [c20, c21], [c22, c23]];
    }};
}

/// acc += A·B over `kc` steps, A packed (12 values per step), B packed (32 per step).
///
/// # Safety
/// `a` must hold 12·kc and `b` 32·kc readable floats; the CPU must support AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn packed(kc: usize, a: *const f32, b: *const f32, acc: &mut Acc) {
    // SAFETY: the loop reads a[0 .. 12·kc] and b[0 .. 32·kc] (the caller's contract) and
    // writes only registers.
    unsafe {
        k_loop!(acc, packed_step, row_ebc, "add {a}, 192", "add {a}, 48",
            a = inout(reg) a => _, b = inout(reg) b => _,
            n4 = inout(reg) kc / 4 => _, n1 = inout(reg) kc % 4 => _,)
    }
}

/// acc += A·B over `kc` steps with A's 12 rows read in place: row i at `a + i·a_rs` floats,
/// k contiguous; B packed (32 per step).
///
/// # Safety
/// Rows 0..12 of A must hold kc readable floats each and `b` 32·kc; the CPU must support
/// AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn direct(kc: usize, a: *const f32, a_rs: usize, b: *const f32, acc: &mut Acc) {
    let group = |g: usize| a.wrapping_add(3 * g * a_rs);
    let rs = a_rs * std::mem::size_of::<f32>();
    // SAFETY: the loop reads columns 0..kc of rows 0..12 of A and b[0 .. 32·kc] (the caller's
    // contract) and writes only registers.
    unsafe {
        k_loop!(acc, direct_step, row,
            "add {g0}, 16\nadd {g1}, 16\nadd {g2}, 16\nadd {g3}, 16",
            "add {g0}, 4\nadd {g1}, 4\nadd {g2}, 4\nadd {g3}, 4",
            g0 = inout(reg) group(0) => _, g1 = inout(reg) group(1) => _,
            g2 = inout(reg) group(2) => _, g3 = inout(reg) group(3) => _, rs = in(reg) rs,
            b = inout(reg) b => _, n4 = inout(reg) kc / 4 => _, n1 = inout(reg) kc % 4 => _,)
    }
}
