//! Inverted dropout with a counter-based mask, the same function as `kernels/dropout.cu`:
//!   keep(i) ⇔ u(seed, offset + i) ≥ p,   u(s, c) = ⌊splitmix64(splitmix64(s) + c·γ) / 2⁴⁰⌋ / 2²⁴
//!   y_i = keep(i) ? x_i / (1 − p) : 0
//! u(s, ·) is element c of the SplitMix64 generator started at splitmix64(s) (γ its golden-ratio
//! increment): one hash per element, the stream's start computed once per call.
//! The mask is a function of (seed, index) alone: it is never stored (the backward pass,
//! dx = keep ? dy / (1 − p) : 0, is this same function applied to dy), it does not depend on
//! how the work is split across threads, and the CPU and a CUDA device give the same mask for
//! the same seed. The AVX-512 path (F + DQ, for the 64-bit multiplies) hashes eight counters
//! at a time with the same integer operations, so it is bit-identical to the scalar loop.

use super::isa::{self, Isa};
use super::par::{Fill, Filled};

/// γ = 2⁶⁴/φ, SplitMix64's increment.
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser on z + γ (Steele, Lea and Flood; `kernels/common.cuh`).
#[inline(always)]
pub fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(GAMMA);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The start of stream `seed`: splitmix64(seed).
#[inline(always)]
pub fn stream(seed: u64) -> u64 {
    splitmix64(seed)
}

/// Whether element `counter` of the stream that starts at `base` (`stream(seed)`) is kept at
/// drop probability `p`.
#[inline(always)]
pub fn keep_in(base: u64, counter: u64, p: f32) -> bool {
    let h = splitmix64(base.wrapping_add(counter.wrapping_mul(GAMMA)));
    (h >> 40) as f32 * (1.0 / 16_777_216.0) >= p
}

/// Whether element `counter` of the stream `seed` is kept at drop probability `p`.
#[inline(always)]
pub fn keep(seed: u64, counter: u64, p: f32) -> bool {
    keep_in(stream(seed), counter, p)
}

/// y = dropout(x) for elements `offset ..` of the stream `seed`. One block of a row driver:
/// the callers split the work (`Tensor::dropout_seeded` through `par::rows_mut`), each
/// block at its own offset. x must be as long as y.
pub fn dropout(x: &[f32], y: Fill<'_>, p: f32, seed: u64, offset: u64) -> Filled {
    dropout_isa(isa::active(), x, y, p, seed, offset)
}

/// `dropout` at a given level (the AVX2 and scalar levels run the scalar loop).
pub fn dropout_isa(
    level: Isa,
    x: &[f32],
    mut y: Fill<'_>,
    p: f32,
    seed: u64,
    offset: u64,
) -> Filled {
    assert_eq!(x.len(), y.len(), "dropout block: input and output lengths");
    // SAFETY: x and y hold y.len() floats each (checked); `run` writes every element of y.
    unsafe {
        run(level, x.as_ptr(), y.as_mut_ptr(), y.len(), p, seed, offset);
        y.assume_filled()
    }
}

/// x ← dropout(x) for elements `offset ..` of the stream `seed`, at a given level (the fused
/// attention drops its probability tiles this way, row by row).
pub fn dropout_in_place_isa(level: Isa, x: &mut [f32], p: f32, seed: u64, offset: u64) {
    let (n, ptr) = (x.len(), x.as_mut_ptr());
    // SAFETY: ptr holds n floats; `run` reads each element before it writes it.
    unsafe { run(level, ptr, ptr, n, p, seed, offset) }
}

/// out[i] = dropout(x[i]) for i < n. x may be out itself (element i is read before it is
/// written).
///
/// # Safety
/// x is valid for reading and out for writing n floats.
unsafe fn run(level: Isa, x: *const f32, out: *mut f32, n: usize, p: f32, seed: u64, offset: u64) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if level == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU has AVX-512 F and DQ (checked; the level is clamped to the CPU);
        // the pointers as this function's.
        done = unsafe { avx512(x, out, n, p, seed, offset) };
    }
    let _ = level;
    let (s, base) = (1.0 / (1.0 - p), stream(seed));
    for i in done..n {
        // SAFETY: i < n.
        unsafe { *out.add(i) = element(*x.add(i), s, base, offset + i as u64, p) };
    }
}

/// One output: x·s (s = 1 / (1 − p)) if element `counter` of the stream at `base` is kept,
/// else 0.
#[inline(always)]
fn element(x: f32, s: f32, base: u64, counter: u64, p: f32) -> f32 {
    if keep_in(base, counter, p) {
        x * s
    } else {
        0.0
    }
}

