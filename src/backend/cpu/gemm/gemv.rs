//! Skinny f32 GEMM, m ≤ 8 rows (a decoding step: one token per sequence), straight from B
//! where it lies. The packed path copies every element of B once more and feeds a 12-row
//! kernel mostly empty rows; here a group of up to 4 rows reads B once, so the product runs
//! at the speed B streams in (1 × 768 × 3072 x·Wᵀ went from 0.79 to 0.11 ms, 1 thread, Zen 4).
//!
//! - dot form, B = Wᵀ with W's rows contiguous along k (Linear's x·Wᵀ, tied LM heads):
//!   C[i, j] = ⟨A_i, W_j⟩, an R × Q block of vector accumulators over k, each summed across
//!   its lanes at the end. A's rows must be contiguous along k (copied when they are not).
//! - axpy form, B's rows contiguous along n (x·W): C[i, j..] = Σ_p A[i, p]·B[p, j..]. One
//!   row: sweeps of 4 rows of B at a time over blocks of C held in L1 (B's rows stream
//!   contiguously); more rows: R × V vectors of C in registers over all of k.
//!
//! Rows go in groups of at most 4, each group reading B once. C's rows must be contiguous
//! (other layouts, and m > 8, take the packed path). Columns are split over the threads (or
//! batch entries, when there are enough), each streaming its own part of B. Sums run in a
//! different order than the packed kernels: results agree to rounding.

use half::bf16;
use rayon::prelude::*;

use super::driver::{COut, PAR_MIN_MACS};
use super::pack::PAGE_BYTES;
use super::GemmLayout;
use crate::backend::cpu::isa::Isa;
use crate::backend::cpu::simd::{simd_kernel, Simd};

/// Most rows of A this path takes, in groups of at most `GROUP` (each group reads its
/// columns of B once: with B in L3, 8 × 768 × 3072 in two groups ran 2× faster than packed).
pub(super) const MAX_M: usize = 8;
/// Rows per kernel call (but see `group`).
const GROUP: usize = 4;

/// Rows per kernel call of `form` at `level`: GROUP, but all of up to 8 rows at once in the
/// axpy form on AVX-512 (8 rows × 2 vectors: 16 accumulators of its 32 registers), so that
/// B's rows, strided n apart, are read once rather than once per 4 rows. Intel EMR, in
/// process, 1 thread, with `axpy_block`'s prefetch: 8 × 768 × 3072 +15%, 8 × 3072 × 768
/// +22%, 8 × 768 × 768 +10%.
pub(super) fn group(form: Form, level: Isa) -> usize {
    match (form, level) {
        (Form::Axpy, Isa::Avx512) => MAX_M,
        _ => GROUP,
    }
}
/// Floats in half of a 1 MiB L2.
const L2_HALF_FLOATS: usize = 128 * 1024;
/// Column chunks handed to threads are multiples of this: whole vectors and register blocks
/// (at most 64 columns) of either form at either width.
const CHUNK_ALIGN: usize = 64;

/// Whether a dot form prefetches the next block's rows of W as it reads the current block:
/// when a row is shorter than a page, each is a short stream that the hardware prefetchers
/// pick up late. Intel EMR, rows of 768, in-process alternation, medians of 10-12, 1 / 2
/// threads: bf16 A and W (`gemv_bf16`) the LM head 1 × 768 × 50257 +18% / +23%, 2 × 768 ×
/// 3072 +17%, 1 × 768 × 3072 0 / +24%; f32 A, bf16 W (`gemv_wbf16`) the LM head +16% /
/// +39%, 1 × 768 × 3072 +12% / +38%, 8 × 768 × 3072 +16% / +20%; f32 (`dot`), W streamed
/// from memory (batches of distinct W past the L3): the LM head +5% / −4%, 8 × 768 × 3072
/// +23% / +7%, 4 × 768 × 2304 +17% / +18%. Rows of 3072 (6 KiB and more) lost up to 5%
/// with it, so do not.
pub(super) fn prefetch_next_rows(k: usize, elem_bytes: usize) -> bool {
    k * elem_bytes < PAGE_BYTES
}

