//! GELU, both forms, forward and backward, and GELU fused with a row-broadcast bias add,
//! on contiguous f32 buffers. The maths (and the scalar reference) is `math::gelu_*`:
//!   erf form:  y = x·Φ(x) = 0.5·x·(1 + erf(x/√2)),  y' = Φ(x) + x·φ(x),  φ(x) = e^{−x²/2}/√(2π)
//!   tanh form: u = √(2/π)·(x + 0.044715·x³), t = tanh u, y = 0.5·x·(1 + t),
//!              y' = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)
//! The backward is fused: dx = dy ⊙ y'(x) in one pass. The bias form computes
//! y = gelu(x + b) with b (cols,) broadcast over rows; its backward gives dx = dy ⊙ y'(x + b)
//! and db = Σ_rows dx (per-block partials summed in block order, thread-count independent).
//! SIMD paths use `simd::erf_and_gauss` and, for the tanh form, 0.5·(1 + tanh u) = σ(2u)
//! (one exp and one division); both within 1e-6 relative + 4e-7 absolute of the scalar.

use super::isa::{self, Isa};
use super::math;
use super::par::{rows_mut, rows_mut_partials, sum_partials, Fill, Filled, Out, GRAIN};
use super::simd::{self, simd_kernel, Simd};

/// Which GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    /// Exact x·Φ(x) (BERT, BART, nanoGPT).
    Erf,
    /// GPT-2's tanh approximation (gelu_new).
    Tanh,
}

/// Elements per row of the flat (pointwise) kernels, so `rows_mut` can split them.
const FLAT_ROW: usize = 1024;

/// y = gelu(x).
pub fn gelu<'o>(kind: Gelu, x: &[f32], y: impl Into<Out<'o>>) {
    gelu_isa(isa::active(), kind, x, y)
}

/// `gelu` at a given level.
pub fn gelu_isa<'o>(level: Isa, kind: Gelu, x: &[f32], y: impl Into<Out<'o>>) {
    flat(y, |o, y| {
        gelu_block(level, kind, None, &x[o..o + y.len()], y, 0)
    });
}

/// dx = dy ⊙ gelu'(x).
pub fn gelu_backward<'o>(kind: Gelu, x: &[f32], dy: &[f32], dx: impl Into<Out<'o>>) {
    gelu_backward_isa(isa::active(), kind, x, dy, dx)
}

/// `gelu_backward` at a given level.
pub fn gelu_backward_isa<'o>(
    level: Isa,
    kind: Gelu,
    x: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
) {
    flat(dx, |o, dx| {
        let r = o..o + dx.len();
        gelu_bwd_block(level, kind, None, &x[r.clone()], &dy[r], dx, None, 0)
    });
}

/// y = gelu(x + b) for x (rows × cols) and b (cols,).
pub fn bias_gelu<'o>(kind: Gelu, x: &[f32], b: &[f32], y: impl Into<Out<'o>>) {
    bias_gelu_isa(isa::active(), kind, x, b, y)
}

/// `bias_gelu` at a given level.
pub fn bias_gelu_isa<'o>(level: Isa, kind: Gelu, x: &[f32], b: &[f32], y: impl Into<Out<'o>>) {
    let cols = b.len();
    rows_mut(y, cols, 4, |r0, y| {
        gelu_block(level, kind, Some(b), &x[r0 * cols..][..y.len()], y, cols)
    });
}

/// dx = dy ⊙ gelu'(x + b) and db += Σ_rows dx, for x, dy (rows × cols), b and db (cols,).
pub fn bias_gelu_backward<'o>(
    kind: Gelu,
    x: &[f32],
    b: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    db: &mut [f32],
) {
    bias_gelu_backward_isa(isa::active(), kind, x, b, dy, dx, db)
}

/// `bias_gelu_backward` at a given level.
pub fn bias_gelu_backward_isa<'o>(
    level: Isa,
    kind: Gelu,
    x: &[f32],
    b: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    db: &mut [f32],
) {
    let cols = b.len();
    let block = (GRAIN / 2 / cols.max(1)).max(1);
    let parts = rows_mut_partials(dx, cols, block, cols, |r0, dx, part| {
        let r = r0 * cols..r0 * cols + dx.len();
        gelu_bwd_block(
            level,
            kind,
            Some(b),
            &x[r.clone()],
            &dy[r],
            dx,
            Some(part),
            cols,
        )
    });
    sum_partials(&parts, db);
}

