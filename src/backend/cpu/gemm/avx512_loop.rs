//! The k loop of the 12 × 32 AVX-512 micro-kernels (f32, and bf16 pairs), in assembly.
//!
//! For each k step p: load B[p, 0..32] into two zmm registers, then for each row i < 12
//! broadcast A[i, p] and issue two multiply-adds:
//!   acc[i][v] += A[i, p] · B[p, 16v .. 16v+16],   acc in zmm0..zmm23 (row i: zmm2i, zmm2i+1).
//! In f32 (`vfmadd231ps`) a step is one k; in bf16 (`vdpbf16ps`) it is a pair of k, and
//! A[i, p] / B[p, j] are 32-bit pairs: acc[i][j] += A[i,2q]·B[2q,j] + A[i,2q+1]·B[2q+1,j].
//! Either way a step reads 48 bytes of a packed A panel and 128 bytes of packed B.
//!
//! The steps are unrolled four at a time with constant displacements, so the pointers and the
//! counter advance once per four steps (the rolled loop spent three integer µops per step on
//! ports that Golden Cove shares with its two 512-bit FMA units, and, with A in place, one
//! more per row). Assembly, because LLVM, given the unrolled intrinsics, hoists all 48
//! broadcasts of an iteration above the multiply-adds and spills them to the stack.
//!
//! The f32 packed and direct loops come in two forms (`broadcast::BroadcastForm`, chosen
//! once per process by timing both): A[i, p] embedded in each multiply-add's memory operand
//! ({1to16}; macro `row_ebc`), or broadcast by a `vbroadcastss` of its own (`row`). The bf16
//! loops keep the embedded form (within ±1% of the other on Zen 4, session 36).
//!
//! Three sources for A:
//! - `packed_*`: a packed panel, 12 values per step. Embedded, each multiply-add takes A[i, p]
//!   as a broadcast of its memory operand: 26 fused µops per step, not 38.
//! - `direct_*`: A's rows in place, k contiguous, B packed. Ten rows have a pointer of their
//!   own, so (embedded) their multiply-adds take A[i, p] as an embedded broadcast, fused as in
//!   the packed loop; the other two are addressed off a pointer plus the row stride (`[p9 + rs]`), and
//!   since an FMA with an indexed memory operand is not micro-fused on Intel, each gets a
//!   `vbroadcastss` of its own: 28 fused µops per step (and 10 pointer adds per four steps)
//!   instead of 38 (and 4) with four group pointers and a broadcast per row. When the 12 rows are dense (nothing between them), the loop
//!   also prefetches the next tile's rows as it goes (`dense_next_tile`), with nine pointers
//!   (the prefetch pointer takes the tenth register). The µops matter when the core's other
//!   hyperthread is busy (a shared host): the two threads then split the front end, and the
//!   38-µop step no longer issues its 24 multiply-adds in 12 cycles. Intel EMR, f32, in
//!   process against the broadcast-per-row loop, 1 / 2 threads: with a busy sibling
//!   (~105 GFLOP/s on one thread) 768 × 128 × 128 +6% / +20%, 96 × 512 × 512 +10% / +4%,
//!   768 × 768 × 768 +6% / +2%, 256³ +7% / +11%, 64 × 64 × 32 × 64 heads +4% / +7%; in a quiet
//!   moment (~155 GFLOP/s) −5% to +11%, most within ±2%. bf16 (`vdpbf16ps`, same loop):
//!   within ±2% (its multiply-adds, not the front end, bound it here).
//! - `direct_f32_strided_b`: A's rows and B's own rows in place, B's rows `ldb` bytes apart:
//!   step u of a group loads at b + u·ldb (3·ldb from a register of its own), for products of
//!   few rows over a long reduction, where packing B would be a pass over memory of its own.
//!   Row 3g + j of A is at `g_g + j·rs` (four group pointers; the registers go to B), each
//!   row broadcast by its own `vbroadcastss`.
//! - `transposed_f32`: A stored transposed and read in place (Aᵀ·B against a narrow C): the 12
//!   values of a step lie side by side in one source row, step u of a group at a + u·lda
//!   (3·lda from a register of its own), each broadcast by its own `vbroadcastss`. With a
//!   pointer per step instead (every FMA an embedded broadcast, each A value loaded twice from
//!   lines that mostly miss L1) attention's dV (512 × 512 × 64, 12 heads) lost 7%, so not.
//!
//! Measured (f32) on the Intel Xeon host of a lent machine (Emerald Rapids, family 6 model
//! 207), 1 thread, in one process alternating with the rolled intrinsics loop (median of
//! 3 rounds): packed sq1024 / sq2048 / 4096×3072×768 +14 / +15 / +17%; in place sq512 /
//! 4096×768×3072 / attention P·V (512×512×64) +8 / +7 / +11%. The loop alone, on 64-byte
//! aligned panels with B streaming from L2, ran at the machine's FMA peak (177 GFLOP/s) in a
//! quiet moment.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m512;

