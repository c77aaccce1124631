//! Multiply-add throughput probes: the machine's peak, against which GEMM efficiency is
//! reported. `fma_probe` runs `iters` rounds of `ACC` independent FMA chains (enough in
//! flight to cover FMA latency × ports) and returns the flops it performed, 2 per lane per
//! FMA; `bf16_dot_probe` does the same with `vdpbf16ps`, `amx_probe` with AMX tiles.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::backend::cpu::isa::Isa;

/// Independent accumulators: latency 4 × 2 ports needs ≥ 8; more hides scheduling noise.
const ACC: usize = 16;
/// The AVX2 probe's accumulators: with its two constants they must fit the 16 ymm registers
/// (with 16 the chains spilled to the stack and the probe read ~54 GFLOP/s on the Intel
/// EMR host, where the 6 × 16 kernel ran at 60 and MKL's AVX2 path at 80).
const ACC_256: usize = 12;

/// Runs the probe at `level` (clamped by the caller to what the CPU has) and returns
/// (flops performed, a checksum that keeps the work observable).
pub fn fma_probe(level: Isa, iters: usize) -> (f64, f32) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller passes a level the CPU supports (`isa::detected()` clamps).
        Isa::Avx512 => (iters as f64 * (ACC * 16 * 2) as f64, unsafe {
            probe512(iters)
        }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => (iters as f64 * (ACC_256 * 8 * 2) as f64, unsafe {
            probe256(iters)
        }),
        _ => {
            let mut acc = [1.0f32; ACC];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
                std::hint::black_box(&mut acc);
            }
            (iters as f64 * (ACC * 2) as f64, acc.iter().sum())
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn probe512(iters: usize) -> f32 {
    let mut acc = [_mm512_set1_ps(1.0); ACC];
    let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn probe256(iters: usize) -> f32 {
    let mut acc = [_mm256_set1_ps(1.0); ACC_256];
    let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut lanes = [0.0f32; 8];
    for a in acc {
        let mut t = [0.0f32; 8];
        // SAFETY: `t` holds 8 floats.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), a) };
        for (l, v) in lanes.iter_mut().zip(t) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

/// The `vdpbf16ps` counterpart of `fma_probe` (AVX-512 BF16): `iters` rounds of `ACC`
/// independent chains, 16 lanes × 2 products × 2 flops per instruction. Returns
/// (flops, checksum); `None` when the CPU lacks the instruction.
pub fn bf16_dot_probe(iters: usize) -> Option<(f64, f32)> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::backend::cpu::isa::has_avx512_bf16() {
            // SAFETY: the CPU has AVX-512F and AVX-512 BF16 (checked just above).
            let sum = unsafe { probe_dpbf16(iters) };
            return Some((iters as f64 * (ACC * 16 * 4) as f64, sum));
        }
    }
    let _ = iters;
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn probe_dpbf16(iters: usize) -> f32 {
    let mut acc = [_mm512_set1_ps(1.0); ACC];
    // Pairs of bf16 1.0 (0x3f80) in every 32-bit lane.
    // SAFETY: __m512i and __m512bh are both 512-bit plain vectors.
    let x: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80)) };
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbf16_ps(*a, x, x);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// The AMX counterpart of `fma_probe`: `iters` rounds of four independent `tdpbf16ps` on
/// tiles held in registers (`amx::tdp_probe`), 16 × 16 × 32 × 2 flops each. Returns
/// (flops, checksum); `None` when AMX tiles are not usable here.
pub fn amx_probe(iters: usize) -> Option<(f64, f32)> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::backend::cpu::isa::amx_bf16_usable() {
            // SAFETY: the CPU has AMX and the tile state is granted (checked just above).
            let sum = unsafe { super::amx::tdp_probe(iters) };
            return Some((iters as f64 * (4 * 16 * 16 * 32 * 2) as f64, sum));
        }
    }
    let _ = iters;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_probe_multiplies_what_it_counts() {
        // Every operand is 2^-10: after n rounds each element of a C tile holds n · 32 products
        // of 2^-20, exactly representable.
        let Some((flops, sum)) = amx_probe(10) else {
            eprintln!("amx_probe: AMX tiles not usable on this CPU, skipped");
            return;
        };
        assert_eq!(flops, 10.0 * 4.0 * 16.0 * 16.0 * 32.0 * 2.0);
        assert_eq!(sum, 10.0 * 32.0 * (2.0f32).powi(-20));
        assert_eq!(amx_probe(0).map(|r| r.1), Some(0.0));
    }
}
