//! Cross-entropy over logits, fused with log-softmax, with `ignore_index` and label smoothing.
//!
//! For a row x ∈ ℝ^C with target y (not ignored) and smoothing ε:
//!   lse = ln Σ_c e^{x_c},   −ln p_c = lse − x_c
//!   ℓ = (1−ε)·(lse − x_y) + (ε/C)·Σ_c (lse − x_c)          (PyTorch's definition)
//! The loss is the mean of ℓ over the N' rows that are not ignored.
//!   ∂loss/∂x_c = (softmax(x)_c − (1−ε)·[c = y] − ε/C) / N'    (0 on ignored rows)
//! The row max / log-sum and the backward's e^{x − lse} run on the SIMD paths of
//! `softmax` (chosen by `isa::active()`); the scalar code is the reference.

use rayon::prelude::*;

use super::isa::{self, Isa};
use super::par::{row_block, rows_mut, Fill, Filled, Out};
use super::simd::{self, simd_kernel, Simd};
use super::softmax::max_and_log_sum;

/// Per-row losses (0 for ignored rows) and the per-row logsumexp kept for the backward.
/// Returns an error message naming the first target out of range.
pub fn cross_entropy_rows(
    logits: &[f32],
    targets: &[i64],
    cols: usize,
    ignore_index: i64,
    smoothing: f32,
    row_loss: &mut [f32],
    lse: &mut [f32],
) -> Result<(), String> {
    if let Some((r, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t != ignore_index && (t < 0 || t as usize >= cols))
    {
        return Err(format!(
            "target {t} at row {r} is outside 0..{cols} (and not ignore_index {ignore_index})"
        ));
    }
    let block = row_block(row_loss.len(), cols, 2);
    let _region = crate::backend::cpu::threads::region();
    row_loss
        .par_iter_mut()
        .with_min_len(block)
        .zip(lse.par_iter_mut())
        .enumerate()
        .for_each(|(r, (loss, lse))| {
            let x = &logits[r * cols..][..cols];
            let (m, ln_s) = max_and_log_sum(x);
            *lse = m + ln_s;
            let t = targets[r];
            *loss = if t == ignore_index {
                0.0
            } else {
                // lse − x_c as (m − x_c) + ln Σ: no rounding of lse to the spacing of m.
                let nll = (m - x[t as usize]) + ln_s;
                if smoothing > 0.0 {
                    let mean_shift =
                        x.iter().map(|&v| (m - v) as f64).sum::<f64>() as f32 / cols as f32;
                    (1.0 - smoothing) * nll + smoothing * (mean_shift + ln_s)
                } else {
                    nll
                }
            };
        });
    Ok(())
}

/// dx for the mean loss scaled by `scale` (the upstream gradient divided by N').
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_rows_backward<'o>(
    logits: &[f32],
    targets: &[i64],
    lse: &[f32],
    cols: usize,
    ignore_index: i64,
    smoothing: f32,
    scale: f32,
    dx: impl Into<Out<'o>>,
) {
    cross_entropy_rows_backward_isa(
        isa::active(),
        logits,
        targets,
        lse,
        cols,
        ignore_index,
        smoothing,
        scale,
        dx,
    )
}

/// `cross_entropy_rows_backward` at a given level.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_rows_backward_isa<'o>(
    level: Isa,
    logits: &[f32],
    targets: &[i64],
    lse: &[f32],
    cols: usize,
    ignore_index: i64,
    smoothing: f32,
    scale: f32,
    dx: impl Into<Out<'o>>,
) {
    rows_mut(dx, cols, 2, |r0, dx| {
        dx.write_rows(cols, |j, mut dx| {
            let r = r0 + j;
            let t = targets[r];
            if t == ignore_index {
                return dx.write_iter(std::iter::repeat(0.0));
            }
            let x = &logits[r * cols..][..dx.len()];
            let off = smoothing / cols as f32;
            // (softmax − ε/C)·scale everywhere, then the target's −(1 − ε)·scale.
            let done = ce_row_bwd(level, x, lse[r], off, scale, dx.reborrow());
            let t = t as usize;
            let q = (1.0 - smoothing) + off;
            dx.set(t, ((x[t] - lse[r]).exp() - q) * scale);
            done
        })
    });
}

simd_kernel! {
    /// dx = (e^{x − lse} − off)·scale over one row.
    fn ce_row_bwd(x: &[f32], lse: f32, off: f32, scale: f32, dx: Fill<'_>) -> Filled
        = ce_row_bwd_simd | ce_row_bwd_scalar;
}

fn ce_row_bwd_scalar(x: &[f32], lse: f32, off: f32, scale: f32, dx: Fill<'_>) -> Filled {
    dx.write_iter(x.iter().map(|&v| ((v - lse).exp() - off) * scale))
}

#[inline(always)]
unsafe fn ce_row_bwd_simd<S: Simd>(
    x: &[f32],
    lse: f32,
    off: f32,
    scale: f32,
    mut dx: Fill<'_>,
) -> Filled {
    assert_eq!(
        x.len(),
        dx.len(),
        "cross-entropy row: logits and dx lengths"
    );
    let (n, l, p, o) = (x.len(), S::LANES, x.as_ptr(), dx.as_mut_ptr());
    let (lv, ov, sv) = (S::splat(lse), S::splat(off), S::splat(scale));
    let mut i = 0;
    while i < n {
        let k = (n - i).min(l);
        let v = if k == l {
            S::load(p.add(i))
        } else {
            S::load_tail(p.add(i), k, 0.0)
        };
        let d = S::mul(S::sub(simd::exp_nonpositive::<S>(S::sub(v, lv)), ov), sv);
        if k == l {
            S::store(o.add(i), d);
        } else {
            S::store_tail(o.add(i), k, d);
        }
        i += k;
    }
    dx.assume_filled()
}
