//! The batch every objective produces: plain row-major `i64` arrays (what embeddings
//! and cross-entropy take), no tensors. `input_ids`, `attention_mask` and
//! `token_type_ids` are `batch × seq`; `labels` and `decoder_input_ids` are
//! `batch × dec_seq` (`dec_seq = seq` for encoder-only and decoder-only models);
//! `nsp_labels` has one entry per row. A label of −100 means "no loss here".

use crate::error::{Error, Result};

/// The label value that cross-entropy ignores (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// The loss an objective trains with. `mean_{labels ≠ −100}` is the mean over the
/// positions whose label is not −100, as `CrossEntropyLoss(ignore_index=−100)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `L = mean_{t: y[t+1] ≠ −100} −log p(y[t+1] | x[0..=t])`: labels are the inputs,
    /// and the model shifts them by one (as `GPT2LMHeadModel`).
    CausalLm,
    /// `L = mean_{t: y[t] ≠ −100} −log p(y[t] | x̃)` over the selected positions.
    MaskedLm,
    /// `L = L_mlm + L_nsp`, `L_nsp = mean_rows −log p(is_random_next | h_[CLS])`
    /// (`BertForPreTraining`'s sum).
    MaskedLmNsp,
    /// `L = mean_{t: y[t] ≠ −100} −log p(y[t] | y[0..t], encoder(x̃))` with the decoder
    /// fed `shift_right(y)` (T5, BART).
    Seq2Seq,
    /// `L = mean_{t: y[t] ≠ −100} −log p(y[t] | x)` over token-classification labels.
    TokenClassification,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::CausalLm => "causal LM cross-entropy",
            Loss::MaskedLm => "masked LM cross-entropy",
            Loss::MaskedLmNsp => "masked LM + next-sentence cross-entropy",
            Loss::Seq2Seq => "sequence-to-sequence cross-entropy",
            Loss::TokenClassification => "token-classification cross-entropy",
        }
    }

    /// How far the target of position `t` is: 1 for causal LM (`labels[t+1]`), else 0.
    pub fn label_shift(self) -> usize {
        match self {
            Loss::CausalLm => 1,
            _ => 0,
        }
    }
}

/// A position the loss is computed at: the output of `(row, pos)` (decoder positions for
/// seq2seq) is scored against token `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossPosition {
    pub row: usize,
    pub pos: usize,
    pub target: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 for A, 1 for B) where the objective has segments.
    pub token_type_ids: Option<Vec<i64>>,
    pub labels: Vec<i64>,
    /// `shift_right(labels)` for encoder–decoder objectives.
    pub decoder_input_ids: Option<Vec<i64>>,
    /// Next-sentence labels (0 = B follows A, 1 = B is random).
    pub nsp_labels: Option<Vec<i64>>,
    pub batch: usize,
    pub seq: usize,
    pub dec_seq: usize,
    pub loss: Loss,
}

impl Batch {
    pub fn input_row(&self, r: usize) -> &[i64] {
        &self.input_ids[r * self.seq..(r + 1) * self.seq]
    }

    pub fn mask_row(&self, r: usize) -> &[i64] {
        &self.attention_mask[r * self.seq..(r + 1) * self.seq]
    }

    pub fn label_row(&self, r: usize) -> &[i64] {
        &self.labels[r * self.dec_seq..(r + 1) * self.dec_seq]
    }

    pub fn decoder_row(&self, r: usize) -> Option<&[i64]> {
        self.decoder_input_ids
            .as_ref()
            .map(|d| &d[r * self.dec_seq..(r + 1) * self.dec_seq])
    }

    /// Every position the loss applies at, row by row (for `pretext inspect` and tests).
    /// Causal LM: `pos = t` predicts `labels[t+1]`; otherwise `pos = t` predicts `labels[t]`.
    pub fn loss_positions(&self) -> Vec<LossPosition> {
        let shift = self.loss.label_shift();
        let mut out = Vec::new();
        for row in 0..self.batch {
            let labels = self.label_row(row);
            for pos in 0..self.dec_seq.saturating_sub(shift) {
                let target = labels[pos + shift];
                if target != IGNORE {
                    out.push(LossPosition { row, pos, target });
                }
            }
        }
        out
    }

    /// Number of label positions that count in the loss (the cross-entropy denominator).
    pub fn loss_count(&self) -> usize {
        self.loss_positions().len()
    }

    /// Check that every array has the size its shape says.
    pub fn validate(&self) -> Result<()> {
        let bs = self.batch * self.seq;
        let bd = self.batch * self.dec_seq;
        let check = |name: &str, len: usize, want: usize| {
            if len != want {
                Err(Error::msg(format!(
                    "batch: {name} has {len} entries, expected {want} (batch {}, seq {}, dec_seq {})",
                    self.batch, self.seq, self.dec_seq
                )))
            } else {
                Ok(())
            }
        };
        check("input_ids", self.input_ids.len(), bs)?;
        check("attention_mask", self.attention_mask.len(), bs)?;
        if let Some(t) = &self.token_type_ids {
            check("token_type_ids", t.len(), bs)?;
        }
        check("labels", self.labels.len(), bd)?;
        if let Some(d) = &self.decoder_input_ids {
            check("decoder_input_ids", d.len(), bd)?;
        }
        if let Some(n) = &self.nsp_labels {
            check("nsp_labels", n.len(), self.batch)?;
        }
        Ok(())
    }
}

/// Append `src` to `dst` followed by `fill` up to `len` entries (`src.len() ≤ len`).
pub(crate) fn push_padded(dst: &mut Vec<i64>, src: &[i64], len: usize, fill: i64) {
    debug_assert!(src.len() <= len);
    dst.extend_from_slice(src);
    dst.extend(std::iter::repeat_n(fill, len - src.len()));
}

/// Hugging Face's `shift_tokens_right` on one row:
/// `out[0] = start`, `out[t] = labels[t−1]`, and −100 becomes `pad`.
pub fn shift_right(labels: &[i64], pad: i64, start: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(labels.len());
    if !labels.is_empty() {
        out.push(start);
        out.extend(
            labels[..labels.len() - 1]
                .iter()
                .map(|&v| if v == IGNORE { pad } else { v }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_right_matches_hf() {
        assert_eq!(shift_right(&[5, 6, -100, -100], 0, 0), vec![0, 5, 6, 0]);
        assert_eq!(shift_right(&[0, 7, 2], 1, 2), vec![2, 0, 7]);
        assert!(shift_right(&[], 0, 0).is_empty());
    }

    #[test]
    fn causal_loss_positions_are_shifted() {
        let b = Batch {
            input_ids: vec![4, 5, 6, 0],
            attention_mask: vec![1, 1, 1, 0],
            token_type_ids: None,
            labels: vec![4, 5, 6, IGNORE],
            decoder_input_ids: None,
            nsp_labels: None,
            batch: 1,
            seq: 4,
            dec_seq: 4,
            loss: Loss::CausalLm,
        };
        b.validate().unwrap();
        let p = b.loss_positions();
        assert_eq!(
            p,
            vec![
                LossPosition {
                    row: 0,
                    pos: 0,
                    target: 5
                },
                LossPosition {
                    row: 0,
                    pos: 1,
                    target: 6
                }
            ]
        );
    }
}