use super::super::simd::k_loop::k_loop_24;
use super::broadcast::BroadcastForm;

/// The 24 accumulators of a 12 × 32 tile: row i, vectors 0 and 1.
pub(super) type Acc = [[__m512; 2]; 12];

/// One row of one step: broadcast A[i, p] from `$addr` and issue its two multiply-adds `$op`
/// (accumulators zmm$c0, zmm$c1; B in zmm24, zmm25).
#[rustfmt::skip]
macro_rules! row {
    ($op:literal, $addr:expr, $c0:literal, $c1:literal) => {
        concat!(
            "vbroadcastss zmm31, dword ptr ", $addr, "\n",
            $op, " zmm", $c0, ", zmm31, zmm24\n",
            $op, " zmm", $c1, ", zmm31, zmm25\n",
        )
    };
}

/// `row` with the broadcast embedded in the memory operands (A[i, p] loaded twice, by the
/// load ports, without a separate µop).
#[rustfmt::skip]
macro_rules! row_ebc {
    ($op:literal, $addr:expr, $c0:literal, $c1:literal) => {
        concat!(
            $op, " zmm", $c0, ", zmm24, dword ptr ", $addr, "{{1to16}}\n",
            $op, " zmm", $c1, ", zmm25, dword ptr ", $addr, "{{1to16}}\n",
        )
    };
}

/// Loads B[p, 0..32] for step `$u` of the unrolled group (128 bytes per step).
#[rustfmt::skip]
macro_rules! load_b {
    ($u:literal) => {
        concat!(
            "vmovups zmm24, zmmword ptr [{b} + 128*", $u, "]\n",
            "vmovups zmm25, zmmword ptr [{b} + 128*", $u, " + 64]\n",
        )
    };
}

/// Step `$u` with a packed A panel: A[i, p] at a + 4·(12u + i).
macro_rules! packed_step {
    ($row:ident, $op:literal, $u:literal) => {
        concat!(
            load_b!($u),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 0)]"), 0, 1),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 1)]"), 2, 3),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 2)]"), 4, 5),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 3)]"), 6, 7),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 4)]"), 8, 9),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 5)]"), 10, 11),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 6)]"), 12, 13),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 7)]"), 14, 15),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 8)]"), 16, 17),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 9)]"), 18, 19),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 10)]"), 20, 21),
            $row!($op, concat!("[{a} + 4*(12*", $u, " + 11)]"), 22, 23),
        )
    };
}

/// Loads B[p, 0..32] for step `$u` of the unrolled group with B's rows `{ldb}` bytes apart
/// (read in place: `{ldb3}` = 3·`{ldb}`).
#[rustfmt::skip]
macro_rules! load_b_strided {
    (0) => { "vmovups zmm24, zmmword ptr [{b}]\nvmovups zmm25, zmmword ptr [{b} + 64]\n" };
    (1) => {
        "vmovups zmm24, zmmword ptr [{b} + {ldb}]\nvmovups zmm25, zmmword ptr [{b} + {ldb} + 64]\n"
    };
    (2) => {
        "vmovups zmm24, zmmword ptr [{b} + {ldb}*2]\nvmovups zmm25, zmmword ptr [{b} + {ldb}*2 + 64]\n"
    };
    (3) => {
        "vmovups zmm24, zmmword ptr [{b} + {ldb3}]\nvmovups zmm25, zmmword ptr [{b} + {ldb3} + 64]\n"
    };
}

