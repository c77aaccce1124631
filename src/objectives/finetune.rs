//! Fine-tuning label masks.
//!
//! - Completion-only causal LM (TRL ≥ 0.20 prompt–completion data): `x = prompt ++
//!   completion`, labels `y_t = x_t` on completion tokens and −100 on the prompt, so
//!   `L = mean_{t ∈ completion} −log p(x_t | x_<t)` (the model shifts, as CLM).
//! - Legacy `DataCollatorForCompletionOnlyLM` (response template): everything up to the
//!   end of the **last** match of the template is −100; with no match the whole row is
//!   −100 (TRL warns; [`CompletionLabels::found`] says so).
//! - Token classification (HF `run_ner` `tokenize_and_align_labels`): the first sub-word
//!   of each word gets the word's label, later sub-words −100 (or, with
//!   `label_all_tokens`, the B→I mapped label), tokens of no word (specials) −100.
//!   `L = mean_{t: y_t ≠ −100} −log p(y_t | x)`.
//!
//! Rows are padded on the right: inputs with the pad id, labels with −100.

use super::batch::{push_padded, Batch, Loss, IGNORE};
use crate::error::{Error, Result};

/// Token ids and labels of one prompt–completion example: `prompt ++ completion` (plus
/// `eos` when given and the completion does not already end with it), labels −100 over
/// the prompt.
pub fn prompt_completion(
    prompt: &[u32],
    completion: &[u32],
    eos: Option<u32>,
) -> (Vec<i64>, Vec<i64>) {
    let mut ids: Vec<i64> = prompt.iter().chain(completion).map(|&t| t as i64).collect();
    if let Some(e) = eos {
        if completion.last() != Some(&e) {
            ids.push(e as i64);
        }
    }
    let labels = ids
        .iter()
        .enumerate()
        .map(|(t, &x)| if t < prompt.len() { IGNORE } else { x })
        .collect();
    (ids, labels)
}

/// Labels of the response-template collator and whether the template was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionLabels {
    pub labels: Vec<i64>,
    pub found: bool,
}

/// TRL's legacy completion-only labels: `y_t = x_t` after the end of the last occurrence
/// of `template` in `ids`, −100 up to it; all −100 when it does not occur.
pub fn completion_only_labels(ids: &[u32], template: &[u32]) -> CompletionLabels {
    let end = if template.is_empty() || template.len() > ids.len() {
        None
    } else {
        (0..=ids.len() - template.len())
            .rev()
            .find(|&i| ids[i..i + template.len()] == *template)
            .map(|i| i + template.len())
    };
    let labels = ids
        .iter()
        .enumerate()
        .map(|(t, &x)| match end {
            Some(e) if t >= e => x as i64,
            _ => IGNORE,
        })
        .collect();
    CompletionLabels {
        labels,
        found: end.is_some(),
    }
}

/// HF `run_ner` label alignment. `word_ids[t]` is the word of token `t` (`None` for
/// special tokens); `word_labels[w]` the label of word `w`. With `b_to_i` (label id →
/// its I- label id), later sub-words get `b_to_i[label]` instead of −100
/// (`label_all_tokens`).
pub fn align_token_labels(
    word_ids: &[Option<usize>],
    word_labels: &[i64],
    b_to_i: Option<&[i64]>,
) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(word_ids.len());
    let mut prev: Option<usize> = None;
    for (t, &w) in word_ids.iter().enumerate() {
        let y = match w {
            None => IGNORE,
            Some(w) => {
                let label = *word_labels.get(w).ok_or_else(|| {
                    Error::msg(format!(
                        "token classification: token {t} belongs to word {w}, but there are {} word labels",
                        word_labels.len()
                    ))
                })?;
                if Some(w) != prev {
                    label
                } else {
                    match b_to_i {
                        None => IGNORE,
                        Some(map) => *usize::try_from(label)
                            .ok()
                            .and_then(|l| map.get(l))
                            .ok_or_else(|| {
                                Error::msg(format!(
                                    "token classification: label {label} of word {w} has no entry in the B→I map of {} labels",
                                    map.len()
                                ))
                            })?,
                    }
                }
            }
        };
        out.push(y);
        prev = w;
    }
    Ok(out)
}

/// Pad `(ids, labels)` rows into a batch of `seq` columns (ids with `pad`, labels with
/// −100, attention 0 on padding). A row longer than `seq` is an error, not truncated.
pub fn collate(rows: &[(Vec<i64>, Vec<i64>)], seq: usize, pad: u32, loss: Loss) -> Result<Batch> {
    let n = rows.len();
    let mut input_ids = Vec::with_capacity(n * seq);
    let mut attention_mask = Vec::with_capacity(n * seq);
    let mut labels = Vec::with_capacity(n * seq);
    for (i, (ids, lab)) in rows.iter().enumerate() {
        if ids.len() != lab.len() {
            return Err(Error::msg(format!(
                "collate: row {i} has {} ids but {} labels",
                ids.len(),
                lab.len()
            )));
        }
        if ids.len() > seq {
            return Err(Error::msg(format!(
                "collate: row {i} has {} tokens, more than the sequence length {seq}",
                ids.len()
            )));
        }
        push_padded(&mut input_ids, ids, seq, pad as i64);
        push_padded(&mut labels, lab, seq, IGNORE);
        attention_mask.extend((0..seq).map(|t| (t < ids.len()) as i64));
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
        loss,
    })
}
