//! bf16 GEMM (f32 accumulation): every path (AMX tiles where usable, `vdpbf16ps` where the
//! CPU has AVX-512 BF16, the f32 kernels on bf16-rounded values, and with feature `emu` the
//! AMX kernel on a scalar model of the tile unit, so its packing and driver run on any CPU)
//! against the f32 reference computed on the bf16-rounded inputs. A product of two bf16
//! values (8-bit significands) is exact in f32, so the only error is the f32 summation: the
//! same 2·k·ε·Σ|a||b| bound as f32 GEMM.

mod gemm_util;

use gemm_util::*;
use half::bf16;
use pretext::backend::cpu::gemm::{
    bgemm_batched, bgemm_batched_path, sgemm_batched_bf16_path, sgemm_batched_reference, Bf16Path,
    GemmLayout,
};
use pretext::backend::cpu::isa::{self, Isa};

fn round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

fn check(s: Shape, batch: usize, share_b: bool, beta: f32) {
    let l = s.layout();
    let Batched {
        a_len,
        b_len,
        c_len,
        ao,
        bo,
        co,
    } = batched(&s, batch, share_b);
    let a = fill(a_len, 21);
    let b = fill(b_len, 22);
    let c0 = initial_c(c_len, 23, beta);
    let (ar, br) = (round(&a), round(&b));
    let mut want = c0.clone();
    sgemm_batched_reference(&l, &ar, &ao, &br, &bo, beta, &mut want, &co).unwrap();
    let mut absr = abs_reference(&l, &ar, &ao, &br, &bo, c0.len(), &co);
    if beta != 0.0 {
        for (x, c) in absr.iter_mut().zip(&c0) {
            *x += (beta * c).abs();
        }
    }
    let pos = c_positions(&l, &co);
    let (a16, b16): (Vec<bf16>, Vec<bf16>) = (
        a.iter().map(|&x| bf16::from_f32(x)).collect(),
        b.iter().map(|&x| bf16::from_f32(x)).collect(),
    );
    for p in bf16_paths() {
        let path = p.name();
        let mut got = c0.clone();
        bgemm_batched_path(p, &l, &a16, &ao, &b16, &bo, beta, &mut got, &co).unwrap();
        let what = format!("bgemm {path} {s:?} batch {batch} beta {beta}");
        assert_close(&what, &got, &want, &absr, s.k, &pos);
        // f32 operands rounded while packing give the same result.
        let mut got = c0.clone();
        sgemm_batched_bf16_path(p, &l, &a, &ao, &b, &bo, beta, &mut got, &co).unwrap();
        let what = format!("sgemm_bf16 {path} {s:?} batch {batch} beta {beta}");
        assert_close(&what, &got, &want, &absr, s.k, &pos);
    }
}

#[test]
fn path_selection() {
    let p = Bf16Path::at(Isa::Avx512.min(isa::detected()));
    println!("bf16 path at the best level: {}", p.name());
    assert_eq!(Bf16Path::at(Isa::Avx2), Bf16Path::F32(Isa::Avx2));
    assert_eq!(Bf16Path::at(Isa::Scalar), Bf16Path::F32(Isa::Scalar));
    let avail = Bf16Path::available();
    assert!(avail.contains(&Bf16Path::F32(Isa::Scalar)));
    assert_eq!(
        avail.contains(&Bf16Path::Avx512Bf16),
        isa::has_avx512_bf16()
    );
    if !isa::has_avx512_bf16() {
        let l = GemmLayout::row_major(1, 1, 1);
        let one = [bf16::ONE];
        let mut c = [0.0f32];
        let e = bgemm_batched_path(
            Bf16Path::Avx512Bf16,
            &l,
            &one,
            &[0],
            &one,
            &[0],
            0.0,
            &mut c,
            &[0],
        );
        assert!(e.unwrap_err().to_string().contains("avx512_bf16"));
    }
    // The default entry point runs whichever path was chosen.
    let l = GemmLayout::row_major(2, 2, 3);
    let a: Vec<bf16> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .map(|&x| bf16::from_f32(x))
        .collect();
    let mut c = [0.0f32; 4];
    bgemm_batched(&l, &a, &[0], &a, &[0], 0.0, &mut c, &[0]).unwrap();
    // [[1,2,3],[4,5,6]] · [[1,2],[3,4],[5,6]] = [[22,28],[49,64]]
    assert_eq!(c, [22.0, 28.0, 49.0, 64.0]);
}

#[test]
fn odd_shapes() {
    for &(m, n, k) in SHAPES {
        check(Shape::plain(m, n, k), 1, false, 0.0);
    }
    // Odd k: the last bf16 pair is half padding.
    check(Shape::plain(9, 35, 1025), 1, false, 0.0);
}

#[test]
fn transposed_strided_and_accumulating() {
    // A transposed on the AMX paths: its panels are 32 × 32 tiles transposed in registers
    // (several panels, the last short, k tails and several k blocks in (200, 70, 530)).
    for &(m, n, k) in SHAPES[..7].iter().chain(&[(200, 70, 530), (96, 64, 512)]) {
        check(
            Shape {
                m,
                n,
                k,
                ta: true,
                tb: false,
                pad: 1,
                tc: false,
            },
            1,
            false,
            1.0,
        );
        check(
            Shape {
                m,
                n,
                k,
                ta: false,
                tb: true,
                pad: 0,
                tc: true,
            },
            1,
            false,
            0.0,
        );
    }
}

