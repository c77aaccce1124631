//! The row operations of attention's online softmax and its backward, written once over
//! `Simd` (AVX-512 and AVX2 from the same body) with the scalar loops of `scalar.rs` as the
//! reference. Rows are padded to whole vectors (`kernels::lanes`).
//!
//! e^{s − m} is `exp_nonpositive_flushed` (s ≤ m in every call): ≤ 2.5·10⁻⁷ relative error
//! down to −87, exactly 0 below, so masked scores (f32::MIN − m) and far-below-max keys give
//! 0 without subnormal results; the scalar reference is `f32::exp`.

use super::super::simd::{self, simd_kernel, Simd};
use super::scalar;

simd_kernel! {
    /// One score tile's online-softmax step, for each row r of m.len() rows (s: rows × bc,
    /// o: rows × dvp): m' = max(m_r, max_j s_rj); s_rj ← e^{s_rj − m'}; α = e^{m_r − m'}
    /// (0 below −87); l_r ← α·l_r + Σ_j s_rj; o_r ← α·o_r (when α ≠ 1); m_r ← m'.
    pub(super) fn online_softmax_tile(s: &mut [f32], bc: usize, m: &mut [f32], l: &mut [f32], o: &mut [f32], dvp: usize) = online_softmax_tile_simd | scalar::online_softmax_tile;
}
simd_kernel! {
    /// s_j ← e^{s_j − m}·c.
    pub(super) fn exp_sub_mul(s: &mut [f32], m: f32, c: f32) = exp_sub_mul_simd | scalar::exp_sub_mul;
}
simd_kernel! {
    /// p_j ← p_j·(dp_j − δ).
    pub(super) fn dsoftmax(p: &mut [f32], dp: &[f32], delta: f32) = dsoftmax_simd | scalar::dsoftmax;
}
simd_kernel! {
    /// s_j = Σ_c q_c·(scale·k_j[c]) for the s.len() rows k_j = k[j·ld ..][.. q.len()].
    pub(super) fn dot_rows(q: &[f32], k: &[f32], ld: usize, scale: f32, s: &mut [f32]) = dot_rows_simd | scalar::dot_rows;
}

// Each body walks whole vectors: the caller (`kernels.rs`) checks that the lengths are
// multiples of S::LANES, so every load and store stays inside its slice (`dot_rows` reads
// its rows' tails with masked loads instead; the caller checks that every row is in k).

#[inline(always)]
unsafe fn row_max_simd<S: Simd>(s: &[f32]) -> f32 {
    let mut m = S::splat(f32::MIN);
    for ch in s.chunks_exact(S::LANES) {
        m = S::max(m, S::load(ch.as_ptr()));
    }
    S::hmax(m)
}

/// Rows per pass of `online_softmax_tile_simd` (attention's query tile; a multiple of every
/// lane width).
const PASS_ROWS: usize = 64;

/// `online_softmax_tile` over up to 64 rows at a time, in separate sweeps whose per-row
/// dependency chains are short, so that out-of-order execution overlaps many rows: every
/// row's max m' (loads, vector max, one reduction); then every row's exponentials, stored,
/// their sum left as a vector; then the sums reduced; then α = e^{m − m'} for LANES rows
/// per vector exponential and the rescaling of l and O. One sweep per row (max, reduction,
/// exponentials, reduction: one dependency chain of ~120 cycles per row) spent most of its
/// time waiting on the reductions, and the attention forward took 5-7% longer; a scalar
/// `exp` per row for α (a libm call, across which every vector register is lost) cost
/// more than the row's exponentials.
#[inline(always)]
unsafe fn online_softmax_tile_simd<S: Simd>(
    s: &mut [f32],
    bc: usize,
    m: &mut [f32],
    l: &mut [f32],
    o: &mut [f32],
    dvp: usize,
) {
    let rows = m.len();
    // Each row's vector of partial sums (lane q: Σ over the columns ≡ q mod LANES; room
    // for 16 lanes, the widest `Simd`).
    let mut partial = [0.0f32; PASS_ROWS * 16];
    for r0 in (0..rows).step_by(PASS_ROWS) {
        let n = (rows - r0).min(PASS_ROWS);
        let (m, l) = (&mut m[r0..r0 + n], &mut l[r0..r0 + n]);
        let s = &mut s[r0 * bc..][..n * bc];
        // m − m' per row (≤ 0; 0 past n, so those lanes give α = 1 and are not used).
        let mut gap = [0.0f32; PASS_ROWS];
        for (i, (srow, mr)) in s.chunks_exact(bc).zip(m.iter_mut()).enumerate() {
            let m_new = mr.max(row_max_simd::<S>(srow));
            gap[i] = *mr - m_new;
            *mr = m_new;
        }
        for ((srow, &mr), acc) in s
            .chunks_exact_mut(bc)
            .zip(m.iter())
            .zip(partial.chunks_exact_mut(S::LANES))
        {
            S::store(acc.as_mut_ptr(), exp_sub_sum_vec::<S>(srow, mr));
        }
        for ch in gap.chunks_exact_mut(S::LANES).take(n.div_ceil(S::LANES)) {
            let alpha = simd::exp_nonpositive_flushed::<S>(S::load(ch.as_ptr()));
            S::store(ch.as_mut_ptr(), alpha);
        }
        for (i, (lr, &alpha)) in l.iter_mut().zip(&gap).enumerate() {
            *lr = *lr * alpha + S::hsum(S::load(partial[i * S::LANES..].as_ptr()));
            if alpha != 1.0 {
                scale_simd::<S>(&mut o[(r0 + i) * dvp..][..dvp], alpha);
            }
        }
    }
}

