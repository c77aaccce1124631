//! Weight-only bf16: f32 activations times bf16 weights, for inference from a model whose
//! matrices are stored in bf16 (half the bytes a decoding step streams):
//!   C_i = A_i · widen(B_i) + beta · C_i,   A f32 (m×k), B bf16 (k×n), C f32,
//! where widen(b) is the f32 with b's bits (exact). The products and sums are the f32 GEMM's
//! on the widened B, at the same kernel level and in the same order: the result equals
//! `sgemm_batched_isa` on `widen(B)` bit for bit (A is never rounded, unlike the bf16 paths
//! of `sgemm_batched_bf16`, whose rounding of activations this avoids).
//!
//! - Decoding (m ≤ 8, B = Wᵀ with W's rows contiguous along k): the gemv dot form, W widened
//!   as it is loaded (`gemv::dot_f32_bf16`).
//! - Everything else (a prompt, B's columns strided): the packed path, with B widened as it
//!   is packed (`pack::Bf16ToF32`) and A packed (or read) as in the f32 GEMM.
//!
//! The f32 entry points' process-wide `matmul_precision` does not apply: this product keeps
//! A in f32 by definition.

use half::bf16;

use super::driver::COut;
use super::{check_bounds, gemv, gemv_wbf16, new_c, pack, prescale, run_f32};
use crate::backend::cpu::isa::{self, Isa};
use crate::error::Result;

/// `C_i = A_i · widen(B_i) + beta · C_i` (beta 0 or 1 in effect: other values scale C first)
/// with an explicit kernel level (clamped to the CPU), so tests can run every path.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_wbf16_isa(
    level: Isa,
    l: &super::GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    wbf16(
        level,
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        &mut COut::from(c),
        c_offsets,
    )
}

/// `sgemm_batched_wbf16_isa` at the active level with beta 0, into a new row-major C (block
/// i at i·m·n) that is not zeroed first (see `sgemm_batched_new`).
pub fn sgemm_batched_wbf16_new(
    l: &super::GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
) -> Result<Vec<f32>> {
    new_c(l, a_offsets.len(), |c, c_offsets| {
        wbf16(
            isa::active(),
            l,
            a,
            a_offsets,
            b,
            b_offsets,
            0.0,
            c,
            c_offsets,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn wbf16(
    level: Isa,
    l: &super::GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    let level = level.min(isa::detected());
    if gemv::form(l) == Some(gemv::Form::Dot) {
        let acc = prescale(l, beta, c, c_offsets);
        gemv::run_with(
            gemv::Form::Dot,
            level,
            l,
            a,
            a_offsets,
            b,
            b_offsets,
            acc,
            c,
            c_offsets,
            |job| gemv_wbf16::dot(level, job),
        );
        return Ok(());
    }
    run_f32::<pack::F32, pack::Bf16ToF32>(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    Ok(())
}
