//! The dot form of `gemv` on bf16 values with `vdpbf16ps` (AVX-512 BF16): C[i, j] (+)=
//! ⟨A_i, W_j⟩ over rows contiguous along k, 32 values (16 pairs) per instruction, each
//! pair's products summed into an f32 lane (the pairing of the packed bf16 kernels), then
//! across lanes. Rows are bf16 (`bgemm`) or f32 rounded to bf16 as they are loaded
//! (`sgemm_batched_bf16`, nearest even by `vcvtne2ps2bf16`, which reads subnormal inputs as
//! 0). For decoding, where the packed path spends its time packing W.

use std::arch::x86_64::*;

use half::bf16;

use super::gemv::{prefetch_line_of_rows, prefetch_next_rows, put, stream_rows, Job};
use crate::backend::cpu::isa::Isa;

/// bf16 values per vector.
const L: usize = 32;

/// An element type whose rows the kernel reads as bf16 vectors.
pub(super) trait Bf16Row: Copy {
    /// The f32 dot form for rows of this type widened to f32 as they are loaded, where that
    /// computes the same products (bf16 rows: exactly); `None` for f32 rows, which the f32
    /// paths round to bf16 first.
    const WIDENED: Option<fn(Isa, Job<'_, Self>)>;
    /// The axpy form (B's rows contiguous along n) on rows of this type widened to f32 as
    /// they are loaded, on every path (bf16: exact products, f32 sums); `None` for f32 rows,
    /// which would have to be rounded to bf16 first.
    const AXPY: Option<fn(Isa, Job<'_, Self>)>;
    /// Whether the AMX kernel reads rows of this type in place (bf16: no conversion).
    const AMX_IN_PLACE: bool;
    /// 32 values at `p` as bf16, the first `n` of them when n < 32 (the rest 0).
    ///
    /// # Safety
    /// Inlined into a function with AVX-512 F/BW and BF16 enabled; the `n` values (at most
    /// 32) lie inside their buffer.
    unsafe fn load(p: *const Self, n: usize) -> __m512bh;
}

impl Bf16Row for bf16 {
    const WIDENED: Option<fn(Isa, Job<'_, bf16>)> = Some(super::gemv::dot_bf16);
    const AXPY: Option<fn(Isa, Job<'_, bf16>)> = Some(super::gemv::axpy_bf16);
    const AMX_IN_PLACE: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const bf16, n: usize) -> __m512bh {
        let v = if n >= L {
            _mm512_loadu_si512(p.cast())
        } else {
            _mm512_maskz_loadu_epi16(((1u64 << n) - 1) as __mmask32, p.cast())
        };
        std::mem::transmute::<__m512i, __m512bh>(v)
    }
}

impl Bf16Row for f32 {
    const WIDENED: Option<fn(Isa, Job<'_, f32>)> = None;
    const AXPY: Option<fn(Isa, Job<'_, f32>)> = None;
    const AMX_IN_PLACE: bool = false;
    #[inline(always)]
    unsafe fn load(p: *const f32, n: usize) -> __m512bh {
        let half = |p: *const f32, n: usize| {
            if n >= 16 {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p)
            }
        };
        let lo = half(p, n.min(16));
        let hi = if n > 16 {
            half(p.add(16), n - 16)
        } else {
            _mm512_setzero_ps()
        };
        // Lanes 0..16 from `lo`, 16..32 from `hi`.
        _mm512_cvtne2ps_pbh(hi, lo)
    }
}

/// Columns j0..j1 of one job (rows of A and W contiguous along k: a_cs = 1, b_rs = 1).
///
/// # Safety
/// The CPU has AVX-512 F/BW and BF16; the job's rows, columns and k lie inside A, B and C.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn dot<T: Bf16Row>(job: Job<'_, T>) {
    match (job.m, stream_rows(&job)) {
        (1, true) => rows_streamed::<T, 1, 8>(&job),
        (2, true) => rows_streamed::<T, 2, 4>(&job),
        (1, _) => rows::<T, 1, 4>(&job),
        (2, _) => rows::<T, 2, 4>(&job),
        (3, _) => rows::<T, 3, 2>(&job),
        _ => rows::<T, 4, 2>(&job),
    }
}

/// The columns of a job one W row after another (`gemv::stream_rows`).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_streamed<T: Bf16Row, const R: usize, const U: usize>(job: &Job<'_, T>) {
    for j in job.j0..job.j1 {
        row::<T, R, U>(job, j);
    }
}

/// C[0..R, j] (+)= A[0..R, :]·W_jᵀ, with U accumulators per row of A (vector chunk u of
/// each group of U into accumulator u, so that U chains of `vdpbf16ps` overlap), summed at
/// the end.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn row<T: Bf16Row, const R: usize, const U: usize>(job: &Job<'_, T>, j: usize) {
    let (a, w, k) = (job.a.as_ptr(), job.b.as_ptr().add(j * job.b_cs), job.k);
    let mut s = [[_mm512_setzero_ps(); U]; R];
    let mut p = 0;
    // Whole groups of U chunks (indices known at compile time, so the accumulators stay in
    // registers).
    while p + U * L <= k {
        for u in 0..U {
            let at = p + u * L;
            let wv = T::load(w.add(at), L);
            for (r, row) in s.iter_mut().enumerate() {
                let av = T::load(a.add(r * job.a_rs + at), L);
                row[u] = _mm512_dpbf16_ps(row[u], av, wv);
            }
        }
        p += U * L;
    }
    // The rest (fewer than U chunks, the last one short) into accumulator 0.
    while p < k {
        let n = (k - p).min(L);
        let wv = T::load(w.add(p), n);
        for (r, row) in s.iter_mut().enumerate() {
            let av = T::load(a.add(r * job.a_rs + p), n);
            row[0] = _mm512_dpbf16_ps(row[0], av, wv);
        }
        p += n;
    }
    for (r, row) in s.iter().enumerate() {
        let sum = row[1..].iter().fold(row[0], |x, &y| _mm512_add_ps(x, y));
        put(job, r, j, _mm512_reduce_add_ps(sum));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows<T: Bf16Row, const R: usize, const Q: usize>(job: &Job<'_, T>) {
    let mut j = job.j0;
    while j + Q <= job.j1 {
        block::<T, R, Q>(job, j);
        j += Q;
    }
    while j < job.j1 {
        block::<T, R, 1>(job, j);
        j += 1;
    }
}

/// C[0..R, j..j+Q] (+)= A[0..R, :]·W[j..j+Q, :]ᵀ.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn block<T: Bf16Row, const R: usize, const Q: usize>(job: &Job<'_, T>, j: usize) {
    let (a, w) = (job.a.as_ptr(), job.b.as_ptr().add(j * job.b_cs));
    let mut s = [[_mm512_setzero_ps(); Q]; R];
    let mut p = 0;
    // Short rows: the next block's rows, the lines of each that this k step covers in the
    // current block (one of bf16, two of f32; `prefetch_next_rows`).
    let size = std::mem::size_of::<T>();
    let ahead = prefetch_next_rows(job.k, size);
    let next = w.wrapping_add(Q * job.b_cs);
    while p < job.k {
        let n = (job.k - p).min(L);
        if ahead {
            for line in (0..L).step_by(64 / size) {
                prefetch_line_of_rows(next.wrapping_add(p + line), Q, job.b_cs);
            }
        }
        let wv: [__m512bh; Q] = std::array::from_fn(|q| T::load(w.add(q * job.b_cs + p), n));
        for (r, row) in s.iter_mut().enumerate() {
            let av = T::load(a.add(r * job.a_rs + p), n);
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