/// Splits a flat buffer into `FLAT_ROW`-element pieces for `rows_mut` (the last may be
/// shorter); `f(offset, piece)`.
fn flat<'o>(out: impl Into<Out<'o>>, f: impl Fn(usize, Fill<'_>) -> Filled + Sync + Send) {
    rows_mut(out, FLAT_ROW, 6, |r0, o| f(r0 * FLAT_ROW, o));
}

simd_kernel! {
    /// y = gelu(x [+ b]) over a block; with `b`, the block is rows of `cols`.
    fn gelu_block(kind: Gelu, b: Option<&[f32]>, x: &[f32], y: Fill<'_>, cols: usize) -> Filled
        = gelu_simd | gelu_scalar;
}
simd_kernel! {
    /// dx = dy ⊙ gelu'(x [+ b]) over a block, and db partial += dx (rows of `cols`).
    fn gelu_bwd_block(
        kind: Gelu, b: Option<&[f32]>, x: &[f32], dy: &[f32], dx: Fill<'_>,
        db: Option<&mut [f32]>, cols: usize,
    ) -> Filled = gelu_bwd_simd | gelu_bwd_scalar;
}

// ---- scalar reference ------------------------------------------------------------------

fn gelu_scalar(kind: Gelu, b: Option<&[f32]>, x: &[f32], y: Fill<'_>, cols: usize) -> Filled {
    let f = match kind {
        Gelu::Erf => math::gelu_erf,
        Gelu::Tanh => math::gelu_tanh,
    };
    y.init(|y| match b {
        None => y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x)),
        Some(b) => {
            for (y, x) in y.chunks_mut(cols).zip(x.chunks(cols)) {
                for i in 0..cols {
                    y[i] = f(x[i] + b[i]);
                }
            }
        }
    })
}

fn gelu_bwd_scalar(
    kind: Gelu,
    b: Option<&[f32]>,
    x: &[f32],
    dy: &[f32],
    dx: Fill<'_>,
    db: Option<&mut [f32]>,
    cols: usize,
) -> Filled {
    let f = match kind {
        Gelu::Erf => math::gelu_erf_grad,
        Gelu::Tanh => math::gelu_tanh_grad,
    };
    dx.init(|dx| match (b, db) {
        (Some(b), Some(db)) => {
            for ((dx, x), dy) in dx.chunks_mut(cols).zip(x.chunks(cols)).zip(dy.chunks(cols)) {
                for i in 0..cols {
                    dx[i] = dy[i] * f(x[i] + b[i]);
                    db[i] += dx[i];
                }
            }
        }
        _ => {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                *dx = dy * f(x);
            }
        }
    })
}

// ---- SIMD ------------------------------------------------------------------------------

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;
const C: f32 = 0.044715;

/// (gelu(x), gelu'(x)) per lane; `grad` false skips the derivative's extra work.
///
/// # Safety
/// `S`'s instruction set must be available.
#[inline(always)]
unsafe fn gelu_v<S: Simd>(kind: Gelu, x: S::V, grad: bool) -> (S::V, S::V) {
    let half = S::splat(0.5);
    match kind {
        Gelu::Erf => {
            // erf(x/√2) and e^{−x²/2} from one exp.
            let (e, g) = simd::erf_and_gauss::<S>(S::mul(x, S::splat(FRAC_1_SQRT_2)));
            let phi = S::fmadd(half, e, half); // Φ(x)
            if grad {
                (
                    S::splat(0.0),
                    S::fmadd(S::mul(x, S::splat(INV_SQRT_2PI)), g, phi),
                )
            } else {
                (S::mul(x, phi), S::splat(0.0))
            }
        }
        Gelu::Tanh => {
            // 0.5·(1 + tanh u) = σ(2u) = s, 1 − tanh²u = 4s(1 − s): one exp, one division,
            // no cancellation, and exact 0 / x at the tails.
            let x2 = S::mul(x, x);
            let inner = S::fmadd(S::splat(C), x2, S::splat(1.0)); // 1 + c·x²
            let u2 = S::mul(S::splat(-2.0 * SQRT_2_OVER_PI), S::mul(x, inner)); // −2u
            let s = S::div(S::splat(1.0), S::add(S::splat(1.0), simd::exp::<S>(u2)));
            if grad {
                // s + 2·x·s·(1 − s)·√(2/π)·(1 + 3c·x²)
                let du = S::mul(
                    S::splat(2.0 * SQRT_2_OVER_PI),
                    S::fmadd(S::splat(3.0 * C), x2, S::splat(1.0)),
                );
                let xs1 = S::mul(S::mul(x, s), S::sub(S::splat(1.0), s));
                (S::splat(0.0), S::fmadd(xs1, du, s))
            } else {
                (S::mul(x, s), S::splat(0.0))
            }
        }
    }
}

