//! BART denoising with fairseq `DenoisingDataset` semantics (the BART recipe:
//! `--mask 0.3 --mask-length span-poisson --replace-length 1 --permute-sentences 1
//! --poisson-lambda 3 --insert 0 --rotate 0`, `--mask-random` default 0).
//!
//! Target `y = <s> w </s>` (the original window). Source `x̃`:
//! 1. sentence permutation: `ceil(S·r)` of the `S` sentences (`r = 1`: all) are shuffled
//!    among their places;
//! 2. text infilling on `<s> w' </s>` (`w'` permuted, `n = |w'|`): span lengths
//!    `ℓ ~ Poisson(λ = 3)` are drawn until `Σℓ ≥ k = ceil(0.3·n)`, the last trimmed so
//!    `Σℓ = k`; each span with `ℓ > 0` starts at a distinct position of `1..=n` drawn
//!    uniformly, its first token becomes one `<mask>` (a random token with probability
//!    `mask_random`) and its other `ℓ − 1` tokens are deleted (spans stop before `</s>`;
//!    overlapping spans merge, the later start being deleted); each `ℓ = 0` span inserts a
//!    `<mask>` at a uniform position between `<s>` and `</s>`.
//!
//! The decoder reconstructs the original: labels = `y` (−100 on padding), decoder inputs
//! `shift_right(y, pad, start = </s>)` = `</s> <s> w` (HF BART).
//! Loss: `L = mean_{t: y_t ≠ −100} −log p(y_t | y_<t, encoder(x̃))`.
//! Differences from fairseq: Poisson draws are exact (fairseq truncates the pmf below
//! 1e-7, `k ≤ 17` for λ = 3), random tokens are uniform over `0..V` (fairseq `1..V`), and
//! sentence boundaries come from the corpus index rather than full-stop tokens.

use std::ops::Range;

use super::batch::{push_padded, shift_right, Batch, Loss, IGNORE};
use super::example::{Example, Window};
use super::random::{poisson, randperm};
use super::tokens::ObjectiveTokens;
use crate::data::tokenizer::Role;
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// Re-noising attempts for a row whose source would not fit `seq` (insertions can
/// outnumber deletions in very short rows only).
const MAX_TRIES: usize = 100;

#[derive(Clone, Debug)]
pub struct DenoiseConfig {
    /// Encoder and decoder length (window ≤ `seq − 2` tokens, plus `<s>` and `</s>`).
    pub seq: usize,
    /// Share of tokens covered by spans (`k = ceil(n·mask_ratio)`).
    pub mask_ratio: f64,
    /// Mean span length λ.
    pub poisson_lambda: f64,
    /// Share of sentences permuted.
    pub permute_sentence_ratio: f64,
    /// Share of spans (and insertions) that get a random token instead of `<mask>`.
    pub random_ratio: f64,
}

impl DenoiseConfig {
    /// BART's defaults: 30% masked, λ = 3, all sentences permuted, no random tokens.
    pub fn new(seq: usize) -> Self {
        DenoiseConfig {
            seq,
            mask_ratio: 0.3,
            poisson_lambda: 3.0,
            permute_sentence_ratio: 1.0,
            random_ratio: 0.0,
        }
    }
}

/// One noised example and how it was made (for tests and `pretext inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noised {
    /// The corrupted encoder input, `<s> … </s>`.
    pub source: Vec<u32>,
    /// `<s> w </s>`.
    pub target: Vec<u32>,
    /// Sentence order: position `i` of the permuted text holds original sentence `order[i]`.
    pub order: Vec<usize>,
    /// `<s> w' </s>` before infilling.
    pub permuted: Vec<u32>,
    /// Every span length drawn, zeros included, the last trimmed to the budget.
    pub span_lengths: Vec<usize>,
    /// Start (in `permuted`) of each span with `ℓ > 0`, in the order of `span_lengths`.
    pub span_starts: Vec<usize>,
    /// Positions of `permuted` that spans cover.
    pub covered: Vec<bool>,
    /// Spans whose start was not deleted by an earlier-starting overlapping span: each
    /// left exactly one `<mask>` (or random token) in `source`.
    pub surviving_spans: usize,
    /// Zero-length spans, each an inserted `<mask>`.
    pub inserts: usize,
}

