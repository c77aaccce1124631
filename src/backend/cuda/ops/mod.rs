//! One launcher per kernel: shape checks on raw buffers, grid and block sizing, argument
//! packing. The same code runs on the GPU and in the emulator (it only talks to an
//! [`Executor`]), so the emulated tests also cover the launch arithmetic the GPU will use.
//!
//! Conventions: row-major f32 buffers unless stated; `rows x cols` matrices are contiguous.
//! Outputs are overwritten unless the method says it accumulates.

mod activation;
mod attention;
mod elementwise;
mod embedding;
mod gemm;
mod loss;
mod norm;
mod optim;
mod reduce;
mod softmax;

pub use activation::Act;
pub use attention::{attn_bwd_smem, attn_fwd_smem, Attn, AttnParams};
pub use elementwise::{Bcast, BinOp, UnOp};
pub use gemm::Gemm;
pub use optim::AdamW;

use super::launch::{DSlice, Elem, Executor, KernelCall};
use crate::error::{Error, Result};

/// The launchers, bound to one executor.
pub struct Ops<'e> {
    pub ex: &'e dyn Executor,
}

fn need<T: Elem>(op: &'static str, what: &str, s: &DSlice<'_, T>, n: usize) -> Result<()> {
    if s.len < n {
        return Err(Error::shape(
            op,
            &[&[s.len], &[n]],
            format!(
                "buffer `{what}` has {} {} elements, needs {n}",
                s.len,
                T::NAME
            ),
        ));
    }
    Ok(())
}

fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::shape(
            op,
            &[&[v]],
            format!("`{what}` = {v} exceeds the kernel's 32-bit range"),
        )
    })
}

fn cdiv(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}

impl<'e> Ops<'e> {
    pub fn new(ex: &'e dyn Executor) -> Self {
        Ops { ex }
    }

    fn run(&self, call: KernelCall) -> Result<()> {
        call.check_space(self.ex.space())?;
        self.ex.launch(&call)
    }

    fn stride_grid(&self, n: usize) -> (u32, u32, u32) {
        (self.ex.grid_stride_blocks(n).max(1), 1, 1)
    }
}

fn writable(op: &'static str, outs: &[(&str, bool)]) -> Result<()> {
    match outs.iter().find(|(_, w)| !w) {
        None => Ok(()),
        Some((what, _)) => Err(Error::Device {
            op,
            msg: format!("output `{what}` was passed as a read-only view (DSlice::input)"),
        }),
    }
}

fn spaces(
    required: &[super::launch::Space],
    optional: &[(u64, super::launch::Space)],
) -> Vec<super::launch::Space> {
    let mut v = required.to_vec();
    v.extend(optional.iter().filter(|(p, _)| *p != 0).map(|(_, s)| *s));
    v
}

fn to_u32_grid(op: &'static str, rows: usize) -> Result<u32> {
    if rows > i32::MAX as usize {
        return Err(Error::shape(op, &[&[rows]], "too many rows for one grid"));
    }
    Ok(rows as u32)
}

fn smem_floats(op: &'static str, n: usize) -> Result<u32> {
    let bytes = n * 4;
    if bytes > 96 * 1024 {
        return Err(Error::shape(
            op,
            &[&[n]],
            "row length needs more than 96 KiB of shared memory",
        ));
    }
    Ok(bytes as u32)
}
