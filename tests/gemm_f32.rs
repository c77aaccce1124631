//! f32 GEMM: every ISA path against the scalar reference on odd shapes, transposed and
//! strided operands, strided/column-major C, beta 0 / 1 / 0.5, batches with broadcast
//! operands, several thread counts, and the bounds errors.

mod gemm_util;

use gemm_util::*;
use pretext::backend::cpu::gemm::{
    sgemm_batched, sgemm_batched_isa, sgemm_batched_new, sgemm_batched_reference, GemmLayout,
};
use pretext::backend::cpu::isa::{self, Isa};

const LEVELS: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

/// Runs one case at every level; C starts non-zero so beta matters (and beta 0 must ignore
/// it, NaNs included).
fn check(s: Shape, batch: usize, share_a: bool, beta: f32) {
    let l = s.layout();
    let ea = extent(s.m, s.k, l.a_rs, l.a_cs);
    let eb = extent(s.k, s.n, l.b_rs, l.b_cs);
    let ec = extent(s.m, s.n, l.c_rs, l.c_cs);
    let ao: Vec<usize> = (0..batch)
        .map(|i| if share_a { 3 } else { 3 + i * (ea + 1) })
        .collect();
    let bo: Vec<usize> = (0..batch).map(|i| i * eb).collect();
    let co: Vec<usize> = (0..batch).map(|i| 1 + i * (ec + 2)).collect();
    let a = fill(3 + batch * (ea + 1), 11);
    let b = fill(batch * eb, 12);
    let c0 = initial_c(1 + batch * (ec + 2), 13, beta);
    let mut want = c0.clone();
    sgemm_batched_reference(&l, &a, &ao, &b, &bo, beta, &mut want, &co).unwrap();
    let mut absr = abs_reference(&l, &a, &ao, &b, &bo, c0.len(), &co);
    if beta != 0.0 {
        for (x, c) in absr.iter_mut().zip(&c0) {
            *x += (beta * c).abs();
        }
    }
    let pos = c_positions(&l, &co);
    let mut inside = vec![false; c0.len()];
    for &i in &pos {
        inside[i] = true;
    }
    for level in LEVELS {
        let mut got = c0.clone();
        sgemm_batched_isa(level, &l, &a, &ao, &b, &bo, beta, &mut got, &co).unwrap();
        let what = format!(
            "{} {s:?} batch {batch} share_a {share_a} beta {beta}",
            level.name()
        );
        assert_close(&what, &got, &want, &absr, s.k, &pos);
        // Elements outside the C blocks are untouched.
        for (i, (g, c)) in got.iter().zip(&c0).enumerate() {
            if !inside[i] {
                assert!(g.to_bits() == c.to_bits(), "{what}: wrote outside C at {i}");
            }
        }
    }
}

#[test]
fn odd_shapes_row_major() {
    for &(m, n, k) in SHAPES {
        check(Shape::plain(m, n, k), 1, false, 0.0);
    }
}

#[test]
fn transposed_and_strided_operands() {
    for &(m, n, k) in &SHAPES[..7] {
        for (ta, tb, pad, tc) in [
            (true, false, 0, false),
            (false, true, 3, false),
            (true, true, 2, true),
        ] {
            check(
                Shape {
                    m,
                    n,
                    k,
                    ta,
                    tb,
                    pad,
                    tc,
                },
                1,
                false,
                0.0,
            );
        }
    }
    check(
        Shape {
            m: 200,
            n: 1040,
            k: 530,
            ta: true,
            tb: true,
            pad: 1,
            tc: false,
        },
        1,
        false,
        1.0,
    );
    // Row strides of 4 KiB (1024 floats) and 2 KiB: A's rows share L1 sets, so the first
    // is packed and the second read in place; both must give the same product.
    for k_plus_pad in [1024, 512] {
        let k = 100;
        let shape = Shape {
            pad: k_plus_pad - k,
            ..Shape::plain(37, 70, k)
        };
        check(shape, 1, false, 1.0);
    }
}

