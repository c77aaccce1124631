//! Pre-training: configuration and presets, the training loop (AdamW with warmup and cosine
//! decay, global-norm clipping, gradient accumulation, periodic evaluation), atomic
//! checkpoints with exact resume, metrics as JSONL and a loss-curve picture.
//!
//! Reproducibility: the batch and the dropout masks of step s are drawn from generators
//! seeded by (seed, s), so a resumed run sees exactly the data an uninterrupted one would.

pub mod builtin;
pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod plot;
pub mod presets;
pub mod runner;
pub mod task;

pub use config::TrainConfig;
pub use runner::{train, TrainSummary};
