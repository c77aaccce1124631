//! The control flow shared by the assembly k loops of the GEMM micro-kernels and attention:
//! the AVX-512 GEMM (12 × 32 tiles, `gemm/avx512_loop.rs`) and attention (6 × 64 blocks,
//! `attention/avx512_loop.rs`) keep a tile of C in 24 zmm accumulators, zmm0..zmm23; the
//! AVX2 GEMM and attention (6 × 16 tiles, `avx2_loop.rs`) in 12 ymm accumulators,
//! ymm0..ymm11. All unroll the k steps four deep.

/// One asm block over `{n}` steps: groups of four steps `$step!(pre.., u)` (u = 0..3, the
/// step offsets in the step's addressing modes) while four remain, then single steps
/// `$step!(pre.., 0)` (one counter register, so that a step may address A from up to ten
/// pointers of its own). After each group `$advance4` moves the A pointers and B moves
/// `{ldb4}` bytes; after each single step, `$advance1` and `{ldb}`. The caller's operands
/// name n, b, ldb, ldb4 (registers or consts), its A registers, the accumulators' registers
/// and the vector registers its steps clobber. The block only reads memory.
macro_rules! k_loop {
    ($step:ident($($pre:tt)*), $advance4:expr, $advance1:expr, $($operands:tt)*) => {
        ::std::arch::asm!(
            "cmp {n}, 4",
            "jb 3f",
            "2:",
            $step!($($pre)* 0),
            $step!($($pre)* 1),
            $step!($($pre)* 2),
            $step!($($pre)* 3),
            $advance4,
            "add {b}, {ldb4}",
            "sub {n}, 4",
            "cmp {n}, 4",
            "jae 2b",
            "3:",
            "test {n}, {n}",
            "jz 5f",
            "4:",
            $step!($($pre)* 0),
            $advance1,
            "add {b}, {ldb}",
            "dec {n}",
            "jnz 4b",
            "5:",
            $($operands)*
            options(nostack, readonly),
        )
    };
}
pub(crate) use k_loop;

/// `k_loop` with the accumulators `$c0..$c23` bound to zmm0..zmm23 in order.
macro_rules! k_loop_24 {
    ([$c0:ident, $c1:ident, $c2:ident, $c3:ident, $c4:ident, $c5:ident, $c6:ident, $c7:ident,
      $c8:ident, $c9:ident, $c10:ident, $c11:ident, $c12:ident, $c13:ident, $c14:ident,
      $c15:ident, $c16:ident, $c17:ident, $c18:ident, $c19:ident, $c20:ident, $c21:ident,
      $c22:ident, $c23:ident],
     $step:ident($($pre:tt)*), $advance4:expr, $advance1:expr, $($operands:tt)*) => {
        $crate::backend::cpu::simd::k_loop::k_loop!(
            $step($($pre)*), $advance4, $advance1,
            $($operands)*
            inout("zmm0") $c0, inout("zmm1") $c1, inout("zmm2") $c2, inout("zmm3") $c3,
            inout("zmm4") $c4, inout("zmm5") $c5, inout("zmm6") $c6, inout("zmm7") $c7,
            inout("zmm8") $c8, inout("zmm9") $c9, inout("zmm10") $c10, inout("zmm11") $c11,
            inout("zmm12") $c12, inout("zmm13") $c13, inout("zmm14") $c14, inout("zmm15") $c15,
            inout("zmm16") $c16, inout("zmm17") $c17, inout("zmm18") $c18, inout("zmm19") $c19,
            inout("zmm20") $c20, inout("zmm21") $c21, inout("zmm22") $c22, inout("zmm23") $c23,
        )
    };
}
pub(crate) use k_loop_24;

/// `k_loop` over the accumulators of an AVX2 6 × 16 tile, `$acc: &mut [[__m256; 2]; 6]`,
/// bound to ymm0..ymm11 (row i in ymm2i, ymm2i+1), its steps loading B into ymm12, ymm13 and
/// broadcasting into ymm14, ymm15 (clobbered).
macro_rules! k_loop_6x16 {
    ($acc:ident, $step:ident($($pre:tt)*), $advance4:expr, $advance1:expr, $($operands:tt)*) => {{
        let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7],
            [mut c8, mut c9], [mut c10, mut c11]] = *$acc;
        $crate::backend::cpu::simd::k_loop::k_loop!(
            $step($($pre)*), $advance4, $advance1,
            $($operands)*
            inout("ymm0") c0, inout("ymm1") c1, inout("ymm2") c2, inout("ymm3") c3,
            inout("ymm4") c4, inout("ymm5") c5, inout("ymm6") c6, inout("ymm7") c7,
            inout("ymm8") c8, inout("ymm9") c9, inout("ymm10") c10, inout("ymm11") c11,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
        );
        *$acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11]];
    }};
}
pub(crate) use k_loop_6x16;