#[test]
fn beta_accumulates() {
    for &(m, n, k) in &SHAPES[..7] {
        check(Shape::plain(m, n, k), 1, false, 1.0);
        check(
            Shape {
                m,
                n,
                k,
                ta: false,
                tb: false,
                pad: 2,
                tc: true,
            },
            1,
            false,
            0.5,
        );
    }
}

#[test]
fn batched_with_broadcast_operand() {
    // Attention-like per-head shapes and a shared (broadcast) A.
    check(Shape::plain(64, 64, 32), 6, false, 0.0);
    check(
        Shape {
            m: 64,
            n: 32,
            k: 64,
            ta: false,
            tb: true,
            pad: 0,
            tc: false,
        },
        5,
        true,
        1.0,
    );
    check(Shape::plain(17, 33, 65), 3, true, 0.0);
    check(Shape::plain(96, 200, 130), 3, false, 0.0);
}

#[test]
fn thread_counts_split_the_work() {
    for threads in [1, 2, 3] {
        on_threads(threads, || {
            check(Shape::plain(130, 700, 70), 1, false, 0.0);
            check(Shape::plain(8, 2000, 40), 1, false, 1.0);
            check(Shape::plain(64, 64, 64), 3, false, 0.0);
            // Wider than one NC block with packed A (transposed; or rows 4 KiB apart): A is
            // packed whole once and shared by the column blocks, over two KC blocks (k = 400
            // for the AVX2 and scalar kernels, k = 700 for AVX-512, which runs depths up to
            // 640 as one block).
            let ta = Shape {
                ta: true,
                ..Shape::plain(50, 1100, 400)
            };
            check(ta, 1, false, 1.0);
            let ta = Shape {
                ta: true,
                ..Shape::plain(50, 1100, 700)
            };
            check(ta, 1, false, 1.0);
            let aliased = Shape {
                pad: 1024 - 400,
                ..Shape::plain(37, 600, 400)
            };
            check(aliased, 1, false, 0.0);
            // The same rows against at most two B panels of columns: A read in place.
            let aliased = Shape {
                pad: 1024 - 400,
                ..Shape::plain(37, 60, 400)
            };
            check(aliased, 1, false, 1.0);
            // Up to 768 columns in one block once the depth takes three KC blocks (AVX-512):
            // A packed one panel at a time (rows 4 KiB apart), packed in MC blocks
            // (transposed), and read in place.
            check(Shape::plain(37, 700, 1024), 1, false, 1.0);
            let ta = Shape {
                ta: true,
                ..Shape::plain(40, 760, 1200)
            };
            check(ta, 1, false, 0.0);
            check(Shape::plain(29, 530, 1200), 2, false, 0.0);
        });
    }
}

/// A packed (transposed, or in too many column blocks to read in place) and small beside a
/// wide C: each thread takes its own columns as a sub-problem, packing all of A and its own
/// B, where the shared-B path would split rows. Edge columns, strided and column-major C,
/// beta 0 / 1 / 0.5, batches of 1 and 3, 2 and 3 threads.
#[test]
fn small_a_against_wide_c_split_in_column_parts() {
    for threads in [2, 3] {
        on_threads(threads, || {
            let ta = Shape {
                ta: true,
                ..Shape::plain(40, 1010, 300)
            };
            check(ta, 1, false, 0.5);
            check(ta, 3, false, 0.0);
            let tb = Shape {
                tb: true,
                pad: 3,
                tc: true,
                ..Shape::plain(37, 1000, 200)
            };
            check(Shape { ta: true, ..tb }, 1, false, 1.0);
        });
    }
}

