//! Whole-buffer conversions between f32 and bf16, for casting a model's matrices:
//!   f32 → bf16: round to nearest even, exactly as `half::bf16::from_f32` (NaN quieted,
//!               overflow to ±∞), branch-free so the loop vectorises;
//!   bf16 → f32: exact (the bits shifted up 16).
//! Chunks of `CHUNK` elements run on the rayon threads; each element is independent, so the
//! result does not depend on the thread count.

use half::bf16;
use rayon::prelude::*;

use super::gemm::f32_to_bf16_bits;

/// Elements per parallel task (256 KiB of f32).
const CHUNK: usize = 64 * 1024;

/// dst[i] = bf16(src[i]), rounded to nearest even. The lengths must match.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
    par_map(src, dst, |x| bf16::from_bits(f32_to_bf16_bits(x)));
}

/// dst[i] = f32(src[i]) (exact). The lengths must match.
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    par_map(src, dst, |x| f32::from_bits((x.to_bits() as u32) << 16));
}

/// dst[i] = f(src[i]), `CHUNK` elements per task.
fn par_map<S: Copy + Sync, D: Send>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D + Sync) {
    assert_eq!(src.len(), dst.len(), "convert: lengths differ");
    let _region = crate::backend::cpu::threads::region();
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = f(x);
            }
        });
}

/// `f32_to_bf16` into a new vector.
pub fn to_bf16_vec(src: &[f32]) -> Vec<bf16> {
    let mut v = vec![bf16::ZERO; src.len()];
    f32_to_bf16(src, &mut v);
    v
}

/// `bf16_to_f32` into a new vector.
pub fn to_f32_vec(src: &[bf16]) -> Vec<f32> {
    let mut v = vec![0.0f32; src.len()];
    bf16_to_f32(src, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_match_half_across_chunks() {
        // Every class of input (the rounding itself is checked exhaustively by class in
        // gemm::pack's tests), over more than one chunk, on two threads.
        let mut bits: Vec<u32> = vec![0, 0x8000_0000, 0x7F80_0000, 0x7FC0_0001, 0x0000_8000];
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        while bits.len() < 3 * CHUNK + 17 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bits.push(s as u32);
        }
        let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (h, w) = pool.install(|| {
            let h = to_bf16_vec(&x);
            let w = to_f32_vec(&h);
            (h, w)
        });
        for (i, (&xi, hi)) in x.iter().zip(&h).enumerate() {
            assert_eq!(hi.to_bits(), bf16::from_f32(xi).to_bits(), "element {i}");
            assert_eq!(w[i].to_bits(), hi.to_f32().to_bits(), "element {i} widened");
        }
    }
}
