//! LayerNorm and RMSNorm over the last dim, forward and backward (llm.c style), on
//! contiguous `rows × cols` buffers. Forward saves per-row statistics for the backward.
//!
//! LayerNorm: μ = mean(x), rstd = 1/√(var(x) + ε) (biased variance), x̂ = (x − μ)·rstd,
//!            y = γ ⊙ x̂ + β.
//!   backward: g = dy ⊙ γ; dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); dγ = Σ_rows dy ⊙ x̂; dβ = Σ_rows dy.
//! RMSNorm:   rstd = 1/√(mean(x²) + ε), x̂ = x·rstd, y = γ ⊙ x̂.
//!   backward: g = dy ⊙ γ; dx = rstd·(g − x̂·mean(g ⊙ x̂)); dγ = Σ_rows dy ⊙ x̂.

use rayon::prelude::*;

use super::par::rows_per_task;

/// Rows per parallel task in the backward (each task keeps its own dγ, dβ partial sums).
const ROWS_PER_TASK: usize = 64;

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows(
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    y.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(x.par_chunks(cols))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((y, x), (mu, rs))| {
            let m = x.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / cols as f64;
            let r = 1.0 / (var + eps as f64).sqrt();
            *mu = m as f32;
            *rs = r as f32;
            for i in 0..cols {
                let mut v = ((x[i] as f64 - m) * r) as f32;
                if let Some(g) = gamma {
                    v *= g[i];
                }
                if let Some(b) = beta {
                    v += b[i];
                }
                y[i] = v;
            }
        });
}

/// Adds into `dgamma` / `dbeta` (when given) and overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows_backward(
    x: &[f32],
    gamma: Option<&[f32]>,
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    cols: usize,
) {
    norm_backward(x, gamma, Some(mean), rstd, dy, dx, dgamma, dbeta, cols)
}

pub fn rms_norm_rows(
    x: &[f32],
    gamma: Option<&[f32]>,
    eps: f32,
    y: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    y.par_chunks_mut(cols)
        .with_min_len(rows_per_task(cols))
        .zip(x.par_chunks(cols))
        .zip(rstd.par_iter_mut())
        .for_each(|((y, x), rs)| {
            let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / cols as f64;
            let r = (1.0 / (ms + eps as f64).sqrt()) as f32;
            *rs = r;
            for i in 0..cols {
                y[i] = x[i] * r * gamma.map_or(1.0, |g| g[i]);
            }
        });
}

pub fn rms_norm_rows_backward(
    x: &[f32],
    gamma: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    cols: usize,
) {
    norm_backward(x, gamma, None, rstd, dy, dx, dgamma, None, cols)
}

/// Shared backward: `mean` is `None` for RMSNorm (no centring, no mean(g) term).
#[allow(clippy::too_many_arguments)]
fn norm_backward(
    x: &[f32],
    gamma: Option<&[f32]>,
    mean: Option<&[f32]>,
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    cols: usize,
) {
    let chunk = ROWS_PER_TASK * cols;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(t, dx)| {
            let mut dg = vec![0.0f32; cols];
            let mut db = vec![0.0f32; cols];
            for (r_local, dx) in dx.chunks_mut(cols).enumerate() {
                let r = t * ROWS_PER_TASK + r_local;
                let x = &x[r * cols..][..cols];
                let dy = &dy[r * cols..][..cols];
                let mu = mean.map_or(0.0, |m| m[r]);
                let rs = rstd[r];
                let (mut mean_g, mut mean_gx) = (0.0f32, 0.0f32);
                for i in 0..cols {
                    let xh = (x[i] - mu) * rs;
                    let g = dy[i] * gamma.map_or(1.0, |gm| gm[i]);
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
                    let g = dy[i] * gamma.map_or(1.0, |gm| gm[i]);
                    dx[i] = rs * (g - mean_g - xh * mean_gx);
                }
            }
            (dg, db)
        })
        .collect();
    if let Some(dgamma) = dgamma {
        for (dg, _) in &partials {
            dgamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
        }
    }
    if let Some(dbeta) = dbeta {
        for (_, db) in &partials {
            dbeta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
        }
    }
}
