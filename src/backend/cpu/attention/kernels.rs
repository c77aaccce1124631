//! Safe entry points of the attention micro-kernels, dispatched on the instruction set chosen
//! once per call (`isa::active()`): a tile GEMM with a strided (possibly transposed) A, and
//! the row operations of the online softmax and its backward (`rows.rs`). Lengths of the vectorised row
//! operations and the GEMM's n are multiples of `lanes(isa)` (the tiles are padded to it).

use super::super::isa::Isa;
use super::{avx2, avx512, rows, scalar};

/// Vector width in f32 lanes of `isa`'s kernels (what tile widths are padded to).
pub fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => avx512::W,
        Isa::Avx2 => avx2::W,
        Isa::Scalar => 1,
    }
}

/// c (m × n, row stride ldc) = [c +] A·B, A(r, k) = a[r·rsa + k·csa] (m × kc), B (kc × n,
/// row stride ldb). Panics if an addressed element lies outside a slice or n is not a
/// multiple of `lanes(isa)` (internal invariants of the tiling, not user input).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    m: usize,
    n: usize,
    kc: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n.is_multiple_of(lanes(isa)),
        "attention gemm: n = {n} not padded"
    );
    assert!((m - 1) * ldc + n <= c.len(), "attention gemm: c too short");
    if kc > 0 {
        assert!(
            (m - 1) * rsa + (kc - 1) * csa < a.len(),
            "attention gemm: a too short"
        );
        assert!((kc - 1) * ldb + n <= b.len(), "attention gemm: b too short");
    }
    match isa {
        // SAFETY: `isa::active()` never reports a level the CPU lacks (`force` clamps), and
        // the asserts above keep every addressed element inside a, b and c.
        Isa::Avx512 => unsafe {
            avx512::gemm(
                m,
                n,
                kc,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                ldb,
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        },
        // SAFETY: as above.
        Isa::Avx2 => unsafe {
            avx2::gemm(
                m,
                n,
                kc,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                ldb,
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        },
        Isa::Scalar => scalar::gemm(m, n, kc, a, rsa, csa, b, ldb, c, ldc, accumulate),
    }
}

/// The row kernels work in whole vectors: a row length must be a multiple of the lane width.
fn padded(isa: Isa, len: usize) {
    assert!(
        len.is_multiple_of(lanes(isa)),
        "attention row kernel: length {len} not padded"
    );
}

/// One score tile's online-softmax step for its m.len() rows (s: rows × bc scores, o: rows ×
/// dvp outputs; bc and dvp padded): per row, m' = max(m, max_j s_j), s_j ← e^{s_j − m'},
/// α = e^{m − m'}, l ← α·l + Σ_j s_j, o ← α·o, m ← m'.
pub fn online_softmax_tile(
    isa: Isa,
    s: &mut [f32],
    bc: usize,
    m: &mut [f32],
    l: &mut [f32],
    o: &mut [f32],
    dvp: usize,
) {
    padded(isa, bc);
    padded(isa, dvp);
    let rows = m.len();
    assert!(
        l.len() == rows && s.len() >= rows * bc && o.len() >= rows * dvp,
        "attention online_softmax_tile: {rows} rows, l {}, s {} (bc {bc}), o {} (dvp {dvp})",
        l.len(),
        s.len(),
        o.len()
    );
    rows::online_softmax_tile(isa, s, bc, m, l, o, dvp)
}

/// s_j ← e^{s_j − m}·c.
pub fn exp_sub_mul(isa: Isa, s: &mut [f32], m: f32, c: f32) {
    padded(isa, s.len());
    rows::exp_sub_mul(isa, s, m, c)
}

/// p_j ← p_j·(dp_j − δ): the softmax backward ds = p∘(dp − ⟨do, o⟩) of one row.
pub fn dsoftmax(isa: Isa, p: &mut [f32], dp: &[f32], delta: f32) {
    padded(isa, p.len());
    assert_eq!(p.len(), dp.len(), "attention dsoftmax: row lengths");
    rows::dsoftmax(isa, p, dp, delta)
}

/// s_j = ⟨q, scale·k_j⟩ for the s.len() rows k_j = k[j·ld ..][.. q.len()]: scores of a few
/// queries read straight from the keys, without the transposed panels (decoding).
pub fn dot_rows(isa: Isa, q: &[f32], k: &[f32], ld: usize, scale: f32, s: &mut [f32]) {
    if let Some(last) = s.len().checked_sub(1) {
        assert!(
            last * ld + q.len() <= k.len(),
            "attention dot_rows: {} rows of {} at stride {ld} outside {} floats",
            s.len(),
            q.len(),
            k.len()
        );
    }
    rows::dot_rows(isa, q, k, ld, scale, s)
}

#[cfg(test)]
mod tests {
    use super::super::super::isa;
    use super::*;

    /// `online_softmax_tile` at every level this CPU has against an f64 evaluation of its
    /// definition: 70 rows (more than one 64-row pass, not a multiple of the lanes), rows
    /// whose max stays (α = 1), rises a little (α < 1), starts from f32::MIN (α = 0) or stays
    /// at f32::MIN (every score masked: α = 1, P = 1).
    #[test]
    fn online_softmax_tile_matches_f64_at_every_level() {
        let (rows, bc, dvp) = (70, 32, 16);
        let levels = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
        let score = |r: usize, j: usize| match r % 4 {
            3 => f32::MIN,
            _ => ((r * 31 + j * 17) % 23) as f32 / 4.0 - 3.0,
        };
        let m0 = |r: usize| match r % 4 {
            0 => 3.0, // above every score: the max stays
            1 => 1.5, // inside the scores' range: the max rises
            _ => f32::MIN,
        };
        let l0 = |r: usize| 1.0 + r as f32 / 8.0;
        let o0 = |r: usize, c: usize| ((r * 5 + c * 3) % 7) as f32 - 3.0;
        for level in levels.into_iter().filter(|&l| l <= isa::detected()) {
            let mut s: Vec<f32> = (0..rows * bc).map(|x| score(x / bc, x % bc)).collect();
            let mut m: Vec<f32> = (0..rows).map(m0).collect();
            let mut l: Vec<f32> = (0..rows).map(l0).collect();
            let mut o: Vec<f32> = (0..rows * dvp).map(|x| o0(x / dvp, x % dvp)).collect();
            online_softmax_tile(level, &mut s, bc, &mut m, &mut l, &mut o, dvp);
            for r in 0..rows {
                let row: Vec<f64> = (0..bc).map(|j| score(r, j) as f64).collect();
                let m_new = row.iter().fold(m0(r) as f64, |a, &b| a.max(b));
                let p: Vec<f64> = row.iter().map(|&x| (x - m_new).exp()).collect();
                let alpha = (m0(r) as f64 - m_new).exp();
                let l_want = alpha * l0(r) as f64 + p.iter().sum::<f64>();
                let close =
                    |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs());
                assert_eq!(m[r] as f64, m_new, "{level:?} row {r}: max");
                assert!(
                    close(l[r], l_want),
                    "{level:?} row {r}: l {} vs {l_want}",
                    l[r]
                );
                for j in 0..bc {
                    assert!(close(s[r * bc + j], p[j]), "{level:?} row {r} col {j}: p");
                }
                for c in 0..dvp {
                    let want = alpha * o0(r, c) as f64;
                    assert!(close(o[r * dvp + c], want), "{level:?} row {r} col {c}: o");
                }
            }
        }
    }

    /// `dot_rows` at every level this CPU has against f64 sums, for head dims with and
    /// without a partial last vector and row counts around its 4-row groups.
    #[test]
    fn dot_rows_matches_f64_at_every_level() {
        let levels = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
        for level in levels.into_iter().filter(|&l| l <= isa::detected()) {
            for d in [1, 7, 16, 24, 64, 70] {
                for cols in [1, 3, 4, 5, 9] {
                    let ld = d + 3;
                    let q: Vec<f32> = (0..d).map(|c| ((c * 7 % 11) as f32 - 5.0) / 4.0).collect();
                    let k: Vec<f32> = (0..(cols - 1) * ld + d)
                        .map(|x| ((x * 13 % 17) as f32 - 8.0) / 8.0)
                        .collect();
                    let mut s = vec![f32::NAN; cols];
                    dot_rows(level, &q, &k, ld, 0.125, &mut s);
                    for (j, &got) in s.iter().enumerate() {
                        let want: f64 = (0..d)
                            .map(|c| q[c] as f64 * 0.125 * k[j * ld + c] as f64)
                            .sum();
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{level:?} d {d} cols {cols} row {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
