//! The dot form of `gemv` on bf16 operands with `vdpbf16ps` (AVX-512 BF16): C[i, j] (+)=
//! ⟨A_i, W_j⟩ over bf16 rows contiguous along k, 32 values (16 pairs) per instruction, each
//! pair's products summed into an f32 lane (the pairing of the packed bf16 kernels), then
//! across lanes. For decoding with bf16 weights, where the packed path spends its time
//! packing W.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::bf16;

use super::gemv::{put, Job};

/// bf16 values per vector.
const L: usize = 32;

/// Columns j0..j1 of one job (rows of A and W contiguous along k: a_cs = 1, b_rs = 1).
///
/// # Safety
/// The CPU has AVX-512 F/BW and BF16; the job's rows, columns and k lie inside A, B and C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn dot(job: Job<'_, bf16>) {
    match job.m {
        1 => rows::<1, 4>(&job),
        2 => rows::<2, 4>(&job),
        3 => rows::<3, 2>(&job),
        _ => rows::<4, 2>(&job),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows<const R: usize, const Q: usize>(job: &Job<'_, bf16>) {
    let mut j = job.j0;
    while j + Q <= job.j1 {
        block::<R, Q>(job, j);
        j += Q;
    }
    while j < job.j1 {
        block::<R, 1>(job, j);
        j += 1;
    }
}

/// 32 bf16 values at `p`, the first `n` of them when n < 32 (the rest 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn load(p: *const bf16, n: usize) -> __m512bh {
    let v = if n >= L {
        _mm512_loadu_si512(p.cast())
    } else {
        _mm512_maskz_loadu_epi16(((1u64 << n) - 1) as __mmask32, p.cast())
    };
    std::mem::transmute::<__m512i, __m512bh>(v)
}

/// C[0..R, j..j+Q] (+)= A[0..R, :]·W[j..j+Q, :]ᵀ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn block<const R: usize, const Q: usize>(job: &Job<'_, bf16>, j: usize) {
    let (a, w) = (job.a.as_ptr(), job.b.as_ptr().add(j * job.b_cs));
    let mut s = [[_mm512_setzero_ps(); Q]; R];
    let mut p = 0;
    while p < job.k {
        let n = (job.k - p).min(L);
        let wv: [__m512bh; Q] = std::array::from_fn(|q| load(w.add(q * job.b_cs + p), n));
        for (r, row) in s.iter_mut().enumerate() {
            let av = load(a.add(r * job.a_rs + p), n);
            for (acc, &x) in row.iter_mut().zip(&wv) {
                *acc = _mm512_dpbf16_ps(*acc, av, x);
            }
        }
        p += n;
    }
    for (r, row) in s.iter().enumerate() {
        for (q, &acc) in row.iter().enumerate() {
            put(job, r, j + q, _mm512_reduce_add_ps(acc));
        }
    }
}
