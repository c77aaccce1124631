//! Everything a training run is configured by, saved with each checkpoint.

use serde::{Deserialize, Serialize};

use crate::optim::CosineSchedule;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Model family: "gpt", "bert", "t5" or "bart".
    pub arch: String,
    /// Objective: "clm", "mlm", "mlm_nsp", "span" or "denoise".
    pub objective: String,
    /// Preset the model shape came from.
    pub preset: String,
    pub steps: u64,
    pub batch_size: usize,
    /// Tokens per example (GPT block size; encoder length for the others).
    pub seq_len: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup: u64,
    pub decay_iters: u64,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Global-norm clipping threshold (0 disables).
    pub grad_clip: f32,
    /// Evaluate every this many steps (and at the end).
    pub eval_interval: u64,
    /// Validation batches per evaluation.
    pub eval_iters: usize,
    /// Checkpoint every this many steps (and at the end); 0: only at the end.
    pub ckpt_interval: u64,
    pub log_interval: u64,
    pub seed: u64,
    /// Dropout probability applied to the model (overrides the preset's).
    pub dropout: f32,
    /// Precision of the f32 matrix products, forward and backward: "highest" (f32), "high"
    /// (each operand as two bf16 values, three bf16 products on AMX) or "medium" (bf16
    /// operands, f32 accumulation; `gemm::MatmulPrecision`). Weights, Adam
    /// state, activations and gradients stay f32. Checkpoints from before this field train
    /// at "highest".
    #[serde(default = "highest")]
    pub matmul_precision: String,
}

fn highest() -> String {
    "highest".into()
}

impl TrainConfig {
    pub fn schedule(&self) -> CosineSchedule {
        CosineSchedule {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            decay_iters: self.decay_iters,
        }
    }
}
