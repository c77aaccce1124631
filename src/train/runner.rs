//! The training loop. For step s = start..steps:
//!   for each of `grad_accum` micro-batches: loss/accum → backward (gradients accumulate)
//!   clip the global gradient norm; lr = schedule(s); AdamW step; zero the gradients
//! with evaluation every `eval_interval` steps, checkpoints every `ckpt_interval` steps and
//! at the end, and a checkpoint on Ctrl-C before exiting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::metrics::{read_records, MetricsLog};
use super::plot::write_loss_svg;
use super::presets;
use super::task::Task;
use crate::autograd::no_grad;
use crate::backend::cpu::gemm::{MatmulPrecision, PrecisionGuard};
use crate::data::rng::mix64;
use crate::data::{Corpus, TokenStream};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, LrSchedule};
use crate::tensor::Rng;

/// Set by the Ctrl-C handler; the loop checkpoints and stops when it sees it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn install_ctrlc() {
    // A second install (several runs in one process) is refused by ctrlc; the first stays.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

pub struct RunOptions {
    /// Corpus folder (from `pretext prepare`).
    pub data: PathBuf,
    /// Run folder: checkpoint/, metrics.jsonl, loss.svg.
    pub out: PathBuf,
    /// Continue from `out/checkpoint` (its configuration, except `steps` when given).
    pub resume: bool,
    /// On resume: train up to this many steps instead of the checkpoint's configured total.
    pub steps: Option<u64>,
    pub progress: bool,
    /// Stop (as if interrupted, writing a checkpoint) after this many steps of this
    /// invocation — for tests of resuming.
    pub stop_after: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub steps: u64,
    pub last_train_loss: f32,
    pub last_val_loss: Option<f32>,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub interrupted: bool,
}

/// Seed of micro-batch `micro` of step `step`: the data order is a function of (seed, step).
fn batch_seed(seed: u64, step: u64, micro: u64) -> u64 {
    mix64(seed ^ mix64(step.wrapping_mul(0x1_0000_0001) ^ micro.wrapping_add(0xB47C)))
}

/// Seed of validation batch i: the same batches at every evaluation.
fn eval_seed(seed: u64, i: u64) -> u64 {
    mix64(seed ^ 0xE7A1_5EED ^ mix64(i))
}

