//! LayerNorm and RMSNorm over the last dim, forward and backward (llm.c style), on
//! contiguous `rows × cols` buffers. Forward saves per-row statistics for the backward.
//!
//! LayerNorm: μ = mean(x), rstd = 1/√(var(x) + ε) (biased variance), x̂ = (x − μ)·rstd,
//!            y = γ ⊙ x̂ + β.
//!   backward: g = dy ⊙ γ; dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); dγ = Σ_rows dy ⊙ x̂; dβ = Σ_rows dy.
//! RMSNorm:   rstd = 1/√(mean(x²) + ε), x̂ = x·rstd, y = γ ⊙ x̂.
//!   backward: g = dy ⊙ γ; dx = rstd·(g − x̂·mean(g ⊙ x̂)); dγ = Σ_rows dy ⊙ x̂.
//!
//! The scalar path (f64 statistics) is the reference. The SIMD paths read each row once per
//! direction (later sweeps hit L1): forward = a sum pass, a corrected two-pass variance
//! (μ' = μ + mean(x − μ), var = mean((x − μ)²) − (μ' − μ)², exact to rounding even for
//! large offsets) and an output pass; backward = a pass for mean(g), mean(g ⊙ x̂) that
//! also adds dy ⊙ x̂ and dy into the block's dγ, dβ partial sums, and a dx pass. dγ, dβ are
//! reduced over fixed row blocks (one partial per block, summed in block order), so the
//! result does not depend on the thread count.

use super::isa::{self, Isa};
use super::par::{rows_mut_partials, rows_mut_stats, sum_partials, Fill, Filled, Out, GRAIN};
use super::simd::{simd_kernel, Simd};
use super::softmax::row_sum;

/// Rows per block of the backward (one dγ, dβ partial per block).
fn backward_block(cols: usize) -> usize {
    (GRAIN / 2 / cols.max(1)).max(1)
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows<'o>(
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
    y: impl Into<Out<'o>>,
    mean: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    layer_norm_rows_isa(isa::active(), x, gamma, beta, eps, y, mean, rstd, cols)
}

/// `layer_norm_rows` at a given level.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows_isa<'o>(
    level: Isa,
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
    y: impl Into<Out<'o>>,
    mean: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    rows_mut_stats(y, mean, rstd, cols, 3, |r0, y, mean, rstd| {
        let x = &x[r0 * cols..][..y.len()];
        let p = Params::new(gamma, beta, cols);
        norm_fwd_block(
            level,
            x,
            p.gamma(),
            p.beta(),
            eps,
            y,
            Some(mean),
            rstd,
            cols,
        )
    });
}

/// Adds into `dgamma` / `dbeta` (when given) and overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows_backward<'o>(
    x: &[f32],
    gamma: Option<&[f32]>,
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    cols: usize,
) {
    norm_backward(
        isa::active(),
        x,
        gamma,
        Some(mean),
        rstd,
        dy,
        dx,
        dgamma,
        dbeta,
        cols,
    )
}

pub fn rms_norm_rows<'o>(
    x: &[f32],
    gamma: Option<&[f32]>,
    eps: f32,
    y: impl Into<Out<'o>>,
    rstd: &mut [f32],
    cols: usize,
) {
    rms_norm_rows_isa(isa::active(), x, gamma, eps, y, rstd, cols)
}

/// `rms_norm_rows` at a given level.
pub fn rms_norm_rows_isa<'o>(
    level: Isa,
    x: &[f32],
    gamma: Option<&[f32]>,
    eps: f32,
    y: impl Into<Out<'o>>,
    rstd: &mut [f32],
    cols: usize,
) {
    // The stats driver splits two per-row arrays; RMSNorm has one, so a scratch one rides
    // along for the mean slot and is dropped.
    let mut unused = vec![0.0f32; rstd.len()];
    rows_mut_stats(y, &mut unused, rstd, cols, 2, |r0, y, _, rstd| {
        let x = &x[r0 * cols..][..y.len()];
        let p = Params::new(gamma, None, cols);
        norm_fwd_block(level, x, p.gamma(), p.beta(), eps, y, None, rstd, cols)
    });
}

pub fn rms_norm_rows_backward<'o>(
    x: &[f32],
    gamma: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    dgamma: Option<&mut [f32]>,
    cols: usize,
) {
    norm_backward(
        isa::active(),
        x,
        gamma,
        None,
        rstd,
        dy,
        dx,
        dgamma,
        None,
        cols,
    )
}

