//! The precision f32 matrix products may use, process-wide, like PyTorch's
//! `torch.set_float32_matmul_precision`:
//!   highest: C = A·B with f32 products and f32 sums (the default);
//!   high:    each operand as the sum of two bf16 values, x = hi + lo + r (|r| ≤ 2⁻¹⁶·|x|),
//!            C = Ah·Bl + Al·Bh + Ah·Bh: three bf16 products, f32 sums (`bf16x3`), relative
//!            error per product < 2⁻¹⁴ (about 16 significant bits, as PyTorch's "high"
//!            describes). Taken on AMX tiles, where it runs about twice as fast as
//!            "highest"; elsewhere, and for a few rows or columns, computed as "highest".
//!   medium:  C = bf16(A)·bf16(B) — each operand rounded to bf16 (8-bit significand, nearest
//!            even) while packing, each product exact in f32, f32 sums — on the bf16 kernels
//!            (AMX tiles, or `vdpbf16ps`), for mixed-precision training with f32 master
//!            weights, activations and gradients. Relative error per product ≤ 2⁻⁸.
//! Every f32 entry point without an explicit kernel (`sgemm_batched`, hence
//! `Tensor::matmul` and the matmuls of every model, forward and backward) follows it.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPrecision {
    Highest = 0,
    High = 1,
    Medium = 2,
}

impl MatmulPrecision {
    pub const NAMES: &'static [&'static str] = &["highest", "high", "medium"];

    pub fn parse(s: &str) -> Result<MatmulPrecision> {
        match s {
            "highest" => Ok(MatmulPrecision::Highest),
            "high" => Ok(MatmulPrecision::High),
            "medium" => Ok(MatmulPrecision::Medium),
            other => Err(Error::msg(format!(
                "unknown matmul precision \"{other}\"; expected highest (f32), high (each \
                 operand as two bf16 values, three bf16 products) or medium (bf16 operands, \
                 f32 accumulation)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(MatmulPrecision::Highest as u8);

/// Sets the precision of every later f32 matrix product in this process.
pub fn set_matmul_precision(p: MatmulPrecision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
}

pub fn matmul_precision() -> MatmulPrecision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => MatmulPrecision::Highest,
        1 => MatmulPrecision::High,
        _ => MatmulPrecision::Medium,
    }
}

/// Sets a precision until dropped, then restores the one before.
pub struct PrecisionGuard(MatmulPrecision);

impl PrecisionGuard {
    pub fn set(p: MatmulPrecision) -> PrecisionGuard {
        let before = matmul_precision();
        set_matmul_precision(p);
        PrecisionGuard(before)
    }
}

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        set_matmul_precision(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_named() {
        for &n in MatmulPrecision::NAMES {
            assert_eq!(MatmulPrecision::parse(n).unwrap().name(), n);
        }
        let e = MatmulPrecision::parse("low").unwrap_err().to_string();
        assert!(
            e.contains("\"low\"") && e.contains("high") && e.contains("medium"),
            "{e}"
        );
    }
}