/// Rows 0..9 of step `$u` with A in place, each from a pointer of its own (`{p0}`..`{p8}`,
/// step p 4u bytes on), broadcast by `$row` (`row_ebc`: embedded in the multiply-adds).
#[rustfmt::skip]
macro_rules! own_rows {
    ($row:ident, $op:literal, $u:tt) => {
        concat!(
                $row!($op, concat!("[{p0} + 4*", $u, "]"), 0, 1),
                $row!($op, concat!("[{p1} + 4*", $u, "]"), 2, 3),
                $row!($op, concat!("[{p2} + 4*", $u, "]"), 4, 5),
                $row!($op, concat!("[{p3} + 4*", $u, "]"), 6, 7),
                $row!($op, concat!("[{p4} + 4*", $u, "]"), 8, 9),
                $row!($op, concat!("[{p5} + 4*", $u, "]"), 10, 11),
                $row!($op, concat!("[{p6} + 4*", $u, "]"), 12, 13),
                $row!($op, concat!("[{p7} + 4*", $u, "]"), 14, 15),
                $row!($op, concat!("[{p8} + 4*", $u, "]"), 16, 17),
        )
    };
}

/// `add` of `$by` bytes to each of the nine row pointers of `own_rows`.
#[rustfmt::skip]
macro_rules! advance_own_rows {
    ($by:literal) => {
        concat!(
            "add {p0}, ", $by, "\nadd {p1}, ", $by, "\nadd {p2}, ", $by, "\nadd {p3}, ", $by,
            "\nadd {p4}, ", $by, "\nadd {p5}, ", $by, "\nadd {p6}, ", $by, "\nadd {p7}, ", $by,
            "\nadd {p8}, ", $by, "\n",
        )
    };
}

/// Step `$u` with A in place, ten rows from pointers of their own: rows 0..10 at `{p0}`..
/// `{p9}` (step p at + 4u bytes), broadcast by `$row` (with `row_ebc` each multiply-add
/// fused with its broadcast, like the packed loop's), rows 10 and 11 at p9 + rs and
/// p9 + 2·rs by `vbroadcastss`.
#[rustfmt::skip]
macro_rules! direct_step_ten {
    ($row:ident, $op:literal, $u:tt) => {
        concat!(
            load_b!($u),
            own_rows!($row, $op, $u),
            $row!($op, concat!("[{p9} + 4*", $u, "]"), 18, 19),
            row!($op, concat!("[{p9} + {rs} + 4*", $u, "]"), 20, 21),
            row!($op, concat!("[{p9} + {rs}*2 + 4*", $u, "]"), 22, 23),
        )
    };
}

/// `direct_step_ten` with nine pointers (a register left for `dense_next_tile`'s prefetch):
/// rows 0..9 at `{p0}`..`{p8}`, rows 9, 10 and 11 at p8 + rs, p8 + 2·rs and p7 + 4·rs.
#[rustfmt::skip]
macro_rules! direct_step_nine {
    ($row:ident, $op:literal, $u:tt) => {
        concat!(
            load_b!($u),
            own_rows!($row, $op, $u),
            row!($op, concat!("[{p8} + {rs} + 4*", $u, "]"), 18, 19),
            row!($op, concat!("[{p8} + {rs}*2 + 4*", $u, "]"), 20, 21),
            row!($op, concat!("[{p7} + {rs}*4 + 4*", $u, "]"), 22, 23),
        )
    };
}

/// Step `$u` with A's rows and B's rows in place: row 3g + j of A at g_g + j·rs, step p
/// 4u bytes on, each broadcast by its own `vbroadcastss` (an FMA with an indexed memory
/// operand is not micro-fused on Intel); B's rows `{ldb}` bytes apart (`load_b_strided`).
macro_rules! direct_step_strided_b {
    ($row:ident, $op:literal, $u:tt) => {
        concat!(
            load_b_strided!($u),
            row!($op, concat!("[{g0} + 4*", $u, "]"), 0, 1),
            row!($op, concat!("[{g0} + {rs} + 4*", $u, "]"), 2, 3),
            row!($op, concat!("[{g0} + {rs}*2 + 4*", $u, "]"), 4, 5),
            row!($op, concat!("[{g1} + 4*", $u, "]"), 6, 7),
            row!($op, concat!("[{g1} + {rs} + 4*", $u, "]"), 8, 9),
            row!($op, concat!("[{g1} + {rs}*2 + 4*", $u, "]"), 10, 11),
            row!($op, concat!("[{g2} + 4*", $u, "]"), 12, 13),
            row!($op, concat!("[{g2} + {rs} + 4*", $u, "]"), 14, 15),
            row!($op, concat!("[{g2} + {rs}*2 + 4*", $u, "]"), 16, 17),
            row!($op, concat!("[{g3} + 4*", $u, "]"), 18, 19),
            row!($op, concat!("[{g3} + {rs} + 4*", $u, "]"), 20, 21),
            row!($op, concat!("[{g3} + {rs}*2 + 4*", $u, "]"), 22, 23),
        )
    };
}