/// A read in place against a narrow C (≤ 64 columns on AVX-512) takes depth blocks sized to
/// the packed B (2048 steps for 33–64 columns, 4096 up to 32) instead of KC = 384: several
/// such blocks with a remainder, edge rows, a batch, strided and column-major C, beta 0 /
/// 1 / 0.5; on 2 threads a C too large for the split along k, so each thread takes rows.
#[test]
fn narrow_c_with_a_in_place_in_deep_depth_blocks() {
    check(Shape::plain(13, 40, 4100), 2, false, 0.5);
    check(Shape::plain(25, 20, 8200), 1, false, 0.0);
    let strided = Shape {
        pad: 3,
        tc: true,
        ..Shape::plain(37, 64, 2100)
    };
    check(strided, 1, false, 1.0);
    on_threads(2, || check(Shape::plain(1030, 64, 2100), 1, false, 1.0));
}

/// Few rows (at most four 12-row tiles on AVX-512) with A in place read B's rows in place
/// too, no B packed, and up to four panels of columns take A in place for it: deep blocks
/// and one block, KC's blocks past two panels, edge rows and an edge panel (whose 32-wide
/// loads run past the block's last column), padded rows of A and B, a column-major C, beta
/// 0 / 1 / 0.5, batches, and 2 threads (the long ones split along k). The last depth block
/// of a B whose edge panel would read past its slice is packed instead.
#[test]
fn few_rows_read_b_in_place() {
    for threads in [1, 2] {
        on_threads(threads, || {
            check(Shape::plain(16, 64, 5000), 1, false, 0.0);
            check(Shape::plain(37, 48, 4100), 2, false, 1.0);
            check(Shape::plain(48, 16, 3000), 1, false, 0.5);
            check(Shape::plain(24, 40, 300), 3, true, 0.0);
            let padded = Shape {
                pad: 3,
                tc: true,
                ..Shape::plain(29, 61, 2100)
            };
            check(padded, 2, false, 1.0);
            // Up to four panels (A in place whatever its stride: here rows 4 KiB apart).
            check(Shape::plain(30, 128, 1024), 1, false, 0.0);
            check(Shape::plain(45, 100, 5000), 1, false, 0.5);
            let padded = Shape {
                pad: 5,
                ..Shape::plain(13, 123, 700)
            };
            check(padded, 2, false, 1.0);
        });
    }
}

/// Values past C's columns in B's rows (row padding, and what lies after B's last row) are
/// read by the in-place edge panel's loads and must never reach C: NaNs there, none in C.
#[test]
fn b_in_place_edge_lanes_never_reach_c() {
    let (m, n, k, rs) = (20, 40, 3000, 45);
    for threads in [1, 2] {
        let l = GemmLayout {
            b_rs: rs,
            ..GemmLayout::row_major(m, n, k)
        };
        let a = fill(m * k, 21);
        // B's k rows of n values, NaN in each row's padding and in 64 values after the last.
        let mut b = vec![f32::NAN; k * rs + 64];
        let vals = fill(k * n, 22);
        for p in 0..k {
            b[p * rs..p * rs + n].copy_from_slice(&vals[p * n..(p + 1) * n]);
        }
        let mut want = vec![0.0f32; m * n];
        sgemm_batched_reference(&l, &a, &[0], &b, &[0], 0.0, &mut want, &[0]).unwrap();
        for level in LEVELS {
            let mut got = vec![0.0f32; m * n];
            on_threads(threads, || {
                sgemm_batched_isa(level, &l, &a, &[0], &b, &[0], 0.0, &mut got, &[0]).unwrap()
            });
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                    "{} on {threads} threads: C[{i}] = {g}, want {w}",
                    level.name()
                );
            }
        }
    }
}

