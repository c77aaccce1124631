//! Cross-entropy over logits, fused with log-softmax, with `ignore_index` and label smoothing.
//!
//! For a row x ∈ ℝ^C with target y (not ignored) and smoothing ε:
//!   lse = ln Σ_c e^{x_c},   −ln p_c = lse − x_c
//!   ℓ = (1−ε)·(lse − x_y) + (ε/C)·Σ_c (lse − x_c)          (PyTorch's definition)
//! The loss is the mean of ℓ over the N' rows that are not ignored.
//!   ∂loss/∂x_c = (softmax(x)_c − (1−ε)·[c = y] − ε/C) / N'    (0 on ignored rows)

use rayon::prelude::*;

use super::par::rows_per_task;

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
    row_loss
        .par_iter_mut()
        .with_min_len(rows_per_task(cols))
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
pub fn cross_entropy_rows_backward(
    logits: &[f32],
    targets: &[i64],
    lse: &[f32],
    cols: usize,
    ignore_index: i64,
    smoothing: f32,
    scale: f32,
    dx: &mut [f32],
) {
    dx.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .enumerate()
        .for_each(|(r, dx)| {
            let t = targets[r];
            if t == ignore_index {
                dx.iter_mut().for_each(|d| *d = 0.0);
                return;
            }
            let x = &logits[r * cols..][..cols];
            let off = smoothing / cols as f32;
            for c in 0..cols {
                let p = (x[c] - lse[r]).exp();
                let q = if c as i64 == t { 1.0 - smoothing } else { 0.0 } + off;
                dx[c] = (p - q) * scale;
            }
        });
}