/// Whether a dot form job reads W's rows one after another rather than a few side by side:
/// with at most `STREAM_MAX_M` rows of A and at least `STREAM_MIN_BYTES` of W in the job,
/// which then most likely comes from memory (a decoding step reads each weight matrix once
/// per token, after every other layer's). Rows adjacent in W (a weight matrix's x·Wᵀ) are
/// then one sequential stream, which the hardware prefetchers follow to the memory's
/// bandwidth; rows side by side are as many short streams, each picked up late (with the
/// next rows prefetched). Side by side, each vector of A serves several rows of W: from
/// cache, and with more rows of A, that wins. Zen 4, `tools/ab_bins.py`, side by side /
/// streamed time, 1 / 2 threads: a GPT-2 124M decoding step (`bench decode`), bf16 weights
/// 1.90 / 1.47 (22.3 → 11.7 ms a token, W at 21 GB/s), f32 weights 1.36 / 1.02, bf16 batch
/// 2 1.29 / 1.12 (batch 8: not streamed, unchanged); the LM head 1 × 768 × 50257 in bf16
/// (`vdpbf16ps`) 2.59 / 1.74, f32 1.60 / 1.27; 4096 × 4096 × 1 in bf16 (rows of 8 KiB) 1.54
/// / 1.35. From cache (`bench gemm` repeats the same W) side by side wins: 1 × 768 × 2304
/// bf16 0.95, f32 A against bf16 W at m = 2 0.83 / 0.71; at m = 8 0.72.
pub(super) fn stream_rows<T, W>(job: &Job<'_, T, W>) -> bool {
    let row_bytes = job.k * std::mem::size_of::<W>();
    job.m <= STREAM_MAX_M
        && row_bytes <= STREAM_MAX_ROW_BYTES
        && (job.j1 - job.j0) * row_bytes >= STREAM_MIN_BYTES
}

/// See `stream_rows`.
const STREAM_MAX_M: usize = 2;
/// See `stream_rows`.
const STREAM_MIN_BYTES: usize = 1 << 20;
/// Rows up to two pages: longer ones are long streams that the prefetchers pick up well
/// side by side, where more of them in flight pull more bandwidth (f32 4096 × 4096 × 1,
/// rows of 16 KiB, one after another: 0.83 / 0.87 of side by side).
const STREAM_MAX_ROW_BYTES: usize = 2 * PAGE_BYTES;

/// Prefetches into L1 the line at `p` of each of `rows` rows `stride` elements apart. A hint:
/// it never faults, wherever the addresses point.
#[inline(always)]
pub(super) fn prefetch_line_of_rows<T>(p: *const T, rows: usize, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    for q in 0..rows {
        // SAFETY: prefetching never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(q * stride) as *const i8,
            )
        };
    }
}

/// Which form B's layout allows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Form {
    Dot,
    Axpy,
}

/// The form this path computes `l` in, or `None` when it is for the packed path: more than
/// MAX_M rows, C's rows not contiguous, or neither operand layout the forms read.
pub(super) fn form(l: &GemmLayout) -> Option<Form> {
    if l.c_cs != 1 || (l.m > 1 && l.c_rs < l.n) {
        return None;
    }
    form_any_c(l)
}

/// `form` for a C at any strides (the transposed C of `mod::narrow`): the dot form writes C
/// element by element; the axpy form stores vectors along C's rows, which must still be
/// contiguous.
pub(super) fn form_any_c(l: &GemmLayout) -> Option<Form> {
    let (m, n, k) = (l.m, l.n, l.k);
    if m == 0 || m > MAX_M || n == 0 || k == 0 {
        return None;
    }
    if l.b_rs == 1 {
        Some(Form::Dot)
    } else if l.b_cs == 1 && l.c_cs == 1 && (m == 1 || l.c_rs >= n) {
        Some(Form::Axpy)
    } else {
        None
    }
}

/// C_i = A_i·B_i (+ C_i when `accumulate`) for every batch entry, in `form` (from [`form`]),
/// at `level`. Bounds were checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    level: Isa,
    form: Form,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    accumulate: bool,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) {
    let kernel = |job: Job<'_, f32>| match form {
        Form::Dot => dot(level, job),
        Form::Axpy => axpy(level, job),
    };
    run_with(
        form, level, l, a, a_offsets, b, b_offsets, accumulate, c, c_offsets, kernel,
    );
}

