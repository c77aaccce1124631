//! The AdamW parameter update on raw buffers, exactly as `torch.optim.AdamW` (and
//! `optim::AdamW`, which calls this), for each element j:
//!   w ← w·(1 − lr·λ)                              (when the parameter decays)
//!   m ← m + (1 − β1)·(g − m)
//!   v ← β2·v + ((1 − β2)·g)·g
//!   w ← w − (step_size·m) / (√v / √(1 − β2ᵗ) + ε),   step_size = lr / (1 − β1ᵗ)
//! The SIMD paths perform the same IEEE operations in the same order (no fused
//! multiply-adds, correctly rounded √ and ÷), so every path gives bit-identical results;
//! tests check this against the scalar loop.

use rayon::prelude::*;

use super::isa::{self, Isa};
use super::simd::{simd_kernel, Simd};

/// Per-step constants of the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `Some(1 − lr·λ)` for a decaying parameter.
    pub decay: Option<f32>,
    /// √(1 − β2ᵗ).
    pub bc2_sqrt: f32,
    /// lr / (1 − β1ᵗ).
    pub step_size: f32,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// One update of `w`, `m`, `v` from the gradient `g` (all the same length).
pub fn adamw_update(s: &AdamWStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    adamw_update_isa(isa::active(), s, w, g, m, v)
}

/// `adamw_update` at a given level.
pub fn adamw_update_isa(
    level: Isa,
    s: &AdamWStep,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let n = w.len().min(g.len()).min(m.len()).min(v.len());
    let (w, g, m, v) = (&mut w[..n], &g[..n], &mut m[..n], &mut v[..n]);
    if n <= CHUNK || rayon::current_num_threads() == 1 {
        update_block(level, s, w, g, m, v);
    } else {
        let _region = crate::backend::cpu::threads::region();
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((w, g), (m, v))| update_block(level, s, w, g, m, v));
    }
}

simd_kernel! {
    fn update_block(s: &AdamWStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32])
        = update_simd | update_scalar;
}

fn update_scalar(s: &AdamWStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for j in 0..w.len() {
        if let Some(d) = s.decay {
            w[j] *= d;
        }
        m[j] += (1.0 - s.beta1) * (g[j] - m[j]);
        v[j] = s.beta2 * v[j] + (1.0 - s.beta2) * g[j] * g[j];
        let denom = v[j].sqrt() / s.bc2_sqrt + s.eps;
        w[j] -= s.step_size * m[j] / denom;
    }
}

#[inline(always)]
unsafe fn update_simd<S: Simd>(
    s: &AdamWStep,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let (n, l) = (w.len(), S::LANES);
    let (wp, gp, mp, vp) = (w.as_mut_ptr(), g.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
    let (c1, b2, c2) = (
        S::splat(1.0 - s.beta1),
        S::splat(s.beta2),
        S::splat(1.0 - s.beta2),
    );
    let (bc2, eps, step) = (S::splat(s.bc2_sqrt), S::splat(s.eps), S::splat(s.step_size));
    let decay = s.decay.map(|d| S::splat(d));
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
        let st = |p: *mut f32, x: S::V| {
            if full {
                S::store(p, x)
            } else {
                S::store_tail(p, k, x)
            }
        };
        let (mut wv, gv, mut mv, mut vv) =
            (ld(wp.add(i)), ld(gp.add(i)), ld(mp.add(i)), ld(vp.add(i)));
        if let Some(d) = decay {
            wv = S::mul(wv, d);
        }
        mv = S::add(mv, S::mul(c1, S::sub(gv, mv)));
        vv = S::add(S::mul(b2, vv), S::mul(S::mul(c2, gv), gv));
        let denom = S::add(S::div(S::sqrt(vv), bc2), eps);
        wv = S::sub(wv, S::div(S::mul(step, mv), denom));
        st(wp.add(i), wv);
        st(mp.add(i), mv);
        st(vp.add(i), vv);
        i += k;
    }
}
