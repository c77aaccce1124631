//! T5 span corruption, after Hugging Face `run_t5_mlm_flax.py`.
//!
//! A raw window `w` of `T` tokens (`T`, `target_len` from
//! [`compute_input_and_target_lengths`] of the model length `L`) gets a noise mask with
//! `n = min(max(round(T·d), 1), T − 1)` noise tokens (`d = 0.15`) in
//! `s = max(round(min(n, T − n)/μ), 1)` spans (`μ = 3`); span lengths come from a uniform
//! random segmentation ([`random_segmentation`]) and alternate
//! `[keep₁, noise₁, …, keep_s, noise_s]`, so each window starts with kept tokens and
//! ends with noise. With `<Xk>` = `<extra_id_k>` (T5: id `V − 1 − k`):
//!   inputs  = keep₁ <X0> keep₂ <X1> … keep_s <X_{s−1}> </s>      (exactly `L` tokens)
//!   labels  = <X0> noise₁ <X1> noise₂ … <X_{s−1}> noise_s </s>    (exactly `target_len`)
//! `decoder_input_ids = shift_right(labels, pad, start = pad)`.
//! Loss: `L = mean_t −log p(labels_t | labels_<t, encoder(inputs))` over all label
//! positions (rows from full windows have no padding).

use super::batch::{push_padded, shift_right, Batch, Loss, IGNORE};
use super::example::Example;
use super::random::round_half_even;
use super::tokens::ObjectiveTokens;
use crate::data::tokenizer::Role;
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// Noise tokens and spans of a window of `t` tokens (the counts `random_spans_noise_mask`
/// uses): `n = min(max(round(t·d), 1), t − 1)`, `s = max(round(min(n, t − n)/μ), 1)`.
pub fn noise_counts(t: usize, density: f64, mean_span: f64) -> (usize, usize) {
    let n = (round_half_even(t as f64 * density) as usize)
        .max(1)
        .min(t.saturating_sub(1));
    let s = (round_half_even(n.min(t - n) as f64 / mean_span) as usize).max(1);
    (n, s)
}

/// Input and target lengths of a window of `t` tokens: `(t − n + s + 1, n + s + 1)`.
fn lengths_of(t: usize, density: f64, mean_span: f64) -> (usize, usize) {
    let (n, s) = noise_counts(t, density, mean_span);
    (t - n + s + 1, n + s + 1)
}

/// HF `compute_input_and_target_lengths`: the longest raw length `T ≥ L` whose corrupted
/// input fits `L` (grow `T` while `f(T+1).inputs ≤ L`), and its target length. For tiny
/// `L` (below 10) where even `f(L)` overflows, `T` first shrinks until `f(T) ≤ L`.
/// 512 → (568, 114), 128 → (141, 29), 256 → (284, 58). With `d = 0.5` and
/// `targets > inputs`, both shrink by one (HF's special case).
pub fn compute_input_and_target_lengths(
    inputs_length: usize,
    density: f64,
    mean_span: f64,
) -> (usize, usize) {
    let mut t = inputs_length;
    while t > 2 && lengths_of(t, density, mean_span).0 > inputs_length {
        t -= 1;
    }
    while lengths_of(t + 1, density, mean_span).0 <= inputs_length {
        t += 1;
    }
    let (_, mut targets) = lengths_of(t, density, mean_span);
    if density == 0.5 && targets > inputs_length {
        t -= 1;
        targets -= 1;
    }
    (t, targets)
}

/// HF `_random_segmentation`: split `num_items` into `num_segments` non-empty parts,
/// uniformly over all such splits (shuffle `num_segments − 1` dividers among the
/// `num_items − 1` gaps). Needs `1 ≤ num_segments ≤ num_items`.
pub fn random_segmentation(num_items: usize, num_segments: usize, rng: &mut Rng) -> Vec<usize> {
    debug_assert!(num_segments >= 1 && num_segments <= num_items);
    let mut dividers = vec![false; num_items - 1];
    dividers[..num_segments - 1].fill(true);
    rng.shuffle(&mut dividers);
    let mut out = vec![0usize; num_segments];
    let mut seg = 0;
    out[0] = 1;
    for &d in &dividers {
        if d {
            seg += 1;
        }
        out[seg] += 1;
    }
    out
}

/// HF `random_spans_noise_mask(length)`: `true` = noise. Starts with kept tokens, ends
/// with noise, `n` noise tokens in `s` spans ([`noise_counts`]). Needs `length ≥ 2`.
pub fn random_spans_noise_mask(
    length: usize,
    density: f64,
    mean_span: f64,
    rng: &mut Rng,
) -> Vec<bool> {
    let (n, s) = noise_counts(length, density, mean_span);
    let noise = random_segmentation(n, s, rng);
    let keep = random_segmentation(length - n, s, rng);
    let mut mask = Vec::with_capacity(length);
    for (k, z) in keep.iter().zip(&noise) {
        mask.extend(std::iter::repeat_n(false, *k));
        mask.extend(std::iter::repeat_n(true, *z));
    }
    mask
}

#[derive(Clone, Debug)]
pub struct SpanConfig {
    /// Model input length `L`.
    pub seq: usize,
    /// Noise density `d` (HF `mlm_probability`).
    pub noise_density: f64,
    /// Mean noise span length `μ`.
    pub mean_span: f64,
}

