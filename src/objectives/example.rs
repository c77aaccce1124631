//! What the batch builders take: token windows with their sentence boundaries, and
//! sentence pairs for next-sentence prediction. Samplers ([`super::sampler`]) draw them
//! from a token stream; tests and fine-tuning code can build them by hand.

use std::ops::Range;

use crate::error::{Error, Result};

/// A run of tokens; `sentence_starts` are the positions where sentences begin
/// (strictly increasing, each `< ids.len()`; position 0 always begins one, listed or not).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub ids: Vec<u32>,
    pub sentence_starts: Vec<usize>,
}

impl Window {
    pub fn new(ids: Vec<u32>) -> Self {
        Window {
            ids,
            sentence_starts: Vec::new(),
        }
    }

    /// The sentences as consecutive ranges covering `0..ids.len()` (one if none are marked).
    pub fn sentences(&self) -> Result<Vec<Range<usize>>> {
        let n = self.ids.len();
        let mut starts = Vec::with_capacity(self.sentence_starts.len() + 1);
        if self.sentence_starts.first() != Some(&0) {
            starts.push(0);
        }
        for (i, &s) in self.sentence_starts.iter().enumerate() {
            if s >= n.max(1) || starts.last().is_some_and(|&p| s <= p) {
                return Err(Error::msg(format!(
                    "window: sentence start {s} (#{i}) is not increasing or not below the window length {n}"
                )));
            }
            starts.push(s);
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(starts
            .iter()
            .enumerate()
            .map(|(i, &s)| s..starts.get(i + 1).copied().unwrap_or(n))
            .collect())
    }
}

/// Segments A and B of a next-sentence-prediction example; `is_random_next` when B comes
/// from another document (NSP label 1), false when B is A's true continuation (label 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pair {
    pub a: Vec<u32>,
    pub b: Vec<u32>,
    pub is_random_next: bool,
}

/// One example for [`super::Objective::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Example {
    Window(Window),
    Pair(Pair),
}

impl Example {
    /// A window without sentence boundaries.
    pub fn window(ids: Vec<u32>) -> Self {
        Example::Window(Window::new(ids))
    }

    pub fn with_sentences(ids: Vec<u32>, sentence_starts: Vec<usize>) -> Self {
        Example::Window(Window {
            ids,
            sentence_starts,
        })
    }

    pub fn pair(a: Vec<u32>, b: Vec<u32>, is_random_next: bool) -> Self {
        Example::Pair(Pair {
            a,
            b,
            is_random_next,
        })
    }

    /// The window, or an error naming the objective that needs windows.
    pub fn as_window(&self, objective: &str, index: usize) -> Result<&Window> {
        match self {
            Example::Window(w) => Ok(w),
            Example::Pair(_) => Err(Error::msg(format!(
                "{objective}: example {index} is a sentence pair; this objective takes token windows"
            ))),
        }
    }

    pub fn as_pair(&self, objective: &str, index: usize) -> Result<&Pair> {
        match self {
            Example::Pair(p) => Ok(p),
            Example::Window(_) => Err(Error::msg(format!(
                "{objective}: example {index} is a token window; this objective takes sentence pairs (A, B, is_random_next)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_partition_the_window() {
        let w = Window {
            ids: vec![1; 10],
            sentence_starts: vec![3, 7],
        };
        assert_eq!(w.sentences().unwrap(), vec![0..3, 3..7, 7..10]);
        let w = Window {
            ids: vec![1; 10],
            sentence_starts: vec![0, 4],
        };
        assert_eq!(w.sentences().unwrap(), vec![0..4, 4..10]);
        assert_eq!(Window::new(vec![5; 4]).sentences().unwrap(), vec![0..4]);
        let bad = Window {
            ids: vec![1; 10],
            sentence_starts: vec![5, 5],
        };
        assert!(bad
            .sentences()
            .unwrap_err()
            .to_string()
            .contains("sentence start 5"));
        let bad = Window {
            ids: vec![1; 10],
            sentence_starts: vec![10],
        };
        assert!(bad.sentences().is_err());
    }
}
