//! Reference GEMM: three plain loops per batch entry, accumulating in f32 in k order.

use super::GemmLayout;

#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm_batched(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) {
    for ((&ao, &bo), &co) in a_offsets.iter().zip(b_offsets).zip(c_offsets) {
        for i in 0..l.m {
            for j in 0..l.n {
                let mut acc = 0.0f32;
                for p in 0..l.k {
                    acc += a[ao + i * l.a_rs + p * l.a_cs] * b[bo + p * l.b_rs + j * l.b_cs];
                }
                let cij = &mut c[co + i * l.c_rs + j * l.c_cs];
                *cij = if beta == 0.0 { acc } else { acc + beta * *cij };
            }
        }
    }
}
