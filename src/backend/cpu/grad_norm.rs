//! The two passes of global-norm gradient clipping on raw buffers:
//!   sum_squares(x) = Σ_j x_j²   (f64: the square of an f32 is exact in f64, so the only
//!                                 rounding is that of the f64 additions)
//!   scale(x, c):  x_j ← c·x_j  (one f32 product per element, as `mul_scalar`)
//! `sum_squares` adds the partial sums of fixed 64 Ki-element chunks in chunk order, so its
//! result does not depend on the thread count; the SIMD levels add in a different order from
//! the scalar loop (lane-wise partial sums), which moves the result by a few f64 ulps at most.

use rayon::prelude::*;

use super::isa::{self, Isa};

/// Elements per parallel task (and per partial sum).
const CHUNK: usize = 1 << 16;

/// Σ x_j², in f64.
pub fn sum_squares(x: &[f32]) -> f64 {
    sum_squares_isa(isa::active(), x)
}

/// `sum_squares` at a given level.
pub fn sum_squares_isa(level: Isa, x: &[f32]) -> f64 {
    if x.len() <= CHUNK || rayon::current_num_threads() == 1 {
        return x.chunks(CHUNK).map(|c| chunk_sum(level, c)).sum();
    }
    let _region = crate::backend::cpu::threads::region();
    let parts: Vec<f64> = x.par_chunks(CHUNK).map(|c| chunk_sum(level, c)).collect();
    parts.iter().sum()
}

fn chunk_sum(level: Isa, x: &[f32]) -> f64 {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` is never above `isa::detected()`, so the CPU has AVX-512 F.
        Isa::Avx512 => unsafe { x86::sum_squares_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, the CPU has AVX2 and FMA when `level` is Avx2.
        Isa::Avx2 => unsafe { x86::sum_squares_avx2(x) },
        _ => sum_squares_scalar(x),
    }
}

/// Eight running f64 sums over x[8i + k], added in order at the end.
fn sum_squares_scalar(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            let v = c[k] as f64;
            acc[k] += v * v;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &v in chunks.remainder() {
        s += (v as f64) * (v as f64);
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Four accumulators of 8 f64 lanes, 32 elements per step, then the tail one by one.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_squares_avx512(x: &[f32]) -> f64 {
        let (n, p) = (x.len(), x.as_ptr());
        let mut acc = [_mm512_setzero_pd(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 ≤ i + 32 ≤ n, so the 8 floats lie inside x.
                let v = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(p.add(i + 8 * k)) });
                *a = _mm512_fmadd_pd(v, v, *a);
            }
            i += 32;
        }
        let s = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
        let mut t = _mm512_reduce_add_pd(s);
        for &v in &x[i..] {
            t += (v as f64) * (v as f64);
        }
        t
    }

    /// Four accumulators of 4 f64 lanes, 16 elements per step, then the tail one by one.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_squares_avx2(x: &[f32]) -> f64 {
        let (n, p) = (x.len(), x.as_ptr());
        let mut acc = [_mm256_setzero_pd(); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 4k + 4 ≤ i + 16 ≤ n, so the 4 floats lie inside x.
                let v = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(p.add(i + 4 * k)) });
                *a = _mm256_fmadd_pd(v, v, *a);
            }
            i += 16;
        }
        let s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
        let mut lanes = [0.0f64; 4];
        // SAFETY: `lanes` holds 4 f64.
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), s) };
        let mut t = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for &v in &x[i..] {
            t += (v as f64) * (v as f64);
        }
        t
    }
}

/// x_j ← c·x_j (in parallel chunks; each element is one f32 product, so the result is the
/// same at any thread count and equals `Tensor::mul_scalar`).
pub fn scale(x: &mut [f32], c: f32) {
    let mul = |x: &mut [f32]| x.iter_mut().for_each(|v| *v *= c);
    if x.len() <= CHUNK || rayon::current_num_threads() == 1 {
        mul(x);
    } else {
        let _region = crate::backend::cpu::threads::region();
        x.par_chunks_mut(CHUNK).for_each(mul);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

    /// Values with a wide spread of magnitudes, so an f32 sum of squares would visibly differ.
    fn values(n: usize) -> Vec<f32> {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                u * 10f32.powi(((s >> 20) % 7) as i32 - 3)
            })
            .collect()
    }

    /// Neumaier's compensated sum of the (exact) f64 squares: correct to about one f64 ulp.
    fn reference(x: &[f32]) -> f64 {
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for &v in x {
            let t = (v as f64) * (v as f64);
            let u = s + t;
            c += if s.abs() >= t.abs() {
                (s - u) + t
            } else {
                (t - u) + s
            };
            s = u;
        }
        s + c
    }

    #[test]
    fn every_level_matches_the_f64_reference() {
        for n in [
            0,
            1,
            7,
            8,
            15,
            16,
            31,
            32,
            33,
            1000,
            CHUNK - 3,
            CHUNK + 77,
            3 * CHUNK + 5,
        ] {
            let x = values(n);
            let want = reference(&x);
            for level in LEVELS.map(|l| l.min(isa::detected())) {
                let got = sum_squares_isa(level, &x);
                // Positive terms, each accumulator adds at most n/8 of them: relative error
                // ≤ (n/8 + 8)·ε (recursive summation's bound).
                let tol = (n as f64 / 8.0 + 8.0) * f64::EPSILON * want;
                assert!(
                    (got - want).abs() <= tol,
                    "{level:?} n {n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_sum_does_not_depend_on_the_thread_count() {
        let x = values(5 * CHUNK + 123);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for level in LEVELS.map(|l| l.min(isa::detected())) {
            let a = one.install(|| sum_squares_isa(level, &x));
            let b = two.install(|| sum_squares_isa(level, &x));
            assert_eq!(a.to_bits(), b.to_bits(), "{level:?}");
        }
    }

    #[test]
    fn scale_is_an_elementwise_product() {
        let x = values(CHUNK + 9);
        let mut y = x.clone();
        scale(&mut y, 0.37);
        for (a, b) in x.iter().zip(&y) {
            assert_eq!((a * 0.37).to_bits(), b.to_bits());
        }
    }
}
