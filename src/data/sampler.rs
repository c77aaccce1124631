//! Batches for training, both seeded and reproducible:
//! - [`RandomWindows`]: nanoGPT's `get_batch` — uniform window offsets `i`,
//!   `x = tokens[i..i+T]`, `y = tokens[i+1..i+T+1]`. Windows never cross a shard
//!   boundary: the offset is uniform over the `Σ_s max(0, len_s − T)` windows that fit
//!   inside a shard (for one shard exactly nanoGPT's `randint(len − T)`).
//! - [`EpochBatcher`]: documents in a seeded per-epoch permutation, concatenated and cut
//!   into rows as llm.c does (each batch reads `B·T + 1` tokens, `x` = the first `B·T`,
//!   `y` = the same shifted by one; the next batch starts at the last token read).
//! - [`EpochOrder`]: the document permutation of an epoch, for objectives that take
//!   whole documents (NSP, T5, BART).

use super::rng::{mix64, Permutation, SplitMix64};
use super::stream::TokenStream;
use crate::error::{Error, Result};

/// A batch of `batch` rows of `seq` tokens, row-major: `x[b·seq + t]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenBatch {
    pub x: Vec<u32>,
    pub y: Vec<u32>,
    pub batch: usize,
    pub seq: usize,
}

impl TokenBatch {
    pub fn new(batch: usize, seq: usize) -> Self {
        TokenBatch {
            x: vec![0; batch * seq],
            y: vec![0; batch * seq],
            batch,
            seq,
        }
    }

    fn reshape(&mut self, batch: usize, seq: usize) {
        self.batch = batch;
        self.seq = seq;
        self.x.resize(batch * seq, 0);
        self.y.resize(batch * seq, 0);
    }

    /// `x` widened to i64 (what embedding and cross-entropy take).
    pub fn x_i64(&self) -> Vec<i64> {
        self.x.iter().map(|&t| t as i64).collect()
    }

    pub fn y_i64(&self) -> Vec<i64> {
        self.y.iter().map(|&t| t as i64).collect()
    }
}

/// Uniform random windows of `seq + 1` tokens.
#[derive(Clone, Debug)]
pub struct RandomWindows {
    seq: usize,
    /// `cum[i]` = number of windows in shards `0..i`.
    cum: Vec<u64>,
    /// Global position of each shard's first token.
    starts: Vec<u64>,
    scratch: Vec<u32>,
}

impl RandomWindows {
    pub fn new(stream: &TokenStream, seq: usize) -> Result<Self> {
        if seq == 0 {
            return Err(Error::msg(
                "random windows: sequence length must be positive",
            ));
        }
        let mut cum = vec![0u64];
        let mut starts = Vec::new();
        let mut start = 0;
        for s in stream.shards() {
            cum.push(cum.last().copied().unwrap_or(0) + s.len().saturating_sub(seq as u64));
            starts.push(start);
            start += s.len();
        }
        if *cum.last().unwrap_or(&0) == 0 {
            let longest = stream.shards().iter().map(|s| s.len()).max().unwrap_or(0);
            return Err(Error::msg(format!(
                "random windows: no shard holds more than {seq} tokens (longest has {longest}), so no window of {} tokens fits",
                seq + 1
            )));
        }
        Ok(RandomWindows {
            seq,
            cum,
            starts,
            scratch: vec![0; seq + 1],
        })
    }

    pub fn window_count(&self) -> u64 {
        *self.cum.last().expect("prefix sums")
    }

    /// Global start of a uniformly drawn window.
    pub fn draw(&self, rng: &mut SplitMix64) -> u64 {
        self.start(rng.below(self.window_count()))
    }

    /// Global start of window `u` (`u < window_count()`), windows numbered shard by shard.
    pub fn start(&self, u: u64) -> u64 {
        let i = self.cum.partition_point(|&c| c <= u) - 1;
        self.starts[i] + (u - self.cum[i])
    }

    /// Fill `out` with the windows numbered `first .. first + batch`, in order: a sweep
    /// over every window gives the exact expectation of the loss over uniform windows
    /// (what [`sample`](Self::sample) estimates), free of sampling noise.
    pub fn windows_at(
        &mut self,
        stream: &TokenStream,
        first: u64,
        batch: usize,
        out: &mut TokenBatch,
    ) -> Result<()> {
        let end = first + batch as u64;
        if end > self.window_count() {
            return Err(Error::msg(format!(
                "windows {first}..{end} requested but the stream holds {} windows of {} tokens",
                self.window_count(),
                self.seq + 1
            )));
        }
        let t = self.seq;
        out.reshape(batch, t);
        for b in 0..batch {
            stream.read(self.start(first + b as u64), &mut self.scratch)?;
            out.x[b * t..(b + 1) * t].copy_from_slice(&self.scratch[..t]);
            out.y[b * t..(b + 1) * t].copy_from_slice(&self.scratch[1..]);
        }
        Ok(())
    }

