//! The `pretext` command line. Each subcommand lives in its own file and exposes
//! `Args` (clap) and `run(args) -> Result<()>`.

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::tensor::DType;

/// How a loaded model holds its matrices (Linear weights, embedding tables): `--weights`
/// of `generate`, `eval` and `embed`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// As f32.
    F32,
    /// As bf16 (weight-only bf16: half the bytes, f32 activations and sums; the outputs of
    /// the model with its matrices rounded to bf16).
    Bf16,
}

impl Weights {
    pub fn dtype(self) -> DType {
        match self {
            Weights::F32 => DType::F32,
            Weights::Bf16 => DType::BF16,
        }
    }
}

pub mod bench;
pub mod cuda_check;
pub mod embed;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod mlp;
pub mod prepare;
pub mod train;

#[derive(Parser, Debug)]
#[command(
    name = "pretext",
    version,
    about = "Tensor and autograd engine with transformer pre-training objectives"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a small MLP to a 2-D spiral with the autograd engine (an end-to-end check).
    Mlp(mlp::Args),
    /// Tokenize text into a corpus folder of token shards.
    Prepare(prepare::Args),
    /// Time CPU kernels (`pretext bench list` names the workloads).
    Bench(bench::Args),
    /// Pre-train a model with its objective (no arguments: a small GPT on built-in text).
    Train(Box<train::Args>),
    /// Generate text from a GPT, T5 or BART checkpoint, streaming tokens as they come.
    Generate(generate::Args),
    /// Validation loss and perplexity of a checkpoint on a corpus.
    Eval(eval::Args),
    /// Show, token by token, what an objective does to a text (and each position's loss).
    Inspect(inspect::Args),
    /// Hidden states or pooled vectors of a pretrained BERT encoder, as JSON lines.
    Embed(embed::Args),
    /// Check the CUDA backend: driver, NVRTC, kernel compilation and a GEMM on the GPU.
    CudaCheck(cuda_check::Args),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mlp(a) => mlp::run(a),
        Command::Prepare(args) => prepare::run(args),
        Command::Bench(a) => bench::run(a),
        Command::CudaCheck(a) => cuda_check::run(a),
        Command::Train(a) => train::run(*a),
        Command::Embed(a) => embed::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Generate(a) => generate::run(a),
    }
}
