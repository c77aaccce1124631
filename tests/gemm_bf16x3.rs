//! The "high" matmul precision's three bf16 products (`sgemm_batched_high_path`): each f32
//! operand split as x = hi + lo + r (`split_bf16x2`, |r| ≤ 2⁻¹⁶·|x|) and
//!   C = Ah·Bl + Al·Bh + Ah·Bh (+ beta·C)
//! on every bf16 path (AMX tiles, `vdpbf16ps`, the f32 kernels, and with feature `emu` the
//! AMX kernel on the tile unit's model). Against the same three products of the split parts
//! in f32 (the products of bf16 values are exact, so only the f32 sums differ: 2·(3k)·ε·Σ|a||b|),
//! and against the exact product of the f32 operands within the split's 2⁻¹⁴·Σ|a||b|.

mod gemm_util;

use gemm_util::*;
use pretext::backend::cpu::gemm::{
    sgemm_batched_bf16_path, sgemm_batched_high_isa, sgemm_batched_high_path, sgemm_batched_isa,
    sgemm_batched_reference, split_bf16x2, Bf16Path, GemmLayout,
};
use pretext::backend::cpu::isa::{self, Isa};

/// The hi and lo parts of every element, as f32.
fn parts(v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    v.iter()
        .map(|&x| {
            let (h, l) = split_bf16x2(x);
            (
                f32::from_bits((h as u32) << 16),
                f32::from_bits((l as u32) << 16),
            )
        })
        .unzip()
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
    let b = fill(b_len, 32);
    let c0 = initial_c(c_len, 33, beta);
    let ((ah, al), (bh, bl)) = (parts(&a), parts(&b));
    let mut want = c0.clone();
    sgemm_batched_reference(&l, &ah, &ao, &bl, &bo, beta, &mut want, &co).unwrap();
    sgemm_batched_reference(&l, &al, &ao, &bh, &bo, 1.0, &mut want, &co).unwrap();
    sgemm_batched_reference(&l, &ah, &ao, &bh, &bo, 1.0, &mut want, &co).unwrap();
    // Σ|a||b| bounds the parts' Σ|ah||bh| + Σ|ah||bl| + Σ|al||bh| within a factor 1 + 2⁻⁶.
    let mut absr = abs_reference(&l, &a, &ao, &b, &bo, c0.len(), &co);
    for (x, c) in absr.iter_mut().zip(&c0) {
        *x *= 1.0 + 2f32.powi(-6);
        if beta != 0.0 {
            *x += (beta * c).abs();
        }
    }
    let pos = c_positions(&l, &co);
    for p in bf16_paths() {
        let mut got = c0.clone();
        sgemm_batched_high_path(p, &l, &a, &ao, &b, &bo, beta, &mut got, &co).unwrap();
        let what = format!("high {} {s:?} batch {batch} beta {beta}", p.name());
        assert_close(&what, &got, &want, &absr, 3 * s.k + 3, &pos);
    }
}

#[test]
fn odd_shapes() {
    for &(m, n, k) in SHAPES {
        check(Shape::plain(m, n, k), 1, false, 0.0);
    }
    check(Shape::plain(9, 35, 1025), 1, false, 1.0);
}

#[test]
fn transposed_strided_batched_and_scaled() {
    check_layouts(
        check,
        37,
        45,
        70,
        &[
            (false, false, 0, false),
            (true, false, 1, false),
            (false, true, 0, true),
            (true, true, 3, false),
        ],
    );
    // Past the AMX kernel's depth blocks, on one and two threads.
    for threads in [1, 2] {
        on_threads(threads, || check(Shape::plain(70, 300, 1600), 2, true, 1.0));
    }
}

/// Largest |got − exact| / Σ|a||b| over C.
fn worst(got: &[f32], want: &[f64], absr: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .zip(absr)
        .map(|((&g, &w), &s)| (g as f64 - w).abs() / s as f64)
        .fold(0.0, f64::max)
}