/// Shared backward at a given level: `mean` is `None` for RMSNorm (no centring, no mean(g)
/// term, no dβ). Adds into `dgamma` / `dbeta` and overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward<'o>(
    level: Isa,
    x: &[f32],
    gamma: Option<&[f32]>,
    mean: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: impl Into<Out<'o>>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    cols: usize,
) {
    // Each block's partials: dγ in the first `cols` floats, dβ in the next `cols`.
    let parts = rows_mut_partials(dx, cols, backward_block(cols), 2 * cols, |r0, dx, part| {
        let rows = dx.len() / cols;
        let r = r0 * cols..r0 * cols + dx.len();
        let p = Params::new(gamma, None, cols);
        let (dg, db) = part.split_at_mut(cols);
        norm_bwd_block(
            level,
            &x[r.clone()],
            p.gamma(),
            mean.map(|m| &m[r0..r0 + rows]),
            &rstd[r0..r0 + rows],
            &dy[r],
            dx,
            dg,
            db,
            cols,
        )
    });
    let mut sums = vec![0.0f32; 2 * cols];
    sum_partials(&parts, &mut sums);
    let (dg, db) = sums.split_at(cols);
    if let Some(dgamma) = dgamma {
        dgamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
    }
    if let Some(dbeta) = dbeta {
        dbeta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
    }
}

/// γ and β with the identity (1, 0) filled in when absent, so the kernels have one form.
struct Params<'a> {
    gamma: std::borrow::Cow<'a, [f32]>,
    beta: std::borrow::Cow<'a, [f32]>,
}

impl<'a> Params<'a> {
    fn new(gamma: Option<&'a [f32]>, beta: Option<&'a [f32]>, cols: usize) -> Self {
        let or = |p: Option<&'a [f32]>, v: f32| match p {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(vec![v; cols]),
        };
        Params {
            gamma: or(gamma, 1.0),
            beta: or(beta, 0.0),
        }
    }
    fn gamma(&self) -> &[f32] {
        &self.gamma
    }
    fn beta(&self) -> &[f32] {
        &self.beta
    }
}

simd_kernel! {
    /// Forward of a block of rows; `mean` is `None` for RMSNorm (then β is ignored).
    fn norm_fwd_block(
        x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: Fill<'_>,
        mean: Option<&mut [f32]>, rstd: &mut [f32], cols: usize,
    ) -> Filled = norm_fwd_simd | norm_fwd_scalar;
}
simd_kernel! {
    /// Backward of a block of rows; adds into the block's `dg`, `db` partials.
    fn norm_bwd_block(
        x: &[f32], gamma: &[f32], mean: Option<&[f32]>, rstd: &[f32], dy: &[f32],
        dx: Fill<'_>, dg: &mut [f32], db: &mut [f32], cols: usize,
    ) -> Filled = norm_bwd_simd | norm_bwd_scalar;
}

// ---- scalar reference ------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn norm_fwd_scalar(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: Fill<'_>,
    mean: Option<&mut [f32]>,
    rstd: &mut [f32],
    cols: usize,
) -> Filled {
    y.init(|y| norm_fwd_scalar_rows(x, gamma, beta, eps, y, mean, rstd, cols))
}