/// A read in place (k contiguous) at odd row strides, so its bf16 pairs sit at odd element
/// offsets and are read unaligned; every k tail parity, edge tiles of 1..MR rows, and a
/// batch large enough to be spread over the threads.
#[test]
fn a_read_in_place_at_odd_strides() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (5, 33, 2),
        (13, 64, 7),
        (25, 31, 64),
        (64, 32, 513),
    ] {
        for pad in [1, 2] {
            let s = Shape {
                m,
                n,
                k,
                ta: false,
                tb: false,
                pad,
                tc: false,
            };
            check(s, 1, false, 1.0);
            check(s, 6, false, 0.0);
        }
    }
}

/// Wider than one NC block of every kernel with packed A (transposed; or rows 4 KiB apart),
/// over two KC blocks with an odd k: A is packed whole once and shared by the column blocks,
/// on one and two threads.
#[test]
fn a_packed_whole_for_wide_c() {
    for threads in [1, 2] {
        on_threads(threads, || {
            let ta = Shape {
                ta: true,
                ..Shape::plain(30, 1100, 601)
            };
            check(ta, 1, false, 1.0);
            let aliased = Shape {
                pad: 2048 - 601,
                ..Shape::plain(13, 1030, 601)
            };
            check(aliased, 1, false, 0.0);
        });
    }
}

/// Full 32 × 32 tiles of C with unit column stride (the AMX kernel loads and stores these
/// with tile instructions, 16 rows at a time), at row strides that are and are not multiples
/// of 16, overwriting and accumulating, with k of one tile block, two, and past one KC block.
#[test]
fn full_tiles_loaded_and_stored_in_place() {
    for &(m, n, k) in &[(32, 32, 32), (64, 96, 64), (96, 64, 600)] {
        for pad in [0, 3] {
            for beta in [0.0, 1.0] {
                let s = Shape {
                    m,
                    n,
                    k,
                    ta: false,
                    tb: false,
                    pad,
                    tc: false,
                };
                check(s, 2, false, beta);
            }
        }
    }
}

#[test]
fn batched_with_shared_weights() {
    check(Shape::plain(64, 64, 32), 4, false, 0.0);
    check(
        Shape {
            m: 33,
            n: 70,
            k: 45,
            ta: false,
            tb: true,
            pad: 0,
            tc: false,
        },
        3,
        true,
        1.0,
    );
}

#[test]
fn decoding_rows_from_bf16_weights() {
    // m ≤ 8 with W's rows along k (B transposed) take `vdpbf16ps` dot products straight from
    // W where the CPU has them (bf16 operands, and f32 ones rounded as they are read); k
    // around and past the 32 values of one vector, strided and transposed A (gathered);
    // B not transposed: the axpy form on rows widened to f32 (bf16 operands; f32 ones and
    // m = 9 packed); batches sharing W.
    for m in [1, 2, 3, 4, 5, 8, 9] {
        for &(n, k) in &[(1, 1), (1, 40), (15, 7), (33, 64), (65, 100), (200, 300)] {
            check_layouts(
                check,
                m,
                n,
                k,
                &[
                    (false, true, 0, false),
                    (false, true, 5, false),
                    (true, true, 2, false),
                    (false, false, 0, false),
                ],
            );
        }
    }
    on_threads(2, || {
        let wide = Shape {
            tb: true,
            ..Shape::plain(1, 3000, 700)
        };
        check(wide, 1, false, 1.0);
        check(Shape { m: 6, ..wide }, 1, false, 0.0);
    });
}

/// A small C over a long k on 2 and 3 threads, split along k (AMX: from 4 depth blocks of
/// 768): every path, strided C, beta 0 / 1, a batch.
/// Rows of A or B with a stride of 0 (one row broadcast to every row) on every bf16 path,
/// A read in place or packed, 1 and 2 threads.
#[test]
fn broadcast_rows_of_stride_zero() {
    for &(m, k, n) in &[(3, 5, 4), (40, 300, 40), (100, 64, 64), (64, 2100, 96)] {
        for (a_rs, b_rs) in [(0, n), (k, 0)] {
            let l = GemmLayout {
                a_rs,
                b_rs,
                ..GemmLayout::row_major(m, n, k)
            };
            let a = round(&fill(if a_rs == 0 { k } else { m * k }, 41));
            let b = round(&fill(if b_rs == 0 { n } else { k * n }, 42));
            let mut want = vec![0.0f32; m * n];
            sgemm_batched_reference(&l, &a, &[0], &b, &[0], 0.0, &mut want, &[0]).unwrap();
            let absr = abs_reference(&l, &a, &[0], &b, &[0], m * n, &[0]);
            let pos: Vec<usize> = (0..m * n).collect();
            let a16: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
            let b16: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
            for threads in [1, 2] {
                for p in bf16_paths() {
                    let mut got = vec![f32::NAN; m * n];
                    on_threads(threads, || {
                        bgemm_batched_path(p, &l, &a16, &[0], &b16, &[0], 0.0, &mut got, &[0])
                    })
                    .unwrap();
                    let what = format!("{} {threads} threads {l:?}", p.name());
                    assert_close(&what, &got, &want, &absr, k, &pos);
                }
            }
        }
    }
}