/// s_j ← e^{s_j − m}; returns the vector of partial sums (not yet reduced across lanes).
#[inline(always)]
unsafe fn exp_sub_sum_vec<S: Simd>(s: &mut [f32], m: f32) -> S::V {
    let mv = S::splat(m);
    let mut acc = S::splat(0.0);
    for ch in s.chunks_exact_mut(S::LANES) {
        let e = simd::exp_nonpositive_flushed::<S>(S::sub(S::load(ch.as_ptr()), mv));
        S::store(ch.as_mut_ptr(), e);
        acc = S::add(acc, e);
    }
    acc
}

#[inline(always)]
unsafe fn exp_sub_mul_simd<S: Simd>(s: &mut [f32], m: f32, c: f32) {
    let (mv, cv) = (S::splat(m), S::splat(c));
    for ch in s.chunks_exact_mut(S::LANES) {
        let e = simd::exp_nonpositive_flushed::<S>(S::sub(S::load(ch.as_ptr()), mv));
        S::store(ch.as_mut_ptr(), S::mul(e, cv));
    }
}

#[inline(always)]
unsafe fn dsoftmax_simd<S: Simd>(p: &mut [f32], dp: &[f32], delta: f32) {
    let dv = S::splat(delta);
    for (ch, g) in p.chunks_exact_mut(S::LANES).zip(dp.chunks_exact(S::LANES)) {
        let y = S::sub(S::load(g.as_ptr()), dv);
        S::store(ch.as_mut_ptr(), S::mul(S::load(ch.as_ptr()), y));
    }
}

#[inline(always)]
unsafe fn scale_simd<S: Simd>(x: &mut [f32], c: f32) {
    let cv = S::splat(c);
    for ch in x.chunks_exact_mut(S::LANES) {
        S::store(ch.as_mut_ptr(), S::mul(S::load(ch.as_ptr()), cv));
    }
}

/// Four rows of k at a time against q held in registers chunk by chunk, each row's sum in its
/// own vector (lane l sums the columns ≡ l mod LANES), then reduced across lanes.
#[inline(always)]
unsafe fn dot_rows_simd<S: Simd>(q: &[f32], k: &[f32], ld: usize, scale: f32, s: &mut [f32]) {
    let (d, w) = (q.len(), S::LANES);
    let sv = S::splat(scale);
    // Lanes 0..n of the chunk at column c of row `p` (n = w but at the tail).
    let chunk = |p: *const f32, c: usize| {
        if c + w <= d {
            S::load(p.add(c))
        } else {
            S::load_tail(p.add(c), d - c, 0.0)
        }
    };
    let mut j = 0;
    while j + 4 <= s.len() {
        let rows = [0, 1, 2, 3].map(|r| k.as_ptr().add((j + r) * ld));
        let mut acc = [S::splat(0.0); 4];
        for c in (0..d).step_by(w) {
            let qv = chunk(q.as_ptr(), c);
            for r in 0..4 {
                acc[r] = S::fmadd(qv, S::mul(chunk(rows[r], c), sv), acc[r]);
            }
        }
        for r in 0..4 {
            s[j + r] = S::hsum(acc[r]);
        }
        j += 4;
    }
    for (jj, x) in s.iter_mut().enumerate().skip(j) {
        let row = k.as_ptr().add(jj * ld);
        let mut acc = S::splat(0.0);
        for c in (0..d).step_by(w) {
            acc = S::fmadd(chunk(q.as_ptr(), c), S::mul(chunk(row, c), sv), acc);
        }
        *x = S::hsum(acc);
    }
}
