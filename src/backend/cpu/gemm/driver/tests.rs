//! Unit tests of the driver's partitions, blocks and operand rules.

use super::blocking::{blocks, deep_kc, depth_blocks, n_blocks};
use super::operands::{
    b_block_in_place, direct_a, rows_per_l1_set, transposed_a_in_place, BPanels,
};
use super::tasks::{column_parts, own_packing, partition, small_packed_a, split};
use super::*;

fn covers(m: usize, nc: usize, mr: usize, nr: usize, mc: usize, threads: usize) {
    let tasks = split(m, nc, mr, nr, mc, threads);
    let mut seen = vec![0u8; m * nc];
    for t in &tasks {
        assert!(t.n0 % nr == 0 && t.m0 % mr == 0, "{t:?}");
        for i in t.m0..t.m1 {
            for j in t.n0..t.n1 {
                seen[i * nc + j] += 1;
            }
        }
    }
    assert!(
        seen.iter().all(|&s| s == 1),
        "split({m},{nc},..,{threads}) not a partition"
    );
    if threads > 1 && m.div_ceil(mr) * nc.div_ceil(nr) >= threads {
        assert!(
            tasks.len() >= threads,
            "split({m},{nc}) gave {} tasks",
            tasks.len()
        );
    }
}

#[test]
fn rows_per_l1_set_counts_aliased_strides() {
    assert_eq!(rows_per_l1_set(4096, 12), 12); // k = 1024 f32: one set
    assert_eq!(rows_per_l1_set(8192, 12), 12);
    assert_eq!(rows_per_l1_set(2048, 12), 6); // two sets
    assert_eq!(rows_per_l1_set(3072, 12), 3); // four sets
    assert_eq!(rows_per_l1_set(1536, 12), 2); // k = 384: eight sets
    assert_eq!(rows_per_l1_set(4 * 1040, 12), 1);
}

