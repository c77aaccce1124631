//! What one training step computes: a batch of the run's objective, drawn from a seed, and
//! the model's loss on it, with the accuracy figures evaluation reports.
//!   clm (GPT): nanoGPT windows x = w[0..T], y = w[1..T+1]; loss = mean CE(logits, y)
//!   mlm (BERT): mean CE over the selected positions; masked-token accuracy
//!   mlm_nsp (BERT): L_mlm + L_nsp; masked-token and NSP accuracy
//!   span (T5), denoise (BART): mean CE over the target tokens; token accuracy

use crate::autograd::Var;
use crate::data::{RandomWindows, SplitMix64, TokenBatch, TokenStream, Tokenizer};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::objectives::{Batch, Objective, ObjectiveTokens};
use crate::tensor::{Rng, Tensor};

pub enum Task {
    /// nanoGPT's get_batch windows.
    Clm {
        seq: usize,
    },
    Objective(Box<Objective>),
}

/// The loss of one batch and the (correct, counted) pairs of its accuracy figures.
pub struct StepOut {
    pub loss: Var,
    /// The terms of a summed loss (BERT pre-training: mlm_loss, nsp_loss).
    pub parts: Vec<(&'static str, f32)>,
    pub token_acc: (usize, usize),
    pub nsp_acc: (usize, usize),
}

impl Task {
    pub fn new(objective: &str, seq: usize, tokenizer: &Tokenizer) -> Result<Task> {
        if objective == "clm" {
            return Ok(Task::Clm { seq });
        }
        let tokens = ObjectiveTokens::from_tokenizer(tokenizer)?;
        Ok(Task::Objective(Box::new(Objective::from_name(
            objective, seq, &tokens,
        )?)))
    }

