//! The `pretext` command line. Each subcommand lives in its own file and exposes
//! `Args` (clap) and `run(args) -> Result<()>`.

use clap::{Parser, Subcommand};

use crate::error::Result;

pub mod mlp;

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
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mlp(a) => mlp::run(a),
    }
}
