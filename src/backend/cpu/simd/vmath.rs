//! Vectorised exp, erf, tanh and 1/x on any `Simd`, with their error bounds (checked
//! against f64 in tests/cpu_simd_kernels.rs).
//!
//! exp(x): x = n·ln2 + r with n = round(x·log₂e) and r ∈ [−ln2/2, ln2/2] (ln2 split in a
//!   high and a low part, Cody–Waite); eʳ by a degree-6 polynomial 1 + r·(1 + r·Q(r))
//!   fitted for relative error; result eʳ·2ⁿ (`ldexp`). Max relative error ≤ 2 ulp
//!   (≈ 2.4e-7; 7.7e-8 in a simulation of the f32 operations) on [−87.3, 88.7];
//!   subnormal results rounded correctly down to x ≈ −103.9, then 0; x > 88.72 → +∞;
//!   −∞ → 0; NaN → NaN.
//! erf(x): Abramowitz & Stegun 7.1.26 (the scalar `math::erf`; 1.5e-7 in exact
//!   arithmetic) for |x| ≥ 0.75, its Maclaurin series below (where A&S's 1 − poly·e^{−x²}
//!   cancels); |error| ≤ 4e-7. GELU uses A&S alone (`erf_and_gauss`, ≤ 6e-7 absolute).
//! tanh(x) = sign(x)·(1 − e)/(1 + e), e = exp(−2|x|): absolute error ≤ 2.5e-7 (relative
//!   error grows for |x| < 1e-3 where 1 − e cancels; the GELU forms only need absolute).
//! recip(a): hardware estimate + one Newton step r·(2 − a·r): relative error ≤ 2e-7.

use super::Simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO with LN2_HI exact in 9 bits, so n·LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_HI: f32 = 88.722_83;
const EXP_LO: f32 = -104.0;

/// eˣ per lane.
///
/// # Safety
/// `S`'s instruction set must be available (see the module doc of `simd`).
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    // min/max return their second operand for NaN, so NaN flows through to the result.
    let y = exp_reduced::<S>(S::max(S::splat(EXP_LO), S::min(S::splat(EXP_HI), x)));
    S::select(S::gt(x, S::splat(EXP_HI)), S::splat(f32::INFINITY), y)
}

/// eˣ per lane for x ≤ 0 (or NaN): `exp` without its overflow handling, 3 ops fewer (equal
/// to `exp` wherever x ≤ 88.72). For the exponentials of softmax (x − max), log-softmax
/// values and −z².
///
/// # Safety
/// As `exp`.
#[inline(always)]
pub(crate) unsafe fn exp_nonpositive<S: Simd>(x: S::V) -> S::V {
    exp_reduced::<S>(S::max(S::splat(EXP_LO), x))
}

/// eˣ per lane for x ≤ 0 (or NaN) with every lane below −87 exactly 0: `exp_nonpositive`
/// without subnormal results (at most 1.7·10⁻³⁸ absolute error there). For attention's
/// online softmax, where masked scores (f32::MIN − m) are common and a subnormal result
/// could cost a microcode assist per element.
///
/// # Safety
/// As `exp`.
#[inline(always)]
pub(crate) unsafe fn exp_nonpositive_flushed<S: Simd>(x: S::V) -> S::V {
    let lo = S::splat(FLUSH_BELOW);
    // ¬(−87 > x) holds for a NaN x, which stays NaN (max returns its second operand).
    S::select(
        S::not_gt(lo, x),
        exp_reduced::<S>(S::max(lo, x)),
        S::splat(0.0),
    )
}

/// Below this `exp_nonpositive_flushed` returns 0 (e⁻⁸⁷ ≈ 1.6·10⁻³⁸ is still normal).
pub(crate) const FLUSH_BELOW: f32 = -87.0;

/// eˣ for x already clamped to [EXP_LO, EXP_HI]: range reduction, polynomial, 2ⁿ.
/// n = round(x·log₂e) by adding and subtracting 1.5·2²³ (one FMA and one subtraction; a
/// `round` instruction is two µops on Intel); eʳ = 1 + r·(1 + r·Q(r)), Q of degree 4
/// fitted for relative error on [−ln2/2, ln2/2] (3·10⁻⁹ in exact arithmetic; 7.7·10⁻⁸
/// measured in f32 over [−98, 88.72]), six FMAs where Cephes' degree-7 form took eight
/// operations.
///
/// # Safety
/// As `exp`.
#[inline(always)]
unsafe fn exp_reduced<S: Simd>(xc: S::V) -> S::V {
    let magic = S::splat(ROUND_MAGIC);
    let n = S::sub(S::fmadd(xc, S::splat(LOG2E), magic), magic);
    let r = S::fnmadd(n, S::splat(LN2_HI), xc);
    let r = S::fnmadd(n, S::splat(LN2_LO), r);
    let mut p = S::splat(1.381_46e-3);
    p = S::fmadd(p, r, S::splat(8.368_71e-3));
    p = S::fmadd(p, r, S::splat(4.166_839e-2));
    p = S::fmadd(p, r, S::splat(1.666_652_1e-1));
    p = S::fmadd(p, r, S::splat(0.499_999_94));
    p = S::fmadd(p, r, S::splat(1.0));
    S::ldexp(S::fmadd(p, r, S::splat(1.0)), n)
}