#[allow(clippy::too_many_arguments)]
fn norm_fwd_scalar_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mut mean: Option<&mut [f32]>,
    rstd: &mut [f32],
    cols: usize,
) {
    for (r, (y, x)) in y.chunks_mut(cols).zip(x.chunks(cols)).enumerate() {
        let n = cols as f64;
        if let Some(mean) = mean.as_deref_mut() {
            let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            let rs = 1.0 / (var + eps as f64).sqrt();
            mean[r] = m as f32;
            rstd[r] = rs as f32;
            for i in 0..cols {
                y[i] = ((x[i] as f64 - m) * rs) as f32 * gamma[i] + beta[i];
            }
        } else {
            let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n;
            let rs = (1.0 / (ms + eps as f64).sqrt()) as f32;
            rstd[r] = rs;
            for i in 0..cols {
                y[i] = x[i] * rs * gamma[i];
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn norm_bwd_scalar(
    x: &[f32],
    gamma: &[f32],
    mean: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: Fill<'_>,
    dg: &mut [f32],
    db: &mut [f32],
    cols: usize,
) -> Filled {
    dx.init(|dx| norm_bwd_scalar_rows(x, gamma, mean, rstd, dy, dx, dg, db, cols))
}

#[allow(clippy::too_many_arguments)]
fn norm_bwd_scalar_rows(
    x: &[f32],
    gamma: &[f32],
    mean: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    cols: usize,
) {
    for (r, dx) in dx.chunks_mut(cols).enumerate() {
        let x = &x[r * cols..][..cols];
        let dy = &dy[r * cols..][..cols];
        let mu = mean.map_or(0.0, |m| m[r]);
        let rs = rstd[r];
        let (mut mean_g, mut mean_gx) = (0.0f32, 0.0f32);
        for i in 0..cols {
            let xh = (x[i] - mu) * rs;
            let g = dy[i] * gamma[i];
            mean_g += g;
            mean_gx += g * xh;
            dg[i] += dy[i] * xh;
            db[i] += dy[i];
        }
        mean_g /= cols as f32;
        mean_gx /= cols as f32;
        if mean.is_none() {
            mean_g = 0.0;
        }
        for i in 0..cols {
            let xh = (x[i] - mu) * rs;
            let g = dy[i] * gamma[i];
            dx[i] = rs * (g - mean_g - xh * mean_gx);
        }
    }
}

// ---- SIMD ------------------------------------------------------------------------------

/// (Σ (x − c), Σ (x − c)²) over a row.
///
/// # Safety
/// `S`'s instruction set must be available.
#[inline(always)]
unsafe fn centred_sums<S: Simd>(x: &[f32], c: f32) -> (f32, f32) {
    let (n, l, p, cv) = (x.len(), S::LANES, x.as_ptr(), S::splat(c));
    let (mut s0, mut s1, mut q0, mut q1) =
        (S::splat(0.0), S::splat(0.0), S::splat(0.0), S::splat(0.0));
    let mut i = 0;
    while i + 2 * l <= n {
        let d0 = S::sub(S::load(p.add(i)), cv);
        let d1 = S::sub(S::load(p.add(i + l)), cv);
        s0 = S::add(s0, d0);
        s1 = S::add(s1, d1);
        q0 = S::fmadd(d0, d0, q0);
        q1 = S::fmadd(d1, d1, q1);
        i += 2 * l;
    }
    while i < n {
        let k = (n - i).min(l);
        // Masked-off lanes load c, so they contribute 0 to both sums.
        let d = S::sub(S::load_tail(p.add(i), k, c), cv);
        s0 = S::add(s0, d);
        q0 = S::fmadd(d, d, q0);
        i += k;
    }
    (S::hsum(S::add(s0, s1)), S::hsum(S::add(q0, q1)))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn norm_fwd_simd<S: Simd>(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    mut y: Fill<'_>,
    mut mean: Option<&mut [f32]>,
    rstd: &mut [f32],
    cols: usize,
) -> Filled {
    let rows = y.len() / cols;
    assert!(
        x.len() == y.len() && rows * cols == y.len() && rstd.len() >= rows,
        "norm forward block: lengths"
    );
    assert!(
        gamma.len() >= cols && beta.len() >= cols,
        "norm forward block: γ, β lengths"
    );
    assert!(
        mean.as_ref().is_none_or(|m| m.len() >= rows),
        "norm forward block: mean length"
    );
    let n = cols as f32;
    let (l, gp, bp, out) = (S::LANES, gamma.as_ptr(), beta.as_ptr(), y.as_mut_ptr());
    for (r, x) in x.chunks(cols).enumerate() {
        let (mu, rs) = match mean.as_deref_mut() {
            Some(mean) => {
                let m0 = row_sum::<S>(x) / n;
                let (d, q) = centred_sums::<S>(x, m0);
                let dm = d / n;
                let var = (q / n - dm * dm).max(0.0);
                let mu = m0 + dm;
                mean[r] = mu;
                (mu, 1.0 / (var + eps).sqrt())
            }
            None => {
                let (_, q) = centred_sums::<S>(x, 0.0);
                (0.0, 1.0 / (q / n + eps).sqrt())
            }
        };
        rstd[r] = rs;
        let (muv, rsv) = (S::splat(mu), S::splat(rs));
        let (p, o) = (x.as_ptr(), out.add(r * cols));
        let with_beta = mean.is_some();
        let mut i = 0;
        while i < cols {
            let k = (cols - i).min(l);
            let (xv, g, b) = if k == l {
                (S::load(p.add(i)), S::load(gp.add(i)), S::load(bp.add(i)))
            } else {
                (
                    S::load_tail(p.add(i), k, 0.0),
                    S::load_tail(gp.add(i), k, 0.0),
                    S::load_tail(bp.add(i), k, 0.0),
                )
            };
            let xh = S::mul(S::sub(xv, muv), rsv);
            let v = if with_beta {
                S::fmadd(xh, g, b)
            } else {
                S::mul(xh, g)
            };
            if k == l {
                S::store(o.add(i), v);
            } else {
                S::store_tail(o.add(i), k, v);
            }
            i += k;
        }
    }
    y.assume_filled()
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn norm_bwd_simd<S: Simd>(
    x: &[f32],
    gamma: &[f32],
    mean: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    mut dx: Fill<'_>,
    dg: &mut [f32],
    db: &mut [f32],
    cols: usize,
) -> Filled {
    let rows = dx.len() / cols;
    assert!(
        x.len() == dx.len() && dy.len() == dx.len() && rows * cols == dx.len(),
        "norm backward block: lengths"
    );
    assert!(
        rstd.len() >= rows && mean.is_none_or(|m| m.len() >= rows),
        "norm backward block: statistics lengths"
    );
    assert!(
        gamma.len() >= cols && dg.len() >= cols && db.len() >= cols,
        "norm backward block: γ, dγ, dβ lengths"
    );
    let l = S::LANES;
    let (gp, dgp, dbp, out) = (
        gamma.as_ptr(),
        dg.as_mut_ptr(),
        db.as_mut_ptr(),
        dx.as_mut_ptr(),
    );
    let inv_n = 1.0 / cols as f32;
    // Whole vectors in the main loops (k = LANES is a constant there, so the masked forms
    // fold away), one masked tail per row.
    let full = cols / l * l;
    for r in 0..rows {
        let xp = x.as_ptr().add(r * cols);
        let dyp = dy.as_ptr().add(r * cols);
        let o = out.add(r * cols);
        let (muv, rsv) = (S::splat(mean.map_or(0.0, |m| m[r])), S::splat(rstd[r]));
        // Pass 1: Σ g, Σ g x̂ (g = dy γ), and the block's dγ += dy x̂, dβ += dy.
        let mut sums = (S::splat(0.0), S::splat(0.0));
        let mut i = 0;
        while i < full {
            bwd_sums::<S>(xp, dyp, gp, dgp, dbp, muv, rsv, i, l, &mut sums);
            i += l;
        }
        if full < cols {
            bwd_sums::<S>(
                xp,
                dyp,
                gp,
                dgp,
                dbp,
                muv,
                rsv,
                full,
                cols - full,
                &mut sums,
            );
        }
        let mg = if mean.is_some() {
            S::hsum(sums.0) * inv_n
        } else {
            0.0
        };
        let (mgv, mgxv) = (S::splat(mg), S::splat(S::hsum(sums.1) * inv_n));
        // Pass 2 (the row is in L1 now): dx.
        let mut i = 0;
        while i < full {
            bwd_dx::<S>(xp, dyp, gp, o, muv, rsv, mgv, mgxv, i, l);
            i += l;
        }
        if full < cols {
            bwd_dx::<S>(xp, dyp, gp, o, muv, rsv, mgv, mgxv, full, cols - full);
        }
    }
    dx.assume_filled()
}

/// Loads `k` (≤ LANES) floats at `p + i`, zero-filled past `k`.
#[inline(always)]
unsafe fn ld<S: Simd>(p: *const f32, i: usize, k: usize) -> S::V {
    if k == S::LANES {
        S::load(p.add(i))
    } else {
        S::load_tail(p.add(i), k, 0.0)
    }
}

/// Stores the first `k` (≤ LANES) lanes of `v` at `p + i`.
#[inline(always)]
unsafe fn st<S: Simd>(p: *mut f32, i: usize, k: usize, v: S::V) {
    if k == S::LANES {
        S::store(p.add(i), v)
    } else {
        S::store_tail(p.add(i), k, v)
    }
}

/// Backward pass 1 on columns [i, i + k) of one row: `sums` += (g, g x̂) with g = dy γ,
/// x̂ = (x − μ) rstd; dγ += dy x̂, dβ += dy.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bwd_sums<S: Simd>(
    xp: *const f32,
    dyp: *const f32,
    gp: *const f32,
    dgp: *mut f32,
    dbp: *mut f32,
    muv: S::V,
    rsv: S::V,
    i: usize,
    k: usize,
    sums: &mut (S::V, S::V),
) {
    let d = ld::<S>(dyp, i, k);
    let xh = S::mul(S::sub(ld::<S>(xp, i, k), muv), rsv);
    let gd = S::mul(d, ld::<S>(gp, i, k));
    sums.0 = S::add(sums.0, gd);
    sums.1 = S::fmadd(gd, xh, sums.1);
    st::<S>(dgp, i, k, S::fmadd(d, xh, ld::<S>(dgp, i, k)));
    st::<S>(dbp, i, k, S::add(d, ld::<S>(dbp, i, k)));
}

/// Backward pass 2 on columns [i, i + k): dx = rstd·(g − mean(g) − x̂·mean(g x̂)).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bwd_dx<S: Simd>(
    xp: *const f32,
    dyp: *const f32,
    gp: *const f32,
    o: *mut f32,
    muv: S::V,
    rsv: S::V,
    mgv: S::V,
    mgxv: S::V,
    i: usize,
    k: usize,
) {
    let xh = S::mul(S::sub(ld::<S>(xp, i, k), muv), rsv);
    let gd = S::mul(ld::<S>(dyp, i, k), ld::<S>(gp, i, k));
    st::<S>(o, i, k, S::mul(rsv, S::fnmadd(xh, mgxv, S::sub(gd, mgv))));
}
