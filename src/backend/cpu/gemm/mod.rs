//! f32 GEMM on raw buffers: for each batch entry i,
//!   C_i[m×n] = A_i[m×k] · B_i[k×n] + beta · C_i
//! where each matrix is read through a (row stride, column stride) pair, so a transposed
//! operand is just swapped strides, and A_i starts at `a_offsets[i]` (likewise B, C).
//! A broadcast batch operand repeats its offset. The C blocks of different i must not overlap.

mod naive;

use crate::error::{Error, Result};

/// Sizes and element strides of one GEMM problem (same for every batch entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLayout {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is m×k: element (i, p) at a[off + i·a_rs + p·a_cs].
    pub a_rs: usize,
    pub a_cs: usize,
    /// B is k×n: element (p, j) at b[off + p·b_rs + j·b_cs].
    pub b_rs: usize,
    pub b_cs: usize,
    /// C is m×n: element (i, j) at c[off + i·c_rs + j·c_cs].
    pub c_rs: usize,
    pub c_cs: usize,
}

impl GemmLayout {
    /// All three row-major and contiguous.
    pub fn row_major(m: usize, n: usize, k: usize) -> Self {
        GemmLayout {
            m,
            n,
            k,
            a_rs: k,
            a_cs: 1,
            b_rs: n,
            b_cs: 1,
            c_rs: n,
            c_cs: 1,
        }
    }

    fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    }
}

/// Checks that every matrix lies inside its buffer; the kernels rely on it.
fn check_bounds(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    c: &[f32],
    c_offsets: &[usize],
) -> Result<()> {
    if a_offsets.len() != b_offsets.len() || a_offsets.len() != c_offsets.len() {
        return Err(Error::msg(format!(
            "gemm: batch offset lists differ in length: a {}, b {}, c {}",
            a_offsets.len(),
            b_offsets.len(),
            c_offsets.len()
        )));
    }
    let ea = GemmLayout::extent(l.m, l.k, l.a_rs, l.a_cs);
    let eb = GemmLayout::extent(l.k, l.n, l.b_rs, l.b_cs);
    let ec = GemmLayout::extent(l.m, l.n, l.c_rs, l.c_cs);
    for (name, len, ext, offs) in [
        ("A", a.len(), ea, a_offsets),
        ("B", b.len(), eb, b_offsets),
        ("C", c.len(), ec, c_offsets),
    ] {
        if let Some(&o) = offs.iter().find(|&&o| ext > 0 && o + ext > len) {
            return Err(Error::msg(format!(
                "gemm: operand {name} at offset {o} spans {ext} elements, past its buffer of {len} ({l:?})"
            )));
        }
    }
    Ok(())
}

/// Batched strided f32 GEMM: `C_i = A_i · B_i + beta · C_i` with `beta` 0 (overwrite) or 1
/// (accumulate). Dispatches to the fastest kernel for the active ISA.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(l, a, a_offsets, b, b_offsets, c, c_offsets)?;
    naive::sgemm_batched(l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    Ok(())
}

/// The portable reference, exposed for tests of the fast kernels.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_reference(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(l, a, a_offsets, b, b_offsets, c, c_offsets)?;
    naive::sgemm_batched(l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    Ok(())
}