#[inline(always)]
unsafe fn gelu_simd<S: Simd>(
    kind: Gelu,
    b: Option<&[f32]>,
    x: &[f32],
    mut y: Fill<'_>,
    cols: usize,
) -> Filled {
    assert_eq!(x.len(), y.len(), "GELU block: input and output lengths");
    assert!(b.is_none_or(|b| b.len() >= cols), "GELU block: bias length");
    let (l, out) = (S::LANES, y.as_mut_ptr());
    // Without a bias the block is one long row.
    let cols = if b.is_some() { cols } else { x.len() }.max(1);
    for (r, x) in x.chunks(cols).enumerate() {
        let (p, o, n) = (x.as_ptr(), out.add(r * cols), x.len());
        let mut i = 0;
        while i < n {
            let k = (n - i).min(l);
            let full = k == l;
            let ld = |p: *const f32| {
                if full {
                    S::load(p)
                } else {
                    S::load_tail(p, k, 0.0)
                }
            };
            let mut v = ld(p.add(i));
            if let Some(b) = b {
                v = S::add(v, ld(b.as_ptr().add(i)));
            }
            let (g, _) = gelu_v::<S>(kind, v, false);
            if full {
                S::store(o.add(i), g);
            } else {
                S::store_tail(o.add(i), k, g);
            }
            i += k;
        }
    }
    y.assume_filled()
}

#[inline(always)]
unsafe fn gelu_bwd_simd<S: Simd>(
    kind: Gelu,
    b: Option<&[f32]>,
    x: &[f32],
    dy: &[f32],
    mut dx: Fill<'_>,
    mut db: Option<&mut [f32]>,
    cols: usize,
) -> Filled {
    assert!(
        x.len() == dx.len() && dy.len() == dx.len(),
        "GELU backward block: lengths"
    );
    assert!(
        b.is_none_or(|b| b.len() >= cols) && db.as_ref().is_none_or(|d| d.len() >= cols),
        "GELU backward block: bias lengths"
    );
    let (l, out, len) = (S::LANES, dx.as_mut_ptr(), dx.len());
    let cols = if b.is_some() { cols } else { len }.max(1);
    for r in 0..len.div_ceil(cols) {
        let (p, q, o, n) = (
            x.as_ptr().add(r * cols),
            dy.as_ptr().add(r * cols),
            out.add(r * cols),
            cols.min(len - r * cols),
        );
        let mut i = 0;
        while i < n {
            let k = (n - i).min(l);
            let full = k == l;
            let ld = |p: *const f32| {
                if full {
                    S::load(p)
                } else {
                    S::load_tail(p, k, 0.0)
                }
            };
            let mut v = ld(p.add(i));
            if let Some(b) = b {
                v = S::add(v, ld(b.as_ptr().add(i)));
            }
            let (_, d) = gelu_v::<S>(kind, v, true);
            let g = S::mul(ld(q.add(i)), d);
            if full {
                S::store(o.add(i), g);
            } else {
                S::store_tail(o.add(i), k, g);
            }
            if let Some(db) = db.as_deref_mut() {
                let bp = db.as_mut_ptr().add(i);
                let acc = S::add(ld(bp), g);
                if full {
                    S::store(bp, acc);
                } else {
                    S::store_tail(bp, k, acc);
                }
            }
            i += k;
        }
    }
    dx.assume_filled()
}