/// Where step `$u` of the unrolled group reads A stored transposed (k steps `{lda}` bytes
/// apart, `{lda3}` = 3·`{lda}`): the opening of the address, completed by the row's offset.
#[rustfmt::skip]
macro_rules! transposed_at {
    (0) => { "[{a}" };
    (1) => { "[{a} + {lda}" };
    (2) => { "[{a} + {lda}*2" };
    (3) => { "[{a} + {lda3}" };
}

/// Step `$u` with A stored transposed and read in place: A[i, p] at a + p·lda + 4i bytes, the
/// 12 values of a step side by side (48 bytes of one source row); B packed.
macro_rules! transposed_step {
    ($row:ident, $op:literal, $u:tt) => {
        concat!(
            load_b!($u),
            $row!($op, concat!(transposed_at!($u), "]"), 0, 1),
            $row!($op, concat!(transposed_at!($u), " + 4]"), 2, 3),
            $row!($op, concat!(transposed_at!($u), " + 8]"), 4, 5),
            $row!($op, concat!(transposed_at!($u), " + 12]"), 6, 7),
            $row!($op, concat!(transposed_at!($u), " + 16]"), 8, 9),
            $row!($op, concat!(transposed_at!($u), " + 20]"), 10, 11),
            $row!($op, concat!(transposed_at!($u), " + 24]"), 12, 13),
            $row!($op, concat!(transposed_at!($u), " + 28]"), 14, 15),
            $row!($op, concat!(transposed_at!($u), " + 32]"), 16, 17),
            $row!($op, concat!(transposed_at!($u), " + 36]"), 18, 19),
            $row!($op, concat!(transposed_at!($u), " + 40]"), 20, 21),
            $row!($op, concat!(transposed_at!($u), " + 44]"), 22, 23),
        )
    };
}

/// The unrolled loop (`simd::k_loop::k_loop_24`) with the tile's accumulators in
/// zmm0..zmm23 (row i: zmm2i, zmm2i+1); the caller's operands give B's step `ldb` (128
/// bytes when packed) and `ldb4` = 4·`ldb`.
macro_rules! k_loop {
    ($acc:ident, $step:ident, $row:ident, $op:literal, $advance4:expr, $advance1:expr,
     $($operands:tt)*) => {{
        let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7],
            [mut c8, mut c9], [mut c10, mut c11], [mut c12, mut c13], [mut c14, mut c15],
            [mut c16, mut c17], [mut c18, mut c19], [mut c20, mut c21], [mut c22, mut c23]] = *$acc;
        k_loop_24!(
            [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17,
             c18, c19, c20, c21, c22, c23],
            $step($row, $op,), $advance4, $advance1,
            $($operands)*
            out("zmm24") _, out("zmm25") _, out("zmm31") _,
        );
        *$acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11], [c12, c13],
            [c14, c15], [c16, c17], [c18, c19], [c20, c21], [c22, c23]];
    }};
}

/// The loop over a packed A panel, `steps` steps of instruction `$op`, A broadcast by `$row`.
macro_rules! packed_loop {
    ($row:ident, $op:literal, $steps:expr, $a:expr, $b:expr, $acc:ident) => {
        k_loop!($acc, packed_step, $row, $op, "add {a}, 192", "add {a}, 48",
            a = inout(reg) $a => _, b = inout(reg) $b => _,
            n = inout(reg) $steps => _,
            ldb = const 128, ldb4 = const 512,)
    };
}