/// Rows of A or B with a stride of 0 (one row broadcast to every row, as an expanded view
/// gives) on every path: A read in place against a narrow C, few rows with B in place,
/// packed panels, a long k split over threads. (A broadcast A read in place was taken for a
/// packed panel, whose row stride `block` marks as 0, and gave wrong sums.)
#[test]
fn broadcast_rows_of_stride_zero() {
    for &(m, k, n) in &[
        (3, 5, 4),
        (20, 300, 40),
        (100, 64, 64),
        (13, 700, 100),
        (30, 5000, 64),
    ] {
        for (a_rs, b_rs) in [(0, n), (k, 0), (0, 0)] {
            let l = GemmLayout {
                a_rs,
                b_rs,
                ..GemmLayout::row_major(m, n, k)
            };
            let a = fill(if a_rs == 0 { k } else { m * k }, 31);
            let b = fill(if b_rs == 0 { n } else { k * n }, 32);
            let mut want = vec![0.0f32; m * n];
            sgemm_batched_reference(&l, &a, &[0], &b, &[0], 0.0, &mut want, &[0]).unwrap();
            let absr = abs_reference(&l, &a, &[0], &b, &[0], m * n, &[0]);
            let pos: Vec<usize> = (0..m * n).collect();
            for threads in [1, 2] {
                for level in LEVELS {
                    let mut got = vec![f32::NAN; m * n];
                    on_threads(threads, || {
                        sgemm_batched_isa(level, &l, &a, &[0], &b, &[0], 0.0, &mut got, &[0])
                    })
                    .unwrap();
                    let what = format!("{} {threads} threads {l:?}", level.name());
                    assert_close(&what, &got, &want, &absr, k, &pos);
                }
            }
        }
    }
}

/// A small C over a long k on several threads: the threads take parts of k (the first
/// accumulating into C, the others into their own sums, added after: by one thread for a
/// C under 16 Ki values, row ranges over the threads from there), at every level, with
/// C strided or column-major, beta 0 / 1 / 0.5, a transposed A and a batch.
#[test]
fn long_k_into_small_c_split_along_k() {
    for threads in [2, 3] {
        on_threads(threads, || {
            check(Shape::plain(40, 24, 1700), 1, false, 1.0);
            check(Shape::plain(130, 140, 1600), 1, false, 1.0);
            let column_major = Shape {
                tc: true,
                pad: 3,
                ..Shape::plain(150, 120, 1700)
            };
            check(column_major, 1, false, 0.5);
            let strided = Shape {
                tc: true,
                pad: 3,
                ..Shape::plain(45, 50, 3300)
            };
            check(strided, 1, false, 0.0);
            let ta = Shape {
                ta: true,
                ..Shape::plain(13, 70, 2000)
            };
            check(ta, 2, false, 0.5);
        });
    }
}

/// Whether this CPU has the AVX-512 f32 kernel the bit-for-bit tests below run on; if not,
/// prints "skipped: `why`".
fn avx512_or_skip(why: &str) -> bool {
    let has = isa::detected() >= Isa::Avx512;
    if !has {
        println!("skipped: {why}");
    }
    has
}

/// C (+)= A·B at the AVX-512 level with beta 0 and 1 on each of `threads` thread counts,
/// against one thread, bit for bit (operands filled from `seed`); and, on 2 threads, within
/// tolerance of the reference (`check`, beta 1).
fn same_bits_as_one_thread(s: Shape, seed: u64, threads: &[usize]) {
    let l = s.layout();
    let a = fill(extent(s.m, s.k, l.a_rs, l.a_cs), seed);
    let b = fill(extent(s.k, s.n, l.b_rs, l.b_cs), seed + 1);
    let c0 = fill(extent(s.m, s.n, l.c_rs, l.c_cs), seed + 2);
    for beta in [0.0, 1.0] {
        let run = |threads: usize| {
            on_threads(threads, || {
                let mut c = c0.clone();
                sgemm_batched_isa(Isa::Avx512, &l, &a, &[0], &b, &[0], beta, &mut c, &[0]).unwrap();
                c
            })
        };
        let one = run(1);
        for &t in threads {
            for (i, (x, y)) in one.iter().zip(&run(t)).enumerate() {
                assert!(
                    x.to_bits() == y.to_bits(),
                    "{s:?}, beta {beta}: C[{i}] = {x} on 1 thread, {y} on {t}"
                );
            }
        }
    }
    on_threads(2, || check(s, 1, false, 1.0));
}