/// Against the exact product of the f32 operands: within the split's 2⁻¹⁴·Σ|a||b| (plus the
/// f32 sums), and about 2⁸ times closer than "medium" (each operand rounded to bf16).
#[test]
fn about_sixteen_bits_of_the_exact_product() {
    let (m, k, n) = (48, 200, 40);
    let l = GemmLayout::row_major(m, n, k);
    // Values over several binades, so that the low parts matter everywhere.
    let scale = |v: Vec<f32>| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| x * 2f32.powi((i % 7) as i32 - 3))
            .collect()
    };
    let (a, b) = (scale(fill(m * k, 41)), scale(fill(k * n, 42)));
    let want = exact_product(&a, &b, m, k, n);
    let absr = abs_reference(&l, &a, &[0], &b, &[0], m * n, &[0]);
    let bound = 2f64.powi(-14) + 2.0 * (3 * k + 3) as f64 * f32::EPSILON as f64;
    for p in bf16_paths() {
        let mut high = vec![0.0f32; m * n];
        sgemm_batched_high_path(p, &l, &a, &[0], &b, &[0], 0.0, &mut high, &[0]).unwrap();
        let mut medium = vec![0.0f32; m * n];
        sgemm_batched_bf16_path(p, &l, &a, &[0], &b, &[0], 0.0, &mut medium, &[0]).unwrap();
        let (eh, em) = (worst(&high, &want, &absr), worst(&medium, &want, &absr));
        println!("{}: high {eh:.2e}, medium {em:.2e} of Σ|a||b|", p.name());
        assert!(eh <= bound, "{}: high precision off by {eh:e}", p.name());
        assert!(
            eh * 64.0 < em,
            "{}: high {eh:e} against medium {em:e}",
            p.name()
        );
    }
}

/// ±∞ and NaN in an operand reach C as in f32 (hi carries them, lo is 0), and values near
/// f32::MAX stay finite.
#[test]
fn infinities_nans_and_huge_values() {
    let l = GemmLayout::row_major(2, 2, 2);
    let a = [f32::INFINITY, 1.0, f32::NAN, 1.0];
    let b = [1.0, 0.5, 1.0, 0.5];
    let huge = [f32::MAX, 0.0, 0.0, f32::MAX];
    let half = [0.5, 0.0, 0.0, -0.5];
    for p in bf16_paths() {
        let mut c = [0.0f32; 4];
        sgemm_batched_high_path(p, &l, &a, &[0], &b, &[0], 0.0, &mut c, &[0]).unwrap();
        assert_eq!(c[..2], [f32::INFINITY; 2], "{}", p.name());
        assert!(c[2].is_nan() && c[3].is_nan(), "{}: {c:?}", p.name());
        sgemm_batched_high_path(p, &l, &huge, &[0], &half, &[0], 0.0, &mut c, &[0]).unwrap();
        let want = [f32::MAX / 2.0, 0.0, 0.0, -f32::MAX / 2.0];
        for (g, w) in c.iter().zip(want) {
            assert!(
                (g - w).abs() <= w.abs() * 2f32.powi(-14),
                "{}: {c:?}",
                p.name()
            );
        }
    }
}

/// `sgemm_batched_high_isa` (the "high" setting's entry) takes the three products only on AMX
/// and for large enough problems; elsewhere it is the f32 GEMM, bit for bit.
#[test]
fn high_takes_the_tiles_only_where_they_pay() {
    let level = Isa::Avx512.min(isa::detected());
    let run = |m: usize, n: usize, k: usize| {
        let l = GemmLayout::row_major(m, n, k);
        let (a, b) = (fill(m * k, 51), fill(k * n, 52));
        let mut high = vec![0.0f32; m * n];
        sgemm_batched_high_isa(level, &l, &a, &[0], &b, &[0], 0.0, &mut high, &[0]).unwrap();
        let mut f32c = vec![0.0f32; m * n];
        sgemm_batched_isa(level, &l, &a, &[0], &b, &[0], 0.0, &mut f32c, &[0]).unwrap();
        high == f32c
    };
    // A few rows: f32 on every CPU.
    assert!(run(64, 768, 768), "64 × 768 × 768 should run in f32");
    // m 256, n 512, k 512: three bf16 products on AMX, f32 elsewhere; half as deep, f32.
    let amx = Bf16Path::at(level) == Bf16Path::Amx;
    assert_eq!(run(256, 512, 512), !amx, "amx {amx}");
    assert!(run(256, 512, 256), "m 256, n 512, k 256 should run in f32");
}

/// Empty products: k = 0 leaves beta·C (here C itself, and zero for beta 0), m = 0 and an
/// empty batch touch nothing.
#[test]
fn empty_products() {
    for p in bf16_paths() {
        let l = GemmLayout::row_major(3, 4, 0);
        let mut c = [1.5f32; 12];
        sgemm_batched_high_path(p, &l, &[], &[0], &[], &[0], 1.0, &mut c, &[0]).unwrap();
        assert_eq!(c, [1.5; 12], "{}", p.name());
        sgemm_batched_high_path(p, &l, &[], &[0], &[], &[0], 0.0, &mut c, &[0]).unwrap();
        assert_eq!(c, [0.0; 12], "{}", p.name());
        let l = GemmLayout::row_major(0, 4, 5);
        let b = [1.0f32; 20];
        sgemm_batched_high_path(p, &l, &[], &[0], &b, &[0], 0.0, &mut [], &[0]).unwrap();
        let l = GemmLayout::row_major(2, 2, 2);
        sgemm_batched_high_path(p, &l, &[], &[], &[], &[], 0.0, &mut [], &[]).unwrap();
    }
}