/// The loop over A's rows in place (group pointers `$g`, row stride `$rs` bytes) and B's
/// rows in place, `$ldb` bytes apart (`direct_step_strided_b`).
macro_rules! direct_strided_b_loop {
    ($op:literal, $steps:expr, $g:expr, $rs:expr, $b:expr, $ldb:expr, $acc:ident) => {
        k_loop!($acc, direct_step_strided_b, row, $op,
            "add {g0}, 16\nadd {g1}, 16\nadd {g2}, 16\nadd {g3}, 16",
            "add {g0}, 4\nadd {g1}, 4\nadd {g2}, 4\nadd {g3}, 4",
            ldb = in(reg) $ldb, ldb3 = in(reg) 3 * $ldb, ldb4 = in(reg) 4 * $ldb,
            g0 = inout(reg) $g[0] => _, g1 = inout(reg) $g[1] => _,
            g2 = inout(reg) $g[2] => _, g3 = inout(reg) $g[3] => _, rs = in(reg) $rs,
            b = inout(reg) $b => _, n = inout(reg) $steps => _,)
    };
}

/// The loop over A's rows in place with a pointer per row (`direct_step_ten`, or with a
/// `$pf` pointer `direct_step_nine` plus `dense_next_tile`'s prefetches) and a packed B; the
/// rows with pointers of their own broadcast by `$row`.
macro_rules! direct_fused_loop {
    ($row:ident, $op:literal, $steps:expr, $p:expr, $rs:expr, $b:expr, $acc:ident) => {
        k_loop!($acc, direct_step_ten, $row, $op,
            concat!(advance_own_rows!("16"), "add {p9}, 16"),
            concat!(advance_own_rows!("4"), "add {p9}, 4"),
            p0 = inout(reg) $p[0] => _, p1 = inout(reg) $p[1] => _,
            p2 = inout(reg) $p[2] => _, p3 = inout(reg) $p[3] => _,
            p4 = inout(reg) $p[4] => _, p5 = inout(reg) $p[5] => _,
            p6 = inout(reg) $p[6] => _, p7 = inout(reg) $p[7] => _,
            p8 = inout(reg) $p[8] => _, p9 = inout(reg) $p[9] => _, rs = in(reg) $rs,
            b = inout(reg) $b => _, n = inout(reg) $steps => _, ldb = const 128,
            ldb4 = const 512,)
    };
    ($row:ident, $op:literal, $steps:expr, $p:expr, $rs:expr, prefetch $pf:expr, $b:expr,
     $acc:ident) => {
        k_loop!($acc, direct_step_nine, $row, $op,
            concat!(advance_own_rows!("16"),
                "prefetcht0 [{pf}]\nprefetcht0 [{pf} + 64]\nprefetcht0 [{pf} + 128]\nadd {pf}, 192"),
            advance_own_rows!("4"),
            p0 = inout(reg) $p[0] => _, p1 = inout(reg) $p[1] => _,
            p2 = inout(reg) $p[2] => _, p3 = inout(reg) $p[3] => _,
            p4 = inout(reg) $p[4] => _, p5 = inout(reg) $p[5] => _,
            p6 = inout(reg) $p[6] => _, p7 = inout(reg) $p[7] => _,
            p8 = inout(reg) $p[8] => _, pf = inout(reg) $pf => _, rs = in(reg) $rs,
            b = inout(reg) $b => _, n = inout(reg) $steps => _, ldb = const 128,
            ldb4 = const 512,)
    };
}

/// `$loop!(row_ebc | row, args..)` as `$form` (a `BroadcastForm`) says: the f32 loops'
/// two instances, one asm block each.
macro_rules! by_form {
    ($form:expr, $loop:ident!($($args:tt)*)) => {
        match $form {
            BroadcastForm::Embedded => $loop!(row_ebc, $($args)*),
            BroadcastForm::Explicit => $loop!(row, $($args)*),
        }
    };
}

/// The next tile's A when the tile's rows are dense (each `rs` = 4 · `steps` bytes, the
/// tile's own row, so the next 12 rows are the 48 · steps bytes that follow, in the same
/// problem or the next one of a packed batch): the direct loop then prefetches it into L1,
/// 192 bytes per four steps (48 bytes, one tile step, per step), spread over the loop instead
/// of a burst between tiles that stalls on the fill buffers. Batched attention P·V at T = 64
/// (64 × 64 × 32, 64 heads, f32, 1 thread, alternating, medians of 6 on the Intel host):
/// 133 → 149 GFLOP/s; Q·Kᵀ at T = 64 +3%. Rows with other data between them (a depth block
/// of a longer row) get the loop without prefetches: their next tile lies elsewhere, and
/// at 512 × 512 × 64 the extra instructions only cost.
fn dense_next_tile(a: *const u8, rs: usize, steps: usize) -> Option<*const u8> {
    (rs == 4 * steps).then(|| a.wrapping_add(12 * rs))
}

