//! Row-wise softmax and log-softmax over the last dim, numerically stable (max subtracted),
//! forward and backward. Buffers are contiguous `rows × cols`; rows run in parallel.

use rayon::prelude::*;

/// y = exp(x − max) / Σ exp(x − max), per row.
pub fn softmax_rows(x: &[f32], y: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    y.par_chunks_mut(cols)
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

/// y = x − max − ln Σ exp(x − max), per row.
pub fn log_softmax_rows(x: &[f32], y: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    y.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(y, x)| {
            let lse = logsumexp(x);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - lse;
            }
        });
}

/// ln Σ exp(x) of one row, stable.
pub fn logsumexp(x: &[f32]) -> f32 {
    let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if m == f32::NEG_INFINITY {
        return m;
    }
    let s: f32 = x.iter().map(|&v| (v - m).exp()).sum();
    m + s.ln()
}

/// Softmax backward: dx = y ⊙ (dy − Σ_j dy_j·y_j), per row.
pub fn softmax_rows_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    dx.par_chunks_mut(cols)
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
        .zip(y.par_chunks(cols).zip(dy.par_chunks(cols)))
        .for_each(|(dx, (y, dy))| {
            let s: f32 = dy.iter().sum();
            for i in 0..cols {
                dx[i] = dy[i] - y[i].exp() * s;
            }
        });
}
