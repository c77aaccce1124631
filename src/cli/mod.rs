//! The `pretext` command line. Each subcommand lives in its own file and exposes
//! `Args` (clap) and `run(args) -> Result<()>`.

use clap::{Parser, Subcommand};

use crate::error::Result;

pub mod cuda_check;

#[derive(Parser, Debug)]
#[command(name = "pretext", version, about = "Tensor and autograd engine with transformer pre-training objectives")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the CUDA backend: driver, NVRTC, kernel compilation and a GEMM on the GPU.
    CudaCheck(cuda_check::Args),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CudaCheck(a) => cuda_check::run(a),
    }
}