    /// Fill `out` with `batch` windows (one draw per row, in row order).
    ///
    /// Then, on a copy of `rng`, it draws the offsets the next call with the same
    /// generator will use and asks the OS to read those pages in the background
    /// (`MADV_WILLNEED`), so a corpus larger than the page cache costs no synchronous
    /// disk read per window. `rng` itself advances by exactly `batch` draws.
    pub fn sample(
        &mut self,
        stream: &TokenStream,
        rng: &mut SplitMix64,
        batch: usize,
        out: &mut TokenBatch,
    ) -> Result<()> {
        let t = self.seq;
        out.reshape(batch, t);
        for b in 0..batch {
            let i = self.draw(rng);
            stream.read(i, &mut self.scratch)?;
            out.x[b * t..(b + 1) * t].copy_from_slice(&self.scratch[..t]);
            out.y[b * t..(b + 1) * t].copy_from_slice(&self.scratch[1..]);
        }
        let mut peek = rng.clone();
        for _ in 0..batch {
            stream.prefetch(self.draw(&mut peek), t as u64 + 1);
        }
        Ok(())
    }
}

/// The seeded document order of each epoch: epoch `e` is the permutation with seed
/// `mix64(seed ^ mix64(e))`, evaluated lazily in O(1) memory.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    n_docs: u64,
    seed: u64,
}

impl EpochOrder {
    pub fn new(n_docs: u64, seed: u64) -> Self {
        EpochOrder { n_docs, seed }
    }

    pub fn epoch(&self, e: u64) -> Permutation {
        Permutation::new(self.n_docs, mix64(self.seed ^ mix64(e.wrapping_add(1))))
    }

    /// Document indices of epoch `e`, in order.
    pub fn iter(&self, e: u64) -> impl Iterator<Item = u64> {
        let p = self.epoch(e);
        (0..self.n_docs).map(move |i| p.get(i))
    }
}

/// Tokens loaded at a time by [`EpochBatcher`].
const CHUNK: usize = 1 << 16;

/// Sequential batches over documents in per-epoch shuffled order.
#[derive(Clone, Debug)]
pub struct EpochBatcher {
    order: EpochOrder,
    perm: Permutation,
    epoch: u64,
    /// Index into the epoch's permutation of the current document.
    next_doc: u64,
    /// The current document (shard, range); `doc_pos` is the next position to load.
    doc: Option<super::stream::DocSpan>,
    doc_pos: u64,
    /// Loaded chunk of the current document (at most [`CHUNK`] tokens) and its cursor.
    cur: Vec<u32>,
    cur_pos: usize,
    /// The last token of the previous batch (first of the next buffer).
    carry: Option<u32>,
    buf: Vec<u32>,
}

impl EpochBatcher {
    pub fn new(stream: &TokenStream, seed: u64) -> Result<Self> {
        if stream.is_empty() {
            return Err(Error::msg("epoch batcher: the token stream is empty"));
        }
        if stream.doc_count() == 0 {
            return Err(Error::msg(
                "epoch batcher: the token stream has no document index",
            ));
        }
        let order = EpochOrder::new(stream.doc_count(), seed);
        let perm = order.epoch(0);
        Ok(EpochBatcher {
            order,
            perm,
            epoch: 0,
            next_doc: 0,
            doc: None,
            doc_pos: 0,
            cur: Vec::new(),
            cur_pos: 0,
            carry: None,
            buf: Vec::new(),
        })
    }

    /// The epoch the next token comes from (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Load the next chunk of the current document, or of the next document in the
    /// epoch's order (moving to the next epoch after the last one).
    fn load_chunk(&mut self, stream: &TokenStream) -> Result<()> {
        let span = match &self.doc {
            Some(span) if self.doc_pos < span.range.end => span.clone(),
            _ => {
                if self.next_doc == self.perm.len() {
                    self.epoch += 1;
                    self.perm = self.order.epoch(self.epoch);
                    self.next_doc = 0;
                }
                let span = stream.doc(self.perm.get(self.next_doc))?;
                self.next_doc += 1;
                self.doc_pos = span.range.start;
                self.doc = Some(span.clone());
                span
            }
        };
        // Documents are read in chunks so a huge one (a whole llm.c shard) never sits
        // in memory.
        let n = (span.range.end - self.doc_pos).min(CHUNK as u64) as usize;
        self.cur.resize(n, 0);
        stream.shards()[span.shard].read(self.doc_pos, &mut self.cur)?;
        self.doc_pos += n as u64;
        self.cur_pos = 0;
        Ok(())
    }

    /// Next `batch × seq` batch.
    pub fn next_batch(
        &mut self,
        stream: &TokenStream,
        batch: usize,
        seq: usize,
        out: &mut TokenBatch,
    ) -> Result<()> {
        out.reshape(batch, seq);
        let n = batch * seq + 1;
        self.buf.clear();
        if let Some(c) = self.carry {
            self.buf.push(c);
        }
        while self.buf.len() < n {
            if self.cur_pos >= self.cur.len() {
                self.load_chunk(stream)?;
                continue;
            }
            let take = (n - self.buf.len()).min(self.cur.len() - self.cur_pos);
            self.buf
                .extend_from_slice(&self.cur[self.cur_pos..self.cur_pos + take]);
            self.cur_pos += take;
        }
        out.x.copy_from_slice(&self.buf[..n - 1]);
        out.y.copy_from_slice(&self.buf[1..]);
        self.carry = Some(self.buf[n - 1]);
        Ok(())
    }
}