/// Pointers to A's 12 rows in place, `rs` bytes apart.
fn rows(a: *const u8, rs: usize) -> [*const u8; 12] {
    std::array::from_fn(|i| a.wrapping_add(i * rs))
}

/// Group pointers of A's 12 rows in place: g[j] = row 3j, `rs` bytes between rows.
fn groups(a: *const u8, rs: usize) -> [*const u8; 4] {
    std::array::from_fn(|j| a.wrapping_add(3 * j * rs))
}

/// f32: acc += A·B over `kc` steps, A packed (12 values per step), B packed (32 per step),
/// A broadcast in `form`.
///
/// # Safety
/// `a` must hold 12·kc and `b` 32·kc readable floats; the CPU must support AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn packed_f32(
    form: BroadcastForm,
    kc: usize,
    a: *const f32,
    b: *const f32,
    acc: &mut Acc,
) {
    // SAFETY: the loop reads a[0 .. 12·kc] and b[0 .. 32·kc] (the caller's contract) and
    // writes only registers.
    unsafe { by_form!(form, packed_loop!("vfmadd231ps", kc, a, b, acc)) }
}

/// The packed loop that also prefetches the next panel (`packed_f32_prefetch_next`).
macro_rules! packed_prefetch_next_loop {
    ($row:ident, $steps:expr, $a:expr, $b:expr, $next:expr, $acc:ident) => {
        k_loop!($acc, packed_step, $row, "vfmadd231ps",
            "add {a}, 192\nprefetcht1 [{pf}]\nprefetcht1 [{pf} + 64]\nprefetcht1 [{pf} + 128]\nadd {pf}, 192",
            "add {a}, 48",
            a = inout(reg) $a => _, b = inout(reg) $b => _, pf = inout(reg) $next => _,
            n = inout(reg) $steps => _,
            ldb = const 128, ldb4 = const 512,)
    };
}

/// `packed_f32` that also brings the next packed A panel (`next`, as long as this one) into
/// L2 as it goes: the 3 lines of each group of four steps, 48·kc bytes in all (within the
/// groups; the last kc mod 4 steps prefetch nothing).
///
/// # Safety
/// As `packed_f32` (`next` need not be valid: prefetches never fault).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn packed_f32_prefetch_next(
    form: BroadcastForm,
    kc: usize,
    a: *const f32,
    b: *const f32,
    next: *const f32,
    acc: &mut Acc,
) {
    // SAFETY: as `packed_f32`; the prefetches are hints.
    unsafe { by_form!(form, packed_prefetch_next_loop!(kc, a, b, next, acc)) }
}

/// f32: acc += A·B over `kc` steps with A's 12 rows read in place (row i at `a + i·a_rs`
/// floats, k contiguous); B packed (32 per step); the rows with pointers of their own
/// broadcast in `form`.
///
/// # Safety
/// Rows 0..12 of A must hold kc readable floats each and `b` 32·kc; the CPU must support
/// AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn direct_f32(
    form: BroadcastForm,
    kc: usize,
    a: *const f32,
    a_rs: usize,
    b: *const f32,
    acc: &mut Acc,
) {
    let rs = a_rs * size_of::<f32>();
    let p = rows(a as *const u8, rs);
    // SAFETY: the loop reads columns 0..kc of rows 0..12 of A and b[0 .. 32·kc] (the caller's
    // contract) and writes only registers; its prefetches past A never fault.
    unsafe {
        match dense_next_tile(a as *const u8, rs, kc) {
            Some(pf) => by_form!(
                form,
                direct_fused_loop!("vfmadd231ps", kc, p, rs, prefetch pf, b, acc)
            ),
            None => by_form!(form, direct_fused_loop!("vfmadd231ps", kc, p, rs, b, acc)),
        }
    }
}

/// f32: acc += A·B over `kc` steps with A's 12 rows and B's rows both read in place: A[i, p]
/// at `a + i·a_rs + p`, B[p, j] at `b + p·b_rs + j` (j < 32; columns contiguous).
///
/// # Safety
/// Rows 0..12 of A must hold kc readable floats each and rows 0..kc of B 32 each; the CPU
/// must support AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn direct_f32_strided_b(
    kc: usize,
    a: *const f32,
    a_rs: usize,
    b: *const f32,
    b_rs: usize,
    acc: &mut Acc,
) {
    let rs = a_rs * size_of::<f32>();
    let ldb = b_rs * size_of::<f32>();
    let g = groups(a as *const u8, rs);
    // SAFETY: the loop reads columns 0..kc of rows 0..12 of A and columns 0..32 of rows 0..kc
    // of B (the caller's contract) and writes only registers.
    unsafe { direct_strided_b_loop!("vfmadd231ps", kc, g, rs, b, ldb, acc) }
}