/// fairseq `permute_sentences`: `ceil(S·ratio)` sentences chosen uniformly are shuffled
/// among their own places. Returns the permuted tokens and the order.
pub fn permute_sentences(
    ids: &[u32],
    sentences: &[Range<usize>],
    ratio: f64,
    rng: &mut Rng,
) -> (Vec<u32>, Vec<usize>) {
    let s = sentences.len();
    let k = ((s as f64 * ratio).ceil() as usize).min(s);
    let subs: Vec<usize> = randperm(rng, s)[..k].to_vec();
    let shuffle = randperm(rng, k);
    let mut order: Vec<usize> = (0..s).collect();
    for (j, &pos) in subs.iter().enumerate() {
        order[pos] = subs[shuffle[j]];
    }
    let out = order
        .iter()
        .flat_map(|&i| ids[sentences[i].clone()].iter().copied())
        .collect();
    (out, order)
}

#[derive(Clone, Debug)]
pub struct Denoise {
    cfg: DenoiseConfig,
    bos: u32,
    eos: u32,
    mask: u32,
    pad: u32,
    vocab_size: usize,
}

impl Denoise {
    pub fn new(cfg: DenoiseConfig, tokens: &ObjectiveTokens) -> Result<Self> {
        for (name, p) in [
            ("mask_ratio", cfg.mask_ratio),
            ("permute_sentence_ratio", cfg.permute_sentence_ratio),
            ("random_ratio", cfg.random_ratio),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::msg(format!(
                    "denoising: {name} = {p} is not in [0, 1]"
                )));
            }
        }
        if !(cfg.poisson_lambda > 0.0 && cfg.poisson_lambda <= 100.0) {
            return Err(Error::msg(format!(
                "denoising: poisson_lambda = {} is not in (0, 100]",
                cfg.poisson_lambda
            )));
        }
        if cfg.seq < 3 {
            return Err(Error::msg(format!(
                "denoising: sequence length {} cannot hold <s> w </s>",
                cfg.seq
            )));
        }
        Ok(Denoise {
            bos: tokens.need(Role::Bos, "denoising")?,
            eos: tokens.need(Role::Eos, "denoising")?,
            mask: tokens.need(Role::Mask, "denoising")?,
            pad: tokens.need(Role::Pad, "denoising")?,
            vocab_size: tokens.vocab_size,
            cfg,
        })
    }

    pub fn config(&self) -> &DenoiseConfig {
        &self.cfg
    }

    /// Most tokens per window (`seq − 2`).
    pub fn window_len(&self) -> usize {
        self.cfg.seq - 2
    }

    fn filler(&self, random: bool, rng: &mut Rng) -> u32 {
        if random {
            rng.below(self.vocab_size as u64) as u32
        } else {
            self.mask
        }
    }

    /// Noise one window (any length; [`Denoise::build`] checks it fits).
    pub fn noise(&self, w: &Window, rng: &mut Rng) -> Result<Noised> {
        let sentences = w.sentences()?;
        let (body, order) =
            permute_sentences(&w.ids, &sentences, self.cfg.permute_sentence_ratio, rng);
        let wrap = |b: &[u32]| {
            let mut v = Vec::with_capacity(b.len() + 2);
            v.push(self.bos);
            v.extend_from_slice(b);
            v.push(self.eos);
            v
        };
        let target = wrap(&w.ids);
        let permuted = wrap(&body);
        let m = permuted.len();
        let n = m - 2;
        let mut out = Noised {
            source: permuted.clone(),
            target,
            order,
            permuted,
            span_lengths: Vec::new(),
            span_starts: Vec::new(),
            covered: vec![false; m],
            surviving_spans: 0,
            inserts: 0,
        };
        let budget = (n as f64 * self.cfg.mask_ratio).ceil() as usize;
        if budget == 0 {
            return Ok(out);
        }
        // Lengths until Σℓ ≥ k; the last trimmed to make Σℓ = k.
        let mut total = 0;
        while total < budget {
            let l = poisson(rng, self.cfg.poisson_lambda);
            let l = l.min(budget - total);
            out.span_lengths.push(l);
            total += l;
        }
        let spans: Vec<usize> = out
            .span_lengths
            .iter()
            .copied()
            .filter(|&l| l > 0)
            .collect();
        out.inserts = out.span_lengths.len() - spans.len();
        let starts: Vec<usize> = randperm(rng, n)[..spans.len()]
            .iter()
            .map(|&i| i + 1)
            .collect();
        let random: Vec<bool> = (0..spans.len())
            .map(|_| rng.bernoulli(self.cfg.random_ratio))
            .collect();
        let mut keep = vec![true; m];
        let mut src = out.permuted.clone();
        for (&s, &r) in starts.iter().zip(&random) {
            src[s] = self.filler(r, rng);
        }
        for (&s, &l) in starts.iter().zip(&spans) {
            let end = (s + l).min(m - 1);
            out.covered[s..end].fill(true);
            keep[s + 1..end].fill(false);
        }
        out.surviving_spans = starts.iter().filter(|&&s| keep[s]).count();
        let mut source: Vec<u32> = src
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(&t, _)| t)
            .collect();
        if out.inserts > 0 {
            source = self.insert(&source, out.inserts, rng);
        }
        out.span_starts = starts;
        out.source = source;
        Ok(out)
    }

    /// fairseq `add_insertion_noise` with exactly `k` insertions: `k` distinct positions
    /// of the `len + k` result, none first or last, get `<mask>` (the first
    /// `ceil(k·random_ratio)` of them a random token); the tokens fill the rest in order.
    fn insert(&self, tokens: &[u32], k: usize, rng: &mut Rng) -> Vec<u32> {
        let total = tokens.len() + k;
        let positions: Vec<usize> = randperm(rng, total - 2)[..k]
            .iter()
            .map(|&i| i + 1)
            .collect();
        let n_random = (k as f64 * self.cfg.random_ratio).ceil() as usize;
        let mut slot: Vec<Option<u32>> = vec![None; total];
        for (j, &p) in positions.iter().enumerate() {
            slot[p] = Some(self.filler(j < n_random, rng));
        }
        let mut it = tokens.iter();
        slot.into_iter()
            .map(|s| s.unwrap_or_else(|| *it.next().expect("k + len slots")))
            .collect()
    }

    pub fn build(&self, examples: &[Example], rng: &mut Rng) -> Result<Batch> {
        let seq = self.cfg.seq;
        let n = examples.len();
        let mut input_ids = Vec::with_capacity(n * seq);
        let mut attention_mask = Vec::with_capacity(n * seq);
        let mut labels = Vec::with_capacity(n * seq);
        let mut decoder_input_ids = Vec::with_capacity(n * seq);
        for (i, ex) in examples.iter().enumerate() {
            let w = ex.as_window("denoising", i)?;
            if w.ids.is_empty() || w.ids.len() > self.window_len() {
                return Err(Error::msg(format!(
                    "denoising: example {i} has {} tokens; rows of {seq} hold 1 to {}",
                    w.ids.len(),
                    self.window_len()
                )));
            }
            let mut noised = self.noise(w, rng)?;
            let mut tries = 1;
            while noised.source.len() > seq {
                if tries == MAX_TRIES {
                    return Err(Error::msg(format!(
                        "denoising: example {i} ({} tokens) noised past {seq} tokens {MAX_TRIES} times",
                        w.ids.len()
                    )));
                }
                noised = self.noise(w, rng)?;
                tries += 1;
            }
            let src: Vec<i64> = noised.source.iter().map(|&t| t as i64).collect();
            let tgt: Vec<i64> = noised.target.iter().map(|&t| t as i64).collect();
            attention_mask.extend((0..seq).map(|t| (t < src.len()) as i64));
            push_padded(&mut input_ids, &src, seq, self.pad as i64);
            let mut lab = Vec::with_capacity(seq);
            push_padded(&mut lab, &tgt, seq, IGNORE);
            decoder_input_ids.extend(shift_right(&lab, self.pad as i64, self.eos as i64));
            labels.extend(lab);
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
            dec_seq: seq,
            loss: Loss::Seq2Seq,
        })
    }
}