/// Validation figures: mean loss and accuracies over the fixed batches.
#[derive(Clone, Debug)]
pub struct EvalOut {
    pub loss: f32,
    /// Arg-max accuracy over the positions that carry loss (next token, masked token, target token).
    pub token_accuracy: f64,
    /// NSP accuracy (mlm_nsp only).
    pub nsp_accuracy: Option<f64>,
    /// Means of the terms of a summed loss (mlm_nsp: mlm_loss, nsp_loss).
    pub parts: Vec<(&'static str, f64)>,
}

/// Mean loss and accuracy over the `cfg.eval_iters` fixed batches of `stream`.
pub fn evaluate(
    model: &Model,
    cfg: &TrainConfig,
    task: &Task,
    stream: &TokenStream,
) -> Result<EvalOut> {
    no_grad(|| {
        let mut total = 0.0f64;
        let (mut tc, mut tn, mut nc, mut nn) = (0, 0, 0, 0);
        let mut parts: Vec<(&'static str, f64)> = Vec::new();
        for i in 0..cfg.eval_iters {
            let out = task.step(
                model,
                stream,
                eval_seed(cfg.seed, i as u64),
                cfg.batch_size,
                None,
            )?;
            total += out.loss.value().scalar()? as f64;
            tc += out.token_acc.0;
            tn += out.token_acc.1;
            nc += out.nsp_acc.0;
            nn += out.nsp_acc.1;
            for (k, v) in out.parts {
                match parts.iter_mut().find(|p| p.0 == k) {
                    Some(p) => p.1 += v as f64,
                    None => parts.push((k, v as f64)),
                }
            }
        }
        let n = cfg.eval_iters.max(1) as f64;
        Ok(EvalOut {
            loss: (total / cfg.eval_iters.max(1) as f64) as f32,
            token_accuracy: tc as f64 / tn.max(1) as f64,
            nsp_accuracy: (nn > 0).then(|| nc as f64 / nn as f64),
            parts: parts.into_iter().map(|(k, v)| (k, v / n)).collect(),
        })
    })
}

fn check_config(cfg: &TrainConfig) -> Result<()> {
    if cfg.batch_size == 0 || cfg.seq_len == 0 || cfg.grad_accum == 0 {
        return Err(Error::msg(
            "batch size, sequence length and gradient accumulation must be positive",
        ));
    }
    Ok(())
}

/// Run (or resume) training as configured; returns what happened.
pub fn train(cfg: TrainConfig, opts: &RunOptions) -> Result<TrainSummary> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (model, mut opt, tokenizer, start, cfg, data_dir) = if opts.resume {
        let (model, opt, tok, state) = checkpoint::load(&checkpoint::checkpoint_dir(out))?;
        let mut c = state.config.clone();
        c.steps = opts.steps.unwrap_or(c.steps).max(state.step);
        (model, opt, tok, state.step, c, state.data)
    } else {
        let corpus = Corpus::open(&opts.data, None)?;
        let tok = corpus.tokenizer.ok_or_else(|| {
            Error::msg(format!(
                "{}: training needs a pretext corpus with its tokenizer (run `pretext prepare`)",
                opts.data.display()
            ))
        })?;
        let mut init_rng = Rng::new(cfg.seed);
        let model = presets::build_model(&cfg, &tok, &mut init_rng)?;
        let opt = AdamW::new(
            AdamWConfig {
                lr: cfg.lr,
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
                decay_all: false,
            },
            model.store(),
        );
        (model, opt, tok, 0, cfg, opts.data.clone())
    };
    check_config(&cfg)?;
    // Every matmul of this run (forward, backward, evaluation) at the configured precision;
    // the process's previous setting is restored when the run ends.
    let _precision = PrecisionGuard::set(MatmulPrecision::parse(&cfg.matmul_precision)?);
    let corpus = Corpus::open(&data_dir, Some(model.vocab_size()))?;
    let metrics = MetricsLog::open(&out.join("metrics.jsonl"), opts.resume.then_some(start))?;
    let task = Task::new(&cfg.objective, cfg.seq_len, &tokenizer)?;
    install_ctrlc();
    INTERRUPTED.store(false, Ordering::SeqCst);

    let sched = cfg.schedule();
    let tokens_per_step = (cfg.batch_size * cfg.seq_len * cfg.grad_accum) as f64;
    let bar = progress_bar(opts.progress, start, cfg.steps);
    let t0 = Instant::now();
    let mut last_loss = f32::NAN;
    let mut last_val = None;
    let mut interrupted = false;
    let mut step = start;
    let save = |step: u64, opt: &AdamW| -> Result<()> {
        let state = TrainState {
            step,
            adam_step: opt.step,
            config: cfg.clone(),
            data: data_dir.clone(),
        };
        checkpoint::save(out, &model, opt, &tokenizer, &state)
    };
    while step < cfg.steps {
        let lr = sched.lr(step);
        let ts = Instant::now();
        let mut loss_sum = 0.0f32;
        for micro in 0..cfg.grad_accum as u64 {
            let mut drop_rng = Rng::new(batch_seed(cfg.seed ^ 0xD70F, step, micro));
            let dropout = (cfg.dropout > 0.0).then_some(&mut drop_rng);
            let loss = task
                .step(
                    &model,
                    &corpus.train,
                    batch_seed(cfg.seed, step, micro),
                    cfg.batch_size,
                    dropout,
                )?
                .loss;
            loss_sum += loss.value().scalar()?;
            let scaled = if cfg.grad_accum > 1 {
                loss.mul_scalar(1.0 / cfg.grad_accum as f32)?
            } else {
                loss
            };
            scaled.backward()?;
        }
        last_loss = loss_sum / cfg.grad_accum as f32;
        if !last_loss.is_finite() {
            return Err(Error::msg(format!(
                "step {step}: the loss is {last_loss}; stopping (try a lower learning rate)"
            )));
        }
        let norm = if cfg.grad_clip > 0.0 {
            clip_grad_norm(model.store(), cfg.grad_clip)?
        } else {
            f32::NAN
        };
        opt.step(model.store(), lr)?;
        model.store().zero_grad();
        step += 1;
        let dt = ts.elapsed().as_secs_f64();
        let tps = tokens_per_step / dt.max(1e-9);
        if step % cfg.log_interval.max(1) == 0 || step == cfg.steps {
            metrics.record(
                step,
                "train",
                &[
                    ("loss", last_loss as f64),
                    ("lr", lr as f64),
                    ("grad_norm", norm as f64),
                    ("tokens_per_s", tps),
                ],
            )?;
        }
        bar.set_position(step);
        bar.set_message(format!("loss {last_loss:.4}  lr {lr:.2e}  {tps:.0} tok/s"));
        if (cfg.eval_interval > 0 && step % cfg.eval_interval == 0) || step == cfg.steps {
            let e = evaluate(&model, &cfg, &task, &corpus.val)?;
            let mut fields = vec![
                ("loss", e.loss as f64),
                ("perplexity", (e.loss as f64).exp()),
                ("token_accuracy", e.token_accuracy),
            ];
            let mut line = format!(
                "step {step}: train loss {last_loss:.4}, val loss {:.4} (perplexity {:.2}), token accuracy {:.1}%",
                e.loss,
                (e.loss as f64).exp(),
                100.0 * e.token_accuracy
            );
            fields.extend(e.parts.iter().copied());
            if let Some(n) = e.nsp_accuracy {
                fields.push(("nsp_accuracy", n));
                line += &format!(", NSP accuracy {:.1}%", 100.0 * n);
            }
            metrics.record(step, "val", &fields)?;
            bar.println(line);
            last_val = Some(e.loss);
        }
        let stop_now = INTERRUPTED.load(Ordering::SeqCst)
            || opts.stop_after.is_some_and(|n| step - start >= n);
        if stop_now && step < cfg.steps {
            save(step, &opt)?;
            bar.println(format!(
                "interrupted at step {step}: checkpoint written to {}",
                checkpoint::checkpoint_dir(out).display()
            ));
            interrupted = true;
            break;
        }
        if cfg.ckpt_interval > 0 && step % cfg.ckpt_interval == 0 && step < cfg.steps {
            save(step, &opt)?;
        }
    }
    bar.finish_and_clear();
    if !interrupted {
        save(step, &opt)?;
        plot_run(
            out,
            &format!("{} {} ({})", cfg.arch, cfg.objective, cfg.preset),
        )?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(TrainSummary {
        steps: step,
        last_train_loss: last_loss,
        last_val_loss: last_val,
        seconds,
        tokens_per_second: tokens_per_step * (step - start) as f64 / seconds.max(1e-9),
        interrupted,
    })
}

/// Draw `RUN_DIR/loss.svg` from `RUN_DIR/metrics.jsonl`.
pub fn plot_run(run_dir: &Path, title: &str) -> Result<()> {
    let recs = read_records(&run_dir.join("metrics.jsonl"))?;
    let series = |split: &str| -> Vec<(u64, f64)> {
        recs.iter()
            .filter(|r| r.get("split").and_then(|v| v.as_str()) == Some(split))
            .filter_map(|r| Some((r.get("step")?.as_u64()?, r.get("loss")?.as_f64()?)))
            .collect()
    };
    write_loss_svg(
        &run_dir.join("loss.svg"),
        title,
        &series("train"),
        &series("val"),
    )
}

fn progress_bar(show: bool, start: u64, steps: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] step {pos}/{len}  {msg}  ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    bar
}
