//! `pretext eval --checkpoint DIR --data CORPUS`: the validation loss (and perplexity) of a
//! checkpoint on a corpus, over the same fixed batches the trainer evaluates on.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::Weights;
use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::train::checkpoint;
use crate::train::runner::evaluate;
use crate::train::task::{clm_sweep, Task};
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
    /// CLM only: instead of random batches, sweep every window of the split (the exact
    /// mean that random-window evaluation estimates, free of sampling noise).
    #[arg(long)]
    pub all_windows: bool,
    #[arg(long)]
    pub threads: Option<usize>,
    /// f32, or bf16: the loss of the model with its matrices held in bf16 (what weight-only
    /// bf16 inference costs in loss).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
}

pub fn run(a: Args) -> Result<()> {
    super::train::in_pool(a.threads, || run_in_pool(a))
}

fn run_in_pool(a: Args) -> Result<()> {
    let dir = if a.checkpoint.join("state.json").is_file() {
        a.checkpoint.clone()
    } else {
        checkpoint::checkpoint_dir(&a.checkpoint)
    };
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: checkpoint::TrainState = serde_json::from_str(&text)
        .map_err(|e| Error::format(&state_path, "state.json", e.to_string()))?;
    let model = Model::load_as(&dir.join("model"), a.weights.dtype())?;
    let data = a.data.clone().unwrap_or(state.data.clone());
    let corpus = Corpus::open(&data, Some(model.vocab_size()))?;
    let mut cfg: TrainConfig = state.config.clone();
    if let Some(n) = a.eval_iters {
        cfg.eval_iters = n;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b;
    }
    let tokenizer = crate::data::Tokenizer::load(&dir.join("tokenizer"))?;
    let task = Task::new(&cfg.objective, cfg.seq_len, &tokenizer)?;
    let stream = corpus.split(&a.split)?;
    if a.all_windows {
        let Some((loss, acc, windows)) = clm_sweep(&task, &model, stream, cfg.batch_size)? else {
            return Err(Error::msg(format!(
                "eval --all-windows: the run's objective is {}, but a sweep over windows is defined for clm only",
                cfg.objective
            )));
        };
        let out = serde_json::json!({
            "checkpoint": dir.display().to_string(),
            "step": state.step,
            "objective": cfg.objective,
            "split": a.split,
            "weights": a.weights.dtype().to_string(),
            "loss": loss,
            "perplexity": loss.exp(),
            "token_accuracy": acc,
            "windows": windows,
            "seq_len": cfg.seq_len,
        });
        println!("{out}");
        return Ok(());
    }
    let e = evaluate(&model, &cfg, &task, stream)?;
    let out = serde_json::json!({
        "checkpoint": dir.display().to_string(),
        "step": state.step,
        "objective": cfg.objective,
        "split": a.split,
        "weights": a.weights.dtype().to_string(),
        "loss": e.loss,
        "perplexity": (e.loss as f64).exp(),
        "token_accuracy": e.token_accuracy,
        "nsp_accuracy": e.nsp_accuracy,
        "batches": cfg.eval_iters,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
    });
    println!("{out}");
    Ok(())
}
