//! Word boundaries over token ids, for whole-word masking: which tokens continue the
//! word of the token before them. Decided per vocabulary from the token strings.
//!
//! - WordPiece (the vocabulary has `##` pieces, BERT): a token continues the previous
//!   word iff it starts with `##` (HF4 `DataCollatorForWholeWordMask`, google-research
//!   `create_masked_lm_predictions`).
//! - Otherwise (byte-level BPE, SentencePiece, characters): a token continues the
//!   previous word iff neither the token begins with whitespace (`Ġ`, `▁`, a space,
//!   a newline…) nor the previous token ends with it; a whitespace-only token is a word
//!   of its own. So `Ġhe|llo` is one word, and for characters a word is a maximal run of
//!   non-whitespace characters.

use crate::data::tokenizer::Tokenizer;

const CONT: u8 = 1; // "##" prefix
const LEAD_WS: u8 = 2; // begins with whitespace
const TRAIL_WS: u8 = 4; // ends with whitespace
const ALL_WS: u8 = 8; // whitespace only

/// How words are marked in a vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordRule {
    /// `##` marks continuation pieces.
    Wordpiece,
    /// Whitespace (real or byte-level / SentencePiece markers) separates words.
    Whitespace,
}

/// Per-id word-boundary flags of one vocabulary.
#[derive(Clone, Debug)]
pub struct WordTable {
    flags: Vec<u8>,
    rule: WordRule,
}

/// Whitespace and the markers byte-level BPE (`Ġ` space, `Ċ` newline, `ĉ` tab, `č` CR)
/// and SentencePiece (`▁`) write for it.
fn is_ws(c: char) -> bool {
    c.is_whitespace() || matches!(c, 'Ġ' | 'Ċ' | 'ĉ' | 'č' | '▁')
}

impl WordTable {
    /// Flags of ids `0..vocab_size` from their strings (`None` = no string, a lone word).
    /// The rule is [`WordRule::Wordpiece`] when any token longer than 2 starts with `##`.
    pub fn from_fn(vocab_size: usize, token: impl Fn(u32) -> Option<String>) -> Self {
        let mut flags = vec![0u8; vocab_size];
        let mut wordpiece = false;
        for (id, f) in flags.iter_mut().enumerate() {
            let Some(s) = token(id as u32) else { continue };
            if s.len() > 2 && s.starts_with("##") {
                *f |= CONT;
                wordpiece = true;
            }
            let first = s.chars().next();
            let last = s.chars().next_back();
            if first.is_some_and(is_ws) {
                *f |= LEAD_WS;
            }
            if last.is_some_and(is_ws) {
                *f |= TRAIL_WS;
            }
            if !s.is_empty() && s.chars().all(is_ws) {
                *f |= ALL_WS;
            }
        }
        let rule = if wordpiece {
            WordRule::Wordpiece
        } else {
            WordRule::Whitespace
        };
        WordTable { flags, rule }
    }

    pub fn from_tokenizer(tok: &Tokenizer) -> Self {
        Self::from_fn(tok.vocab_size(), |id| tok.id_to_token(id))
    }

    pub fn rule(&self) -> WordRule {
        self.rule
    }

    fn flag(&self, id: i64) -> u8 {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.flags.get(i).copied())
            .unwrap_or(ALL_WS)
    }

    /// Whether token `cur` continues the word of the token `prev` just before it.
    pub fn continues(&self, prev: i64, cur: i64) -> bool {
        let (p, c) = (self.flag(prev), self.flag(cur));
        match self.rule {
            WordRule::Wordpiece => c & CONT != 0,
            WordRule::Whitespace => (p & (TRAIL_WS | ALL_WS)) == 0 && (c & (LEAD_WS | ALL_WS)) == 0,
        }
    }

    /// The words of `ids` among the positions where `candidate` holds, as lists of
    /// positions: a candidate joins the previous group when the position before it is a
    /// candidate in that group and [`WordTable::continues`] says so.
    pub fn groups(&self, ids: &[i64], candidate: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        for i in 0..ids.len() {
            if !candidate(i) {
                continue;
            }
            let joins = i > 0
                && out.last().and_then(|g| g.last()) == Some(&(i - 1))
                && self.continues(ids[i - 1], ids[i]);
            match out.last_mut() {
                Some(g) if joins => g.push(i),
                _ => out.push(vec![i]),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(vocab: &[&str]) -> WordTable {
        let v: Vec<String> = vocab.iter().map(|s| s.to_string()).collect();
        WordTable::from_fn(v.len(), |i| v.get(i as usize).cloned())
    }

    #[test]
    fn wordpiece_groups_follow_hash_pieces() {
        let t = table(&["[CLS]", "un", "##aff", "##able", "dog", "[SEP]"]);
        assert_eq!(t.rule(), WordRule::Wordpiece);
        let ids = [0, 1, 2, 3, 4, 5];
        let g = t.groups(&ids, |i| i != 0 && i != 5);
        assert_eq!(g, vec![vec![1, 2, 3], vec![4]]);
    }

    #[test]
    fn byte_level_and_char_groups_follow_whitespace() {
        let t = table(&["Ġhe", "llo", "Ġworld", "!", "Ċ", "x"]);
        assert_eq!(t.rule(), WordRule::Whitespace);
        // "Ġhe llo Ġworld ! Ċ x" → [he llo] [world !] [Ċ] [x]
        let g = t.groups(&[0, 1, 2, 3, 4, 5], |_| true);
        assert_eq!(g, vec![vec![0, 1], vec![2, 3], vec![4], vec![5]]);
        let c = table(&[" ", "a", "b", "\n"]);
        // "ab a\nb" → [a b] [ ] [a] [\n] [b]
        let g = c.groups(&[1, 2, 0, 1, 3, 2], |_| true);
        assert_eq!(g, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5]]);
        // A non-candidate between two pieces splits them.
        let g = c.groups(&[1, 2, 1], |i| i != 1);
        assert_eq!(g, vec![vec![0], vec![2]]);
    }
}
