//! Elementwise maps on raw buffers, compiled once per ISA level:
//!   map:      y_i = f(x_i)
//!   zip_map:  y_i = f(a_i, b_i)
//!   update:   a_i ← f(a_i, b_i)   (in place)
//! `f` is the op's scalar rule (a + b, max(a, b), x·c, …); each level runs the same loop in a
//! function compiled for its registers, where LLVM vectorises it at that width (AVX-512: 16
//! lanes, AVX2: 8). Without this the loops were compiled for the portable x86-64 baseline,
//! SSE2's 4 lanes, whatever the CPU. A rule LLVM cannot vectorise (a libm call: exp, tanh)
//! stays a scalar loop at every level. The vector forms of +, −, ×, ÷, √, max, min and
//! comparisons are the same IEEE operations as the scalar ones (LLVM keeps `f32::max`'s NaN
//! rule), so every level gives the same bits; tests check each level against the portable
//! loop.

use std::mem::MaybeUninit;

use super::isa::Isa;
use super::par::{Fill, Filled};

/// y_i = f(x_i) into the block `o` (elements past the end of a shorter `x` get 0, as
/// `Fill::write_iter`).
pub fn map<F: Fn(f32) -> f32>(level: Isa, x: &[f32], o: Fill<'_>, f: F) -> Filled {
    fill(o, |y| {
        let n = y.len().min(x.len());
        let (x, y) = (&x[..n], &mut y[..n]);
        at_level!(level, map_loop(x: &[f32], y: &mut [MaybeUninit<f32>]; f: Fn(f32) -> f32));
        n
    })
}

/// y_i = f(a_i, b_i) into the block `o` (elements past the shorter operand get 0).
pub fn zip_map<F: Fn(f32, f32) -> f32>(
    level: Isa,
    a: &[f32],
    b: &[f32],
    o: Fill<'_>,
    f: F,
) -> Filled {
    fill(o, |y| {
        let n = y.len().min(a.len()).min(b.len());
        let (a, b, y) = (&a[..n], &b[..n], &mut y[..n]);
        at_level!(level, zip_loop(a: &[f32], b: &[f32], y: &mut [MaybeUninit<f32>];
            f: Fn(f32, f32) -> f32));
        n
    })
}

/// a_i = f(a_i, b_i) in place, over the shorter of the two.
pub fn update<F: Fn(f32, f32) -> f32>(level: Isa, a: &mut [f32], b: &[f32], f: F) {
    let n = a.len().min(b.len());
    let (a, b) = (&mut a[..n], &b[..n]);
    at_level!(level, update_loop(a: &mut [f32], b: &[f32]; f: Fn(f32, f32) -> f32));
}