/// `run` for any element types of A (`T`) and B (`W`), with `kernel` computing one job in
/// `form` at `level` (which sets the rows per job, `group`).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_with<T: Copy + Send + Sync, W: Copy + Send + Sync>(
    form: Form,
    level: Isa,
    l: &GemmLayout,
    a: &[T],
    a_offsets: &[usize],
    b: &[W],
    b_offsets: &[usize],
    accumulate: bool,
    c: &mut COut<'_>,
    c_offsets: &[usize],
    kernel: impl Fn(Job<'_, T, W>) + Sync,
) {
    let (m, n, k) = (l.m, l.n, l.k);
    let batch = a_offsets.len();
    // The dot form loads A's rows as vectors: gather a strided A once (m·k values).
    let gathered: Option<Vec<T>> = (form == Form::Dot && l.a_cs != 1 && k > 1)
        .then(|| gather_rows(a, a_offsets, m, k, l.a_rs, l.a_cs));
    let (a, a_rs, a_cs, a_off): (&[T], usize, usize, Vec<usize>) = match &gathered {
        Some(g) => (g, k, 1, (0..batch).map(|i| i * m * k).collect()),
        None => (a, l.a_rs, l.a_cs, a_offsets.to_vec()),
    };
    let cp = c.ptr();
    // With several groups, the columns go in pieces whose part of B (k values per column)
    // fits in half of L2, so groups after the first read it from there.
    let group = group(form, level);
    let piece = if m > group {
        (L2_HALF_FLOATS / k).max(1).next_multiple_of(CHUNK_ALIGN)
    } else {
        n
    };
    let cols = |i: usize, j0: usize, j1: usize| {
        for (p0, g) in (j0..j1)
            .step_by(piece)
            .flat_map(|p0| (0..m).step_by(group).map(move |g| (p0, g)))
        {
            let (j0, j1) = (p0, (p0 + piece).min(j1));
            let job = Job {
                a: &a[a_off[i] + g * a_rs..],
                a_rs,
                a_cs,
                m: (m - g).min(group),
                b: &b[b_offsets[i]..],
                b_rs: l.b_rs,
                b_cs: l.b_cs,
                k,
                j0,
                j1,
                c: cp.at(c_offsets[i] + g * l.c_rs),
                c_rs: l.c_rs,
                c_cs: l.c_cs,
                accumulate,
            };
            kernel(job);
        }
    };
    let threads = rayon::current_num_threads();
    let macs = batch * m * n * k;
    if threads == 1 || macs < PAR_MIN_MACS {
        (0..batch).for_each(|i| cols(i, 0, n));
        return;
    }
    let _region = crate::backend::cpu::threads::region();
    if batch >= threads {
        (0..batch).into_par_iter().for_each(|i| cols(i, 0, n));
    } else {
        let chunk = n.div_ceil(threads).next_multiple_of(CHUNK_ALIGN);
        (0..batch)
            .flat_map(|i| (0..n).step_by(chunk).map(move |j0| (i, j0)))
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|(i, j0)| cols(i, j0, (j0 + chunk).min(n)));
    }
}

/// A's m × k rows of every batch entry (element (i, p) at `o + i·rs + p·cs`) copied into
/// contiguous rows, entry after entry: g[(e·m + i)·k + p]. Walked along k outermost, so a
/// row-major Bᵀ source (`mod::narrow`: cs = the few columns, rs = 1) is read line by line.
/// Against collecting an iterator over (entry, i, p), bf16 dot form, 1 thread, in process:
/// 16 × 4096 × 8 5.1×, 64 × 4096 × 8 2.8×, 64 × 768 × 6 2.6×, 4096 × 768 × 6 ±0.
fn gather_rows<T: Copy>(
    a: &[T],
    offsets: &[usize],
    m: usize,
    k: usize,
    rs: usize,
    cs: usize,
) -> Vec<T> {
    let mut g = Vec::with_capacity(offsets.len() * m * k);
    for &o in offsets {
        let entry = &a[o..=o + (m - 1) * rs + (k - 1) * cs];
        let start = g.len();
        g.resize(start + m * k, entry[0]);
        let out = &mut g[start..];
        for p in 0..k {
            let line = &entry[p * cs..];
            for i in 0..m {
                out[i * k + p] = line[i * rs];
            }
        }
    }
    g
}