/// A Linear layer's weight gradient over 768 tokens (dW = dYᵀ·X: A transposed, k = 768, two
/// AVX-512 depth blocks) on 2 threads is split along k at the blocks' bound (384 + 384), so
/// each element gets the same additions in the same order as on one thread: bit for bit the
/// same C, beta 0 and 1 (and the reference's sums within tolerance, through `check`).
#[test]
fn weight_gradient_split_along_k_matches_one_thread_bit_for_bit() {
    if !avx512_or_skip("the AVX-512 f32 kernel (two-block split along k) needs AVX-512") {
        return;
    }
    // 128 × 130: the parts' sums added by row ranges over the threads.
    for (m, n) in [(65, 128), (128, 40), (128, 130)] {
        let s = Shape {
            ta: true,
            ..Shape::plain(m, n, 768)
        };
        same_bits_as_one_thread(s, 21, &[2]);
    }
}

/// Row tiles handed out by a dispenser (each thread its own share first, then the back of a
/// slower one's), with A read in place (a product split along m) and with A packed (the
/// tasks of one block sharing a packed B: several depth blocks, and several column blocks
/// with A packed whole during the first): on 2 and 3 threads every element is the one-thread
/// result bit for bit, each tile once (beta 1 would count a tile run twice; beta 0 leaves a
/// skipped one as C was), row counts off the tile.
#[test]
fn row_tiles_dispensed_over_threads_match_one_thread_bit_for_bit() {
    if !avx512_or_skip("the dispensed row tiles are tested on the AVX-512 f32 kernel") {
        return;
    }
    let shapes = [
        (768, 128, 512),
        (250, 96, 200),
        (100, 65, 128),
        (400, 1024, 200),
        // Below `own_packing`'s 512³: the tasks of each block share its packed B.
        (100, 1024, 1100),
    ];
    for (m, k, n) in shapes {
        let s = Shape::plain(m, n, k);
        same_bits_as_one_thread(s, 31, &[2, 3]);
    }
}

/// Large f32 products with A packed run as independent parts, each packing its own A and
/// B panels (rows 4 KiB apart, so A is packed: 520 × 1024 × 260 split by rows, 300 × 1024 ×
/// 1000 by columns, each at least 512³ multiply-adds): on 2 and 3 threads every element is
/// the one-thread result bit for bit (the depth blocks depend on k alone), row and column
/// counts off the tile.
#[test]
fn independent_parts_with_packed_a_match_one_thread_bit_for_bit() {
    if !avx512_or_skip("the independent parts are tested on the AVX-512 f32 kernel") {
        return;
    }
    for (m, k, n) in [(520, 1024, 260), (300, 1024, 1000)] {
        same_bits_as_one_thread(Shape::plain(m, n, k), 51, &[2, 3]);
    }
}

/// Column blocks handed out by a dispenser (A read in place, a product that `partition`
/// splits along n, at least two blocks per thread): on 2 and 3 threads every element is the
/// one-thread result bit for bit, each block once (beta 1 would count a block run twice;
/// beta 0 leaves a skipped one as C was), rows and columns off the tile, a last block
/// narrower than the others.
#[test]
fn column_blocks_dispensed_over_threads_match_one_thread_bit_for_bit() {
    if !avx512_or_skip("the dispensed column blocks are tested on the AVX-512 f32 kernel") {
        return;
    }
    for (m, k, n) in [(100, 200, 2100), (37, 96, 4000)] {
        let s = Shape::plain(m, n, k);
        same_bits_as_one_thread(s, 41, &[2, 3]);
    }
}

