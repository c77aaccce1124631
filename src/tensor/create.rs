//! Tensor creation: from data, constants, ranges and seeded random draws.

use super::layout::numel;
use super::storage::{CpuStorage, Element};
use super::{Rng, Tensor};
use crate::error::{Error, Result};

impl Tensor {
    /// A tensor of `shape` holding `data` in row-major order.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        // Checked product: a shape from a file may be absurd; that is an error, not a panic.
        let slots = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if slots != Some(data.len()) {
            let slots = slots.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            return Err(Error::shape(
                "from_vec",
                &[shape],
                format!("{} elements given for {slots} slots", data.len()),
            ));
        }
        Ok(Tensor::from_storage(T::wrap(data), shape))
    }

    /// A zero-dimensional f32 tensor.
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::from_f32(vec![v], &[])
    }

    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Tensor::from_f32(vec![v; numel(shape)], shape)
    }
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }
    pub fn zeros_like(t: &Tensor) -> Tensor {
        Tensor::zeros(t.shape())
    }
    pub fn ones_like(t: &Tensor) -> Tensor {
        Tensor::ones(t.shape())
    }

    /// f32 values start, start+step, … below end (like `torch.arange`).
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || (end - start) / step < 0.0 {
            return Err(Error::msg(format!(
                "arange: no values from {start} to {end} in steps of {step}"
            )));
        }
        let n = ((end - start) / step).ceil() as usize;
        let v: Vec<f32> = (0..n).map(|i| start + i as f32 * step).collect();
        Ok(Tensor::from_f32(v, &[n]))
    }

    /// i64 ids start..end (positions, labels).
    pub fn arange_i64(start: i64, end: i64) -> Tensor {
        let v: Vec<i64> = (start..end.max(start)).collect();
        let n = v.len();
        Tensor::from_storage(CpuStorage::I64(v), &[n])
    }

    /// Samples of N(mean, std²).
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Tensor {
        let v = (0..numel(shape))
            .map(|_| mean + std * rng.normal() as f32)
            .collect();
        Tensor::from_f32(v, shape)
    }

    /// Samples of U[lo, hi).
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
        let v = (0..numel(shape))
            .map(|_| lo + (hi - lo) * rng.next_f32())
            .collect();
        Tensor::from_f32(v, shape)
    }
}