#[test]
fn partition_covers_once_and_balances() {
    for &(m, n) in &[
        (1, 1),
        (7, 13),
        (64, 32),
        (100, 3),
        (4096, 3072),
        (768, 128),
        (768, 512),
        (250, 700),
    ] {
        for (threads, k) in (1..=5).flat_map(|t| [(t, 1), (t, 128), (t, 4096)]) {
            let parts = partition(m, k, n, 12, 32, threads);
            let mut seen = vec![0u8; m * n];
            for t in &parts {
                assert!(t.m0 % 12 == 0 && t.n0 % 32 == 0, "{t:?}");
                for i in t.m0..t.m1 {
                    for j in t.n0..t.n1 {
                        seen[i * n + j] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&s| s == 1),
                "partition({m},{k},{n},{threads})"
            );
            let most = m.div_ceil(12).max(n.div_ceil(32));
            assert_eq!(
                parts.len(),
                threads.min(most),
                "partition({m},{k},{n},{threads})"
            );
        }
    }
}

#[test]
fn partition_splits_rows_only_where_columns_would_share_short_rows() {
    // (m, k, n) on 2 threads: true = along m.
    for &(m, k, n, rows) in &[
        (768, 128, 512, true),
        (768, 512, 512, true),
        (192, 128, 512, true),
        (96, 256, 512, false),
        (192, 512, 512, false),
        (4096, 128, 3072, false),
        (4096, 768, 3072, false),
        (768, 512, 128, true),
    ] {
        let parts = partition(m, k, n, 12, 32, 2);
        let along_m = parts.iter().all(|t| t.n0 == 0 && t.n1 == n);
        assert_eq!(along_m, rows, "partition({m},{k},{n},2): {parts:?}");
    }
}

#[test]
fn amx_reads_a_in_place_with_one_column_block() {
    use super::super::amx::Amx;
    use super::super::avx512::Avx512;
    use super::super::pack::{Bf16, F32};
    // (m, n, k): P·V of 64-wide heads and 768 × 512 × 128 have one AMX column block,
    // GPT-2's 4096 × 768 × 3072 four, 4096 × 768 × 1536 and 1024³ two. With one block,
    // past 256 columns only up to a depth of 256.
    for &(m, n, k, in_place) in &[
        (512, 64, 512, true),
        (768, 128, 512, true),
        (512, 512, 64, true),
        (4096, 256, 768, true),
        (1024, 1024, 64, true),
        (2048, 2048, 256, true),
        (512, 512, 512, false),
        (4096, 768, 768, false),
        (4096, 384, 768, false),
        (4096, 3072, 768, false),
        (4096, 1536, 768, false),
        (1024, 1024, 1024, false),
        // Rows 8 KiB and 4 KiB apart (all 32 in one L1 set): in place only up to
        // DIRECT_A_ANY_STRIDE_MAX_N columns.
        (4096, 8, 4096, true),
        (4096, 96, 4096, true),
        (2048, 128, 2048, false),
    ] {
        let l = GemmLayout::row_major(m, n, k);
        assert_eq!(
            direct_a::<Amx, Bf16, Bf16>(&l, 1),
            in_place,
            "AMX {m}x{n}x{k}"
        );
    }
    // The blocks are counted over the columns one thread sweeps: 4096 × 4096 × 256 makes
    // two column blocks on one thread (packed), one each on two (in place).
    let l = GemmLayout::row_major(4096, 4096, 256);
    assert!(!direct_a::<Amx, Bf16, Bf16>(&l, 1));
    assert!(direct_a::<Amx, Bf16, Bf16>(&l, 2));
    // The f32 kernel reads A in place up to four column blocks per thread: 4096 × 3072 ×
    // 768 makes six on one thread (packed), three each on two (in place).
    let l = GemmLayout::row_major(4096, 3072, 768);
    assert!(!direct_a::<Avx512, F32, F32>(&l, 1));
    assert!(direct_a::<Avx512, F32, F32>(&l, 2));
    // With rows 16 KiB apart (12 in one L1 set) up to two B panels of columns.
    // With at most four row tiles, up to four panels of a row-major B read in place.
    for &(m, n, k, in_place) in &[
        (4096, 2048, 768, true),
        (4096, 16, 4096, true),
        (4096, 64, 4096, true),
        (4096, 65, 4096, false),
        (48, 128, 4096, true),
        (49, 128, 4096, false),
        (48, 129, 4096, false),
    ] {
        let l = GemmLayout::row_major(m, n, k);
        assert_eq!(
            direct_a::<Avx512, F32, F32>(&l, 1),
            in_place,
            "f32 {m}x{n}x{k}"
        );
    }
}

#[test]
fn deep_problems_take_up_to_nc_one_block_columns_in_one_block() {
    use super::super::avx512::Avx512;
    // (n, k, column blocks) for the AVX-512 f32 kernel (NC 512, NC_ONE_BLOCK 768, KC
    // 384, depths up to 640 in one block).
    for &(n, k, count) in &[
        (768, 3072, 1),
        (700, 1200, 1),
        (768, 769, 1),
        (768, 768, 2),
        (768, 640, 2),
        (512, 100, 1),
        (769, 3072, 2),
        (1024, 3072, 2),
    ] {
        let b: Vec<(usize, usize)> = n_blocks::<Avx512>(n, k).collect();
        assert_eq!(b.len(), count, "n {n} k {k}: {b:?}");
        assert_eq!(
            b.iter().map(|&(_, len)| len).sum::<usize>(),
            n,
            "n {n} k {k}"
        );
    }
}

#[test]
fn small_packed_a_against_wide_c_takes_column_parts() {
    use super::super::amx::Amx;
    use super::super::avx512::Avx512;
    let l = |m, k, n| GemmLayout::row_major(m, n, k);
    // f32: 40 rows (4 panels of 12, split by rows on 2 threads), n ≥ 8 · 2 · m.
    assert!(small_packed_a::<Avx512>(&l(40, 300, 1010), 2));
    assert!(!small_packed_a::<Avx512>(&l(40, 300, 1010), 3));
    assert!(!small_packed_a::<Avx512>(&l(4096, 768, 3072), 2));
    // AMX: 64 rows split by rows; 96 rows (3 panels) are split by columns already.
    assert!(small_packed_a::<Amx>(&l(64, 300, 2100), 2));
    assert!(small_packed_a::<Amx>(&l(256, 768, 50257), 2));
    assert!(!small_packed_a::<Amx>(&l(96, 768, 3072), 2));
    let parts = column_parts(40, 1010, 32, 3);
    assert_eq!(parts.len(), 3);
    assert!(parts
        .iter()
        .all(|t| t.m0 == 0 && t.m1 == 40 && t.n0 % 32 == 0));
    assert_eq!(parts[0].n0, 0);
    assert_eq!(parts[2].n1, 1010);
    assert!(parts.windows(2).all(|w| w[0].n1 == w[1].n0));
}

/// Large f32 problems with A packed (k contiguous) run as independent parts on several
/// threads; one thread, AMX and bf16 pair kernels, a transposed A and small problems keep
/// their paths. The shapes of `tests/gemm_f32.rs`'s bit-for-bit test take this path (A
/// packed: rows 4 KiB apart), one split by rows, one by columns.
#[test]
fn large_packed_f32_problems_pack_their_own_operands() {
    use super::super::amx::Amx;
    use super::super::avx512::Avx512;
    use super::super::avx512_bf16::Avx512Bf16;
    use super::super::pack::F32;
    let l = |m, k, n| GemmLayout::row_major(m, n, k);
    assert!(own_packing::<Avx512>(&l(2048, 2048, 2048), 2));
    assert!(own_packing::<Avx512>(&l(4096, 3072, 768), 3));
    assert!(!own_packing::<Avx512>(&l(2048, 2048, 2048), 1));
    assert!(!own_packing::<Amx>(&l(2048, 2048, 2048), 2));
    assert!(!own_packing::<Avx512Bf16>(&l(2048, 2048, 2048), 2));
    assert!(!own_packing::<Avx512>(&l(500, 512, 512), 2));
    let ta = GemmLayout {
        a_rs: 1,
        a_cs: 2048,
        ..l(2048, 2048, 2048)
    };
    assert!(!own_packing::<Avx512>(&ta, 2));
    for (m, k, n, by_rows) in [(520, 1024, 260, true), (300, 1024, 1000, false)] {
        assert!(own_packing::<Avx512>(&l(m, k, n), 2), "{m} × {k} × {n}");
        assert!(
            !direct_a::<Avx512, F32, F32>(&l(m, k, n), 2),
            "{m} × {k} × {n}"
        );
        let parts = partition(m, k, n, Avx512::MR, Avx512::NR, 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts.iter().all(|t| t.n0 == 0 && t.n1 == n), by_rows);
    }
}

#[test]
fn few_rows_beside_a_in_place_take_b_rows_in_place() {
    use super::super::avx512::Avx512;
    use super::super::pack::F32;
    use super::super::scalar::Scalar;
    // B: 100 rows of 64 values, row-major.
    let data = vec![0.0f32; 100 * 64];
    let b = View {
        data: &data,
        off: 0,
        rs: 64,
        cs: 1,
    };
    let rows = |b: View<'_, f32>, a_in_place: bool, m: usize, pc: usize, kc: usize| {
        match b_block_in_place::<Avx512, F32>(b, a_in_place, m, 0, 64, pc, kc) {
            Some(BPanels::Rows { from, rs }) => Some((from.len(), rs)),
            _ => None,
        }
    };
    // Up to four 12-row tiles, beside A in place.
    assert_eq!(rows(b, true, 48, 10, 50), Some((90 * 64, 64)));
    assert_eq!(rows(b, true, 49, 10, 50), None);
    assert_eq!(rows(b, false, 12, 10, 50), None);
    // The last block: its last row's two panels end at B's end.
    assert_eq!(rows(b, true, 12, 60, 40), Some((40 * 64, 64)));
    // Columns 40.. of a 64-wide row: the second panel's loads would pass the end.
    let narrow = View { off: 40, ..b };
    assert_eq!(rows(narrow, true, 12, 0, 90), Some((100 * 64 - 40, 64)));
    assert_eq!(rows(narrow, true, 12, 10, 90), None);
    // Rows too far apart, columns not contiguous, a kernel that packs B.
    let wide = View { rs: 130, ..b };
    assert_eq!(rows(wide, true, 12, 0, 10), None);
    let strided = View { cs: 2, ..b };
    assert_eq!(rows(strided, true, 12, 0, 10), None);
    assert!(b_block_in_place::<Scalar, F32>(b, true, 8, 0, 64, 0, 10).is_none());
}