/// B of exactly NR contiguous columns (AVX-512: 32, as attention's V with 32-wide heads;
/// AVX2: 16; scalar: 8) is already the kernel's packed panel and is read in place: every KC
/// block of depth (k past 384), packed and in-place A, edge rows, batches spread over
/// threads, beta 0 and 1.
#[test]
fn b_already_in_panel_layout() {
    for threads in [1, 2] {
        on_threads(threads, || {
            for &(m, k) in &[(9, 1), (13, 5), (64, 64), (100, 385), (12, 800)] {
                // 32: the AVX-512 panel width, 16: AVX2's, 8: the scalar kernel's.
                for n in [32, 16, 8] {
                    check(Shape::plain(m, n, k), 1, false, 0.0);
                    check(Shape::plain(m, n, k), 3, false, 1.0);
                    // A transposed: packed, not read in place.
                    let ta = Shape {
                        ta: true,
                        ..Shape::plain(m, n, k)
                    };
                    check(ta, 2, true, 0.0);
                }
            }
            check(Shape::plain(64, 32, 64), 64, false, 0.0);
        });
    }
}

#[test]
fn skinny_rows_every_layout() {
    // m ≤ 8 runs straight from B in row groups of 4 (dot form when B's columns are
    // contiguous, axpy form when its rows are), m = 9 and column-major C the packed path; k
    // and n around the vector widths (8, 16) and the block widths, batches with a shared A,
    // beta 0 / 1 / 0.5.
    for m in [1, 2, 3, 4, 5, 8, 9] {
        for &(n, k) in &[
            (1, 1),
            (1, 40),
            (15, 7),
            (16, 16),
            (65, 33),
            (200, 300),
            (1000, 5),
        ] {
            check_layouts(
                check,
                m,
                n,
                k,
                &[
                    (false, false, 0, false),
                    (false, true, 0, false),
                    (true, true, 3, false),
                    (true, false, 2, false),
                    (false, true, 1, true),
                ],
            );
        }
    }
    // Columns split over threads (m·n·k ≥ 2¹⁸), and a batch spread over them whole.
    for threads in [2, 3] {
        on_threads(threads, || {
            for tb in [false, true] {
                let wide = Shape {
                    tb,
                    ..Shape::plain(1, 3000, 700)
                };
                check(wide, 1, false, 1.0);
                check(Shape { m: 3, ..wide }, 2, false, 0.0);
                check(Shape { m: 2, ..wide }, 4, true, 0.0);
                check(Shape { m: 7, ..wide }, 1, false, 0.5);
            }
        });
    }
}

#[test]
fn skinny_columns_every_layout() {
    // n ≤ 8 against more rows runs as Cᵀ = Bᵀ·Aᵀ through the skinny-row path: the dot form
    // over A's rows when A is row-major (C written element by element, any C layout), the
    // axpy form when A is transposed and Cᵀ's rows are contiguous (n = 1), else packed; more
    // than 4 columns with k ≤ 32 stay packed. m = 8 (the skinny-row path itself) beside it.
    for m in [8, 9, 40, 300] {
        for &(n, k) in &[(1, 1), (1, 40), (2, 7), (4, 33), (5, 32), (8, 33), (9, 100)] {
            check_layouts(
                check,
                m,
                n,
                k,
                &[
                    (false, false, 0, false),
                    (false, true, 0, false),
                    (true, false, 2, false),
                    (true, true, 3, false),
                    (false, false, 1, true),
                ],
            );
        }
    }
    // Rows of C split over threads (m·n·k ≥ 2¹⁸), and a batch spread over them whole.
    for threads in [2, 3] {
        on_threads(threads, || {
            for ta in [false, true] {
                let tall = Shape {
                    ta,
                    ..Shape::plain(3000, 1, 700)
                };
                check(tall, 1, false, 1.0);
                check(Shape { n: 3, ..tall }, 2, false, 0.0);
                check(Shape { n: 8, ..tall }, 4, true, 0.5);
            }
        });
    }
}

