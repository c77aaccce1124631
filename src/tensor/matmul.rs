//! Batched matrix product with broadcast batch dims:
//!   (…, m, k) · (…, k, n) → (…, m, n)
//! Operands are read through their strides (a transposed view costs no copy).
//! f32 · f32; f32 · bf16 (weight-only bf16: the bf16 operand widened exactly, products
//! and sums in f32; the result is f32); or bf16 · bf16 → bf16 (as `torch.matmul` on bf16
//! tensors: exact products, f32 sums, each result rounded to bf16 once).

use super::layout::{broadcast_shapes, Layout};
use super::Tensor;
use crate::backend::cpu::gemm::{
    bgemm_batched_to_bf16, sgemm_batched_new, sgemm_batched_wbf16_new, GemmLayout,
};
use crate::error::{Error, Result};
use crate::tensor::DType;

impl Tensor {
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (a, b) = (self, rhs);
        if a.rank() < 2 || b.rank() < 2 {
            return Err(Error::shape(
                "matmul",
                &[a.shape(), b.shape()],
                "both operands need rank ≥ 2 (…, m, k) and (…, k, n)",
            ));
        }
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                &[a.shape(), b.shape()],
                format!("inner dims differ: {k} vs {k2}"),
            ));
        }
        let batch = broadcast_shapes("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
        if let Some(ctx) = super::device::on_device("matmul", &[a, b])? {
            return super::device::matmul(&ctx, a, b, &batch, (m, k, n));
        }
        let batch_layout = |t: &Tensor| -> Result<Layout> {
            let r = t.rank();
            Layout {
                shape: t.shape()[..r - 2].to_vec(),
                strides: t.strides()[..r - 2].to_vec(),
                offset: t.layout.offset,
            }
            .broadcast_to("matmul", &batch)
        };
        let a_offsets: Vec<usize> = batch_layout(a)?.offsets().collect();
        let b_offsets: Vec<usize> = batch_layout(b)?.offsets().collect();
        let l = GemmLayout {
            m,
            n,
            k,
            a_rs: a.strides()[ra - 2],
            a_cs: a.strides()[ra - 1],
            b_rs: b.strides()[rb - 2],
            b_cs: b.strides()[rb - 1],
            c_rs: n,
            c_cs: 1,
        };
        let mut shape = batch;
        shape.extend([m, n]);
        match (a.dtype(), b.dtype()) {
            (DType::BF16, DType::BF16) => {
                let mut c = vec![half::bf16::ZERO; a_offsets.len() * m * n];
                let c_offsets: Vec<usize> = (0..a_offsets.len()).map(|i| i * m * n).collect();
                bgemm_batched_to_bf16(
                    &l,
                    a.storage_slice::<half::bf16>("matmul")?,
                    &a_offsets,
                    b.storage_slice::<half::bf16>("matmul")?,
                    &b_offsets,
                    0.0,
                    &mut c,
                    &c_offsets,
                )?;
                return Tensor::from_vec(c, &shape);
            }
            (DType::F32, DType::F32 | DType::BF16) => {}
            (da, db) => {
                return Err(Error::msg(format!(
                    "matmul: operands {da} {:?} · {db} {:?}: supported are f32 · f32, f32 · bf16 \
                     and bf16 · bf16 (cast one with to_dtype)",
                    a.shape(),
                    b.shape()
                )))
            }
        }
        // C is written whole by the GEMM (beta 0), not zeroed first.
        let a_data = a.storage_slice::<f32>("matmul")?;
        let c = match b.dtype() {
            DType::BF16 => sgemm_batched_wbf16_new(
                &l,
                a_data,
                &a_offsets,
                b.storage_slice::<half::bf16>("matmul")?,
                &b_offsets,
            )?,
            _ => sgemm_batched_new(
                &l,
                a_data,
                &a_offsets,
                b.storage_slice::<f32>("matmul")?,
                &b_offsets,
            )?,
        };
        Ok(Tensor::from_f32(c, &shape))
    }
}
