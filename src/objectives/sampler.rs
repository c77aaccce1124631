//! Examples drawn from a [`TokenStream`], seeded by the one RNG passed in:
//! - [`Sampler::Windows`] (CLM, MLM, T5): windows of a fixed length at a uniform start
//!   in `0..=len − L` (they may cross document and shard boundaries, as nanoGPT's and
//!   T5's concatenated streams do);
//! - [`Sampler::Sentences`] (BART): a uniform token position picks a document and the
//!   sentence holding it; whole sentences from there up to `max_tokens`, within the
//!   document (fairseq's `complete_doc` blocks); a sentence longer than `max_tokens` gives
//!   a `max_tokens` window inside it;
//! - [`Sampler::Pairs`] (NSP): google-research instances from uniformly drawn documents,
//!   kept in a pool that examples are drawn from at random (so a batch mixes documents).
//!   The pool is sampler state: a resumed run that rebuilds the sampler starts with an
//!   empty pool.

use std::ops::Range;

use super::example::{Example, Pair};
use super::nsp::{create_instances_from_document, SentenceSource};
use crate::data::TokenStream;
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// Pairs kept in the NSP pool before drawing.
pub const PAIR_POOL: usize = 256;
/// Documents with no instance in a row before NSP sampling gives up.
const MAX_EMPTY_DOCS: usize = 1000;

#[derive(Debug)]
pub enum Sampler {
    Windows {
        len: usize,
    },
    Sentences {
        max_tokens: usize,
        shard_starts: Vec<u64>,
    },
    Pairs(PairSampler),
}

#[derive(Debug)]
pub struct PairSampler {
    pub seq: usize,
    pub short_seq_prob: f64,
    /// Longest document piece read at once (a longer document gives a random
    /// sentence-aligned piece of this many tokens).
    pub max_doc_tokens: usize,
    pub pool_size: usize,
    pool: Vec<Pair>,
}

impl Sampler {
    pub fn windows(stream: &TokenStream, len: usize) -> Result<Self> {
        if len == 0 || (stream.len() as usize) < len {
            return Err(Error::msg(format!(
                "window sampler: the stream has {} tokens, fewer than one window of {len}",
                stream.len()
            )));
        }
        Ok(Sampler::Windows { len })
    }

    pub fn sentences(stream: &TokenStream, max_tokens: usize) -> Result<Self> {
        if stream.is_empty() || stream.doc_count() == 0 || max_tokens == 0 {
            return Err(Error::msg(format!(
                "sentence sampler: the stream has {} tokens in {} documents (pieces of {max_tokens})",
                stream.len(),
                stream.doc_count()
            )));
        }
        let mut shard_starts = vec![0u64];
        for s in stream.shards() {
            shard_starts.push(shard_starts.last().copied().unwrap_or(0) + s.len());
        }
        Ok(Sampler::Sentences {
            max_tokens,
            shard_starts,
        })
    }

    pub fn pairs(stream: &TokenStream, seq: usize, short_seq_prob: f64) -> Result<Self> {
        if stream.doc_count() < 2 {
            return Err(Error::msg(format!(
                "nsp sampler: random next segments need at least 2 documents; the stream has {}",
                stream.doc_count()
            )));
        }
        Ok(Sampler::Pairs(PairSampler {
            seq,
            short_seq_prob,
            max_doc_tokens: (8 * seq).max(4096),
            pool_size: PAIR_POOL,
            pool: Vec::new(),
        }))
    }

    /// `n` examples from `stream` (the stream the sampler was made for).
    pub fn sample(
        &mut self,
        stream: &TokenStream,
        rng: &mut Rng,
        n: usize,
    ) -> Result<Vec<Example>> {
        let fits = match self {
            Sampler::Windows { len } => stream.len() >= *len as u64,
            Sampler::Sentences { shard_starts, .. } => {
                shard_starts.last() == Some(&stream.len())
                    && shard_starts.len() == stream.shards().len() + 1
            }
            Sampler::Pairs(_) => stream.doc_count() >= 2,
        };
        if !fits {
            return Err(Error::msg(format!(
                "sampler: the stream ({} tokens in {} shards, {} documents) is not the one this sampler was made for",
                stream.len(),
                stream.shards().len(),
                stream.doc_count()
            )));
        }
        match self {
            Sampler::Windows { len } => (0..n)
                .map(|_| {
                    let start = rng.below(stream.len() - *len as u64 + 1);
                    let mut ids = vec![0u32; *len];
                    stream.read(start, &mut ids)?;
                    Ok(Example::window(ids))
                })
                .collect(),
            Sampler::Sentences {
                max_tokens,
                shard_starts,
            } => (0..n)
                .map(|_| {
                    let pos = rng.below(stream.len());
                    let d = doc_at(stream, shard_starts, pos)?;
                    let span = stream.doc(d)?;
                    let local = pos - shard_starts[span.shard] - span.range.start;
                    let (ids, starts) = read_piece(stream, d, Some(local), *max_tokens, rng)?;
                    Ok(Example::with_sentences(ids, starts))
                })
                .collect(),
            Sampler::Pairs(p) => p.sample(stream, rng, n),
        }
    }
}