/// Aᵀ·B reads A in place against at most 64 columns unless A's k steps are a multiple
/// of 4 KiB apart, and only on the kernel that can (f32 AVX-512).
#[test]
fn transposed_a_in_place_for_narrow_c_off_4k_strides() {
    use super::super::avx512::Avx512;
    use super::super::pack::F32;
    use super::super::scalar::Scalar;
    let ta = |m: usize, k: usize, n: usize, a_cs: usize| GemmLayout {
        a_rs: 1,
        a_cs,
        ..GemmLayout::row_major(m, n, k)
    };
    for (l, want) in [
        (ta(512, 512, 64, 512), true),
        (ta(64, 64, 32, 64), true),
        (ta(1536, 1024, 64, 1536), true),
        (ta(512, 768, 65, 512), false),
        (ta(1024, 768, 64, 1024), false),
        (ta(2048, 2048, 64, 2048), false),
        (ta(8, 100, 16, 0), false),
        (GemmLayout::row_major(512, 64, 512), false),
    ] {
        assert_eq!(transposed_a_in_place::<Avx512, F32>(&l), want, "{l:?}");
        assert!(!transposed_a_in_place::<Scalar, F32>(&l), "{l:?}");
    }
}

#[test]
fn narrow_c_with_a_in_place_takes_deep_depth_blocks() {
    use super::super::amx::Amx;
    use super::super::avx512::Avx512;
    // Packed B within 512 KiB: f32 32 columns a step (128 bytes) up to 32, 64 up to 64.
    assert_eq!(deep_kc::<Avx512>(1), Some(4096));
    assert_eq!(deep_kc::<Avx512>(32), Some(4096));
    assert_eq!(deep_kc::<Avx512>(40), Some(2048));
    assert_eq!(deep_kc::<Avx512>(64), Some(2048));
    assert_eq!(deep_kc::<Avx512>(65), None);
    // AMX: bf16 pairs, whole 32-step blocks (96 columns: 2730 → 2720).
    assert_eq!(deep_kc::<Amx>(20), Some(8192));
    assert_eq!(deep_kc::<Amx>(64), Some(4096));
    assert_eq!(deep_kc::<Amx>(90), Some(2720));
    assert_eq!(deep_kc::<Amx>(97), None);
    let f32_blocks = |k, n, in_place| depth_blocks::<Avx512>(k, n, in_place).collect::<Vec<_>>();
    assert_eq!(
        f32_blocks(4100, 40, true),
        [(0, 2048), (2048, 2048), (4096, 4)]
    );
    assert_eq!(f32_blocks(2000, 40, true), [(0, 2000)]);
    // Packed A, or a wider C: KC's blocks.
    assert_eq!(
        f32_blocks(1000, 40, false),
        [(0, 384), (384, 384), (768, 232)]
    );
    assert_eq!(
        f32_blocks(1000, 65, true),
        [(0, 384), (384, 384), (768, 232)]
    );
    // AMX cuts even blocks of whole 32-step units.
    let amx: Vec<_> = depth_blocks::<Amx>(5600, 70, true).collect();
    assert_eq!(amx, [(0, 1888), (1888, 1888), (3776, 1824)]);
}

