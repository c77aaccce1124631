//! pretext: a from-scratch tensor and autograd engine with SIMD CPU and CUDA kernels,
//! on which BERT, GPT-2, T5 and BART and their pre-training objectives are built.
//!
//! Layers, each depending only on those before it:
//! `backend::{cpu,cuda}` (kernels on raw buffers) → `tensor` → `autograd` → `nn` → `models`;
//! `data` (tokenizers, shards) → `objectives` → `optim` → `train` / `generate` → `cli`.

pub mod autograd;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod generate;
pub mod models;
pub mod nn;
pub mod objectives;
pub mod optim;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
