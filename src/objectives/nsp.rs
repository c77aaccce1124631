//! Next-sentence prediction with masked LM (BERT pre-training), after google-research
//! `create_pretraining_data.py`.
//!
//! Row: `[CLS] A [SEP] B [SEP]`, segment ids 0 through the first [SEP] and 1 after,
//! padded to `seq`; `A, B` are trimmed by [`truncate_seq_pair`] to `|A| + |B| ≤ seq − 3`.
//! B is A's continuation (`is_next = 0`) or, with probability 1/2 (always when the chunk
//! has one sentence), a run of sentences from another document (`is_random_next = 1`),
//! see [`create_instances_from_document`]. MLM masking as in [`super::mlm`] over the
//! whole row ([CLS]/[SEP] never selected).
//! Loss: `L = L_mlm + L_nsp`, `L_nsp = mean_rows −log p(is_random_next | h_[CLS])`.

use super::batch::{push_padded, Batch, Loss, IGNORE};
use super::example::{Example, Pair};
use super::mlm::{Mlm, MlmConfig};
use super::random::randint;
use super::tokens::ObjectiveTokens;
use crate::data::tokenizer::Role;
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// google-research `truncate_seq_pair`: while `|A| + |B| > max_tokens`, drop one token from
/// the longer segment (B on ties), from its front or back with probability 1/2 each.
pub fn truncate_seq_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, max_tokens: usize, rng: &mut Rng) {
    // Trim as index windows, then cut once (the loop is O(excess), not O(excess·len)).
    let (mut a0, mut a1, mut b0, mut b1) = (0, a.len(), 0, b.len());
    while (a1 - a0) + (b1 - b0) > max_tokens {
        let (lo, hi) = if a1 - a0 > b1 - b0 {
            (&mut a0, &mut a1)
        } else {
            (&mut b0, &mut b1)
        };
        if rng.next_f64() < 0.5 {
            *lo += 1;
        } else {
            *hi -= 1;
        }
    }
    a.truncate(a1);
    a.drain(..a0);
    b.truncate(b1);
    b.drain(..b0);
}

/// Documents as lists of sentences (token lists), for [`create_instances_from_document`].
pub trait SentenceSource {
    fn doc_count(&self) -> u64;
    /// The sentences of document `d` (a source may return a random sentence-aligned
    /// piece of a very long document).
    fn sentences(&mut self, d: u64, rng: &mut Rng) -> Result<Vec<Vec<u32>>>;
}

/// In-memory documents.
impl SentenceSource for [Vec<Vec<u32>>] {
    fn doc_count(&self) -> u64 {
        self.len() as u64
    }

    fn sentences(&mut self, d: u64, _rng: &mut Rng) -> Result<Vec<Vec<u32>>> {
        self.get(d as usize)
            .cloned()
            .ok_or_else(|| Error::msg(format!("nsp: document {d} of {}", self.len())))
    }
}

/// google-research `create_instances_from_document` (pairs are left untruncated;
/// [`MlmNsp::build`] applies [`truncate_seq_pair`]):
/// `max = seq − 3`; `target = max`, or `randint(2, max)` with probability `short_seq_prob`.
/// Sentences accumulate into a chunk until the document ends or the chunk holds
/// `≥ target` tokens; A = the first `a_end` sentences, `a_end = randint(1, len−1)` (1 for
/// a one-sentence chunk). With probability 1/2, or always for a one-sentence chunk, B is
/// read from a random other document (10 tries to avoid this one) from a random sentence
/// on until `|B| ≥ target − |A|`, and the chunk's unused sentences go back to the input;
/// otherwise B is the rest of the chunk.
pub fn create_instances_from_document<S: SentenceSource + ?Sized>(
    docs: &mut S,
    doc_index: u64,
    seq: usize,
    short_seq_prob: f64,
    rng: &mut Rng,
) -> Result<Vec<Pair>> {
    if seq < 5 {
        return Err(Error::msg(format!(
            "nsp: sequence length {seq} cannot hold [CLS] A [SEP] B [SEP]"
        )));
    }
    let n_docs = docs.doc_count();
    let document = docs.sentences(doc_index, rng)?;
    let max_num_tokens = seq - 3;
    let target = if rng.next_f64() < short_seq_prob {
        randint(rng, 2, max_num_tokens)
    } else {
        max_num_tokens
    };
    let mut instances = Vec::new();
    let mut chunk: Vec<&Vec<u32>> = Vec::new();
    let mut current_length = 0;
    let mut i = 0;
    while i < document.len() {
        chunk.push(&document[i]);
        current_length += document[i].len();
        if i == document.len() - 1 || current_length >= target {
            let a_end = if chunk.len() >= 2 {
                randint(rng, 1, chunk.len() - 1)
            } else {
                1
            };
            let a: Vec<u32> = chunk[..a_end]
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let mut b: Vec<u32> = Vec::new();
            let is_random_next = chunk.len() == 1 || rng.next_f64() < 0.5;
            if is_random_next {
                let target_b = target.saturating_sub(a.len());
                let mut other = doc_index;
                for _ in 0..10 {
                    other = rng.below(n_docs);
                    if other != doc_index {
                        break;
                    }
                }
                let random_doc = docs.sentences(other, rng)?;
                if !random_doc.is_empty() {
                    let start = rng.below(random_doc.len() as u64) as usize;
                    for s in &random_doc[start..] {
                        b.extend_from_slice(s);
                        if b.len() >= target_b {
                            break;
                        }
                    }
                }
                // The sentences after A were not used: read them again.
                i -= chunk.len() - a_end;
            } else {
                b = chunk[a_end..]
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
            }
            if !a.is_empty() && !b.is_empty() {
                instances.push(Pair {
                    a,
                    b,
                    is_random_next,
                });
            }
            chunk.clear();
            current_length = 0;
        }
        i += 1;
    }
    Ok(instances)
}

