//! Tokenizing one piece and locating its sentence boundaries.
//!
//! A sentence ends right after `.`, `!` or `?` when the next character is whitespace;
//! the boundary in tokens is the number of tokens that end at or before that byte, so
//! the next sentence starts with the token after the punctuation (for GPT-2 BPE, the
//! token carrying the following space).

use crate::data::tokenizer::Tokenizer;
use crate::error::Result;

/// Token ids of a piece and the token positions (0 < p < ids.len()) where a new
/// sentence starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub sentence_starts: Vec<u32>,
}

/// Byte offsets right after each sentence-ending punctuation mark followed by whitespace.
pub fn sentence_end_bytes(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev_end: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if let Some(e) = prev_end.take() {
            if c.is_whitespace() {
                out.push(e);
            }
        }
        if matches!(c, '.' | '!' | '?') {
            prev_end = Some(i + 1);
        }
    }
    out
}

pub fn encode_piece(tok: &Tokenizer, text: &str) -> Result<Encoded> {
    let mut ids = Vec::new();
    let mut ends = Vec::new();
    tok.encode_into(text, &mut ids, Some(&mut ends))?;
    let mut sentence_starts = Vec::new();
    let mut k = 0usize;
    for b in sentence_end_bytes(text) {
        while k < ends.len() && ends[k] <= b {
            k += 1;
        }
        if k > 0 && k < ids.len() && sentence_starts.last() != Some(&(k as u32)) {
            sentence_starts.push(k as u32);
        }
    }
    Ok(Encoded {
        ids,
        sentence_starts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_ends() {
        assert_eq!(
            sentence_end_bytes("Hi. Yes! No?\nOk... go.x"),
            vec![3, 8, 12, 18]
        );
        assert_eq!(sentence_end_bytes("3.14 is pi."), Vec::<usize>::new());
    }
}
