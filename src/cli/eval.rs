//! `pretext eval --checkpoint DIR --data CORPUS`: the validation loss (and perplexity) of a
//! checkpoint on a corpus, over the same fixed batches the trainer evaluates on.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::train::checkpoint;
use crate::train::runner::evaluate_stream;
use crate::train::TrainConfig;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A run folder or its checkpoint/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Corpus folder (default: the one the run trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split to evaluate: val or train.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Batches to average over (default: the run's eval_iters).
    #[arg(long)]
    pub eval_iters: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    super::train::set_threads(a.threads)?;
    let dir = if a.checkpoint.join("state.json").is_file() {
        a.checkpoint.clone()
    } else {
        checkpoint::checkpoint_dir(&a.checkpoint)
    };
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: checkpoint::TrainState =
        serde_json::from_str(&text).map_err(|e| Error::format(&state_path, "state.json", e.to_string()))?;
    let model = Model::load(&dir.join("model"))?;
    let data = a.data.clone().unwrap_or(state.data.clone());
    let corpus = Corpus::open(&data, Some(model.vocab_size()))?;
    let mut cfg: TrainConfig = state.config.clone();
    if let Some(n) = a.eval_iters {
        cfg.eval_iters = n;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b;
    }
    let loss = evaluate_stream(&model, &cfg, corpus.split(&a.split)?)?;
    println!(
        "{{\"checkpoint\": {:?}, \"step\": {}, \"split\": {:?}, \"loss\": {loss}, \"perplexity\": {}, \"batches\": {}, \"batch_size\": {}, \"seq_len\": {}}}",
        dir.display().to_string(),
        state.step,
        a.split,
        (loss as f64).exp(),
        cfg.eval_iters,
        cfg.batch_size,
        cfg.seq_len
    );
    Ok(())
}
