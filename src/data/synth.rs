//! Seeded synthetic English-like text of any length, produced on the fly as a
//! `Read` (for benchmarks and tests: the text never sits in memory). Words are drawn
//! from a fixed list with a Zipf-like skew, sentences end in `.`, `!` or `?`, and
//! paragraphs are separated by blank lines.

use std::io::Read;

use super::rng::SplitMix64;

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "that",
    "is",
    "was",
    "he",
    "for",
    "it",
    "with",
    "as",
    "his",
    "on",
    "be",
    "at",
    "by",
    "i",
    "this",
    "had",
    "not",
    "are",
    "but",
    "from",
    "or",
    "have",
    "an",
    "they",
    "which",
    "one",
    "you",
    "were",
    "her",
    "all",
    "she",
    "there",
    "would",
    "their",
    "we",
    "him",
    "been",
    "has",
    "when",
    "who",
    "will",
    "more",
    "no",
    "if",
    "out",
    "so",
    "said",
    "what",
    "up",
    "its",
    "about",
    "into",
    "than",
    "them",
    "can",
    "only",
    "other",
    "new",
    "some",
    "could",
    "time",
    "these",
    "two",
    "may",
    "then",
    "do",
    "first",
    "any",
    "my",
    "now",
    "such",
    "like",
    "our",
    "over",
    "man",
    "me",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "before",
    "must",
    "through",
    "back",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "how",
    "too",
    "little",
    "state",
    "good",
    "very",
    "make",
    "world",
    "still",
    "own",
    "see",
    "men",
    "work",
    "long",
    "get",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "day",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "us",
    "great",
    "old",
    "year",
    "off",
    "come",
    "since",
    "against",
    "go",
    "came",
    "right",
    "used",
    "take",
    "three",
    "kingdom",
    "castle",
    "river",
    "mountain",
    "tempest",
    "sovereign",
    "whereupon",
    "nevertheless",
    "extraordinary",
    "countenance",
    "thou",
    "thee",
    "hath",
    "doth",
    "café",
    "naïve",
    "über",
    "señor",
];

/// `total` bytes of synthetic text (the last word may be cut to fit exactly).
pub struct SyntheticText {
    rng: SplitMix64,
    /// Each word, and capitalised, as bytes.
    words: Vec<(Vec<u8>, Vec<u8>)>,
    remaining: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl SyntheticText {
    pub fn new(total: u64, seed: u64) -> Self {
        let cap = |w: &str| {
            let mut cs = w.chars();
            cs.next()
                .map(|c| c.to_uppercase().chain(cs).collect::<String>())
                .unwrap_or_default()
        };
        SyntheticText {
            rng: SplitMix64::new(seed),
            words: WORDS
                .iter()
                .map(|w| (w.as_bytes().to_vec(), cap(w).into_bytes()))
                .collect(),
            remaining: total,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Append one paragraph to `buf`.
    fn paragraph(&mut self) {
        let sentences = 1 + self.rng.below(6);
        for s in 0..sentences {
            if s > 0 {
                self.buf.push(b' ');
            }
            let words = 4 + self.rng.below(14);
            let n = self.words.len() as u64;
            for w in 0..words {
                // One draw per word: two 16-bit uniforms whose minimum favours early
                // (frequent) words, Zipf-like, and 1 in 16 words followed by a comma.
                let r = self.rng.next_u64();
                let i = (((r & 0xffff) * n) >> 16).min((((r >> 16) & 0xffff) * n) >> 16) as usize;
                let (word, capital) = &self.words[i];
                if w > 0 {
                    self.buf.push(b' ');
                    self.buf.extend_from_slice(word);
                } else {
                    self.buf.extend_from_slice(capital);
                }
                if w + 1 < words && (r >> 32) & 15 == 0 {
                    self.buf.push(b',');
                }
            }
            self.buf.push(match self.rng.below(8) {
                0 => b'!',
                1 => b'?',
                _ => b'.',
            });
        }
        self.buf.extend_from_slice(b"\n\n");
    }
}

impl Read for SyntheticText {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            while self.buf.len() < 64 << 10 {
                self.paragraph();
            }
        }
        let mut n = (self.buf.len() - self.pos).min(out.len());
        n = n.min(self.remaining.min(usize::MAX as u64) as usize);
        // Never end in the middle of a UTF-8 character.
        if n as u64 == self.remaining {
            while n > 0 && (self.buf[self.pos + n - 1] & 0x80) != 0 {
                n -= 1;
            }
            if n == 0 {
                self.remaining = 0;
                return Ok(0);
            }
        }
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}