/// Columns j0..j1 of one problem. `a`, `b` start at the problem's A and B; `c` points at its
/// C[0, 0], element (i, j) at `c + i·c_rs + j·c_cs`. The dot form needs a_cs = 1 and
/// b_rs = 1, the axpy form b_cs = 1. A's elements are `T`, B's `W` (the same but for
/// weight-only bf16: f32 activations against bf16 weights).
#[derive(Clone, Copy)]
pub(super) struct Job<'a, T, W = T> {
    pub(super) a: &'a [T],
    pub(super) a_rs: usize,
    pub(super) a_cs: usize,
    pub(super) m: usize,
    pub(super) b: &'a [W],
    pub(super) b_rs: usize,
    pub(super) b_cs: usize,
    pub(super) k: usize,
    pub(super) j0: usize,
    pub(super) j1: usize,
    pub(super) c: *mut f32,
    pub(super) c_rs: usize,
    /// 1 for the axpy form (`form`).
    pub(super) c_cs: usize,
    pub(super) accumulate: bool,
}

// SAFETY (of every use of `Job::c` below): `run_with` hands each task a distinct column range
// of a distinct batch entry, whose C elements are distinct (the caller's contract: no zero
// stride, checked, and no overlapping layout); the axpy form's rows hold n ≥ j1 contiguous
// values (c_cs = 1, c_rs ≥ n, `form`); the bounds of A, B and C were checked by the caller.

