//! Masked language modelling (BERT).
//!
//! Row: `x = [CLS] w [SEP]` (or the bare window `w` when `wrap` is off), padded to `seq`.
//! Selection `S ⊂ {t : x_t not special, not padding}`:
//! - token level (HF `DataCollatorForLanguageModeling`): `t ∈ S` with probability
//!   `p = 0.15`, independently;
//! - whole-word (HF4 `DataCollatorForWholeWordMask`, google-research
//!   `create_masked_lm_predictions`): words in random order are added whole while
//!   `|S| ≤ k`, `k = min(max_predictions, max(1, round(len(x)·p)))` (`len(x)` counts
//!   [CLS]/[SEP], not padding); a word that would overflow `k` is skipped.
//!
//! Each `t ∈ S` is corrupted on its own: `x̃_t = [MASK]` with probability 0.8, a token
//! uniform over `0..V` with 0.1 (HF: `bernoulli(0.1/(1−0.8))` after the mask draw; it may
//! be a special token or the original), else unchanged. Labels `y_t = x_t` on `S`, −100
//! elsewhere. Loss: `L_mlm = mean_{t∈S} −log p(x_t | x̃)`.
//! Special tokens are HF's `all_special_ids` (so [UNK] and sentinels are never selected).

use std::sync::Arc;

use super::batch::{push_padded, Batch, Loss, IGNORE};
use super::example::Example;
use super::random::round_half_even;
use super::tokens::ObjectiveTokens;
use super::words::WordTable;
use crate::data::tokenizer::Role;
use crate::error::{Error, Result};
use crate::tensor::Rng;

#[derive(Clone, Debug)]
pub struct MlmConfig {
    /// Row length (the model's sequence length).
    pub seq: usize,
    /// Selection probability `p` (HF `mlm_probability`).
    pub probability: f64,
    /// Share of selected tokens replaced by [MASK] (HF5 `mask_replace_prob`).
    pub mask_replace: f64,
    /// Share of selected tokens replaced by a random token (HF5 `random_replace_prob`).
    pub random_replace: f64,
    /// Wrap each window as `[CLS] w [SEP]` (needs both tokens).
    pub wrap: bool,
    /// Whole-word masking with these word boundaries.
    pub whole_word: Option<Arc<WordTable>>,
    /// Cap on `k` in whole-word mode (HF4 512; google-research 20 for 128-token rows).
    pub max_predictions: Option<usize>,
}

impl MlmConfig {
    /// BERT's defaults: 15% selected, 80/10/10, `[CLS] w [SEP]`, token level.
    pub fn new(seq: usize) -> Self {
        MlmConfig {
            seq,
            probability: 0.15,
            mask_replace: 0.8,
            random_replace: 0.1,
            wrap: true,
            whole_word: None,
            max_predictions: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Mlm {
    cfg: MlmConfig,
    mask: u32,
    cls: Option<u32>,
    sep: Option<u32>,
    tokens: ObjectiveTokens,
}

fn check_prob(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::msg(format!(
            "mlm: {name} = {p} is not a probability"
        )));
    }
    Ok(())
}

impl Mlm {
    pub fn new(cfg: MlmConfig, tokens: &ObjectiveTokens) -> Result<Self> {
        let mask = tokens.need(Role::Mask, "mlm")?;
        check_prob("probability", cfg.probability)?;
        check_prob("mask_replace", cfg.mask_replace)?;
        check_prob("random_replace", cfg.random_replace)?;
        if cfg.mask_replace + cfg.random_replace > 1.0 + 1e-12 {
            return Err(Error::msg(format!(
                "mlm: mask_replace {} + random_replace {} exceed 1",
                cfg.mask_replace, cfg.random_replace
            )));
        }
        let (cls, sep) = if cfg.wrap {
            (
                Some(tokens.need(Role::Cls, "mlm ([CLS] w [SEP] rows)")?),
                Some(tokens.need(Role::Sep, "mlm ([CLS] w [SEP] rows)")?),
            )
        } else {
            (None, None)
        };
        let extra = if cfg.wrap { 2 } else { 0 };
        if cfg.seq <= extra {
            return Err(Error::msg(format!(
                "mlm: sequence length {} leaves no room for tokens",
                cfg.seq
            )));
        }
        Ok(Mlm {
            cfg,
            mask,
            cls,
            sep,
            tokens: tokens.clone(),
        })
    }

