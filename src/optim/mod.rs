//! Optimizers, learning-rate schedules and gradient clipping, acting on the leaves of a
//! `ParamStore` through their accumulated gradients.

pub mod adamw;
mod adamw_cuda;
pub mod clip;
pub mod schedule;
pub mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use adamw_cuda::DeviceMoments;
pub use clip::{clip_grad_norm, grad_norm};
pub use schedule::{CosineSchedule, LrSchedule};
pub use sgd::Sgd;
