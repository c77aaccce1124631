//! Row-wise softmax and log-softmax over the last dim, numerically stable (max subtracted),
//! forward and backward, on contiguous `rows × cols` buffers.
//!
//! softmax:      y = e^{x − m} / Σ e^{x − m},  m = max(x)
//! log-softmax:  y = (x − m) − ln Σ e^{x − m}
//! backward:     softmax dx = y ⊙ (dy − Σ dy ⊙ y);  log-softmax dx = dy − e^y · Σ dy
//!
//! Each row is read from memory once per direction: the forward makes a max pass, an
//! exp-and-sum pass that writes y, and a scaling pass over y while the row is in L1; the
//! backward a dot (or sum) pass and an output pass. AVX-512 / AVX2 paths (`simd::exp`,
//! ≤ 2 ulp) are chosen by `isa::active()`; the scalar functions are the reference.

use super::isa::{self, Isa};
use super::par::{rows_mut, Fill, Filled, Out};
use super::simd::{self, simd_kernel, Simd};

/// y = exp(x − max) / Σ exp(x − max), per row.
pub fn softmax_rows<'o>(x: &[f32], y: impl Into<Out<'o>>, cols: usize) {
    softmax_rows_isa(isa::active(), x, y, cols)
}

/// `softmax_rows` at a given level (tests and benches force each level).
pub fn softmax_rows_isa<'o>(level: Isa, x: &[f32], y: impl Into<Out<'o>>, cols: usize) {
    rows_mut(y, cols, 3, |r0, y| {
        softmax_block(level, &x[r0 * cols..][..y.len()], y, cols)
    });
}

/// y = (x − max) − ln Σ exp(x − max), per row. The shift is applied before ln Σ is
/// subtracted: forming lse = max + ln Σ first would round it to the f32 spacing of max
/// (≈1e-3 for logits of 1e4) and put that error into every output.
pub fn log_softmax_rows<'o>(x: &[f32], y: impl Into<Out<'o>>, cols: usize) {
    log_softmax_rows_isa(isa::active(), x, y, cols)
}

pub fn log_softmax_rows_isa<'o>(level: Isa, x: &[f32], y: impl Into<Out<'o>>, cols: usize) {
    rows_mut(y, cols, 3, |r0, y| {
        log_softmax_block(level, &x[r0 * cols..][..y.len()], y, cols)
    });
}

/// Softmax backward: dx = y ⊙ (dy − Σ_j dy_j·y_j), per row.
pub fn softmax_rows_backward<'o>(y: &[f32], dy: &[f32], dx: impl Into<Out<'o>>, cols: usize) {
    softmax_rows_backward_isa(isa::active(), y, dy, dx, cols)
}

pub fn softmax_rows_backward_isa<'o>(
    level: Isa,
    y: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    cols: usize,
) {
    rows_mut(dx, cols, 3, |r0, dx| {
        let r = r0 * cols..r0 * cols + dx.len();
        softmax_bwd_block(level, &y[r.clone()], &dy[r], dx, cols)
    });
}

/// Log-softmax backward: dx = dy − exp(y)·Σ_j dy_j, per row (y is the log-softmax output).
pub fn log_softmax_rows_backward<'o>(y: &[f32], dy: &[f32], dx: impl Into<Out<'o>>, cols: usize) {
    log_softmax_rows_backward_isa(isa::active(), y, dy, dx, cols)
}

pub fn log_softmax_rows_backward_isa<'o>(
    level: Isa,
    y: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    cols: usize,
) {
    rows_mut(dx, cols, 3, |r0, dx| {
        let r = r0 * cols..r0 * cols + dx.len();
        log_softmax_bwd_block(level, &y[r.clone()], &dy[r], dx, cols)
    });
}

/// (m, ln Σ exp(x − m)) of one row with m = max(x); lse = m + ln Σ. m = −∞ for an empty or
/// all −∞ row.
pub fn max_and_log_sum(x: &[f32]) -> (f32, f32) {
    max_and_log_sum_isa(isa::active(), x)
}

simd_kernel! {
    /// `max_and_log_sum` at a given level.
    pub fn max_and_log_sum_isa(x: &[f32]) -> (f32, f32) = max_log_sum_simd | max_and_log_sum_scalar;
}

/// ln Σ exp(x) of one row, stable.
pub fn logsumexp(x: &[f32]) -> f32 {
    let (m, ln_s) = max_and_log_sum(x);
    m + ln_s
}

// ---- scalar reference ------------------------------------------------------------------