#[test]
fn few_rows_against_columns_along_k() {
    // 9 ≤ m ≤ 128 rows against n ≥ max(m, 64) columns of B contiguous along k (x·Wᵀ): the
    // packed path computes Cᵀ = Bᵀ·Aᵀ, W read as the kernels' A side and C stored
    // transposed. Edge tiles both ways, k tails and blocks, strided A and C, column-major C,
    // and m = 129, n < m or k ≤ 256 (not transposed) beside it.
    for m in [9, 13, 32, 100, 128, 129] {
        for &(n, k) in &[(64, 32), (130, 45), (130, 301), (300, 700)] {
            for (ta, pad, tc) in [(false, 0, false), (true, 3, false), (false, 2, true)] {
                let s = Shape {
                    m,
                    n,
                    k,
                    ta,
                    tb: true,
                    pad,
                    tc,
                };
                check(s, 1, false, 0.0);
                check(s, 2, true, 1.0);
            }
        }
    }
    // On 2 and 3 threads; and few rows (16, 36: row panels that split unevenly) against many
    // columns, split by columns.
    for threads in [2, 3] {
        on_threads(threads, || {
            for &(m, n, k, tb) in &[
                (16, 1000, 300, true),
                (16, 2000, 300, false),
                (36, 1500, 200, false),
                (24, 1500, 200, false),
            ] {
                let s = Shape {
                    tb,
                    ..Shape::plain(m, n, k)
                };
                check(s, 1, false, 0.0);
                check(s, 1, false, 0.5);
            }
        });
    }
}

#[test]
fn global_force_selects_the_path() {
    // The only test in this binary touching the global level.
    let (m, n, k) = (37, 45, 29);
    let l = GemmLayout::row_major(m, n, k);
    let (a, b) = (fill(m * k, 1), fill(k * n, 2));
    let mut want = vec![0.0; m * n];
    sgemm_batched_reference(&l, &a, &[0], &b, &[0], 0.0, &mut want, &[0]).unwrap();
    let absr = abs_reference(&l, &a, &[0], &b, &[0], m * n, &[0]);
    let pos: Vec<usize> = (0..m * n).collect();
    for level in LEVELS {
        isa::force(Some(level));
        assert!(isa::active() <= level);
        let mut got = vec![0.0; m * n];
        sgemm_batched(&l, &a, &[0], &b, &[0], 0.0, &mut got, &[0]).unwrap();
        assert_close(level.name(), &got, &want, &absr, k, &pos);
    }
    isa::force(None);
}

#[test]
fn bad_operands_are_errors() {
    let l = GemmLayout::row_major(4, 5, 6);
    let (a, b) = (vec![0.0; 24], vec![0.0; 30]);
    let mut c = vec![0.0; 40];
    let e = sgemm_batched(&l, &a, &[1], &b, &[0], 0.0, &mut c, &[0]).unwrap_err();
    assert!(e.to_string().contains("operand A"), "{e}");
    let e = sgemm_batched(&l, &a, &[0, 0], &b, &[0], 0.0, &mut c, &[0, 20]).unwrap_err();
    assert!(e.to_string().contains("differ in length"), "{e}");
    let e = sgemm_batched(&l, &a, &[0, 0], &b, &[0, 0], 0.0, &mut c, &[0, 0]).unwrap_err();
    assert!(e.to_string().contains("share offset"), "{e}");
    let e = sgemm_batched(&l, &a, &[0], &b, &[0], 0.0, &mut c, &[21]).unwrap_err();
    assert!(e.to_string().contains("operand C"), "{e}");
    // A zero row stride of C would make every row the same memory.
    let mut lz = GemmLayout::row_major(4, 1, 6);
    lz.c_rs = 0;
    let e = sgemm_batched(&lz, &a, &[0], &b, &[0], 0.0, &mut c, &[0]).unwrap_err();
    assert!(e.to_string().contains("zero stride"), "{e}");
}

#[test]
fn empty_and_k_zero() {
    let l = GemmLayout::row_major(3, 4, 0);
    for level in LEVELS {
        let mut c = vec![5.0; 12];
        sgemm_batched_isa(level, &l, &[], &[0], &[], &[0], 0.0, &mut c, &[0]).unwrap();
        assert!(
            c.iter().all(|&x| x == 0.0),
            "{}: k = 0, beta 0 must zero C",
            level.name()
        );
        let mut c = vec![5.0; 12];
        sgemm_batched_isa(level, &l, &[], &[0], &[], &[0], 1.0, &mut c, &[0]).unwrap();
        assert!(
            c.iter().all(|&x| x == 5.0),
            "{}: k = 0, beta 1 keeps C",
            level.name()
        );
    }
}