impl PairSampler {
    fn sample(&mut self, stream: &TokenStream, rng: &mut Rng, n: usize) -> Result<Vec<Example>> {
        let mut docs = StreamDocs {
            stream,
            max_tokens: self.max_doc_tokens,
        };
        let mut empty = 0;
        while self.pool.len() < n.max(self.pool_size) {
            let d = rng.below(stream.doc_count());
            let inst =
                create_instances_from_document(&mut docs, d, self.seq, self.short_seq_prob, rng)?;
            if inst.is_empty() {
                empty += 1;
                if empty >= MAX_EMPTY_DOCS {
                    return Err(Error::msg(format!(
                        "nsp sampler: {MAX_EMPTY_DOCS} documents in a row gave no sentence pair (are the documents empty?)"
                    )));
                }
            } else {
                empty = 0;
            }
            self.pool.extend(inst);
        }
        Ok((0..n)
            .map(|_| {
                let i = rng.below(self.pool.len() as u64) as usize;
                Example::Pair(self.pool.swap_remove(i))
            })
            .collect())
    }
}

/// Documents of a stream as sentence lists, long ones cut to a random piece.
struct StreamDocs<'a> {
    stream: &'a TokenStream,
    max_tokens: usize,
}

impl SentenceSource for StreamDocs<'_> {
    fn doc_count(&self) -> u64 {
        self.stream.doc_count()
    }

    fn sentences(&mut self, d: u64, rng: &mut Rng) -> Result<Vec<Vec<u32>>> {
        let (ids, starts) = read_piece(self.stream, d, None, self.max_tokens, rng)?;
        let mut bounds = starts;
        if bounds.first() != Some(&0) {
            bounds.insert(0, 0);
        }
        bounds.push(ids.len());
        Ok(bounds
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| ids[w[0]..w[1]].to_vec())
            .collect())
    }
}

/// The document holding global token `pos`.
fn doc_at(stream: &TokenStream, shard_starts: &[u64], pos: u64) -> Result<u64> {
    let start = |d: u64| -> Result<u64> {
        let s = stream.doc(d)?;
        Ok(shard_starts[s.shard] + s.range.start)
    };
    // Largest d with start(d) ≤ pos.
    let (mut lo, mut hi) = (0u64, stream.doc_count());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if start(mid)? <= pos {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Whole sentences of document `d` totalling at most `max_tokens`, starting at the
/// sentence holding doc-local token `at` (or, without `at`, at sentence 0 when the whole
/// document fits, else at a random sentence). A first sentence longer than `max_tokens`
/// gives a window of `max_tokens` inside it (at `at` when it fits). Returns the tokens and
/// the sentence starts within them.
fn read_piece(
    stream: &TokenStream,
    d: u64,
    at: Option<u64>,
    max_tokens: usize,
    rng: &mut Rng,
) -> Result<(Vec<u32>, Vec<usize>)> {
    let span = stream.doc(d)?;
    let mut sents: Vec<Range<u64>> = stream.doc_sentences(d)?;
    sents.retain(|r| r.end > r.start);
    let doc_len = span.range.end - span.range.start;
    if sents.is_empty() {
        if doc_len == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        sents.push(0..doc_len);
    }
    let first = match at {
        Some(p) => sents.partition_point(|r| r.end <= p).min(sents.len() - 1),
        None if doc_len <= max_tokens as u64 => 0,
        None => rng.below(sents.len() as u64) as usize,
    };
    let max = max_tokens as u64;
    let s0 = sents[first].clone();
    let (range, starts) = if s0.end - s0.start > max {
        let off = match at {
            Some(p) => p.clamp(s0.start, s0.end - max),
            None => s0.start + rng.below(s0.end - s0.start - max + 1),
        };
        (off..off + max, Vec::new())
    } else {
        let mut end = s0.end;
        let mut starts = vec![0usize];
        for r in &sents[first + 1..] {
            if r.end - s0.start > max {
                break;
            }
            starts.push((r.start - s0.start) as usize);
            end = r.end;
        }
        (s0.start..end, starts)
    };
    let mut ids = vec![0u32; (range.end - range.start) as usize];
    stream.shards()[span.shard].read(span.range.start + range.start, &mut ids)?;
    Ok((ids, starts))
}
