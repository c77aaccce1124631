//! bf16 GEMM into a bf16 C (`bgemm_batched_to_bf16`, as `torch.matmul` on bf16 tensors): on
//! every path the result must be that path's f32 C (`bgemm_batched_path` into a row-major C:
//! same kernel, same summation order) rounded to bf16 afterwards, bit for bit, whatever the
//! number of k blocks (one: full tiles rounded by the kernel itself, the rest from its tile
//! buffer; several: the partial sums wait in f32 between blocks), and no element of C's
//! buffer outside the C blocks may change. And `Tensor::matmul` on two bf16 tensors, which
//! returns this bf16 C.

mod gemm_util;

use gemm_util::*;
use half::bf16;
use pretext::backend::cpu::gemm::{
    bgemm_batched_path, bgemm_batched_to_bf16, bgemm_batched_to_bf16_path, GemmLayout,
};
use pretext::tensor::{DType, Rng, Tensor};

fn to_bf16(v: &[f32]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f32(x)).collect()
}

fn check(s: Shape, batch: usize, beta: f32, threads: usize) {
    let l = s.layout();
    let Batched {
        a_len,
        b_len,
        c_len,
        ao,
        bo,
        co,
    } = batched(&s, batch, false);
    let a = to_bf16(&fill(a_len, 31));
    let b = to_bf16(&fill(b_len, 32));
    // With beta 0, NaN in C: a path that read C would carry it into the result.
    let c0: Vec<bf16> = fill(c_len, 33)
        .into_iter()
        .map(|x| bf16::from_f32(if beta == 0.0 && x > 0.8 { f32::NAN } else { x }))
        .collect();
    // The reference: the same path's f32 C, row-major (the bf16 path's kernels also sum
    // into row-major f32 tiles, so the summation order is the same even where C is strided).
    let rm = GemmLayout {
        c_rs: s.n,
        c_cs: 1,
        ..l
    };
    let so: Vec<usize> = (0..batch).map(|i| i * s.m * s.n).collect();
    let at = |i: usize, r: usize, c: usize| (co[i] + r * l.c_rs + c * l.c_cs, so[i] + r * s.n + c);
    let cells: Vec<(usize, usize)> = (0..batch)
        .flat_map(|i| (0..s.m).flat_map(move |r| (0..s.n).map(move |c| (i, r, c))))
        .map(|(i, r, c)| at(i, r, c))
        .collect();
    for p in bf16_paths() {
        let mut sums = vec![0.0f32; batch * s.m * s.n];
        for &(ci, si) in &cells {
            sums[si] = c0[ci].to_f32();
        }
        on_threads(threads, || {
            bgemm_batched_path(p, &rm, &a, &ao, &b, &bo, beta, &mut sums, &so)
        })
        .unwrap();
        let mut want = c0.clone();
        for &(ci, si) in &cells {
            want[ci] = bf16::from_f32(sums[si]);
        }
        let mut got = c0.clone();
        on_threads(threads, || {
            bgemm_batched_to_bf16_path(p, &l, &a, &ao, &b, &bo, beta, &mut got, &co)
        })
        .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{} {s:?} batch {batch} beta {beta} {threads} thread(s): C[{i}] is {g}, \
                 the rounded f32 C {w}",
                p.name()
            );
        }
    }
}

#[test]
fn equals_the_f32_c_rounded_on_odd_shapes() {
    for &(m, n, k) in SHAPES {
        for beta in [0.0, 1.0] {
            check(Shape::plain(m, n, k), 1, beta, 1);
        }
    }
}

#[test]
fn transposed_strided_batched_and_threaded() {
    // (12, 130, 70) with B along k: Cᵀ = Bᵀ·Aᵀ on the AMX paths; (300, 3, 90) and (40, 1,
    // 33): few columns, Cᵀ through the skinny-row path.
    for &(m, n, k) in &[
        (37, 70, 45),
        (64, 64, 64),
        (130, 96, 200),
        (12, 130, 70),
        (300, 3, 90),
        (40, 1, 33),
    ] {
        for (ta, tb, pad, tc) in [
            (false, false, 0, false),
            (false, true, 0, false),
            (true, false, 3, false),
            (false, false, 5, false),
            (false, false, 0, true),
            (true, true, 2, true),
        ] {
            let s = Shape {
                ta,
                tb,
                pad,
                tc,
                ..Shape::plain(m, n, k)
            };
            for beta in [0.0, 1.0] {
                check(s, 3, beta, 1);
                check(s, 1, beta, 2);
            }
        }
    }
}

#[test]
fn full_tile_rows_rounded_in_one_pipeline() {
    // AMX rounds rows of full 32 × 32 tiles while the next tile's products run, for
    // k = 33 .. 256 (2–8 blocks): rows of 1, 2 and 3 tiles with a partial tile after them
    // (n = 100: 3 tiles + 4 columns), 32-row tiles and edge rows (m = 80: 32 + 32 + 16),
    // A read in place (k whole blocks) or packed (k = 70: a tail; A transposed), B along k
    // (Q·Kᵀ); batched and on 2 threads. k = 32 and k = 288 take the tile-by-tile way.
    for &(m, n, k) in &[
        (32, 32, 64),
        (64, 64, 96),
        (80, 100, 128),
        (64, 100, 70),
        (96, 96, 32),
        (32, 64, 256),
        (64, 96, 288),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true)] {
            let s = Shape {
                ta,
                tb,
                ..Shape::plain(m, n, k)
            };
            check(s, 3, 0.0, 1);
            check(s, 1, 0.0, 2);
        }
    }
}