simd_kernel! {
    /// C[i, j] (+)= ⟨A_i, W_j⟩ for j in j0..j1, W_j = B's column j (contiguous along k).
    fn dot(job: Job<'_, f32>) = dot_simd | dot_scalar;
}
simd_kernel! {
    /// `dot` on bf16 A and W, widened to f32 as they are loaded (exact), products and sums in
    /// f32: the bf16 decoding step on CPUs without AVX-512 BF16, where the packed path would
    /// widen all of W into panels first.
    pub(super) fn dot_bf16(job: Job<'_, bf16>) = dot_simd_bf16 | dot_scalar;
}

/// An element the dot form loads as f32 vectors.
pub(super) trait Elem: Copy {
    fn f32(self) -> f32;
    /// `S::LANES` values at `p` as f32.
    ///
    /// # Safety
    /// The values lie in their buffer; the CPU has `S`'s features.
    unsafe fn load<S: Simd>(p: *const Self) -> S::V;
    /// The first `n` < LANES values at `p` as f32, the other lanes 0.
    ///
    /// # Safety
    /// As `load`, for `n` values.
    unsafe fn load_tail<S: Simd>(p: *const Self, n: usize) -> S::V;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f32) -> S::V {
        S::load(p)
    }
    #[inline(always)]
    unsafe fn load_tail<S: Simd>(p: *const f32, n: usize) -> S::V {
        S::load_tail(p, n, 0.0)
    }
}

impl Elem for bf16 {
    /// The bits shifted into an f32's upper half: exact, and branch-free (`bf16::to_f32`
    /// also quiets NaNs, a compare and a select per value, which the axpy form paid for every
    /// element of A it broadcasts).
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const bf16) -> S::V {
        S::load_bf16(p.cast())
    }
    #[inline(always)]
    unsafe fn load_tail<S: Simd>(p: *const bf16, n: usize) -> S::V {
        // Through a zeroed buffer of one vector's values (LANES ≤ 16).
        let mut buf = [0u16; 16];
        std::ptr::copy_nonoverlapping(p.cast::<u16>(), buf.as_mut_ptr(), n);
        S::load_bf16(buf.as_ptr())
    }
}
simd_kernel! {
    /// C[i, j0..j1] (+)= Σ_p A[i, p]·B[p, j0..j1] (B's rows contiguous).
    fn axpy(job: Job<'_, f32>) = axpy_simd | axpy_scalar;
}
simd_kernel! {
    /// `axpy` on bf16 A and B, widened to f32 as they are loaded (exact products, f32 sums):
    /// a bf16 decoding step with W stored k × n (x·W), on every bf16 path.
    pub(super) fn axpy_bf16(job: Job<'_, bf16>) = axpy_simd_bf16 | axpy_scalar;
}

/// Writes `v` to C[i, j] of the job, or adds it.
///
/// # Safety
/// (i, j) lies in the job's rows and columns.
#[inline(always)]
pub(super) unsafe fn put<T, W>(job: &Job<'_, T, W>, i: usize, j: usize, v: f32) {
    let p = job.c.add(i * job.c_rs + j * job.c_cs);
    *p = if job.accumulate { *p + v } else { v };
}

/// The portable dot form, each sum in order of k (A's elements `E`, W's `F`).
pub(super) fn dot_scalar<E: Elem, F: Elem>(job: Job<'_, E, F>) {
    for i in 0..job.m {
        for j in job.j0..job.j1 {
            let w = &job.b[j * job.b_cs..];
            let s = (0..job.k).fold(0.0, |s, p| s + job.a[i * job.a_rs + p].f32() * w[p].f32());
            // SAFETY: see the note above `dot`.
            unsafe { put(&job, i, j, s) };
        }
    }
}

fn axpy_scalar<E: Elem>(job: Job<'_, E>) {
    // Row by row of B (contiguous), each column's sum still taken in order of p.
    let mut s = vec![0.0f32; job.j1 - job.j0];
    for i in 0..job.m {
        s.fill(0.0);
        for p in 0..job.k {
            let x = job.a[i * job.a_rs + p * job.a_cs].f32();
            let row = &job.b[p * job.b_rs + job.j0..][..s.len()];
            s.iter_mut().zip(row).for_each(|(s, &b)| *s += x * b.f32());
        }
        for (j, &v) in (job.j0..).zip(&s) {
            // SAFETY: see the note above `dot`.
            unsafe { put(&job, i, j, v) };
        }
    }
}

/// R rows × Q columns per block: R·Q accumulators, Q vectors of W and one of A live, within
/// AVX2's 16 registers, and with twice the columns for 2–4 rows within AVX-512's 32 (m × 768
/// × 50257, 1 thread, Zen 4: m = 2 9.5 → 8.0–8.3 ms, m = 4 12.9 → 11.1–11.5). One row takes
/// 8 columns at both widths (17 registers on AVX2), as W's rows are streams from memory and
/// more of them in flight pull more bandwidth: 1 × 768 × 50257 ran in 6.9–7.3 ms with 8
/// columns against 9.0–9.5 with 4 and 11.1 with 2; 12 or 16 gained nothing more.
#[inline(always)]
unsafe fn dot_simd<S: Simd>(job: Job<'_, f32>) {
    dot_any::<S, f32>(job)
}

#[inline(always)]
unsafe fn dot_simd_bf16<S: Simd>(job: Job<'_, bf16>) {
    dot_any::<S, bf16>(job)
}

#[inline(always)]
unsafe fn dot_any<S: Simd, E: Elem>(job: Job<'_, E>) {
    // AVX-512's 32 registers hold twice the columns of AVX2's 16 for several rows.
    let wide = S::LANES == 16;
    match (job.m, wide, stream_rows(&job)) {
        // One W row after another (`stream_rows`), U accumulators per row of A.
        (1, _, true) => dot_rows_streamed::<S, E, 1, 4>(&job),
        (2, _, true) => dot_rows_streamed::<S, E, 2, 2>(&job),
        (1, _, _) => dot_rows::<S, E, 1, 8>(&job),
        (2, true, _) => dot_rows::<S, E, 2, 8>(&job),
        (2, false, _) => dot_rows::<S, E, 2, 4>(&job),
        (3, true, _) => dot_rows::<S, E, 3, 4>(&job),
        (3, false, _) => dot_rows::<S, E, 3, 2>(&job),
        (_, true, _) => dot_rows::<S, E, 4, 4>(&job),
        (_, false, _) => dot_rows::<S, E, 4, 2>(&job),
    }
}

#[inline(always)]
unsafe fn dot_rows<S: Simd, E: Elem, const R: usize, const Q: usize>(job: &Job<'_, E>) {
    let mut j = job.j0;
    while j + Q <= job.j1 {
        dot_block::<S, E, R, Q>(job, j);
        j += Q;
    }
    while j < job.j1 {
        dot_block::<S, E, R, 1>(job, j);
        j += 1;
    }
}

/// The columns of a job one W row after another (`stream_rows`).
#[inline(always)]
unsafe fn dot_rows_streamed<S: Simd, E: Elem, const R: usize, const U: usize>(job: &Job<'_, E>) {
    for j in job.j0..job.j1 {
        dot_row::<S, E, R, U>(job, j);
    }
}

/// C[0..R, j] (+)= A[0..R, :]·W_jᵀ, with U accumulators per row of A (vector u of each group
/// of U into accumulator u, so that U chains of multiply-adds overlap), summed at the end.
#[inline(always)]
unsafe fn dot_row<S: Simd, E: Elem, const R: usize, const U: usize>(job: &Job<'_, E>, j: usize) {
    let (l, k) = (S::LANES, job.k);
    let a = job.a.as_ptr();
    let w = job.b.as_ptr().add(j * job.b_cs);
    let mut s = [[S::splat(0.0); U]; R];
    let mut p = 0;
    // Whole groups of U vectors (indices known at compile time, so the accumulators stay in
    // registers), then single vectors and the tail into accumulator 0.
    while p + U * l <= k {
        for u in 0..U {
            let at = p + u * l;
            let wv = E::load::<S>(w.add(at));
            for (r, row) in s.iter_mut().enumerate() {
                row[u] = S::fmadd(E::load::<S>(a.add(r * job.a_rs + at)), wv, row[u]);
            }
        }
        p += U * l;
    }
    while p + l <= k {
        let wv = E::load::<S>(w.add(p));
        for (r, row) in s.iter_mut().enumerate() {
            row[0] = S::fmadd(E::load::<S>(a.add(r * job.a_rs + p)), wv, row[0]);
        }
        p += l;
    }
    if p < k {
        let t = k - p;
        let wv = E::load_tail::<S>(w.add(p), t);
        for (r, row) in s.iter_mut().enumerate() {
            row[0] = S::fmadd(E::load_tail::<S>(a.add(r * job.a_rs + p), t), wv, row[0]);
        }
    }
    for (r, row) in s.iter().enumerate() {
        let sum = row[1..].iter().fold(row[0], |x, &y| S::add(x, y));
        put(job, r, j, S::hsum(sum));
    }
}

/// C[0..R, j..j+Q] (+)= A[0..R, :]·W[j..j+Q, :]ᵀ.
#[inline(always)]
unsafe fn dot_block<S: Simd, E: Elem, const R: usize, const Q: usize>(job: &Job<'_, E>, j: usize) {
    let (l, k) = (S::LANES, job.k);
    let a = job.a.as_ptr();
    let w = job.b.as_ptr().add(j * job.b_cs);
    let mut s = [[S::splat(0.0); Q]; R];
    let mut p = 0;
    // Short rows: the next block's rows, a line of each per 64 bytes of a row
    // (`prefetch_next_rows`).
    let ahead = prefetch_next_rows(k, std::mem::size_of::<E>());
    let next = w.wrapping_add(Q * job.b_cs);
    while p + l <= k {
        if ahead && (p * std::mem::size_of::<E>()).is_multiple_of(64) {
            prefetch_line_of_rows(next.wrapping_add(p), Q, job.b_cs);
        }
        let mut wv = [S::splat(0.0); Q];
        for (q, x) in wv.iter_mut().enumerate() {
            *x = E::load::<S>(w.add(q * job.b_cs + p));
        }
        for (r, row) in s.iter_mut().enumerate() {
            let av = E::load::<S>(a.add(r * job.a_rs + p));
            for (acc, &x) in row.iter_mut().zip(&wv) {
                *acc = S::fmadd(av, x, *acc);
            }
        }
        p += l;
    }
    if p < k {
        let t = k - p;
        let mut wv = [S::splat(0.0); Q];
        for (q, x) in wv.iter_mut().enumerate() {
            *x = E::load_tail::<S>(w.add(q * job.b_cs + p), t);
        }
        for (r, row) in s.iter_mut().enumerate() {
            let av = E::load_tail::<S>(a.add(r * job.a_rs + p), t);
            for (acc, &x) in row.iter_mut().zip(&wv) {
                *acc = S::fmadd(av, x, *acc);
            }
        }
    }
    for (r, row) in s.iter().enumerate() {
        for (q, &acc) in row.iter().enumerate() {
            put(job, r, j + q, S::hsum(acc));
        }
    }
}

/// One row: sweeps of 4 rows of B over blocks of C held in L1 (B's rows stream
/// contiguously). More rows: R × V vectors of C in registers over all of k (sweeps would
/// load and store R rows of C per 4 vectors of B: 4 × 768 × 3072 ran 1.7× slower that way).
/// Both within AVX2's 16 registers.
#[inline(always)]
unsafe fn axpy_simd<S: Simd>(job: Job<'_, f32>) {
    axpy_any::<S, f32>(job)
}

#[inline(always)]
unsafe fn axpy_simd_bf16<S: Simd>(job: Job<'_, bf16>) {
    axpy_any::<S, bf16>(job)
}

#[inline(always)]
unsafe fn axpy_any<S: Simd, E: Elem>(job: Job<'_, E>) {
    match job.m {
        1 => axpy_row::<S, E, 4>(&job),
        2 => axpy_tiles::<S, E, 2, 4>(&job),
        3 => axpy_tiles::<S, E, 3, 2>(&job),
        4 => axpy_tiles::<S, E, 4, 2>(&job),
        // Only at AVX-512 (`group`).
        5 => axpy_tiles::<S, E, 5, 2>(&job),
        6 => axpy_tiles::<S, E, 6, 2>(&job),
        7 => axpy_tiles::<S, E, 7, 2>(&job),
        _ => axpy_tiles::<S, E, 8, 2>(&job),
    }
}

/// Floats of C per block of the one-row axpy form (16 KiB, half an L1): the block stays in L1
/// while P rows of B at a time stream through it; wider blocks let B's rows stream longer
/// (1 × 768 × 50257: 4096 columns ran 1.15× faster than 1024).
const AXPY_BLOCK_FLOATS: usize = 4096;

/// For each block of columns, C[0, block] (+)= Σ_p A[0, p]·B[p, block], P rows of B per
/// sweep over the block (each B row segment read once, contiguously).
#[inline(always)]
unsafe fn axpy_row<S: Simd, E: Elem, const P: usize>(job: &Job<'_, E>) {
    let a = job.a.as_ptr();
    let mut jb = job.j0;
    while jb < job.j1 {
        let je = (jb + AXPY_BLOCK_FLOATS).min(job.j1);
        let mut p = 0;
        while p < job.k {
            // The first sweep overwrites C unless accumulating.
            let add = job.accumulate || p > 0;
            if p + P <= job.k {
                let mut av = [S::splat(0.0); P];
                for (q, x) in av.iter_mut().enumerate() {
                    *x = S::splat((*a.add((p + q) * job.a_cs)).f32());
                }
                axpy_sweep::<S, E, P>(job, &av, p, jb, je, add);
                p += P;
            } else {
                let av = [S::splat((*a.add(p * job.a_cs)).f32())];
                axpy_sweep::<S, E, 1>(job, &av, p, jb, je, add);
                p += 1;
            }
        }
        jb = je;
    }
}

/// C[0, jb..je] (+)= Σ_q av[q]·B[p + q, jb..je] for q < Q.
#[inline(always)]
unsafe fn axpy_sweep<S: Simd, E: Elem, const Q: usize>(
    job: &Job<'_, E>,
    av: &[S::V; Q],
    p: usize,
    jb: usize,
    je: usize,
    add: bool,
) {
    let l = S::LANES;
    let b = job.b.as_ptr().add(p * job.b_rs);
    let mut j = jb;
    while j < je {
        let w = (je - j).min(l);
        let load = |ptr: *const f32| {
            if w == l {
                S::load(ptr)
            } else {
                S::load_tail(ptr, w, 0.0)
            }
        };
        let load_b = |ptr: *const E| {
            if w == l {
                E::load::<S>(ptr)
            } else {
                E::load_tail::<S>(ptr, w)
            }
        };
        let dst = job.c.add(j);
        let mut x = if add { load(dst) } else { S::splat(0.0) };
        for (q, &y) in av.iter().enumerate() {
            x = S::fmadd(y, load_b(b.add(q * job.b_rs + j)), x);
        }
        if w == l {
            S::store(dst, x)
        } else {
            S::store_tail(dst, w, x)
        }
        j += w;
    }
}

/// R rows × V vectors of C at a time, in registers over all of k; the last columns one
/// vector (or a part of one) at a time.
#[inline(always)]
unsafe fn axpy_tiles<S: Simd, E: Elem, const R: usize, const V: usize>(job: &Job<'_, E>) {
    let l = S::LANES;
    let mut j = job.j0;
    while j + V * l <= job.j1 {
        axpy_block::<S, E, R, V>(job, j, l);
        j += V * l;
    }
    while j < job.j1 {
        let w = (job.j1 - j).min(l);
        axpy_block::<S, E, R, 1>(job, j, w);
        j += w;
    }
}

/// B larger than this (bytes over its k rows) is taken to stream from beyond L2, and the
/// axpy blocks of 3 or more rows prefetch it (`axpy_block`).
const PREFETCH_B_BYTES: usize = 4 << 20;
/// How many rows of B ahead `axpy_block` prefetches: each k step of a block reads 2 vectors
/// of a different row (n values apart), a stream of short runs the hardware prefetchers do
/// not follow. Intel EMR, in process, 1 thread, 4 rows per block: 4 or 8 × 768 × 3072
/// +11–13% (4 rows ahead +9–11%, 16 +3–7%), 8 × 3072 × 768 +47%; but 2 × 768 × 3072 −3% and
/// 8 × 768 × 768 (B within reach of L2) −2% with 8 rows per block.
const PREFETCH_ROWS: usize = 8;

/// C[0..R, j..j+V·L] (+)= A[0..R, :]·B[:, j..j+V·L]; with V = 1, only the first `w` ≤ L
/// columns.
#[inline(always)]
unsafe fn axpy_block<S: Simd, E: Elem, const R: usize, const V: usize>(
    job: &Job<'_, E>,
    j: usize,
    w: usize,
) {
    let l = S::LANES;
    let (a, b) = (job.a.as_ptr(), job.b.as_ptr().add(j));
    let full = V > 1 || w == l;
    let mut s = [[S::splat(0.0); V]; R];
    let size = std::mem::size_of::<E>();
    let ahead = R >= 3 && job.k * job.b_rs * size > PREFETCH_B_BYTES;
    for p in 0..job.k {
        let row = b.add(p * job.b_rs);
        if ahead {
            // The lines of this block's columns PREFETCH_ROWS rows down (a hint: never faults).
            let next = row.wrapping_add(PREFETCH_ROWS * job.b_rs);
            for at in (0..V * l).step_by(64 / size) {
                prefetch_line_of_rows(next.wrapping_add(at), 1, 0);
            }
        }
        // A plain loop, not `array::from_fn`: its closure is not inlined into this
        // function's target features, so bf16 widening ran as calls (8 × 768 × 3072 x·W in
        // bf16: 10 GFLOP/s).
        let mut bv = [S::splat(0.0); V];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = if full {
                E::load::<S>(row.add(v * l))
            } else {
                E::load_tail::<S>(row, w)
            };
        }
        for (r, acc) in s.iter_mut().enumerate() {
            let av = S::splat((*a.add(r * job.a_rs + p * job.a_cs)).f32());
            for (x, &y) in acc.iter_mut().zip(&bv) {
                *x = S::fmadd(av, y, *x);
            }
        }
    }
    for (r, acc) in s.iter().enumerate() {
        for (v, &x) in acc.iter().enumerate() {
            let dst = job.c.add(r * job.c_rs + j + v * l);
            if full {
                let y = if job.accumulate {
                    S::add(S::load(dst), x)
                } else {
                    x
                };
                S::store(dst, y);
            } else {
                let y = if job.accumulate {
                    S::add(S::load_tail(dst, w, 0.0), x)
                } else {
                    x
                };
                S::store_tail(dst, w, y);
            }
        }
    }
}