    pub fn config(&self) -> &MlmConfig {
        &self.cfg
    }

    /// Tokens per window the sampler should draw (`seq − 2` when wrapping).
    pub fn window_len(&self) -> usize {
        if self.cfg.wrap {
            self.cfg.seq - 2
        } else {
            self.cfg.seq
        }
    }

    /// Select and corrupt positions of one unpadded row in place; `labels` (same length)
    /// gets the original token at selected positions and −100 elsewhere. Returns `|S|`.
    pub fn mask_row(&self, ids: &mut [i64], labels: &mut [i64], rng: &mut Rng) -> usize {
        labels.fill(IGNORE);
        let candidate = |i: usize| !self.tokens.is_special(ids[i] as u32);
        let selected: Vec<usize> = match &self.cfg.whole_word {
            None => (0..ids.len())
                .filter(|&i| candidate(i))
                .filter(|_| rng.bernoulli(self.cfg.probability))
                .collect(),
            Some(words) => {
                let mut groups = words.groups(ids, candidate);
                rng.shuffle(&mut groups);
                let k = round_half_even(ids.len() as f64 * self.cfg.probability).max(1.0) as usize;
                let k = k.min(self.cfg.max_predictions.unwrap_or(usize::MAX));
                let mut s = Vec::new();
                for g in groups {
                    if s.len() >= k {
                        break;
                    }
                    if s.len() + g.len() > k {
                        continue;
                    }
                    s.extend(g);
                }
                s.sort_unstable();
                s
            }
        };
        // P(random | not [MASK]) so that the overall share is `random_replace`.
        let rest = 1.0 - self.cfg.mask_replace;
        let p_random = if rest > 0.0 {
            (self.cfg.random_replace / rest).min(1.0)
        } else {
            0.0
        };
        for &t in &selected {
            labels[t] = ids[t];
            if rng.bernoulli(self.cfg.mask_replace) {
                ids[t] = self.mask as i64;
            } else if rng.bernoulli(p_random) {
                ids[t] = rng.below(self.tokens.vocab_size as u64) as i64;
            }
        }
        selected.len()
    }

    pub fn build(&self, examples: &[Example], rng: &mut Rng) -> Result<Batch> {
        let seq = self.cfg.seq;
        let mut input_ids = Vec::with_capacity(examples.len() * seq);
        let mut attention_mask = Vec::with_capacity(examples.len() * seq);
        let mut labels = Vec::with_capacity(examples.len() * seq);
        for (i, ex) in examples.iter().enumerate() {
            let w = ex.as_window("mlm", i)?;
            if w.ids.len() > self.window_len() {
                return Err(Error::msg(format!(
                    "mlm: example {i} has {} tokens; rows of {seq} hold at most {}",
                    w.ids.len(),
                    self.window_len()
                )));
            }
            let mut row: Vec<i64> = Vec::with_capacity(seq);
            row.extend(self.cls.map(i64::from));
            row.extend(w.ids.iter().map(|&t| t as i64));
            row.extend(self.sep.map(i64::from));
            let pad = if row.len() < seq {
                self.tokens.need(Role::Pad, "mlm (rows shorter than seq)")? as i64
            } else {
                0
            };
            let mut lab = vec![IGNORE; row.len()];
            self.mask_row(&mut row, &mut lab, rng);
            attention_mask.extend(std::iter::repeat_n(1, row.len()));
            attention_mask.extend(std::iter::repeat_n(0, seq - row.len()));
            push_padded(&mut input_ids, &row, seq, pad);
            push_padded(&mut labels, &lab, seq, IGNORE);
        }
        Ok(Batch {
            input_ids,
            attention_mask,
            token_type_ids: None,
            labels,
            decoder_input_ids: None,
            nsp_labels: None,
            batch: examples.len(),
            seq,
            dec_seq: seq,
            loss: Loss::MaskedLm,
        })
    }
}