#[test]
fn partial_sums_carried_across_k_blocks() {
    // k beyond every kernel's KC (AMX 768 past k = 1024, vdpbf16ps and f32 smaller): several
    // k blocks, the partial sums staged in f32; with 2 threads the problem is split among
    // them; 700 columns at k = 1300 are one column block for the AVX-512 f32 kernel (its
    // stage as wide); a small C over a long k, which 2 threads split along k (sums per part,
    // rounded once; AMX from k = 4 × 768). AMX with A in place against at most 96 columns
    // takes deep blocks (2720 steps for 70 columns): one at k = 1600 (no stage), three at
    // 5600 (staged). 64 rows packed against 2100 columns: 2 threads take column parts.
    // 130 × 130 over 5600: the parts' sums added by row ranges over the threads.
    for &(m, n, k) in &[
        (40, 70, 1600),
        (40, 70, 5600),
        (64, 2100, 300),
        (96, 130, 800),
        (33, 1100, 900),
        (20, 700, 1300),
        (24, 40, 3200),
        (130, 130, 5600),
    ] {
        for beta in [0.0, 1.0] {
            check(Shape::plain(m, n, k), 1, beta, 1);
            check(Shape::plain(m, n, k), 2, beta, 2);
        }
        check(
            Shape {
                pad: 3,
                tc: true,
                ..Shape::plain(m, n, k)
            },
            1,
            1.0,
            2,
        );
    }
}

#[test]
fn empty_sums_and_bad_beta() {
    let l = GemmLayout::row_major(2, 3, 0);
    let mut c = to_bf16(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    bgemm_batched_to_bf16(&l, &[], &[0], &[], &[0], 1.0, &mut c, &[0]).unwrap();
    assert_eq!(
        c,
        to_bf16(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        "beta 1, k = 0: C unchanged"
    );
    bgemm_batched_to_bf16(&l, &[], &[0], &[], &[0], 0.0, &mut c, &[0]).unwrap();
    assert!(
        c.iter().all(|x| x.to_f32() == 0.0),
        "beta 0, k = 0: C zeroed, got {c:?}"
    );

    let l = GemmLayout::row_major(2, 2, 2);
    let (a, b) = (to_bf16(&[1.0; 4]), to_bf16(&[1.0; 4]));
    let mut c = to_bf16(&[0.0; 4]);
    let e = bgemm_batched_to_bf16(&l, &a, &[0], &b, &[0], 0.5, &mut c, &[0]).unwrap_err();
    assert!(e.to_string().contains("beta"), "{e}");
    let mut short = to_bf16(&[0.0; 3]);
    let e = bgemm_batched_to_bf16(&l, &a, &[0], &b, &[0], 0.0, &mut short, &[0]).unwrap_err();
    assert!(e.to_string().contains('C'), "{e}");
}

/// bf16 · bf16 → bf16 (as `torch.matmul` on bf16 tensors): the f32 product of the same
/// values rounded once, within one bf16 rounding of it (the f32 sums may differ in the last
/// f32 bits between the bf16 and f32 kernels, which can flip a tie-near rounding).
#[test]
fn matmul_of_two_bf16_operands_is_bf16_rounded_once() {
    let mut rng = Rng::new(9);
    let w16 = Tensor::randn(&[70, 40], 0.0, 1.0, &mut rng)
        .to_dtype(DType::BF16)
        .unwrap();
    for x_shape in [&[2usize, 3, 40][..], &[1, 40], &[33, 40]] {
        let x16 = Tensor::randn(x_shape, 0.0, 1.0, &mut rng)
            .to_dtype(DType::BF16)
            .unwrap();
        let wt = w16.transpose(0, 1).unwrap();
        let got = x16.matmul(&wt).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        let mut want_shape = x_shape.to_vec();
        *want_shape.last_mut().unwrap() = 70;
        assert_eq!(got.shape(), &want_shape[..]);
        let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let want = f32_of(&x16)
            .matmul(&f32_of(&wt))
            .unwrap()
            .to_vec_f32()
            .unwrap();
        for (i, (g, w)) in got.to_vec_f32().unwrap().iter().zip(&want).enumerate() {
            // One bf16 ulp at w is 2^(e−7); allow that plus the f32 reordering.
            let ulp = (w.abs().max(1e-30).log2().floor() - 7.0).exp2();
            assert!(
                (g - w).abs() <= ulp,
                "x{x_shape:?}·Wᵀ [{i}]: {g} vs f32 {w}"
            );
        }
    }
    // bf16 · f32 has no kernel: refused, naming both dtypes.
    let x = Tensor::randn(&[40, 3], 0.0, 1.0, &mut rng);
    let e = w16.matmul(&x).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains("bf16") && e.contains("f32"),
        "{e}"
    );
}
