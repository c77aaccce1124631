//! Small sampling helpers on the project RNG ([`crate::tensor::Rng`]) that the objectives
//! share: Poisson draws, Python's rounding, inclusive integer ranges.

use crate::tensor::Rng;

/// Python's `round` and NumPy's `np.round`: nearest integer, ties to even
/// (`round(0.5) = 0`, `round(1.5) = 2`, `round(4.5) = 4`). The T5 length formulas use it.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// One draw of `Poisson(λ)` by Knuth's product method: the smallest `k` with
/// `u₀·u₁·…·u_k ≤ e^{−λ}` for uniform `u_i`, so `P(k) = e^{−λ} λ^k / k!` exactly.
/// Expected cost is `λ + 1` uniforms, fine for the small λ of span lengths.
pub fn poisson(rng: &mut Rng, lambda: f64) -> usize {
    let limit = (-lambda).exp();
    let mut p = 1.0;
    let mut k = 0;
    loop {
        p *= rng.next_f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// Uniform integer in `lo..=hi` (Python's `random.randint`); `hi < lo` returns `lo`.
pub fn randint(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    if hi <= lo {
        return lo;
    }
    lo + rng.below((hi - lo + 1) as u64) as usize
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn randperm(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_ties_to_even_as_python() {
        let cases = [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (4.5, 4.0),
            (85.2, 85.0),
            (28.4, 28.0),
            (-0.5, -0.0),
        ];
        for (x, want) in cases {
            assert_eq!(round_half_even(x), want, "round({x})");
        }
    }

    #[test]
    fn poisson_mean_and_variance_match_lambda() {
        let mut rng = Rng::new(5);
        let n = 40_000;
        let draws: Vec<f64> = (0..n).map(|_| poisson(&mut rng, 3.0) as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard error of the mean is √(3/40000) ≈ 0.009.
        assert!((mean - 3.0).abs() < 0.05, "mean {mean}");
        assert!((var - 3.0).abs() < 0.15, "variance {var}");
        let zeros = draws.iter().filter(|&&x| x == 0.0).count() as f64 / n as f64;
        assert!((zeros - (-3.0f64).exp()).abs() < 0.006, "P(0) = {zeros}");
    }
}
