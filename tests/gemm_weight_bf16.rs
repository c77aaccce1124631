//! Weight-only bf16 GEMM (f32 A times bf16 B widened exactly, f32 products and sums) at every
//! kernel level against the f32 reference on the widened B: the only error is the f32
//! summation (the 2·k·ε·Σ|a||b| bound of f32 GEMM). Where both take the packed path (more than
//! 8 rows, or a C that is not row-contiguous, against more than 8 columns) it must equal the
//! f32 GEMM on the widened B bit for bit: the same panels through the same kernel.

mod gemm_util;

use gemm_util::*;
use half::bf16;
use pretext::backend::cpu::gemm::{
    sgemm_batched_isa, sgemm_batched_reference, sgemm_batched_wbf16_isa, sgemm_batched_wbf16_new,
    GemmLayout,
};
use pretext::backend::cpu::isa::{self, Isa};

/// Every level this CPU runs.
fn levels() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Scalar]
        .into_iter()
        .filter(|&l| l <= isa::detected())
        .collect()
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
    let a = fill(a_len, 31);
    let b16: Vec<bf16> = fill(b_len, 32).into_iter().map(bf16::from_f32).collect();
    let bw: Vec<f32> = b16.iter().map(|x| x.to_f32()).collect();
    let c0 = initial_c(c_len, 33, beta);
    let mut want = c0.clone();
    sgemm_batched_reference(&l, &a, &ao, &bw, &bo, beta, &mut want, &co).unwrap();
    let mut absr = abs_reference(&l, &a, &ao, &bw, &bo, c0.len(), &co);
    if beta != 0.0 {
        for (x, c) in absr.iter_mut().zip(&c0) {
            *x += (beta * c).abs();
        }
    }
    let pos = c_positions(&l, &co);
    // With n ≤ 8 against more rows the f32 GEMM takes the skinny path on the transposed
    // product (`narrow`), summing in another order.
    let packed = (s.m > 8 || s.tc) && s.n > 8;
    for level in levels() {
        let mut got = c0.clone();
        sgemm_batched_wbf16_isa(level, &l, &a, &ao, &b16, &bo, beta, &mut got, &co).unwrap();
        let what = format!("wbf16 {} {s:?} batch {batch} beta {beta}", level.name());
        assert_close(&what, &got, &want, &absr, s.k, &pos);
        if packed {
            let mut f32_path = c0.clone();
            sgemm_batched_isa(level, &l, &a, &ao, &bw, &bo, beta, &mut f32_path, &co).unwrap();
            for &i in &pos {
                assert_eq!(
                    got[i].to_bits(),
                    f32_path[i].to_bits(),
                    "{what}: packed C[{i}] = {} differs from the f32 GEMM on the widened B ({})",
                    got[i],
                    f32_path[i]
                );
            }
        }
    }
}

#[test]
fn decoding_rows_against_bf16_weights() {
    // m ≤ 8 with W's rows along k (B transposed): the dot form on bf16 pairs, k around and
    // past one step (32 values at AVX-512, 16 at AVX2) and odd; strided and transposed A
    // (gathered); B not transposed (packed); batches sharing W; overwrite, accumulate, scale.
    for m in [1, 2, 3, 4, 5, 8] {
        for &(n, k) in &[
            (1, 1),
            (3, 15),
            (1, 40),
            (15, 7),
            (9, 31),
            (33, 64),
            (65, 100),
            (200, 300),
        ] {
            for (ta, tb, pad) in [
                (false, true, 0),
                (false, true, 5),
                (true, true, 2),
                (false, false, 0),
            ] {
                let s = Shape {
                    m,
                    n,
                    k,
                    ta,
                    tb,
                    pad,
                    tc: false,
                };
                check(s, 1, false, 0.0);
                check(s, 3, true, 1.0);
                check(s, 2, false, 0.5);
            }
        }
    }
}

#[test]
fn decoding_columns_split_over_threads() {
    on_threads(2, || {
        let wide = Shape {
            tb: true,
            ..Shape::plain(1, 3000, 700)
        };
        check(wide, 1, false, 1.0);
        check(Shape { m: 6, ..wide }, 1, false, 0.0);
        check(Shape { m: 2, ..wide }, 2, true, 0.0);
    });
}

#[test]
fn packed_shapes_equal_the_f32_gemm_on_widened_weights() {
    for &(m, n, k) in SHAPES {
        for tb in [false, true] {
            let s = Shape {
                tb,
                ..Shape::plain(m.max(9), n, k)
            };
            check(s, 1, false, 0.0);
            check(s, 2, true, 1.0);
        }
    }
    // A transposed and strided, C column-major (the generic store) at a decoding m.
    check(
        Shape {
            m: 4,
            n: 37,
            k: 70,
            ta: true,
            tb: true,
            pad: 3,
            tc: true,
        },
        2,
        false,
        0.0,
    );
}

#[test]
fn new_c_is_written_whole() {
    // Into uninitialised storage: equal bit for bit to the same level over a NaN-filled C.
    for &(m, n, k) in &[(1, 50, 70), (3, 9, 33), (8, 64, 40), (20, 30, 50)] {
        let l = GemmLayout {
            b_rs: 1,
            b_cs: k,
            ..GemmLayout::row_major(m, n, k)
        };
        let a = fill(2 * m * k, 41);
        let b: Vec<bf16> = fill(n * k, 42).into_iter().map(bf16::from_f32).collect();
        let (ao, bo) = ([0, m * k], [0, 0]);
        let got = sgemm_batched_wbf16_new(&l, &a, &ao, &b, &bo).unwrap();
        let mut want = vec![f32::NAN; 2 * m * n];
        let level = isa::active();
        sgemm_batched_wbf16_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut want, &[0, m * n]).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "({m}, {n}, {k}) C[{i}]");
        }
    }
}

#[test]
fn bad_layouts_are_errors() {
    let l = GemmLayout::row_major(2, 3, 4);
    let a = vec![0.0f32; 8];
    let short_b = vec![bf16::ZERO; 11];
    let mut c = vec![0.0f32; 6];
    let e = sgemm_batched_wbf16_isa(Isa::Scalar, &l, &a, &[0], &short_b, &[0], 0.0, &mut c, &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("operand B"), "{e}");
    let not_row_major = GemmLayout { c_rs: 4, ..l };
    let b = vec![bf16::ZERO; 12];
    let e = sgemm_batched_wbf16_new(&not_row_major, &a, &[0], &b, &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("row-major"), "{e}");
}

/// One or two rows against at least 1 MiB of W's rows along k (`check_streamed_rows`).
#[test]
fn decoding_rows_streamed_from_a_large_w() {
    check_streamed_rows(check);
}