impl SpanConfig {
    /// T5's defaults: `d = 0.15`, `μ = 3`.
    pub fn new(seq: usize) -> Self {
        SpanConfig {
            seq,
            noise_density: 0.15,
            mean_span: 3.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpanCorruption {
    cfg: SpanConfig,
    raw_len: usize,
    target_len: usize,
    eos: u32,
    pad: u32,
    sentinels: Vec<u32>,
}

impl SpanCorruption {
    pub fn new(cfg: SpanConfig, tokens: &ObjectiveTokens) -> Result<Self> {
        if !(cfg.noise_density > 0.0 && cfg.noise_density < 1.0) {
            return Err(Error::msg(format!(
                "span corruption: noise density {} is not in (0, 1)",
                cfg.noise_density
            )));
        }
        if !(cfg.mean_span >= 1.0 && cfg.mean_span.is_finite()) {
            return Err(Error::msg(format!(
                "span corruption: mean span length {} is below 1",
                cfg.mean_span
            )));
        }
        if cfg.seq < 4 {
            return Err(Error::msg(format!(
                "span corruption: input length {} is too short (need at least 4)",
                cfg.seq
            )));
        }
        let eos = tokens.need(Role::Eos, "span corruption")?;
        let pad = tokens.need(Role::Pad, "span corruption (T5's decoder start)")?;
        let (raw_len, target_len) =
            compute_input_and_target_lengths(cfg.seq, cfg.noise_density, cfg.mean_span);
        let (_, max_spans) = noise_counts(raw_len, cfg.noise_density, cfg.mean_span);
        let sentinels = tokens
            .need_sentinels(max_spans, "span corruption")?
            .to_vec();
        Ok(SpanCorruption {
            cfg,
            raw_len,
            target_len,
            eos,
            pad,
            sentinels,
        })
    }

    pub fn config(&self) -> &SpanConfig {
        &self.cfg
    }

    /// Raw tokens per window (`T`; 568 for `L = 512`).
    pub fn window_len(&self) -> usize {
        self.raw_len
    }

    /// Label length (114 for `L = 512`).
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// Corrupt one window (2 to [`SpanCorruption::window_len`] tokens): `(inputs, labels)`
    /// as in the module doc.
    pub fn corrupt(&self, w: &[u32], rng: &mut Rng) -> Result<(Vec<i64>, Vec<i64>)> {
        if w.len() < 2 || w.len() > self.raw_len {
            return Err(Error::msg(format!(
                "span corruption: a window of {} tokens; windows hold 2 to {} (input length {})",
                w.len(),
                self.raw_len,
                self.cfg.seq
            )));
        }
        let (_, spans) = noise_counts(w.len(), self.cfg.noise_density, self.cfg.mean_span);
        if spans > self.sentinels.len() {
            return Err(Error::msg(format!(
                "span corruption: a window of {} tokens has {spans} spans, more than the {} sentinels",
                w.len(),
                self.sentinels.len()
            )));
        }
        let mask =
            random_spans_noise_mask(w.len(), self.cfg.noise_density, self.cfg.mean_span, rng);
        let mut inputs = Vec::with_capacity(self.cfg.seq);
        let mut labels = Vec::with_capacity(self.target_len);
        let mut span = 0;
        for (t, (&tok, &noise)) in w.iter().zip(&mask).enumerate() {
            let starts_run = t == 0 || mask[t - 1] != noise;
            if noise {
                if starts_run {
                    inputs.push(self.sentinels[span] as i64);
                    span += 1;
                }
                labels.push(tok as i64);
            } else {
                if starts_run {
                    // Kept run k is followed by noise span k: the label names it first.
                    labels.push(self.sentinels[span] as i64);
                }
                inputs.push(tok as i64);
            }
        }
        inputs.push(self.eos as i64);
        labels.push(self.eos as i64);
        Ok((inputs, labels))
    }

    pub fn build(&self, examples: &[Example], rng: &mut Rng) -> Result<Batch> {
        let (seq, dec) = (self.cfg.seq, self.target_len);
        let n = examples.len();
        let mut input_ids = Vec::with_capacity(n * seq);
        let mut attention_mask = Vec::with_capacity(n * seq);
        let mut labels = Vec::with_capacity(n * dec);
        let mut decoder_input_ids = Vec::with_capacity(n * dec);
        for (i, ex) in examples.iter().enumerate() {
            let w = &ex.as_window("span corruption", i)?.ids;
            let (inp, lab) = self
                .corrupt(w, rng)
                .map_err(|e| Error::msg(format!("example {i}: {e}")))?;
            if inp.len() > seq || lab.len() > dec {
                return Err(Error::msg(format!(
                    "span corruption: example {i} of {} tokens corrupts to {} inputs and {} targets, over {seq} and {dec}",
                    w.len(),
                    inp.len(),
                    lab.len()
                )));
            }
            attention_mask.extend((0..seq).map(|t| (t < inp.len()) as i64));
            push_padded(&mut input_ids, &inp, seq, self.pad as i64);
            let mut lab_row = Vec::with_capacity(dec);
            push_padded(&mut lab_row, &lab, dec, IGNORE);
            decoder_input_ids.extend(shift_right(&lab_row, self.pad as i64, self.pad as i64));
            labels.extend(lab_row);
        }
        Ok(Batch {
            input_ids,
            attention_mask,
            token_type_ids: None,
            labels,
            decoder_input_ids: Some(decoder_input_ids),
            nsp_labels: None,
            batch: n,
            seq,
            dec_seq: dec,
            loss: Loss::Seq2Seq,
        })
    }
}
