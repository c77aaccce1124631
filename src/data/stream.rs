//! Several shards read as one token stream: global positions `0..len` run through the
//! shards in order; documents are numbered the same way.

use std::ops::Range;
use std::path::PathBuf;

use super::shard::{Expect, Shard, ShardFormat};
use crate::error::{Error, Result};

/// Where a document lies: its shard and its token range in that shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocSpan {
    pub shard: usize,
    pub range: Range<u64>,
}

pub struct TokenStream {
    shards: Vec<Shard>,
    /// `tok_start[i]` = global position of shard i's first token; last entry = total.
    tok_start: Vec<u64>,
    /// `doc_start[i]` = global number of shard i's first document; last entry = total.
    doc_start: Vec<u64>,
}

impl std::fmt::Debug for TokenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStream")
            .field("shards", &self.shards.len())
            .field("tokens", &self.len())
            .field("documents", &self.doc_count())
            .finish()
    }
}

impl TokenStream {
    pub fn from_shards(shards: Vec<Shard>) -> Result<Self> {
        if let Some(first) = shards.first() {
            for s in &shards[1..] {
                if s.vocab_size() != first.vocab_size() {
                    return Err(Error::format(
                        s.path(),
                        "vocab_size",
                        format!(
                            "{:?} differs from {:?} of {}",
                            s.vocab_size(),
                            first.vocab_size(),
                            first.path().display()
                        ),
                    ));
                }
                let fp = |x: &Shard| x.header().map(|h| h.tokenizer_fp);
                if fp(s) != fp(first) {
                    return Err(Error::format(
                        s.path(),
                        "tokenizer_fp",
                        format!("differs from that of {}", first.path().display()),
                    ));
                }
            }
        }
        let mut tok_start = vec![0];
        let mut doc_start = vec![0];
        for s in &shards {
            tok_start.push(tok_start.last().copied().unwrap_or(0) + s.len());
            doc_start.push(doc_start.last().copied().unwrap_or(0) + s.doc_count());
        }
        Ok(TokenStream {
            shards,
            tok_start,
            doc_start,
        })
    }

    /// Open files as one stream (see [`ShardFormat`] and [`Expect`]).
    pub fn open(paths: &[PathBuf], format: ShardFormat, expect: Expect) -> Result<Self> {
        let shards = paths
            .iter()
            .map(|p| Shard::open(p, format, expect))
            .collect::<Result<Vec<_>>>()?;
        Self::from_shards(shards)
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub fn len(&self) -> u64 {
        *self.tok_start.last().expect("non-empty prefix sums")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn vocab_size(&self) -> Option<u32> {
        self.shards.first().and_then(|s| s.vocab_size())
    }

    pub fn doc_count(&self) -> u64 {
        *self.doc_start.last().expect("non-empty prefix sums")
    }

    /// Copy global tokens `start .. start + out.len()` (may cross shards).
    pub fn read(&self, start: u64, out: &mut [u32]) -> Result<()> {
        let end = start + out.len() as u64;
        if end > self.len() {
            return Err(Error::Index {
                op: "token stream read",
                msg: format!("tokens {start}..{end} past the end ({} tokens)", self.len()),
            });
        }
        let mut pos = start;
        let mut done = 0;
        while done < out.len() {
            let i = self.tok_start.partition_point(|&s| s <= pos) - 1;
            let local = pos - self.tok_start[i];
            let n = ((self.shards[i].len() - local) as usize).min(out.len() - done);
            self.shards[i].read(local, &mut out[done..done + n])?;
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    /// Ask the OS to read tokens `start .. start + len` into the page cache in the
    /// background (a hint: errors and out-of-range requests are ignored).
    pub fn prefetch(&self, start: u64, len: u64) {
        let mut pos = start;
        let end = (start + len).min(self.len());
        while pos < end {
            let i = self.tok_start.partition_point(|&s| s <= pos) - 1;
            let local = pos - self.tok_start[i];
            let n = (self.shards[i].len() - local).min(end - pos);
            self.shards[i].prefetch(local, n);
            pos += n;
        }
    }

    /// The shard and range of global document `d`.
    pub fn doc(&self, d: u64) -> Result<DocSpan> {
        if d >= self.doc_count() {
            return Err(Error::Index {
                op: "token stream document",
                msg: format!("document {d} of {}", self.doc_count()),
            });
        }
        let i = self.doc_start.partition_point(|&s| s <= d) - 1;
        Ok(DocSpan {
            shard: i,
            range: self.shards[i].doc_range(d - self.doc_start[i]),
        })
    }

    /// Tokens of document `d`.
    pub fn doc_tokens(&self, d: u64) -> Result<Vec<u32>> {
        let span = self.doc(d)?;
        let mut out = vec![0; (span.range.end - span.range.start) as usize];
        self.shards[span.shard].read(span.range.start, &mut out)?;
        Ok(out)
    }

    /// Token ranges (within the document) of the sentences of document `d`.
    pub fn doc_sentences(&self, d: u64) -> Result<Vec<Range<u64>>> {
        let span = self.doc(d)?;
        let local = d - self.doc_start[span.shard];
        Ok(self.shards[span.shard]
            .doc_sentences(local)
            .into_iter()
            .map(|r| r.start - span.range.start..r.end - span.range.start)
            .collect())
    }

    /// Full verification of every shard (see [`Shard::verify`]).
    pub fn verify(&self) -> Result<()> {
        self.shards.iter().try_for_each(Shard::verify)
    }
}
