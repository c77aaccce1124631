//! Portable scalar versions of the attention micro-kernels (the reference every SIMD path is
//! tested against): plain loops, `f32::exp`.

/// C (m × n, row stride ldc) = [C +] A·B with A(r, k) = a[r·rsa + k·csa] (m × kc) and
/// B (kc × n, row stride ldb).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    m: usize,
    n: usize,
    kc: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    acc: bool,
) {
    for r in 0..m {
        let cr = &mut c[r * ldc..][..n];
        if !acc {
            cr.fill(0.0);
        }
        for k in 0..kc {
            let ark = a[r * rsa + k * csa];
            for (x, &bb) in cr.iter_mut().zip(&b[k * ldb..][..n]) {
                *x += ark * bb;
            }
        }
    }
}

pub(super) fn row_max(s: &[f32]) -> f32 {
    s.iter().fold(f32::MIN, |a, &b| a.max(b))
}

pub(super) fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mut sum = 0.0;
    for x in s.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    sum
}

/// `rows::online_softmax_tile` row by row, e^{m − m'} by `f32::exp` (0 below −87, as the
/// vector kernels flush).
pub(super) fn online_softmax_tile(
    s: &mut [f32],
    bc: usize,
    m: &mut [f32],
    l: &mut [f32],
    o: &mut [f32],
    dvp: usize,
) {
    for (r, (mr, lr)) in m.iter_mut().zip(l.iter_mut()).enumerate() {
        let srow = &mut s[r * bc..][..bc];
        let m_new = mr.max(row_max(srow));
        let sum = exp_sub_sum(srow, m_new);
        let gap = *mr - m_new;
        let alpha = if gap < super::super::simd::FLUSH_BELOW {
            0.0
        } else {
            gap.exp()
        };
        *lr = *lr * alpha + sum;
        if alpha != 1.0 {
            scale(&mut o[r * dvp..][..dvp], alpha);
        }
        *mr = m_new;
    }
}

pub(super) fn exp_sub_mul(s: &mut [f32], m: f32, c: f32) {
    s.iter_mut().for_each(|x| *x = (*x - m).exp() * c);
}

pub(super) fn dsoftmax(p: &mut [f32], dp: &[f32], delta: f32) {
    p.iter_mut().zip(dp).for_each(|(x, &g)| *x *= g - delta);
}

pub(super) fn scale(x: &mut [f32], c: f32) {
    x.iter_mut().for_each(|v| *v *= c);
}

/// s_j = Σ_c q_c·(scale·k_j[c]), k_j = k[j·ld ..][.. q.len()].
pub(super) fn dot_rows(q: &[f32], k: &[f32], ld: usize, scale: f32, s: &mut [f32]) {
    for (j, x) in s.iter_mut().enumerate() {
        let row = &k[j * ld..][..q.len()];
        *x = q.iter().zip(row).map(|(&a, &b)| a * (scale * b)).sum();
    }
}
