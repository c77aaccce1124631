//! The gemv dot form for weight-only bf16 (a decoding step against bf16 matrices):
//!   C[i, j] (+)= ⟨A_i, widen(W_j)⟩,   A f32 (≤ 4 rows of a job), W_j bf16 rows along k.
//!
//! W is the stream (n × k values, A is at most 4 × k), so its loads must cost little more
//! than a load: 2·L bf16 of a row are read as L 32-bit lanes, each holding a pair (W[p],
//! W[p+1]). The even values are the lanes shifted up 16 bits and the odd ones the lanes with
//! the low half cleared (AVX-512: a load that zeroes it; AVX2: a mask), both exact f32, with
//! no lane shuffle. On 1 × 768 × 50257, 1 thread, Zen 4: 5.1–5.6 ms (14–15 GB/s of W),
//! against 6.2 ms widening each half with `vpmovzxwd`, 8.6–8.9 ms for f32 W and 4.6–5.3 ms
//! for `vdpbf16ps` on bf16 A (which rounds A); with W's rows read one after another
//! (`gemv::stream_rows`) 2.8 ms. A's rows are split once per job into the
//! matching (even, odd) vectors, zero past k; W's last partial step goes through a zeroed
//! buffer. Products are exact-input f32 FMAs as in the
//! f32 path; the sums run in another order (evens and odds interleaved per lane), so results
//! agree with it to rounding.

use half::bf16;

use super::gemv::{dot_scalar, prefetch_line_of_rows, prefetch_next_rows, put, stream_rows, Job};
use crate::backend::cpu::simd::{simd_kernel, Simd};

simd_kernel! {
    /// C[i, j] (+)= ⟨A_i, widen(W_j)⟩ for j in j0..j1 (A f32, W bf16 rows along k).
    pub(super) fn dot(job: Job<'_, f32, bf16>) = dot_simd | dot_scalar;
}

// SAFETY (of the pointer arithmetic below): `gemv::run_with` hands each job rows and columns
// inside the checked bounds of A, W and C (W_j's k values at j·b_cs, b_rs = 1; A's rows
// contiguous along k, a_cs = 1), and `split` holds m·steps·2L values.

#[inline(always)]
unsafe fn dot_simd<S: Simd>(job: Job<'_, f32, bf16>) {
    let step = 2 * S::LANES;
    let steps = job.k.div_ceil(step);
    // split[(r·steps + s)·2L ..]: row r's values at k = s·2L + 2i (i < L), then at
    // s·2L + 2i + 1.
    let mut split = vec![0.0f32; job.m * steps * step];
    for r in 0..job.m {
        let row = &job.a[r * job.a_rs..][..job.k];
        for (p, &x) in row.iter().enumerate() {
            let (s, q) = (p / step, p % step);
            split[(r * steps + s) * step + (q % 2) * S::LANES + q / 2] = x;
        }
    }
    let a = Split {
        v: &split,
        steps,
        step,
    };
    // 3–4 rows take twice the columns in AVX-512's 32 registers (m × 768 × 50257, 1 thread,
    // Zen 4: m = 4 9.1 → 7.8 ms, m = 3 7.8–8.1 → 7.4; m = 2 gained nothing from 6).
    let wide = S::LANES == 16;
    match (job.m, wide, stream_rows(&job)) {
        // One W row after another (`gemv::stream_rows`), U accumulators per row of A (step s
        // of each group of U into accumulator s mod U, so that U chains of multiply-adds
        // overlap).
        (1, _, true) => rows_streamed::<S, 1, 4>(&job, &a),
        (2, _, true) => rows_streamed::<S, 2, 2>(&job, &a),
        (1, _, _) => rows::<S, 1, 4>(&job, &a),
        (2, _, _) => rows::<S, 2, 4>(&job, &a),
        (3, true, _) => rows::<S, 3, 4>(&job, &a),
        (3, false, _) => rows::<S, 3, 2>(&job, &a),
        (_, true, _) => rows::<S, 4, 4>(&job, &a),
        (_, false, _) => rows::<S, 4, 2>(&job, &a),
    }
}

/// A's rows split into (even, odd) halves per step of 2L values.
struct Split<'a> {
    v: &'a [f32],
    steps: usize,
    step: usize,
}

#[inline(always)]
unsafe fn rows<S: Simd, const R: usize, const Q: usize>(job: &Job<'_, f32, bf16>, a: &Split<'_>) {
    let mut j = job.j0;
    while j + Q <= job.j1 {
        block::<S, R, Q>(job, a, j);
        j += Q;
    }
    while j < job.j1 {
        block::<S, R, 1>(job, a, j);
        j += 1;
    }
}

/// The columns of a job one W row after another (`gemv::stream_rows`).
#[inline(always)]
unsafe fn rows_streamed<S: Simd, const R: usize, const U: usize>(
    job: &Job<'_, f32, bf16>,
    a: &Split<'_>,
) {
    for j in job.j0..job.j1 {
        row::<S, R, U>(job, a, j);
    }
}