    /// Loss of the batch drawn with `seed` from `stream`; dropout uses `train` when given.
    pub fn step(
        &self,
        model: &Model,
        stream: &TokenStream,
        seed: u64,
        batch: usize,
        train: Option<&mut Rng>,
    ) -> Result<StepOut> {
        match self {
            Task::Clm { seq } => {
                let mut windows = RandomWindows::new(stream, *seq)?;
                let mut tb = TokenBatch::default();
                windows.sample(stream, &mut SplitMix64::new(seed), batch, &mut tb)?;
                clm_loss(model, &tb, train)
            }
            Task::Objective(obj) => {
                let mut sampler = obj.sampler(stream)?;
                let mut rng = Rng::new(seed);
                let b = obj.next_batch(&mut sampler, stream, batch, &mut rng)?;
                objective_loss(model, obj, &b, train)
            }
        }
    }
}

/// CLM over every window of `stream` (a sweep in batches of `batch` rows): the mean
/// loss and next-token accuracy over all positions — the exact expectation of what
/// random-window evaluation estimates. `None` for objectives other than clm.
pub fn clm_sweep(
    task: &Task,
    model: &Model,
    stream: &TokenStream,
    batch: usize,
) -> Result<Option<(f64, f64, u64)>> {
    let Task::Clm { seq } = task else {
        return Ok(None);
    };
    if batch == 0 {
        return Err(Error::msg("clm sweep: batch size must be positive"));
    }
    let mut windows = RandomWindows::new(stream, *seq)?;
    let n = windows.window_count();
    let mut tb = TokenBatch::default();
    let (mut loss_sum, mut correct, mut counted) = (0.0f64, 0usize, 0usize);
    let mut u = 0u64;
    while u < n {
        let rows = (batch as u64).min(n - u) as usize;
        windows.windows_at(stream, u, rows, &mut tb)?;
        let out = crate::autograd::no_grad(|| clm_loss(model, &tb, None))?;
        // Every row has `seq` positions, so weighting batch means by rows gives the mean over positions.
        loss_sum += out.loss.value().scalar()? as f64 * rows as f64;
        correct += out.token_acc.0;
        counted += out.token_acc.1;
        u += rows as u64;
    }
    Ok(Some((
        loss_sum / n as f64,
        correct as f64 / counted.max(1) as f64,
        n,
    )))
}

/// Next-token loss of a batch of windows: mean CE(logits(x), y).
fn clm_loss(model: &Model, tb: &TokenBatch, train: Option<&mut Rng>) -> Result<StepOut> {
    let x = Tensor::from_vec(tb.x_i64(), &[tb.batch, tb.seq])?;
    let y = Tensor::from_vec(tb.y_i64(), &[tb.batch, tb.seq])?;
    let Model::Gpt2(g) = model else {
        return Err(Error::msg(format!(
            "objective clm needs a gpt model, not {}",
            model.arch()
        )));
    };
    let out = g.forward(&x, None, None, train)?;
    let logits = g.lm_logits(&out.hidden)?;
    let token_acc = accuracy(&logits, &y)?;
    Ok(StepOut {
        loss: logits.cross_entropy(&y, -100, 0.0)?,
        token_acc,
        nsp_acc: (0, 0),
        parts: Vec::new(),
    })
}

fn tensor(v: &[i64], rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_vec(v.to_vec(), &[rows, cols])
}

/// (correct, counted) arg-max predictions over the labels that are not −100.
pub fn accuracy(logits: &Var, labels: &Tensor) -> Result<(usize, usize)> {
    let (_, args) = logits.value().max_dims_with_arg(&[-1], false)?;
    let l = labels.to_vec::<i64>()?;
    let counted = l.iter().filter(|&&y| y != -100).count();
    let correct = args
        .iter()
        .zip(&l)
        .filter(|(&a, &y)| y != -100 && a as i64 == y)
        .count();
    Ok((correct, counted))
}

fn objective_loss(
    model: &Model,
    obj: &Objective,
    b: &Batch,
    train: Option<&mut Rng>,
) -> Result<StepOut> {
    let ids = tensor(&b.input_ids, b.batch, b.seq)?;
    let mask = tensor(&b.attention_mask, b.batch, b.seq)?;
    let labels = tensor(&b.labels, b.batch, b.dec_seq)?;
    let mismatch = || {
        Error::msg(format!(
            "objective {} does not fit a {} model",
            obj.name(),
            model.arch()
        ))
    };
    match (model, obj) {
        (Model::Bert(m), Objective::Mlm(_)) => {
            let tt = b
                .token_type_ids
                .as_ref()
                .map(|t| tensor(t, b.batch, b.seq))
                .transpose()?;
            let out = m.forward(&ids, tt.as_ref(), Some(&mask), train)?;
            let logits = m.mlm_logits(&out.hidden)?;
            Ok(StepOut {
                loss: logits.cross_entropy(&labels, -100, 0.0)?,
                token_acc: accuracy(&logits, &labels)?,
                nsp_acc: (0, 0),
                parts: Vec::new(),
            })
        }
        (Model::Bert(m), Objective::MlmNsp(_)) => {
            let tt = b
                .token_type_ids
                .as_ref()
                .map(|t| tensor(t, b.batch, b.seq))
                .transpose()?;
            let nsp = b
                .nsp_labels
                .as_ref()
                .ok_or_else(|| Error::msg("mlm_nsp batch without NSP labels"))?;
            let nsp = Tensor::from_vec(nsp.clone(), &[b.batch])?;
            let (mlm_logits, nsp_logits, mlm_loss, nsp_loss, total) =
                m.pretraining_loss(&ids, tt.as_ref(), Some(&mask), &labels, &nsp, train)?;
            Ok(StepOut {
                loss: total,
                token_acc: accuracy(&mlm_logits, &labels)?,
                nsp_acc: accuracy(&nsp_logits, &nsp)?,
                parts: {
                    let (m, n) = (mlm_loss.value().scalar()?, nsp_loss.value().scalar()?);
                    vec![("mlm_loss", m), ("nsp_loss", n)]
                },
            })
        }
        (Model::T5(m), Objective::Span(_)) => {
            let (out, loss) = m.loss(&ids, Some(&mask), &labels, train)?;
            Ok(StepOut {
                loss,
                token_acc: accuracy(&out.logits, &labels)?,
                nsp_acc: (0, 0),
                parts: Vec::new(),
            })
        }
        (Model::Bart(m), Objective::Denoise(_)) => {
            let (out, loss) = m.loss(&ids, Some(&mask), &labels, train)?;
            Ok(StepOut {
                loss,
                token_acc: accuracy(&out.logits, &labels)?,
                nsp_acc: (0, 0),
                parts: Vec::new(),
            })
        }
        (Model::Gpt2(m), Objective::Clm(_)) => {
            let (logits, loss) = m.lm_loss(&ids, Some(&mask), &labels, train)?;
            let t = b.seq;
            let shifted = labels.narrow(1, 1, t - 1)?.contiguous()?;
            Ok(StepOut {
                loss,
                token_acc: accuracy(&logits.narrow(1, 0, t - 1)?, &shifted)?,
                nsp_acc: (0, 0),
                parts: Vec::new(),
            })
        }
        _ => Err(mismatch()),
    }
}