/// How many k steps ahead `transposed_f32` prefetches A's runs into L2 (both lines a run
/// may span, `prefetcht1`), where the hardware prefetchers, which do not follow a stride
/// across rows, leave each step waiting on memory: attention's dV at T = 512 (512 × 512 ×
/// 64, A's k steps 2 KiB apart), Intel EMR, 1 thread, in process against packed A: with A
/// from L3 (12 heads) 1.25× without prefetches, 1.40× with (16, 32 or 64 steps ahead
/// alike; `prefetcht0` 1.32–1.37×); with A from memory (400 heads) 0.69× without, 1.31×
/// at 32 steps (1.22× at 16 and 64; `prefetcht0` 0.82× at 16, 1.19–1.21× at 32–64).
const TRANSPOSED_PREFETCH_STEPS: usize = 32;

/// f32: acc += A·B over `kc` steps with A stored transposed and read in place: A[i, p] at
/// `a + p·a_cs + i` (the 12 rows of a step contiguous); B packed (32 per step). Each step
/// broadcasts from a separate `vbroadcastss` (an FMA with an indexed memory operand is not
/// micro-fused), and each group of four prefetches the runs `TRANSPOSED_PREFETCH_STEPS`
/// steps ahead.
///
/// # Safety
/// For p < kc, `a + p·a_cs` must hold 12 readable floats and `b` 32·kc; the CPU must support
/// AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transposed_f32(
    kc: usize,
    a: *const f32,
    a_cs: usize,
    b: *const f32,
    acc: &mut Acc,
) {
    let lda = a_cs * size_of::<f32>();
    let pf = (a as *const u8).wrapping_add(TRANSPOSED_PREFETCH_STEPS * lda);
    // SAFETY: the loop reads 12 floats at a + p·a_cs for p < kc and b[0 .. 32·kc] (the
    // caller's contract) and writes only registers; its prefetches past A never fault.
    unsafe {
        k_loop!(acc, transposed_step, row, "vfmadd231ps",
            concat!(
                "prefetcht1 [{pf}]\nprefetcht1 [{pf} + 44]\n",
                "prefetcht1 [{pf} + {lda}]\nprefetcht1 [{pf} + {lda} + 44]\n",
                "prefetcht1 [{pf} + {lda}*2]\nprefetcht1 [{pf} + {lda}*2 + 44]\n",
                "prefetcht1 [{pf} + {lda3}]\nprefetcht1 [{pf} + {lda3} + 44]\n",
                "add {pf}, {lda4}\nadd {a}, {lda4}",
            ),
            "add {a}, {lda}",
            a = inout(reg) a => _, pf = inout(reg) pf => _, lda = in(reg) lda,
            lda3 = in(reg) 3 * lda, lda4 = in(reg) 4 * lda, b = inout(reg) b => _,
            n = inout(reg) kc => _, ldb = const 128,
            ldb4 = const 512,)
    }
}

/// bf16: acc += A·B over `pairs` pair steps, A packed (12 pairs per step), B packed (32 pairs
/// per step); `a` and `b` point at bf16 values (2 bytes each).
///
/// # Safety
/// `a` must hold 24·pairs and `b` 64·pairs readable bf16 values; the CPU must support
/// AVX-512F and AVX-512 BF16.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn packed_bf16(pairs: usize, a: *const u16, b: *const u16, acc: &mut Acc) {
    // SAFETY: the loop reads a[0 .. 24·pairs] and b[0 .. 64·pairs] (the caller's contract)
    // and writes only registers; the caller checked the CPU has `vdpbf16ps`.
    unsafe { packed_loop!(row_ebc, "vdpbf16ps", pairs, a, b, acc) }
}