/// Eight elements per step: the generator states of counters offset + i .. + 8 in 64-bit
/// lanes, hashed as in `keep`, their top 24 bits converted to f32 and compared with p. Returns how many elements
/// it wrote (n rounded down to 8); the caller finishes the rest.
///
/// # Safety
/// The CPU has AVX-512 F and DQ; x is valid for reading and out for writing n floats (x may
/// be out).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn avx512(x: *const f32, out: *mut f32, n: usize, p: f32, seed: u64, offset: u64) -> usize {
    use std::arch::x86_64::*;
    let mix = |z: __m512i| {
        let z = _mm512_add_epi64(z, _mm512_set1_epi64(GAMMA as i64));
        let z = _mm512_xor_si512(z, _mm512_srli_epi64::<30>(z));
        let z = _mm512_mullo_epi64(z, _mm512_set1_epi64(0xbf58_476d_1ce4_e5b9_u64 as i64));
        let z = _mm512_xor_si512(z, _mm512_srli_epi64::<27>(z));
        let z = _mm512_mullo_epi64(z, _mm512_set1_epi64(0x94d0_49bb_1331_11eb_u64 as i64));
        _mm512_xor_si512(z, _mm512_srli_epi64::<31>(z))
    };
    let s = _mm256_set1_ps(1.0 / (1.0 - p));
    let pv = _mm256_set1_ps(p);
    let unit = _mm256_set1_ps(1.0 / 16_777_216.0);
    // Lane l holds the state base + (offset + i + l)·γ of its counter; a step adds 8·γ.
    let first = stream(seed).wrapping_add(offset.wrapping_mul(GAMMA));
    let lane = |l: u64| first.wrapping_add(l.wrapping_mul(GAMMA)) as i64;
    let mut state = _mm512_setr_epi64(
        lane(0),
        lane(1),
        lane(2),
        lane(3),
        lane(4),
        lane(5),
        lane(6),
        lane(7),
    );
    let step = _mm512_set1_epi64(8u64.wrapping_mul(GAMMA) as i64);
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let h = mix(state);
        // The top 24 bits, exactly representable, times 2⁻²⁴: the scalar u.
        let u = _mm256_mul_ps(_mm512_cvtepi64_ps(_mm512_srli_epi64::<40>(h)), unit);
        let kept = _mm256_cmp_ps::<_CMP_GE_OQ>(u, pv);
        // SAFETY: i + 8 ≤ n, inside x and out.
        let xv = unsafe { _mm256_loadu_ps(x.add(i)) };
        let v = _mm256_and_ps(_mm256_mul_ps(xv, s), kept);
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(out.add(i), v) };
        state = _mm512_add_epi64(state, step);
        i += 8;
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level against the scalar loop, bit for bit, at lengths around the vector width
    /// and a nonzero offset; and the drop rate.
    #[test]
    fn levels_agree_with_the_scalar_loop() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        for n in [0, 1, 7, 8, 9, 17, 1000] {
            for (p, seed, offset) in [(0.25, 1, 0), (0.5, u64::MAX, 12_345), (0.0, 7, 3)] {
                // The definition, element by element.
                let want: Vec<f32> = (0..n)
                    .map(|i| match keep(seed, offset + i as u64, p) {
                        true => x[i] * (1.0 / (1.0 - p)),
                        false => 0.0,
                    })
                    .collect();
                // The in-place form, at every level, is the same function.
                for level in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
                    let mut z = x[..n].to_vec();
                    dropout_in_place_isa(level.min(isa::detected()), &mut z, p, seed, offset);
                    assert_eq!(
                        z.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "in place, {level:?} n {n}"
                    );
                }
                for level in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
                    let level = level.min(isa::detected());
                    let mut got = vec![f32::NAN; n];
                    let _ = dropout_isa(level, &x[..n], Fill::from(&mut got[..]), p, seed, offset);
                    let (g, w): (Vec<u32>, Vec<u32>) = (
                        got.iter().map(|v| v.to_bits()).collect(),
                        want.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(g, w, "{level:?} n {n} p {p} seed {seed} offset {offset}");
                }
            }
        }
        let ones = vec![1.0f32; 100_000];
        let mut y = vec![0.0f32; 100_000];
        let _ = dropout(&ones, Fill::from(&mut y[..]), 0.3, 42, 0);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / 1e5;
        assert!((dropped - 0.3).abs() < 0.01, "drop rate {dropped}");
    }
}
