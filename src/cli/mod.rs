//! The `pretext` command line. Each subcommand lives in its own file and exposes
//! `Args` (clap) and `run(args) -> Result<()>`.

use clap::{Parser, Subcommand};

use crate::error::Result;

pub mod bench;

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
    /// Time CPU kernels (`pretext bench list` names the workloads).
    Bench(bench::Args),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench(a) => bench::run(a),
    }
}
