//! Row-wise softmax and log-softmax over the last dim, numerically stable (max subtracted),
//! forward and backward. Buffers are contiguous `rows × cols`; rows run in parallel.

use rayon::prelude::*;

use super::par::rows_per_task;

/// y = exp(x − max) / Σ exp(x − max), per row.
pub fn softmax_rows(x: &[f32], y: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    y.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(x.par_chunks(cols))
        .for_each(|(y, x)| {
            let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut s = 0.0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - m).exp();
                s += *y;
            }
            let inv = 1.0 / s;
            y.iter_mut().for_each(|y| *y *= inv);
        });
}

/// y = (x − max) − ln Σ exp(x − max), per row. The shift is applied before ln Σ is
/// subtracted: forming lse = max + ln Σ first would round it to the f32 spacing of max
/// (≈1e-3 for logits of 1e4) and put that error into every output.
pub fn log_softmax_rows(x: &[f32], y: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    y.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(x.par_chunks(cols))
        .for_each(|(y, x)| {
            let (m, ln_s) = max_and_log_sum(x);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = if m == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    (x - m) - ln_s
                };
            }
        });
}

/// (m, ln Σ exp(x − m)) of one row with m = max(x); lse = m + ln Σ. m = −∞ for an empty or
/// all −∞ row.
pub fn max_and_log_sum(x: &[f32]) -> (f32, f32) {
    let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    let s: f32 = x.iter().map(|&v| (v - m).exp()).sum();
    (m, s.ln())
}

/// ln Σ exp(x) of one row, stable.
pub fn logsumexp(x: &[f32]) -> f32 {
    let (m, ln_s) = max_and_log_sum(x);
    m + ln_s
}

/// Softmax backward: dx = y ⊙ (dy − Σ_j dy_j·y_j), per row.
pub fn softmax_rows_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    dx.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(y.par_chunks(cols).zip(dy.par_chunks(cols)))
        .for_each(|(dx, (y, dy))| {
            let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            for i in 0..cols {
                dx[i] = y[i] * (dy[i] - dot);
            }
        });
}

/// Log-softmax backward: dx = dy − exp(y)·Σ_j dy_j, per row (y is the log-softmax output).
pub fn log_softmax_rows_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    dx.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(y.par_chunks(cols).zip(dy.par_chunks(cols)))
        .for_each(|(dx, (y, dy))| {
            let s: f32 = dy.iter().sum();
            for i in 0..cols {
                dx[i] = dy[i] - y[i].exp() * s;
            }
        });
}
