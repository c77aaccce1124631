//! Causal language modelling (GPT-2, nanoGPT).
//!
//! Row: a window `x` of at most `seq` tokens, right-padded. Labels `y = x` with −100 on
//! padding; the model shifts them (`GPT2LMHeadModel`): position `t` predicts `y[t+1]`.
//! Loss: `L = mean_{t: y[t+1] ≠ −100} −log p(x[t+1] | x[0..=t])`, i.e. nanoGPT's
//! `cross_entropy(logits[:, :-1], x[:, 1:])` on full windows.
//! Padding is found from the row length, not by comparing ids with the pad id, so with
//! GPT-2's `pad = eos` real end-of-text tokens keep their labels (HF's `mlm=False`
//! collator would drop them).

use super::batch::{push_padded, Batch, Loss, IGNORE};
use super::example::Example;
use super::tokens::ObjectiveTokens;
use crate::error::{Error, Result};
use crate::tensor::Rng;

#[derive(Clone, Debug)]
pub struct Clm {
    seq: usize,
    /// Filler id of padding positions (never attended, never a label): pad, else eos.
    fill: Option<u32>,
}

impl Clm {
    pub fn new(seq: usize, tokens: &ObjectiveTokens) -> Result<Self> {
        if seq < 2 {
            return Err(Error::msg(format!(
                "clm: sequence length {seq} leaves nothing to predict (need at least 2)"
            )));
        }
        Ok(Clm {
            seq,
            fill: tokens.pad.or(tokens.eos),
        })
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Tokens per window the sampler draws (`seq`).
    pub fn window_len(&self) -> usize {
        self.seq
    }

    /// `rng` is unused (CLM adds no noise); it is taken for a uniform signature.
    pub fn build(&self, examples: &[Example], _rng: &mut Rng) -> Result<Batch> {
        let seq = self.seq;
        let n = examples.len();
        let mut input_ids = Vec::with_capacity(n * seq);
        let mut attention_mask = Vec::with_capacity(n * seq);
        let mut labels = Vec::with_capacity(n * seq);
        for (i, ex) in examples.iter().enumerate() {
            let w = &ex.as_window("clm", i)?.ids;
            if w.is_empty() || w.len() > seq {
                return Err(Error::msg(format!(
                    "clm: example {i} has {} tokens; rows hold 1 to {seq}",
                    w.len()
                )));
            }
            let fill = if w.len() < seq {
                self.fill.ok_or_else(|| {
                    Error::msg(format!(
                        "clm: example {i} is shorter than {seq} tokens and the tokenizer declares neither a pad nor an eos token to pad with"
                    ))
                })? as i64
            } else {
                0
            };
            let row: Vec<i64> = w.iter().map(|&t| t as i64).collect();
            push_padded(&mut input_ids, &row, seq, fill);
            push_padded(&mut labels, &row, seq, IGNORE);
            attention_mask.extend((0..seq).map(|t| (t < row.len()) as i64));
        }
        Ok(Batch {
            input_ids,
            attention_mask,
            token_type_ids: None,
            labels,
            decoder_input_ids: None,
            nsp_labels: None,
            batch: n,
            seq,
            dec_seq: seq,
            loss: Loss::CausalLm,
        })
    }
}