#[test]
fn blocks_cover_once_within_max_and_even() {
    for total in [1, 31, 32, 100, 512, 768, 769, 1024, 2048, 3072, 3100] {
        for (max, unit) in [(384, 1), (768, 32), (512, 32)] {
            for even in [false, true] {
                let b: Vec<(usize, usize)> = blocks(total, max, unit, even).collect();
                let what = format!("total {total} max {max} unit {unit} even {even}");
                assert_eq!(b.len(), total.div_ceil(max), "{what}: block count");
                let mut next = 0;
                for (i, &(s, len)) in b.iter().enumerate() {
                    assert_eq!(s, next, "{what}: gap or overlap");
                    assert!(len > 0 && len <= max, "{what}: block length {len}");
                    if i + 1 < b.len() {
                        assert_eq!(len % unit, 0, "{what}: inner block not whole units");
                        if even {
                            assert_eq!(len, b[0].1, "{what}: uneven inner blocks");
                        }
                    }
                    next = s + len;
                }
                assert_eq!(next, total, "{what}: coverage");
            }
        }
    }
    // Even: 1024 in two halves, not 768 + 256.
    assert_eq!(
        blocks(1024, 768, 32, true).collect::<Vec<_>>(),
        [(0, 512), (512, 512)]
    );
}

#[test]
fn split_partitions_every_shape() {
    for &(m, nc) in &[
        (1, 1),
        (7, 13),
        (12, 32),
        (64, 1024),
        (100, 3),
        (4096, 1024),
        (250, 700),
    ] {
        for threads in 1..=5 {
            covers(m, nc, 12, 32, 192, threads);
            covers(m, nc, 6, 16, 96, threads);
        }
    }
}
