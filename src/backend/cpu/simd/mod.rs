//! Shared SIMD building blocks of the row-wise and pointwise CPU kernels (softmax, norms,
//! GELU, cross-entropy, AdamW): a `Simd` trait over one f32 vector register with an AVX-512
//! (`Avx512`, 16 lanes) and an AVX2+FMA (`Avx2`, 8 lanes) implementation, and vectorised
//! `exp`, `erf`, `tanh` written once on top of it.
//!
//! Kernels are written as `#[inline(always)]` generic functions `f::<S: Simd>(…)`; the
//! `simd_kernel!` macro turns one into a function taking an `Isa` that calls, for AVX-512
//! and AVX2, a `#[target_feature]` wrapper in which the generic body (and every intrinsic
//! it reaches) is inlined and compiled for that level, and for `Isa::Scalar` the portable
//! scalar reference.
//!
//! Safety contract of every `Simd` method: the CPU supports the implementation's level
//! (guaranteed by `simd_kernel!`, which only calls it for the level `isa` detected or
//! clamped to), and pointers are valid for the lanes they touch (`LANES` for `load` /
//! `store`, the first `n` for the `_tail` variants).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod k_loop;
mod transpose;
mod vmath;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
pub(crate) use transpose::transpose_scaled;
pub(crate) use vmath::{
    erf_and_gauss, exp, exp_nonpositive, exp_nonpositive_flushed, tanh, FLUSH_BELOW,
};

/// One f32 vector register of `LANES` lanes and its comparison mask.
///
/// # Safety
/// See the module doc: every method needs the CPU feature level of the implementation and
/// valid pointers.
pub(crate) trait Simd: Copy {
    type V: Copy;
    type M: Copy;
    const LANES: usize;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// LANES bf16 values (their bits) at `p`, widened to f32 (exact: the bits shifted up).
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    /// 2·LANES bf16 values at `p` as (the even-indexed ones, the odd-indexed ones), each
    /// widened to f32 (exact): one load, a shift and a mask, no lane shuffle. For sums over
    /// the values, where their order in the lanes does not matter.
    unsafe fn load_bf16_pairs(p: *const u16) -> (Self::V, Self::V);
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Lanes `0..n` from `p` (n < LANES), the others `fill`.
    unsafe fn load_tail(p: *const f32, n: usize, fill: f32) -> Self::V;
    /// Stores lanes `0..n` (n < LANES) to `p`.
    unsafe fn store_tail(p: *mut f32, n: usize, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sqrt(a: Self::V) -> Self::V;
    /// a·b + c with one rounding.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// c − a·b with one rounding.
    unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise max; when either is NaN the result is `b` (x86 `maxps` semantics).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise min; when either is NaN the result is `b` (x86 `minps` semantics).
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// a·2ⁿ for lanes of `n` holding integers in [−150, 128] (result rounded once, so
    /// subnormal and overflowing results are right).
    unsafe fn ldexp(a: Self::V, n: Self::V) -> Self::V;
    /// Approximate 1/a (≥ 11 bits; `recip` refines it).
    unsafe fn rcp(a: Self::V) -> Self::V;
    unsafe fn abs(a: Self::V) -> Self::V;
    /// |mag| with the sign bit of `sign`.
    unsafe fn copysign(mag: Self::V, sign: Self::V) -> Self::V;
    /// a > b (ordered: false for NaN).
    unsafe fn gt(a: Self::V, b: Self::V) -> Self::M;
    /// ¬(a > b) (true for NaN): the complement of `gt` in one comparison, for a select
    /// that keeps a value where `gt` would zero it (AVX-512: a zero-masked instruction
    /// without a mask inversion).
    unsafe fn not_gt(a: Self::V, b: Self::V) -> Self::M;
    /// m ? a : b per lane.
    unsafe fn select(m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    /// Σ lanes.
    unsafe fn hsum(a: Self::V) -> f32;
    /// max over lanes (x86 `maxps` order: a NaN lane may or may not win).
    unsafe fn hmax(a: Self::V) -> f32;
}

/// Defines `fn NAME(isa: Isa, args…) -> R` that runs `GENERIC::<Avx512>` or
/// `GENERIC::<Avx2>` inside a `#[target_feature]` wrapper, or `SCALAR(args…)`.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        = $generic:ident | $scalar:path;) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(
            isa: $crate::backend::cpu::isa::Isa, $($arg: $ty),*
        ) $(-> $ret)? {
            match isa {
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::isa::Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                        $generic::<$crate::backend::cpu::simd::Avx512>($($arg),*)
                    }
                    // SAFETY: `isa` is never above `isa::detected()` (isa.rs clamps every
                    // forced or requested level), so the CPU has AVX-512 F/BW, AVX2 and FMA.
                    unsafe { wide($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::isa::Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                        $generic::<$crate::backend::cpu::simd::Avx2>($($arg),*)
                    }
                    // SAFETY: as above, the CPU has AVX2 and FMA when `isa` is Avx2.
                    unsafe { narrow($($arg),*) }
                }
                _ => $scalar($($arg),*),
            }
        }
    };
}
pub(crate) use simd_kernel;

/// Which vectorised function `map` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Exp,
    /// eˣ for x ≤ 0, exactly 0 below −87 (`exp_nonpositive_flushed`).
    ExpFlushed,
    Erf,
    Tanh,
}

simd_kernel! {
    /// y = f(x) elementwise with the vectorised `exp` / `erf` / `tanh` at `isa` (scalar:
    /// the standard library's, and `math::erf`). For measuring their error.
    pub fn map(f: Func, x: &[f32], y: &mut [f32]) = map_simd | map_scalar;
}

fn map_scalar(f: Func, x: &[f32], y: &mut [f32]) {
    let g = match f {
        Func::Exp => f32::exp,
        Func::ExpFlushed => |x: f32| if x < FLUSH_BELOW { 0.0 } else { x.exp() },
        Func::Erf => super::math::erf,
        Func::Tanh => f32::tanh,
    };
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = g(x));
}

#[inline(always)]
unsafe fn map_simd<S: Simd>(f: Func, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (p, o, l) = (x.as_ptr(), y.as_mut_ptr(), S::LANES);
    let mut i = 0;
    while i < n {
        let k = (n - i).min(l);
        let v = if k == l {
            S::load(p.add(i))
        } else {
            S::load_tail(p.add(i), k, 0.0)
        };
        let r = match f {
            Func::Exp => exp::<S>(v),
            Func::ExpFlushed => exp_nonpositive_flushed::<S>(v),
            Func::Erf => vmath::erf::<S>(v),
            Func::Tanh => tanh::<S>(v),
        };
        if k == l {
            S::store(o.add(i), r)
        } else {
            S::store_tail(o.add(i), k, r)
        }
        i += k;
    }
}