/// bf16: acc += A·B over `pairs` pair steps with A's 12 rows read in place (row i at
/// `a + i·a_rs` bf16 values, k contiguous: pair q at 2q); B packed (32 pairs per step).
///
/// # Safety
/// Rows 0..12 of A must hold 2·pairs readable bf16 values each and `b` 64·pairs; the CPU must
/// support AVX-512F and AVX-512 BF16.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn direct_bf16(
    pairs: usize,
    a: *const u16,
    a_rs: usize,
    b: *const u16,
    acc: &mut Acc,
) {
    let rs = a_rs * size_of::<u16>();
    let p = rows(a as *const u8, rs);
    // SAFETY: the loop reads pairs 0..pairs of rows 0..12 of A and b[0 .. 64·pairs] (the
    // caller's contract) and writes only registers (its prefetches past A never fault); the
    // caller checked the CPU.
    unsafe {
        match dense_next_tile(a as *const u8, rs, pairs) {
            Some(pf) => direct_fused_loop!(row_ebc, "vdpbf16ps", pairs, p, rs, prefetch pf, b, acc),
            None => direct_fused_loop!(row_ebc, "vdpbf16ps", pairs, p, rs, b, acc),
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::{direct_f32, packed_f32, packed_f32_prefetch_next, Acc};
    use crate::backend::cpu::gemm::broadcast::BroadcastForm;
    use crate::backend::cpu::isa::{self, Isa};
    use std::arch::x86_64::{__m512, _mm512_storeu_ps};

    /// The 12 × 32 tile of the accumulators, row-major.
    fn tile(acc: &Acc) -> Vec<f32> {
        let mut out = vec![0.0f32; 12 * 32];
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                // SAFETY: 16 floats at out[32i + 16v]; the test runs only with AVX-512F.
                unsafe { _mm512_storeu_ps(out[32 * i + 16 * v..].as_mut_ptr(), x) };
            }
        }
        out
    }

    /// Every f32 loop in both broadcast forms against the plain sums (small integers: every
    /// sum is exact in f32, so the forms agree bit for bit): packed, packed with the next
    /// panel's prefetch, A in place with rows apart (ten pointers) and dense (nine pointers
    /// and the next tile's prefetch); k of one step, within, exactly and past a group of four.
    #[test]
    fn both_broadcast_forms_match_the_plain_sums() {
        if isa::detected() < Isa::Avx512 {
            println!("AVX-512 f32 loops: not on this CPU, skipped");
            return;
        }
        for kc in [1, 3, 4, 8, 37] {
            let b: Vec<f32> = (0..32 * kc).map(|x| (x % 13) as f32 - 6.0).collect();
            for a_rs in [41, kc] {
                // Row i of A at a[i·a_rs ..]; its packed panel, 12 values per step.
                let a: Vec<f32> = (0..11 * a_rs + kc).map(|x| (x % 7) as f32 - 3.0).collect();
                let panel: Vec<f32> = (0..12 * kc).map(|x| a[(x % 12) * a_rs + x / 12]).collect();
                let want: Vec<f32> = (0..12 * 32)
                    .map(|x| {
                        let (i, j) = (x / 32, x % 32);
                        (0..kc)
                            .map(|p| a[i * a_rs + p] * b[p * 32 + j])
                            .sum::<f32>()
                    })
                    .collect();
                for form in [BroadcastForm::Embedded, BroadcastForm::Explicit] {
                    let run = |f: &dyn Fn(&mut Acc)| {
                        // SAFETY: zeroed accumulators are valid `__m512` values.
                        let mut acc: Acc = unsafe { std::mem::zeroed::<[[__m512; 2]; 12]>() };
                        f(&mut acc);
                        tile(&acc)
                    };
                    let (ap, bp, aa) = (panel.as_ptr(), b.as_ptr(), a.as_ptr());
                    // SAFETY: the panels hold 12·kc and 32·kc floats, rows 0..12 of A kc
                    // each; the CPU has AVX-512F (checked above); prefetches never fault.
                    let got = unsafe {
                        [
                            ("packed", run(&|acc| packed_f32(form, kc, ap, bp, acc))),
                            (
                                "packed, next prefetched",
                                run(&|acc| packed_f32_prefetch_next(form, kc, ap, bp, ap, acc)),
                            ),
                            (
                                "A in place",
                                run(&|acc| direct_f32(form, kc, aa, a_rs, bp, acc)),
                            ),
                        ]
                    };
                    for (name, got) in got {
                        assert_eq!(got, want, "{name}, {form:?}, kc {kc}, a_rs {a_rs}");
                    }
                }
            }
        }
    }
}