/// BERT's pre-training objective: MLM over `[CLS] A [SEP] B [SEP]` plus NSP.
#[derive(Clone, Debug)]
pub struct MlmNsp {
    mlm: Mlm,
    cls: u32,
    sep: u32,
    pad: u32,
    /// google-research `short_seq_prob` for the sampler's target lengths.
    pub short_seq_prob: f64,
}

impl MlmNsp {
    /// `cfg.wrap` is ignored: rows are always `[CLS] A [SEP] B [SEP]`.
    pub fn new(mut cfg: MlmConfig, tokens: &ObjectiveTokens) -> Result<Self> {
        let cls = tokens.need(Role::Cls, "mlm+nsp")?;
        let sep = tokens.need(Role::Sep, "mlm+nsp")?;
        let pad = tokens.need(Role::Pad, "mlm+nsp")?;
        if cfg.seq < 5 {
            return Err(Error::msg(format!(
                "mlm+nsp: sequence length {} cannot hold [CLS] A [SEP] B [SEP]",
                cfg.seq
            )));
        }
        cfg.wrap = false;
        Ok(MlmNsp {
            mlm: Mlm::new(cfg, tokens)?,
            cls,
            sep,
            pad,
            short_seq_prob: 0.1,
        })
    }

    pub fn seq(&self) -> usize {
        self.mlm.config().seq
    }

    pub fn mlm(&self) -> &Mlm {
        &self.mlm
    }

    pub fn build(&self, examples: &[Example], rng: &mut Rng) -> Result<Batch> {
        let seq = self.seq();
        let n = examples.len();
        let mut input_ids = Vec::with_capacity(n * seq);
        let mut attention_mask = Vec::with_capacity(n * seq);
        let mut token_type_ids = Vec::with_capacity(n * seq);
        let mut labels = Vec::with_capacity(n * seq);
        let mut nsp_labels = Vec::with_capacity(n);
        for (i, ex) in examples.iter().enumerate() {
            let p = ex.as_pair("mlm+nsp", i)?;
            if p.a.is_empty() || p.b.is_empty() {
                return Err(Error::msg(format!(
                    "mlm+nsp: example {i} has an empty segment (A {} tokens, B {})",
                    p.a.len(),
                    p.b.len()
                )));
            }
            let (mut a, mut b) = (p.a.clone(), p.b.clone());
            truncate_seq_pair(&mut a, &mut b, seq - 3, rng);
            let mut row: Vec<i64> = Vec::with_capacity(seq);
            row.push(self.cls as i64);
            row.extend(a.iter().map(|&t| t as i64));
            row.push(self.sep as i64);
            let a_len = row.len();
            row.extend(b.iter().map(|&t| t as i64));
            row.push(self.sep as i64);
            let mut lab = vec![IGNORE; row.len()];
            self.mlm.mask_row(&mut row, &mut lab, rng);
            let len = row.len();
            push_padded(&mut input_ids, &row, seq, self.pad as i64);
            push_padded(&mut labels, &lab, seq, IGNORE);
            attention_mask.extend((0..seq).map(|t| (t < len) as i64));
            token_type_ids.extend((0..seq).map(|t| (t >= a_len && t < len) as i64));
            nsp_labels.push(p.is_random_next as i64);
        }
        Ok(Batch {
            input_ids,
            attention_mask,
            token_type_ids: Some(token_type_ids),
            labels,
            decoder_input_ids: None,
            nsp_labels: Some(nsp_labels),
            batch: n,
            seq,
            dec_seq: seq,
            loss: Loss::MaskedLmNsp,
        })
    }
}