#[test]
fn long_k_into_small_c_split_along_k() {
    for threads in [2, 3] {
        on_threads(threads, || {
            check(Shape::plain(40, 24, 3300), 1, false, 1.0);
            let strided = Shape {
                pad: 5,
                ..Shape::plain(33, 40, 3100)
            };
            check(strided, 2, false, 0.0);
        });
    }
}

/// A packed and small beside a wide C on 2 threads: each thread takes its own columns as a
/// sub-problem (AMX: 64 rows, A transposed, or row-major past one column block), every path,
/// beta 0 / 1, strided operands.
#[test]
fn small_a_against_wide_c_split_in_column_parts() {
    on_threads(2, || {
        let ta = Shape {
            ta: true,
            ..Shape::plain(64, 1100, 200)
        };
        check(ta, 1, false, 1.0);
        let tb = Shape {
            tb: true,
            pad: 3,
            ..Shape::plain(70, 2100, 300)
        };
        check(tb, 1, false, 0.0);
    });
}

/// AMX with A in place against at most 96 columns takes depth blocks sized to the packed B
/// (2720 steps for 65–96 columns, 4096 for 33–64, 8192 up to 32) instead of KC = 768: several
/// with a remainder (k not a multiple of 32), edge rows, strided operands, beta 0 / 1, a
/// batch; every path.
#[test]
fn narrow_c_with_a_in_place_in_deep_depth_blocks() {
    check(Shape::plain(40, 90, 5500), 1, false, 1.0);
    check(Shape::plain(33, 64, 8300), 2, false, 0.0);
    let strided = Shape {
        pad: 5,
        ..Shape::plain(70, 20, 8250)
    };
    check(strided, 1, false, 1.0);
}

#[test]
fn few_columns_against_rows_along_k() {
    // n ≤ 8 against more rows with A row-major: Cᵀ = Bᵀ·Aᵀ as `vdpbf16ps` dot products over
    // A's rows where the CPU has them, C written transposed; on the AMX path 5–8 columns take
    // the tile kernel with A read in place (edge rows at m = 9, 40, 300); A transposed, or
    // more than 4 columns with k ≤ 32, packed. Strided operands, column-major C, batches,
    // 2 threads.
    for m in [9, 40, 300] {
        for &(n, k) in &[(1, 1), (1, 40), (3, 64), (4, 33), (5, 32), (8, 100)] {
            check_layouts(
                check,
                m,
                n,
                k,
                &[
                    (false, false, 0, false),
                    (false, true, 5, false),
                    (true, false, 2, false),
                    (false, false, 1, true),
                ],
            );
        }
    }
    on_threads(2, || {
        let tall = Shape::plain(3000, 1, 700);
        check(tall, 1, false, 1.0);
        check(Shape { n: 6, ..tall }, 2, false, 0.0);
    });
}

#[test]
fn few_rows_against_many_columns_along_k() {
    // 4 ≤ m < 32 rows against n ≥ 64 columns of B contiguous along k (x·Wᵀ): the AMX paths
    // compute Cᵀ = Bᵀ·Aᵀ, W's rows read in place as the tiles' A side and C written
    // transposed. Edge tiles both ways, k tails, k blocks, strided A and C, m = 32 (not
    // transposed) beside it.
    for m in [4, 13, 31, 32] {
        for &(n, k) in &[(64, 32), (100, 45), (300, 1100)] {
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
    on_threads(2, || {
        check(
            Shape {
                tb: true,
                ..Shape::plain(16, 1000, 300)
            },
            1,
            false,
            0.0,
        )
    });
}

/// One or two rows against at least 1 MiB of W's rows along k (`check_streamed_rows`).
#[test]
fn decoding_rows_streamed_from_a_large_w() {
    check_streamed_rows(check);
}

#[test]
fn packed_panels_swept_in_depth_sub_blocks() {
    // The AMX kernel sweeps a packed A panel deeper than 512 steps once per depth sub-block
    // of about 256 (`KC_INNER`), the sums carried in C between sweeps: k = 530 (sub-blocks
    // of 192, 192 and 146, the last one's k tail zero-padded), 700 (256, 256, 188) and 1100
    // (two depth blocks of 576 and 524, each in three sub-blocks); rows and columns past
    // whole tiles; 1 and 2 threads; C overwritten (NaN where it must not be read) and
    // accumulated.
    for &(m, n, k) in &[(70, 100, 530), (96, 64, 700), (40, 33, 1100)] {
        for beta in [0.0, 1.0] {
            check(Shape::plain(m, n, k), 1, false, beta);
            on_threads(2, || check(Shape::plain(m, n, k), 1, false, beta));
        }
    }
}
