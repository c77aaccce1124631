//! Tile geometry of the attention kernels: tile sizes, which (query tile, key tile) pairs the
//! causal mask leaves, packing of a key tile as a transposed panel, and the masks and bias
//! applied to a score tile.

use std::borrow::Cow;

use super::super::isa;
use super::super::simd;
use super::layout::HeadMat;
use super::{AttnDims, BiasView};

/// Query rows per tile.
pub const BR: usize = 64;
/// Key columns per tile (a multiple of every lane width, so score rows need no padding).
pub const BC: usize = 64;

/// Number of tiles of `size` covering `n`.
pub fn count(n: usize, size: usize) -> usize {
    n.div_ceil(size)
}

/// (first index, length) of tile `t` of `size` over `n`.
pub fn span(t: usize, size: usize, n: usize) -> (usize, usize) {
    let start = t * size;
    (start, size.min(n - start))
}

/// Key tiles query tile `qt` must visit: 0..kt_end. Under the causal mask, query i sees keys
/// j ≤ i + Tk − Tq, so tiles starting after the last row's limit are wholly masked.
pub fn kt_end(dims: &AttnDims, qt: usize) -> usize {
    let nkt = count(dims.tk, BC);
    if !dims.causal {
        return nkt;
    }
    let (i0, rows) = span(qt, BR, dims.tq);
    let last_key = i0 + rows - 1 + dims.tk - dims.tq;
    nkt.min(last_key / BC + 1)
}

/// Whether the causal mask cuts into key tile [j0, j0 + cols) for query tile [i0, …): its
/// last key lies beyond the first row's limit.
pub fn causal_cut(dims: &AttnDims, i0: usize, j0: usize, cols: usize) -> bool {
    dims.causal && j0 + cols - 1 > i0 + dims.tk - dims.tq
}

/// panel[c·BC + jj] = alpha·src[j0 + jj][c] for jj < cols, 0 beyond: rows j0.. of a head's
/// (T × n) matrix as an n × BC transposed panel (the B operand of S = Q·Kᵀ or dP = dO·Vᵀ).
pub fn pack_transposed(src: HeadMat, j0: usize, cols: usize, alpha: f32, panel: &mut [f32]) {
    let n = src.n;
    let rows = &src.data[j0 * src.ld..];
    simd::transpose_scaled(isa::active(), rows, src.ld, cols, n, alpha, panel, BC);
    if cols < BC {
        for c in 0..n {
            panel[c * BC + cols..(c + 1) * BC].fill(0.0);
        }
    }
}

/// A head's (T × n) matrix with rows of `colsp` ≥ n columns (zeros past n) as a GEMM B
/// operand: (data, row stride). The matrix itself, rows `ld` apart, when n = colsp; a padded
/// copy otherwise.
pub fn padded_rows(src: HeadMat<'_>, rows: usize, colsp: usize) -> (Cow<'_, [f32]>, usize) {
    if src.n == colsp {
        return (Cow::Borrowed(src.data), src.ld);
    }
    let mut out = vec![0.0; rows * colsp];
    for (i, o) in out.chunks_exact_mut(colsp).enumerate() {
        o[..src.n].copy_from_slice(src.row(i));
    }
    (Cow::Owned(out), colsp)
}

/// Where one score tile sits: head (b, h), query rows [i0, i0 + rows), keys [j0, j0 + cols).
#[derive(Clone, Copy)]
pub struct TilePos {
    pub b: usize,
    pub h: usize,
    pub i0: usize,
    pub rows: usize,
    pub j0: usize,
    pub cols: usize,
}

/// Finish a score tile s (rows × BC, holding scale·q·k): add the bias, set masked entries to
/// f32::MIN and the padding columns past Tk to −∞ (weight 0 even in a fully masked row).
pub fn finish_scores(
    dims: &AttnDims,
    p: TilePos,
    bias: Option<BiasView>,
    keep: Option<&[bool]>,
    s: &mut [f32],
) {
    for r in 0..p.rows {
        let row = &mut s[r * BC..][..BC];
        if let Some(bv) = bias {
            for (jj, x) in row[..p.cols].iter_mut().enumerate() {
                *x += bv.at(p.b, p.h, p.i0 + r, p.j0 + jj);
            }
        }
        row[p.cols..].fill(f32::NEG_INFINITY);
    }
    fill_masked(dims, p, keep, s, f32::MIN);
}

/// Set the entries of tile s (rows × BC) whose key is masked (causal or padding) to `value`.
pub fn fill_masked(dims: &AttnDims, p: TilePos, keep: Option<&[bool]>, s: &mut [f32], value: f32) {
    if causal_cut(dims, p.i0, p.j0, p.cols) {
        for r in 0..p.rows {
            // Keys j > i + Tk − Tq are masked: local columns from (i + Tk − Tq + 1 − j0) on.
            let first = (p.i0 + r + dims.tk - dims.tq + 1).saturating_sub(p.j0);
            if first < p.cols {
                s[r * BC + first..r * BC + p.cols].fill(value);
            }
        }
    }
    if let Some(kk) = keep {
        let kk = &kk[p.b * dims.tk + p.j0..][..p.cols];
        if kk.iter().all(|&k| k) {
            return;
        }
        for r in 0..p.rows {
            for (x, _) in s[r * BC..][..p.cols]
                .iter_mut()
                .zip(kk)
                .filter(|(_, &k)| !k)
            {
                *x = value;
            }
        }
    }
}