/// C[0..R, j] (+)= A[0..R, :]·widen(W_j)ᵀ. Plain loops and `inline(always)` helpers only: a
/// closure here is not inlined into the `target_feature` caller, and its intrinsics then
/// run as calls (seen in a profile as a separate `_mm512_fmadd_ps`).
#[inline(always)]
unsafe fn row<S: Simd, const R: usize, const U: usize>(
    job: &Job<'_, f32, bf16>,
    a: &Split<'_>,
    j: usize,
) {
    let k = job.k;
    let w = job.b.as_ptr().add(j * job.b_cs).cast::<u16>();
    let mut acc = [[S::splat(0.0); U]; R];
    let full = k / a.step;
    let mut s = 0;
    // Whole groups of U steps, step u of a group into accumulator u (indices known at
    // compile time, so the accumulators stay in registers).
    while s + U <= full {
        for u in 0..U {
            let wv = S::load_bf16_pairs(w.add((s + u) * a.step));
            step_one::<S, R, U>(&mut acc, a, s + u, wv, u);
        }
        s += U;
    }
    while s < full {
        let wv = S::load_bf16_pairs(w.add(s * a.step));
        step_one::<S, R, U>(&mut acc, a, s, wv, 0);
        s += 1;
    }
    if full < a.steps {
        let (p, t) = (full * a.step, k - full * a.step);
        // At most 2 × 16 values (AVX-512), zero past k.
        let mut buf = [0u16; 32];
        std::ptr::copy_nonoverlapping(w.add(p), buf.as_mut_ptr(), t);
        let wv = S::load_bf16_pairs(buf.as_ptr());
        step_one::<S, R, U>(&mut acc, a, full, wv, 0);
    }
    for (r, row) in acc.iter().enumerate() {
        let sum = row[1..].iter().fold(row[0], |x, &y| S::add(x, y));
        put(job, r, j, S::hsum(sum));
    }
}

/// C[0..R, j..j+Q] (+)= A[0..R, :]·widen(W[j..j+Q, :])ᵀ. Plain loops and `inline(always)`
/// helpers only: a closure here is not inlined into the `target_feature` caller, and its
/// intrinsics then run as calls (seen in a profile as a separate `_mm512_fmadd_ps`).
#[inline(always)]
unsafe fn block<S: Simd, const R: usize, const Q: usize>(
    job: &Job<'_, f32, bf16>,
    a: &Split<'_>,
    j: usize,
) {
    let k = job.k;
    let w = job.b.as_ptr().add(j * job.b_cs).cast::<u16>();
    let mut acc = [[S::splat(0.0); Q]; R];
    let mut wv = [(S::splat(0.0), S::splat(0.0)); Q];
    let full = k / a.step;
    // Short rows: the next block's rows, a line of each per 64 bytes of a row
    // (`prefetch_next_rows`).
    let ahead = prefetch_next_rows(k, 2);
    let next = w.wrapping_add(Q * job.b_cs);
    for s in 0..full {
        let p = s * a.step;
        if ahead && (p * 2).is_multiple_of(64) {
            prefetch_line_of_rows(next.wrapping_add(p), Q, job.b_cs);
        }
        for (q, v) in wv.iter_mut().enumerate() {
            *v = S::load_bf16_pairs(w.add(q * job.b_cs + p));
        }
        step::<S, R, Q>(&mut acc, a, s, &wv);
    }
    if full < a.steps {
        let (p, t) = (full * a.step, k - full * a.step);
        for (q, v) in wv.iter_mut().enumerate() {
            // At most 2 × 16 values (AVX-512), zero past k.
            let mut buf = [0u16; 32];
            std::ptr::copy_nonoverlapping(w.add(q * job.b_cs + p), buf.as_mut_ptr(), t);
            *v = S::load_bf16_pairs(buf.as_ptr());
        }
        step::<S, R, Q>(&mut acc, a, full, &wv);
    }
    for (r, row) in acc.iter().enumerate() {
        for (q, &x) in row.iter().enumerate() {
            put(job, r, j + q, S::hsum(x));
        }
    }
}

/// One step of 2L values: each row's (even, odd) halves against W's, into `acc`.
#[inline(always)]
unsafe fn step<S: Simd, const R: usize, const Q: usize>(
    acc: &mut [[S::V; Q]; R],
    a: &Split<'_>,
    s: usize,
    wv: &[(S::V, S::V); Q],
) {
    let av = a.v.as_ptr();
    for (r, row) in acc.iter_mut().enumerate() {
        let ar = av.add((r * a.steps + s) * a.step);
        let (ae, ao) = (S::load(ar), S::load(ar.add(S::LANES)));
        for (x, &(we, wo)) in row.iter_mut().zip(wv) {
            *x = S::fmadd(ao, wo, S::fmadd(ae, we, *x));
        }
    }
}

/// One step of 2L values: each row's (even, odd) halves against W's, into accumulator `u`.
#[inline(always)]
unsafe fn step_one<S: Simd, const R: usize, const U: usize>(
    acc: &mut [[S::V; U]; R],
    a: &Split<'_>,
    s: usize,
    (we, wo): (S::V, S::V),
    u: usize,
) {
    let av = a.v.as_ptr();
    for (r, row) in acc.iter_mut().enumerate() {
        let ar = av.add((r * a.steps + s) * a.step);
        let (ae, ao) = (S::load(ar), S::load(ar.add(S::LANES)));
        row[u] = S::fmadd(ao, wo, S::fmadd(ae, we, row[u]));
    }
}
