//! A floating-point multiply-add throughput probe: the machine's FMA peak, against which
//! GEMM efficiency is reported. Each call runs `iters` rounds of `ACC` independent FMA chains
//! (enough in flight to cover FMA latency × ports) and returns the flops it performed,
//! 2 per lane per FMA.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::backend::cpu::isa::Isa;

/// Independent accumulators: latency 4 × 2 ports needs ≥ 8; more hides scheduling noise.
const ACC: usize = 16;

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
        Isa::Avx2 => (iters as f64 * (ACC * 8 * 2) as f64, unsafe {
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
    let mut acc = [_mm256_set1_ps(1.0); ACC];
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
