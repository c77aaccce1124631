//! Scalar maths of the pointwise ops and their derivatives, shared by every kernel path.

/// erf(x) in f32, |error| ≤ 4e-7: for |x| ≥ 0.75 Abramowitz & Stegun 7.1.26 (1.5e-7 in
/// exact arithmetic)
///   erf(x) = 1 − (a₁t + a₂t² + a₃t³ + a₄t⁴ + a₅t⁵)·e^{−x²},  t = 1/(1 + p·|x|),  odd in x,
/// and below, where that 1 − … cancels, the Maclaurin series
///   erf(x) = 2/√π·Σₙ (−1)ⁿ x^{2n+1}/(n!(2n+1)),  n ≤ 7 (truncation < 2e-8).
#[inline]
pub fn erf(x: f32) -> f32 {
    if x.abs() < 0.75 {
        let x2 = x * x;
        let mut s = -1.0 / 75600.0;
        for c in [
            1.0 / 9360.0,
            -1.0 / 1320.0,
            1.0 / 216.0,
            -1.0 / 42.0,
            1.0 / 10.0,
            -1.0 / 3.0,
            1.0,
        ] {
            s = s * x2 + c;
        }
        return s * x * std::f32::consts::FRAC_2_SQRT_PI;
    }
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * (-z * z).exp();
    y.copysign(x)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Exact GELU: x·Φ(x) = 0.5·x·(1 + erf(x/√2)).
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// d/dx [x·Φ(x)] = Φ(x) + x·φ(x), φ(x) = e^{−x²/2}/√(2π).
pub fn gelu_erf_grad(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
pub fn gelu_tanh(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + u.tanh())
}

/// d/dx gelu_new = 0.5·(1 + tanh u) + 0.5·x·sech²u·√(2/π)·(1 + 3·0.044715·x²).
pub fn gelu_tanh_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let t = u.tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
}

/// σ(x) = 1/(1 + e^{−x}), computed without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ⟨a, b⟩ with eight independent partial sums, so the compiler can keep them in one vector
/// register (a single running sum would serialise on f32 addition).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}
