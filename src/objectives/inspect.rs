//! A text view of a batch row for `pretext inspect`: the real (unpadded) inputs, segment
//! ids, decoder inputs and labels, and every loss position with its target, so a user
//! can see what an objective asks the model to predict.

use std::fmt::Write;

use super::batch::{Batch, IGNORE};

/// Render row `row` of `batch`; `token` names one id (e.g. the tokenizer's
/// `id_to_token`). Padding is summarised as a count.
pub fn render_row(batch: &Batch, row: usize, token: impl Fn(i64) -> String) -> String {
    let mut out = String::new();
    let real = batch.mask_row(row).iter().filter(|&&m| m != 0).count();
    let join = |ids: &[i64]| {
        ids.iter()
            .map(|&t| {
                if t == IGNORE {
                    "·".to_string()
                } else {
                    token(t)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pad_note = |n: usize| {
        if n > 0 {
            format!("  (+{n} padding)")
        } else {
            String::new()
        }
    };
    let positions: Vec<_> = batch
        .loss_positions()
        .into_iter()
        .filter(|p| p.row == row)
        .collect();
    let _ = writeln!(
        out,
        "row {row}: {} ({} loss positions)",
        batch.loss.name(),
        positions.len()
    );
    let inputs = &batch.input_row(row)[..real];
    let _ = writeln!(
        out,
        "  inputs   {}{}",
        join(inputs),
        pad_note(batch.seq - real)
    );
    if let Some(tt) = &batch.token_type_ids {
        let seg: Vec<String> = tt[row * batch.seq..row * batch.seq + real]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let _ = writeln!(out, "  segments {}", seg.join(""));
    }
    let labels = batch.label_row(row);
    let used = labels
        .iter()
        .rposition(|&l| l != IGNORE)
        .map_or(0, |i| i + 1);
    if let Some(d) = batch.decoder_row(row) {
        let _ = writeln!(out, "  decoder  {}", join(&d[..used.max(1)]));
    }
    let _ = writeln!(
        out,
        "  labels   {}{}",
        join(&labels[..used]),
        pad_note(batch.dec_seq - used)
    );
    let targets: Vec<String> = positions
        .iter()
        .map(|p| format!("{}→{}", p.pos, token(p.target)))
        .collect();
    let _ = writeln!(out, "  loss at  {}", targets.join(" "));
    if let Some(n) = &batch.nsp_labels {
        let what = if n[row] == 1 {
            "B is random"
        } else {
            "B follows A"
        };
        let _ = writeln!(out, "  nsp      {} ({what})", n[row]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::batch::Loss;

    #[test]
    fn renders_inputs_labels_and_targets() {
        let b = Batch {
            input_ids: vec![2, 9, 4, 3, 0],
            attention_mask: vec![1, 1, 1, 1, 0],
            token_type_ids: Some(vec![0, 0, 0, 0, 0]),
            labels: vec![IGNORE, IGNORE, 8, IGNORE, IGNORE],
            decoder_input_ids: None,
            nsp_labels: Some(vec![1]),
            batch: 1,
            seq: 5,
            dec_seq: 5,
            loss: Loss::MaskedLmNsp,
        };
        let s = render_row(&b, 0, |t| format!("<{t}>"));
        assert!(s.contains("inputs   <2> <9> <4> <3>  (+1 padding)"), "{s}");
        assert!(s.contains("labels   · · <8>  (+2 padding)"), "{s}");
        assert!(s.contains("loss at  2→<8>"), "{s}");
        assert!(s.contains("nsp      1 (B is random)"), "{s}");
        assert!(s.contains("segments 0000"), "{s}");
    }
}
