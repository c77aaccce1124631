//! The `pretext` command line. Each subcommand lives in its own file and exposes
//! `Args` (clap) and `run(args) -> Result<()>`.

use clap::{Parser, Subcommand};

use crate::error::Result;

pub mod bench;
pub mod mlp;
pub mod prepare;

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
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mlp(a) => mlp::run(a),
        Command::Prepare(args) => prepare::run(args),
        Command::Bench(a) => bench::run(a),
    }
}