fn softmax_scalar(x: &[f32], y: Fill<'_>, cols: usize) -> Filled {
    y.init(|y| {
        for (y, x) in y.chunks_mut(cols).zip(x.chunks(cols)) {
            let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut s = 0.0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - m).exp();
                s += *y;
            }
            let inv = 1.0 / s;
            y.iter_mut().for_each(|y| *y *= inv);
        }
    })
}

fn log_softmax_scalar(x: &[f32], y: Fill<'_>, cols: usize) -> Filled {
    y.init(|y| {
        for (y, x) in y.chunks_mut(cols).zip(x.chunks(cols)) {
            let (m, ln_s) = max_and_log_sum_scalar(x);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = if m == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    (x - m) - ln_s
                };
            }
        }
    })
}

fn max_and_log_sum_scalar(x: &[f32]) -> (f32, f32) {
    let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    let s: f32 = x.iter().map(|&v| (v - m).exp()).sum();
    (m, s.ln())
}

fn softmax_bwd_scalar(y: &[f32], dy: &[f32], dx: Fill<'_>, cols: usize) -> Filled {
    dx.init(|dx| {
        for ((dx, y), dy) in dx.chunks_mut(cols).zip(y.chunks(cols)).zip(dy.chunks(cols)) {
            let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            for i in 0..cols {
                dx[i] = y[i] * (dy[i] - dot);
            }
        }
    })
}

fn log_softmax_bwd_scalar(y: &[f32], dy: &[f32], dx: Fill<'_>, cols: usize) -> Filled {
    dx.init(|dx| {
        for ((dx, y), dy) in dx.chunks_mut(cols).zip(y.chunks(cols)).zip(dy.chunks(cols)) {
            let s: f32 = dy.iter().sum();
            for i in 0..cols {
                dx[i] = dy[i] - y[i].exp() * s;
            }
        }
    })
}

// ---- SIMD ------------------------------------------------------------------------------