/// `sgemm_batched_new` (beta 0 into a vector it does not zero) gives bit for bit what
/// `sgemm_batched` stores over a NaN-filled C: on the packed paths, the gemv forms (few rows
/// or columns), batches, transposed operands and k = 0; a C layout that is not row-major is
/// an error.
#[test]
fn a_new_c_equals_overwriting_a_nan_filled_one() {
    let shapes = [
        (37, 29, 41, false, false, 1),
        (130, 140, 150, true, true, 2),
        (1, 300, 64, false, true, 1),
        (5, 70, 33, true, false, 3),
        (64, 3, 17, false, false, 2),
        (300, 1, 20, false, true, 1),
    ];
    for (m, n, k, ta, tb, batch) in shapes {
        let s = Shape {
            ta,
            tb,
            ..Shape::plain(m, n, k)
        };
        let l = s.layout();
        let (ea, eb) = (extent(m, k, l.a_rs, l.a_cs), extent(k, n, l.b_rs, l.b_cs));
        let ao: Vec<usize> = (0..batch).map(|i| i * ea).collect();
        let bo: Vec<usize> = (0..batch).map(|i| i * eb).collect();
        let co: Vec<usize> = (0..batch).map(|i| i * m * n).collect();
        let (a, b) = (fill(batch * ea, 31), fill(batch * eb, 32));
        let got = sgemm_batched_new(&l, &a, &ao, &b, &bo).unwrap();
        let mut want = vec![f32::NAN; batch * m * n];
        sgemm_batched(&l, &a, &ao, &b, &bo, 0.0, &mut want, &co).unwrap();
        assert!(want.iter().all(|x| x.is_finite()), "{s:?}: NaN left in C");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{s:?} batch {batch}");
    }
    let l = GemmLayout::row_major(3, 4, 0);
    let c = sgemm_batched_new(&l, &[], &[0, 0], &[], &[0, 0]).unwrap();
    assert_eq!(c, vec![0.0; 24], "k = 0 gives zeros");
    let l = Shape {
        tc: true,
        ..Shape::plain(3, 4, 5)
    }
    .layout();
    let e = sgemm_batched_new(&l, &[0.0; 15], &[0], &[0.0; 20], &[0]).unwrap_err();
    assert!(e.to_string().contains("row-major"), "{e}");
}

/// An A stored transposed against a narrow C (at most 64 columns) is read in place by the
/// AVX-512 kernel, the 12 values of a k step side by side: tiles of every height (m = 1 to
/// 512, edge tiles of 1, 5 and 4 rows), k steps m, m + 3 or 1024 floats apart (4 KiB: packed
/// instead), one and two depth blocks and a long k split over threads, the last tiles of the
/// buffer (whose 12-value runs would pass A's end: packed), strided and column-major C,
/// beta 0 / 1, a batch, 1 and 2 threads.
#[test]
fn transposed_a_read_in_place() {
    for &(m, n, k) in &[
        (1, 5, 3),
        (5, 7, 9),
        (12, 64, 37),
        (13, 64, 700),
        (100, 33, 300),
        (512, 64, 64),
        (30, 48, 2000),
    ] {
        for (pad, tc) in [(0, false), (3, true), (1024 - m, false)] {
            let s = Shape {
                ta: true,
                pad,
                tc,
                ..Shape::plain(m, n, k)
            };
            for threads in [1, 2] {
                on_threads(threads, || {
                    check(s, 1, false, 0.0);
                    check(s, 3, false, 1.0);
                });
            }
        }
    }
}

/// One or two rows against at least 1 MiB of W's rows along k (`check_streamed_rows`).
#[test]
fn decoding_rows_streamed_from_a_large_w() {
    check_streamed_rows(check);
}