/// Runs `$loop(args…, f)` compiled for `$level`: inlined (with the closure it calls) into a
/// function with AVX-512 or AVX2 enabled, or the portable build.
macro_rules! at_level {
    ($level:expr, $loop:ident($($arg:ident: $ty:ty),*; $f:ident: $($bound:tt)+)) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
        unsafe fn wide<G: $($bound)+>($($arg: $ty,)* $f: G) {
            $loop($($arg,)* $f)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn narrow<G: $($bound)+>($($arg: $ty,)* $f: G) {
            $loop($($arg,)* $f)
        }
        match $level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level` is never above `isa::detected()`, so the CPU has AVX-512 F/BW.
            Isa::Avx512 => unsafe { wide($($arg,)* $f) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, the CPU has AVX2 and FMA when `level` is Avx2.
            Isa::Avx2 => unsafe { narrow($($arg,)* $f) },
            _ => $loop($($arg,)* $f),
        }
    }};
}
use at_level;

/// The loops, inlined into each level's function and vectorised there.
#[inline(always)]
fn map_loop<F: Fn(f32) -> f32>(x: &[f32], y: &mut [MaybeUninit<f32>], f: F) {
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(f(x));
    }
}

#[inline(always)]
fn zip_loop<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], y: &mut [MaybeUninit<f32>], f: F) {
    for ((y, &x), &z) in y.iter_mut().zip(a).zip(b) {
        y.write(f(x, z));
    }
}

#[inline(always)]
fn update_loop<F: Fn(f32, f32) -> f32>(a: &mut [f32], b: &[f32], f: F) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = f(*x, y);
    }
}

/// Hands `write` the block's storage; `write` stores its first `n` elements and returns
/// `n`, the rest are zeroed here.
fn fill(mut o: Fill<'_>, write: impl FnOnce(&mut [MaybeUninit<f32>]) -> usize) -> Filled {
    let len = o.len();
    // SAFETY: the block's `len` elements are valid for writes, and MaybeUninit<f32> has f32's
    // layout; only f32 values are written through this view, so an initialised block stays
    // initialised.
    let y = unsafe { std::slice::from_raw_parts_mut(o.as_mut_ptr().cast(), len) };
    let n = write(y);
    for e in &mut y[n..] {
        e.write(0.0);
    }
    // SAFETY: every element was just written: 0..n by `write`, n..len above.
    unsafe { o.assume_filled() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::isa;

    fn levels() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Scalar]
            .into_iter()
            .filter(|&l| l <= isa::detected())
            .collect()
    }

    /// Awkward values: signed zeros, infinities, NaN, subnormals, and ordinary ones.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let special = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
            -3.5,
            f32::MAX,
        ];
        (0..n as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761);
                if h.is_multiple_of(5) {
                    special[(h as usize / 5) % special.len()]
                } else {
                    (h % 20_000) as f32 / 1000.0 - 10.0
                }
            })
            .collect()
    }

    type BinaryRule = (&'static str, fn(f32, f32) -> f32);
    type UnaryRule = (&'static str, fn(f32) -> f32);

    fn same_bits(what: &str, got: &[f32], want: &[f32]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}: element {i} is {g}, the portable loop gives {w}"
            );
        }
    }

    #[test]
    fn every_level_matches_the_plain_loop_bit_for_bit() {
        let binary: [BinaryRule; 6] = [
            ("add", |a, b| a + b),
            ("sub", |a, b| a - b),
            ("mul", |a, b| a * b),
            ("div", |a, b| a / b),
            ("max", f32::max),
            ("min", f32::min),
        ];
        let unary: [UnaryRule; 5] = [
            ("neg", |x| -x),
            ("sqrt", f32::sqrt),
            ("relu", |x| x.max(0.0)),
            ("scale", |x| x * 0.37),
            ("exp", f32::exp),
        ];
        for n in [0, 1, 7, 15, 16, 17, 33, 100, 1031] {
            let (a, b) = (values(n, 1), values(n, 7));
            for level in levels() {
                for (name, f) in binary {
                    let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
                    let mut got = vec![f32::NAN; n];
                    let _ = zip_map(level, &a, &b, Fill::from(&mut got[..]), f);
                    same_bits(&format!("{} {name} n {n}", level.name()), &got, &want);
                }
                for (name, f) in binary {
                    let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
                    let mut got = a.clone();
                    update(level, &mut got, &b, f);
                    same_bits(
                        &format!("{} {name} in place n {n}", level.name()),
                        &got,
                        &want,
                    );
                }
                for (name, f) in unary {
                    let want: Vec<f32> = a.iter().map(|&x| f(x)).collect();
                    let mut got = vec![f32::NAN; n];
                    let _ = map(level, &a, Fill::from(&mut got[..]), f);
                    same_bits(&format!("{} {name} n {n}", level.name()), &got, &want);
                }
            }
        }
    }

    #[test]
    fn a_short_operand_leaves_zeros_past_its_end() {
        for level in levels() {
            let mut got = [f32::NAN; 20];
            let _ = zip_map(
                level,
                &[1.0; 20],
                &[2.0; 13],
                Fill::from(&mut got[..]),
                |a, b| a + b,
            );
            assert_eq!(&got[..13], &[3.0; 13], "{}", level.name());
            assert_eq!(&got[13..], &[0.0; 7], "{}", level.name());
            let mut got = [f32::NAN; 9];
            let _ = map(level, &[4.0; 5], Fill::from(&mut got[..]), |x| x + 1.0);
            assert_eq!(got, [5.0, 5.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
        }
    }
}