/// 1.5·2²³: a float in [2²³, 2²⁴) has unit spacing, so y + 1.5·2²³ − 1.5·2²³ rounds y to the
/// nearest integer (ties to even) for |y| < 2²².
const ROUND_MAGIC: f32 = 12_582_912.0;

/// 1/a per lane (a finite and non-zero; 1/∞ is NaN, so callers needing that use `div`).
///
/// # Safety
/// As `exp`.
#[inline(always)]
unsafe fn recip<S: Simd>(a: S::V) -> S::V {
    let r = S::rcp(a);
    S::mul(r, S::fnmadd(a, r, S::splat(2.0)))
}

/// (erf(x) by A&S 7.1.26 alone, e^{−x²}) per lane: |error| ≤ 6e-7 absolute (enough for
/// GELU, whose Φ only needs absolute accuracy); the Gaussian factor is a by-product that
/// GELU's derivative reuses (with x scaled by 1/√2 it is e^{−x²/2}).
///
/// # Safety
/// As `exp`.
#[inline(always)]
pub(crate) unsafe fn erf_and_gauss<S: Simd>(x: S::V) -> (S::V, S::V) {
    const P: f32 = 0.327_591_1;
    let z = S::abs(x);
    let t = recip::<S>(S::fmadd(S::splat(P), z, S::splat(1.0)));
    let mut poly = S::splat(1.061_405_4);
    poly = S::fmadd(poly, t, S::splat(-1.453_152_1));
    poly = S::fmadd(poly, t, S::splat(1.421_413_8));
    poly = S::fmadd(poly, t, S::splat(-0.284_496_74));
    poly = S::fmadd(poly, t, S::splat(0.254_829_6));
    poly = S::mul(poly, t);
    let g = exp_nonpositive::<S>(S::fnmadd(z, z, S::splat(0.0))); // e^{−z²}
    (S::copysign(S::fnmadd(poly, g, S::splat(1.0)), x), g)
}

/// erf(x) per lane.
///
/// # Safety
/// As `exp`.
#[inline(always)]
pub(crate) unsafe fn erf<S: Simd>(x: S::V) -> S::V {
    let (y, _) = erf_and_gauss::<S>(x);
    // Near 0, A&S's 1 − poly·e^{−x²} cancels (up to ~6e-7 absolute in f32): there the
    // Maclaurin series erf x = 2/√π·Σₙ (−1)ⁿ x^{2n+1}/(n!(2n+1)), n ≤ 7 (truncation < 2e-8
    // for |x| < 0.75), is used instead.
    let x2 = S::mul(x, x);
    let mut s = S::splat(-1.0 / 75600.0);
    s = S::fmadd(s, x2, S::splat(1.0 / 9360.0));
    s = S::fmadd(s, x2, S::splat(-1.0 / 1320.0));
    s = S::fmadd(s, x2, S::splat(1.0 / 216.0));
    s = S::fmadd(s, x2, S::splat(-1.0 / 42.0));
    s = S::fmadd(s, x2, S::splat(1.0 / 10.0));
    s = S::fmadd(s, x2, S::splat(-1.0 / 3.0));
    s = S::fmadd(s, x2, S::splat(1.0));
    let series = S::mul(S::mul(s, x), S::splat(std::f32::consts::FRAC_2_SQRT_PI));
    S::select(S::gt(S::splat(0.75), S::abs(x)), series, y)
}

/// tanh(x) per lane.
///
/// # Safety
/// As `exp`.
#[inline(always)]
pub(crate) unsafe fn tanh<S: Simd>(x: S::V) -> S::V {
    let e = exp::<S>(S::mul(S::splat(-2.0), S::abs(x)));
    // A true division, so that tanh is exactly ±1 once e underflows.
    let t = S::div(S::sub(S::splat(1.0), e), S::add(S::splat(1.0), e));
    S::copysign(t, x)
}
