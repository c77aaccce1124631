//! The cache blocks of the loop nest: depth blocks (KC, one block up to `KC_ONE_BLOCK`, deep
//! blocks beside a narrow C) and column blocks (NC, `NC_ONE_BLOCK`, `B_BLOCK`).

use crate::backend::cpu::gemm::kernel::MicroKernel;

/// The blocks (start, length) that cut `total` into pieces of at most `max`: max, max, …,
/// the remainder; or, when `even`, ⌈total/max⌉ pieces of one size rounded up to a multiple
/// of `unit` (max must be one), the last one shorter. AMX: k = 1100 in 576 + 524 rather than
/// 768 + 332, n = 1024 (at k = 768) in 512 + 512 rather than 768 + 256.
pub(super) fn blocks(
    total: usize,
    max: usize,
    unit: usize,
    even: bool,
) -> impl Iterator<Item = (usize, usize)> {
    let size = if even && total > 0 {
        total
            .div_ceil(total.div_ceil(max))
            .next_multiple_of(unit)
            .min(max)
    } else {
        max
    };
    (0..total)
        .step_by(size)
        .map(move |s| (s, (total - s).min(size)))
}

/// The depth blocks of kernel K for depth k: one block when k ≤ `KC_ONE_BLOCK`, else
/// blocks of at most KC.
pub(super) fn k_blocks<K: MicroKernel>(k: usize) -> impl Iterator<Item = (usize, usize)> {
    blocks(k, k_block_max::<K>(k), K::KU, K::EVEN_BLOCKS)
}

/// The largest depth block of `k_blocks`.
pub(super) fn k_block_max<K: MicroKernel>(k: usize) -> usize {
    if k <= K::KC_ONE_BLOCK {
        k.max(1)
    } else {
        K::KC
    }
}

/// Packed bytes of B in one deep depth block (`deep_kc`): a quarter of the 2 MiB L2.
pub(super) const DEEP_B_BLOCK_BYTES: usize = 512 << 10;

/// The depth of one block when A is read in place against a narrow C, at most
/// `DIRECT_A_ANY_STRIDE_MAX_N` columns (`None` for wider C): KC × n packed values of B
/// within `DEEP_B_BLOCK_BYTES`, in whole KU steps, at least KC.
///
/// KC bounds the depth so that a packed A panel stays in L1 while every B panel of a column
/// block streams past it. With A in place against one or two B panels (three on AMX), each
/// line of A serves those passes and is not needed again, so only the packed B block, which
/// every row panel reads, needs to stay (in L2). Blocks of KC cut each row of A into short
/// runs (1.5 KiB in f32 at KC = 384, in bf16 at AMX's 768), each a new stream for the
/// hardware prefetchers, which then reached ~5 GB/s of A from memory where PyTorch reads
/// 7–9. Intel EMR, in process, against KC, 1 / 2 threads: f32 4096 × 4096 × 16 +15% /
/// +12%, × 32 +14%, × 64 +8% / +10%, 1024 × 16384 × 32 (2 threads) +11%; bf16 (AMX)
/// 4096 × 4096 × 16 +36–44% / +15%, × 32 +30–39%, 2048 × 4096 × 64 +28–40% / +10–13%,
/// 64 × 65536 × 64 0–1% / +7%. Past half the L2 it lost: f32 × 64 columns at depth 8192
/// −7% to −24%, bf16 96 columns at 8192 −35%.
pub(super) fn deep_kc<K: MicroKernel>(n: usize) -> Option<usize> {
    if n == 0 || n > K::DIRECT_A_ANY_STRIDE_MAX_N {
        return None;
    }
    let step_bytes = n.next_multiple_of(K::NR) * std::mem::size_of::<K::P>();
    let kc = (DEEP_B_BLOCK_BYTES / step_bytes) / K::KU * K::KU;
    Some(kc.max(K::KC))
}

/// The depth blocks of one problem's column loops (`columns`): `k_blocks`, or, with A read
/// in place against a narrow C, blocks of up to `deep_kc` (one block when k fits in it).
pub(super) fn depth_blocks<K: MicroKernel>(
    k: usize,
    n: usize,
    in_place: bool,
) -> impl Iterator<Item = (usize, usize)> {
    let max = match deep_kc::<K>(n).filter(|_| in_place) {
        Some(kc) if k <= kc => k.max(1),
        Some(kc) => kc,
        None => k_block_max::<K>(k),
    };
    blocks(k, max, K::KU, K::EVEN_BLOCKS)
}

/// The widest column block of kernel K at depth k: NC, or what `B_BLOCK` allows beside the
/// first (deepest) depth block.
pub(super) fn nc_max<K: MicroKernel>(k: usize) -> usize {
    match K::B_BLOCK {
        None => K::NC,
        Some(values) => {
            let kc = k_blocks::<K>(k)
                .next()
                .map_or(K::KC, |(_, kc)| kc)
                .next_multiple_of(K::KU);
            (values / kc / K::NR * K::NR).max(K::NR)
        }
    }
}

/// Depth blocks from which columns up to `NC_ONE_BLOCK` run as one block.
pub(super) const NC_ONE_BLOCK_MIN_K_BLOCKS: usize = 3;

/// The column blocks of kernel K for n columns at depth k: one block when n ≤
/// `NC_ONE_BLOCK` and the depth takes at least `NC_ONE_BLOCK_MIN_K_BLOCKS` blocks, else
/// blocks of at most `nc_max`. A second column block sweeps all of A again (packed whole:
/// written once and read twice; in place: read twice) and, for a narrow remainder, reads
/// each A panel for few B panels. Measured against the wider B block in L2, one block paid
/// from three depth blocks on and lost at two (f32 figures at `Avx512::NC_ONE_BLOCK`).
pub(super) fn n_blocks<K: MicroKernel>(n: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    let one = K::NC_ONE_BLOCK.is_some_and(|cols| n <= cols)
        && k_blocks::<K>(k)
            .nth(NC_ONE_BLOCK_MIN_K_BLOCKS - 1)
            .is_some();
    let max = if one { n.max(1) } else { nc_max::<K>(k) };
    blocks(n, max, K::NR, K::EVEN_BLOCKS)
}
