//! Moving a model's parameters between the host and a CUDA device (real or emulated): each
//! leaf's value (and gradient, if any) is replaced by its copy on the target, so the same
//! model code then runs on the device (its ops dispatch on where their operands live).

use super::ParamStore;
use crate::backend::cuda::CudaContext;
use crate::error::Result;
use crate::tensor::Tensor;

impl ParamStore {
    /// Put every parameter (and any accumulated gradient) on `ctx`.
    pub fn to_cuda(&self, ctx: &CudaContext) -> Result<()> {
        self.move_all(&|t| t.to_cuda(ctx))
    }

    /// Bring every parameter (and any accumulated gradient) back to the host.
    pub fn to_cpu(&self) -> Result<()> {
        self.move_all(&|t| t.to_cpu())
    }

    fn move_all(&self, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
        for v in self.vars() {
            if let Some(g) = v.grad() {
                v.set_grad(Some(f(&g)?));
            }
            let moved = f(&v.value())?;
            v.update_value(|t| *t = moved)?;
        }
        Ok(())
    }
}