simd_kernel! {
    fn softmax_block(x: &[f32], y: Fill<'_>, cols: usize) -> Filled = softmax_simd | softmax_scalar;
}
simd_kernel! {
    fn log_softmax_block(x: &[f32], y: Fill<'_>, cols: usize) -> Filled = log_softmax_simd | log_softmax_scalar;
}
simd_kernel! {
    fn softmax_bwd_block(y: &[f32], dy: &[f32], dx: Fill<'_>, cols: usize) -> Filled = softmax_bwd_simd | softmax_bwd_scalar;
}
simd_kernel! {
    fn log_softmax_bwd_block(y: &[f32], dy: &[f32], dx: Fill<'_>, cols: usize) -> Filled = log_softmax_bwd_simd | log_softmax_bwd_scalar;
}

/// max over a row (−∞ for an empty row), four accumulators.
///
/// # Safety
/// `S`'s instruction set must be available.
#[inline(always)]
pub(crate) unsafe fn row_max<S: Simd>(x: &[f32]) -> f32 {
    let (n, l, p) = (x.len(), S::LANES, x.as_ptr());
    let ninf = S::splat(f32::NEG_INFINITY);
    let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
    let mut i = 0;
    while i + 4 * l <= n {
        a0 = S::max(a0, S::load(p.add(i)));
        a1 = S::max(a1, S::load(p.add(i + l)));
        a2 = S::max(a2, S::load(p.add(i + 2 * l)));
        a3 = S::max(a3, S::load(p.add(i + 3 * l)));
        i += 4 * l;
    }
    while i + l <= n {
        a0 = S::max(a0, S::load(p.add(i)));
        i += l;
    }
    if i < n {
        a1 = S::max(a1, S::load_tail(p.add(i), n - i, f32::NEG_INFINITY));
    }
    S::hmax(S::max(S::max(a0, a1), S::max(a2, a3)))
}

/// Σ exp(x − m) over a row, storing each term at `q` when given.
///
/// # Safety
/// As `row_max`; `q`, when given, is valid for writing `x.len()` floats.
#[inline(always)]
unsafe fn exp_sum<S: Simd>(x: &[f32], m: f32, q: Option<*mut f32>) -> f32 {
    let (n, l, p) = (x.len(), S::LANES, x.as_ptr());
    let mv = S::splat(m);
    let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
    let mut i = 0;
    while i + 2 * l <= n {
        let e0 = simd::exp_nonpositive::<S>(S::sub(S::load(p.add(i)), mv));
        let e1 = simd::exp_nonpositive::<S>(S::sub(S::load(p.add(i + l)), mv));
        if let Some(q) = q {
            S::store(q.add(i), e0);
            S::store(q.add(i + l), e1);
        }
        s0 = S::add(s0, e0);
        s1 = S::add(s1, e1);
        i += 2 * l;
    }
    while i < n {
        let k = (n - i).min(l);
        // Masked-off lanes load −∞, whose exp is 0.
        let e =
            simd::exp_nonpositive::<S>(S::sub(S::load_tail(p.add(i), k, f32::NEG_INFINITY), mv));
        if let Some(q) = q {
            S::store_tail(q.add(i), k, e);
        }
        s0 = S::add(s0, e);
        i += k;
    }
    S::hsum(S::add(s0, s1))
}

/// y = a·x + b over a row (`a`, `b` scalars), in place when `x` is `y`'s own pointer.
///
/// # Safety
/// As `row_max`; `x` and `y` point to `n` floats.
#[inline(always)]
unsafe fn affine<S: Simd>(x: *const f32, y: *mut f32, n: usize, a: f32, b: f32) {
    let (l, av, bv) = (S::LANES, S::splat(a), S::splat(b));
    let mut i = 0;
    while i + l <= n {
        S::store(y.add(i), S::fmadd(S::load(x.add(i)), av, bv));
        i += l;
    }
    if i < n {
        S::store_tail(
            y.add(i),
            n - i,
            S::fmadd(S::load_tail(x.add(i), n - i, 0.0), av, bv),
        );
    }
}

/// # Safety
/// As `row_max`. (The block kernels below write every element of their output, a row of
/// `cols` at a time, the last row possibly shorter; their inputs must be as long.)
#[inline(always)]
unsafe fn softmax_simd<S: Simd>(x: &[f32], mut y: Fill<'_>, cols: usize) -> Filled {
    assert_eq!(x.len(), y.len(), "softmax block: input and output lengths");
    let o = y.as_mut_ptr();
    for (r, x) in x.chunks(cols).enumerate() {
        let p = o.add(r * cols);
        let s = exp_sum::<S>(x, row_max::<S>(x), Some(p));
        // The terms just stored are scaled in place.
        affine::<S>(p, p, x.len(), 1.0 / s, 0.0);
    }
    y.assume_filled()
}

#[inline(always)]
unsafe fn max_log_sum_simd<S: Simd>(x: &[f32]) -> (f32, f32) {
    let m = row_max::<S>(x);
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    (m, exp_sum::<S>(x, m, None).ln())
}

#[inline(always)]
unsafe fn log_softmax_simd<S: Simd>(x: &[f32], mut y: Fill<'_>, cols: usize) -> Filled {
    assert_eq!(
        x.len(),
        y.len(),
        "log-softmax block: input and output lengths"
    );
    let o = y.as_mut_ptr();
    for (r, x) in x.chunks(cols).enumerate() {
        let (m, ln_s) = max_log_sum_simd::<S>(x);
        let (q, cols) = (o.add(r * cols), x.len());
        if m == f32::NEG_INFINITY {
            (0..cols).for_each(|i| *q.add(i) = f32::NEG_INFINITY);
            continue;
        }
        // (x − m) − ln Σ, in that order (see `log_softmax_rows`).
        let (l, mv, lv, p) = (S::LANES, S::splat(m), S::splat(ln_s), x.as_ptr());
        let mut i = 0;
        while i + l <= cols {
            S::store(q.add(i), S::sub(S::sub(S::load(p.add(i)), mv), lv));
            i += l;
        }
        if i < cols {
            let v = S::sub(S::sub(S::load_tail(p.add(i), cols - i, 0.0), mv), lv);
            S::store_tail(q.add(i), cols - i, v);
        }
    }
    y.assume_filled()
}

/// Σ a ⊙ b over a row, two accumulators.
///
/// # Safety
/// As `row_max`; `a` and `b` have the same length.
#[inline(always)]
pub(crate) unsafe fn row_dot<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let (n, l, p, q) = (a.len(), S::LANES, a.as_ptr(), b.as_ptr());
    let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
    let mut i = 0;
    while i + 2 * l <= n {
        s0 = S::fmadd(S::load(p.add(i)), S::load(q.add(i)), s0);
        s1 = S::fmadd(S::load(p.add(i + l)), S::load(q.add(i + l)), s1);
        i += 2 * l;
    }
    while i < n {
        let k = (n - i).min(l);
        s0 = S::fmadd(
            S::load_tail(p.add(i), k, 0.0),
            S::load_tail(q.add(i), k, 0.0),
            s0,
        );
        i += k;
    }
    S::hsum(S::add(s0, s1))
}

/// Σ a over a row, two accumulators.
///
/// # Safety
/// As `row_max`.
#[inline(always)]
pub(crate) unsafe fn row_sum<S: Simd>(a: &[f32]) -> f32 {
    let (n, l, p) = (a.len(), S::LANES, a.as_ptr());
    let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
    let mut i = 0;
    while i + 2 * l <= n {
        s0 = S::add(s0, S::load(p.add(i)));
        s1 = S::add(s1, S::load(p.add(i + l)));
        i += 2 * l;
    }
    while i < n {
        let k = (n - i).min(l);
        s0 = S::add(s0, S::load_tail(p.add(i), k, 0.0));
        i += k;
    }
    S::hsum(S::add(s0, s1))
}

#[inline(always)]
unsafe fn softmax_bwd_simd<S: Simd>(y: &[f32], dy: &[f32], dx: Fill<'_>, cols: usize) -> Filled {
    // dx = y ⊙ (dy − c), c = Σ dy ⊙ y.
    bwd_rows::<S, SoftmaxBwd>((y, dy, dx, cols), |y, dy| row_dot::<S>(y, dy))
}

#[inline(always)]
unsafe fn log_softmax_bwd_simd<S: Simd>(
    y: &[f32],
    dy: &[f32],
    dx: Fill<'_>,
    cols: usize,
) -> Filled {
    // dx = dy − e^y·c, c = Σ dy.
    bwd_rows::<S, LogSoftmaxBwd>((y, dy, dx, cols), |_, dy| row_sum::<S>(dy))
}

/// The per-vector rule of a backward: dx_j from (y_j, dy_j, c). A trait with an
/// `inline(always)` method, not a closure: a closure body is compiled without the caller's
/// `target_feature`s, and LLVM left the log-softmax one (with its exp, called twice) out of
/// line, so each of its intrinsics ran as a function call.
trait BwdElem {
    /// # Safety
    /// `S`'s instruction set must be available.
    unsafe fn elem<S: Simd>(y: S::V, dy: S::V, c: S::V) -> S::V;
}

/// softmax: dx = y ⊙ (dy − c).
struct SoftmaxBwd;
impl BwdElem for SoftmaxBwd {
    #[inline(always)]
    unsafe fn elem<S: Simd>(y: S::V, dy: S::V, c: S::V) -> S::V {
        S::mul(y, S::sub(dy, c))
    }
}

/// log-softmax: dx = dy − e^y·c.
struct LogSoftmaxBwd;
impl BwdElem for LogSoftmaxBwd {
    #[inline(always)]
    unsafe fn elem<S: Simd>(y: S::V, dy: S::V, c: S::V) -> S::V {
        S::fnmadd(simd::exp_nonpositive::<S>(y), c, dy)
    }
}

/// The shared body of the two backwards, row by row: c = `stat`(y, dy) of the row, then
/// dx_j = `E::elem`(y_j, dy_j, c) a vector at a time (a masked tail).
///
/// # Safety
/// As `row_max`.
#[inline(always)]
unsafe fn bwd_rows<S: Simd, E: BwdElem>(
    (y, dy, mut dx, cols): (&[f32], &[f32], Fill<'_>, usize),
    stat: impl Fn(&[f32], &[f32]) -> f32,
) -> Filled {
    assert!(
        y.len() == dx.len() && dy.len() == dx.len(),
        "softmax backward block: lengths"
    );
    let out = dx.as_mut_ptr();
    for (r, (y, dy)) in y.chunks(cols).zip(dy.chunks(cols)).enumerate() {
        let c = S::splat(stat(y, dy));
        let (l, p, q, o, n) = (
            S::LANES,
            y.as_ptr(),
            dy.as_ptr(),
            out.add(r * cols),
            y.len(),
        );
        let mut i = 0;
        while i + l <= n {
            S::store(
                o.add(i),
                E::elem::<S>(S::load(p.add(i)), S::load(q.add(i)), c),
            );
            i += l;
        }
        if i < n {
            let k = n - i;
            let v = E::elem::<S>(
                S::load_tail(p.add(i), k, 0.0),
                S::load_tail(q.add(i), k, 0.0),
                c,
            );
            S::store_tail(o.add(i), k, v);
        }
    }
    dx.assume_filled()
}
