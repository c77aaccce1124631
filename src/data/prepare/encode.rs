//! Tokenizing one piece and locating its document and sentence boundaries in tokens.
//!
//! Each document of a piece is encoded on its own (as separate texts are). A sentence
//! ends at `.`, `!` or `?` followed by whitespace, and the next one starts after that
//! whitespace; its boundary in tokens is the number of tokens that end at or before that
//! byte (for a character tokenizer the first character of the next sentence; for GPT-2
//! BPE, the token carrying the space). Trailing whitespace starts no sentence.

use super::input::Piece;
use crate::data::tokenizer::Tokenizer;
use crate::error::Result;

/// Token ids of a piece with the token positions where documents and sentences start
/// (both increasing; a document start is not repeated among the sentence starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub doc_starts: Vec<u32>,
    pub sentence_starts: Vec<u32>,
}

/// Whether any byte of the little-endian word `w` is `.`, `!` or `?` (SWAR: a byte of
/// `w ^ c·0x0101…` is zero exactly where `w` has byte `c`; `(x − 0x01…) & !x & 0x80…` is
/// non-zero iff `x` has a zero byte).
fn has_punct(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    (zero(w ^ (LO * b'.' as u64)) | zero(w ^ (LO * b'!' as u64)) | zero(w ^ (LO * b'?' as u64)))
        != 0
}

/// Byte offsets where a new sentence starts: after a `.`, `!` or `?` that is followed by
/// whitespace, and after that whitespace.
pub fn sentence_end_bytes(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut check = |i: usize| {
        if !matches!(b[i], b'.' | b'!' | b'?') || i + 1 >= b.len() {
            return;
        }
        let next = b[i + 1];
        let ws = if next < 0x80 {
            next.is_ascii_whitespace()
        } else {
            text[i + 1..]
                .chars()
                .next()
                .is_some_and(char::is_whitespace)
        };
        if ws {
            // The next sentence starts after the whitespace that follows the mark; a
            // mark at the end of the text (only whitespace after it) starts none.
            let rest = &text[i + 1..];
            let start = i + 1 + (rest.len() - rest.trim_start().len());
            if start < b.len() {
                out.push(start);
            }
        }
    };
    let chunks = b.len() / 8;
    for c in 0..chunks {
        let w = u64::from_le_bytes(b[8 * c..8 * c + 8].try_into().expect("8 bytes"));
        if has_punct(w) {
            (8 * c..8 * c + 8).for_each(&mut check);
        }
    }
    (8 * chunks..b.len()).for_each(&mut check);
    out
}

/// Encode one document's text, appending to `out` (positions offset by the tokens
/// already there).
fn encode_doc(tok: &Tokenizer, text: &str, out: &mut Encoded, ends: &mut Vec<usize>) -> Result<()> {
    let base = out.ids.len();
    let sentence_ends = sentence_end_bytes(text);
    if tok.kind() == "char" && text.is_ascii() {
        // One token per byte: byte offsets are token offsets.
        tok.encode_into(text, &mut out.ids, None)?;
        for e in sentence_ends {
            out.sentence_starts.push((base + e) as u32);
        }
        return Ok(());
    }
    ends.clear();
    tok.encode_into(text, &mut out.ids, Some(ends))?;
    let n = out.ids.len() - base;
    let mut k = 0usize;
    for b in sentence_ends {
        while k < ends.len() && ends[k] <= b {
            k += 1;
        }
        if k > 0 && k < n && out.sentence_starts.last() != Some(&((base + k) as u32)) {
            out.sentence_starts.push((base + k) as u32);
        }
    }
    Ok(())
}

pub fn encode_piece(tok: &Tokenizer, piece: &Piece) -> Result<Encoded> {
    let mut out = Encoded::default();
    let mut ends = Vec::new();
    let text = piece.text.as_str();
    let mut cuts: Vec<usize> = piece.doc_starts.clone();
    cuts.push(text.len());
    let mut prev = 0;
    for &c in &cuts {
        if c > prev {
            encode_doc(tok, &text[prev..c], &mut out, &mut ends)?;
        }
        if c < text.len() {
            out.doc_starts.push(out.ids.len() as u32);
        }
        prev = c;
    }
    // Sentence starts strictly inside the piece and not at a document start.
    let n = out.ids.len() as u32;
    let docs = &out.doc_starts;
    out.sentence_starts
        .retain(|&s| s > 0 && s < n && docs.binary_search(&s).is_err());
    out.doc_starts.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_ends() {
        assert_eq!(
            sentence_end_bytes("Hi. Yes! No?\nOk... go.x"),
            vec![4, 9, 13, 19]
        );
        assert_eq!(sentence_end_bytes("3.14 is pi."), Vec::<usize>::new());
        assert_eq!(sentence_end_bytes("Fin.\u{3000}Next"), vec![7]);
        assert_eq!(sentence_end_bytes("End.  \n\n"), Vec::<usize>::new());
        let long = "word ".repeat(7) + "a. b! c? d.e";
        let base = 35;
        assert_eq!(
            sentence_end_bytes(&long),
            vec![base + 3, base + 6, base + 9]
        );
    }
}
