//! Writing one split (train or val) as a sequence of shards of at most `cap` tokens.
//! A new shard starts at a document start when the document would not fit; a document
//! longer than a shard's room continues in the next shard as a new document there.

use std::path::{Path, PathBuf};

use super::encode::Encoded;
use crate::data::corpus::{ShardMeta, SplitMeta};
use crate::data::shard::ShardWriter;
use crate::error::Result;

pub struct SplitWriter {
    name: &'static str,
    dir: PathBuf,
    width: u32,
    vocab: u32,
    fp: u64,
    cap: u64,
    eos: Option<u32>,
    cur: Option<ShardWriter>,
    meta: SplitMeta,
    pending_doc: bool,
    any_doc: bool,
}

impl SplitWriter {
    pub fn new(
        name: &'static str,
        dir: &Path,
        width: u32,
        vocab: u32,
        fp: u64,
        cap: u64,
        eos: Option<u32>,
    ) -> Self {
        SplitWriter {
            name,
            dir: dir.to_path_buf(),
            width,
            vocab,
            fp,
            cap: cap.max(1),
            eos,
            cur: None,
            meta: SplitMeta::default(),
            pending_doc: false,
            any_doc: false,
        }
    }

    fn roll(&mut self) -> Result<()> {
        if let Some(w) = self.cur.take() {
            let file = w
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let h = w.finish()?;
            self.meta.tokens += h.token_count;
            self.meta.documents += h.doc_count;
            self.meta.sentences += h.sentence_count;
            self.meta.shards.push(ShardMeta {
                file,
                tokens: h.token_count,
                documents: h.doc_count,
                sentences: h.sentence_count,
            });
        }
        Ok(())
    }

    fn current(&mut self) -> Result<&mut ShardWriter> {
        if self.cur.is_none() {
            let path = self
                .dir
                .join(format!("{}-{:05}.ptok", self.name, self.meta.shards.len()));
            self.cur = Some(ShardWriter::create(&path, self.width, self.vocab, self.fp)?);
        }
        Ok(self.cur.as_mut().expect("just created"))
    }

    fn push(&mut self, ids: &[u32], sentence_starts: &[u32]) -> Result<()> {
        let mut off = 0usize;
        let mut si = 0usize;
        while off < ids.len() {
            let cap = self.cap;
            let pending = self.pending_doc;
            let w = self.current()?;
            let room = cap.saturating_sub(w.len());
            if room == 0 {
                self.roll()?;
                continue;
            }
            let take = (room as usize).min(ids.len() - off);
            if pending || w.is_empty() {
                w.mark_doc_start()?;
            }
            let base = w.len();
            w.push(&ids[off..off + take])?;
            while si < sentence_starts.len() && (sentence_starts[si] as usize) < off + take {
                let s = sentence_starts[si] as usize;
                if s > off {
                    w.mark_sentence_start(base + (s - off) as u64)?;
                }
                si += 1;
            }
            self.pending_doc = false;
            off += take;
        }
        Ok(())
    }

    /// A document of (at least, in this piece) `len` tokens starts.
    fn start_doc(&mut self, len: usize) -> Result<()> {
        if let (Some(eos), true) = (self.eos, self.any_doc) {
            self.push(&[eos], &[])?;
        }
        self.any_doc = true;
        let fits = self
            .cur
            .as_ref()
            .is_none_or(|w| w.is_empty() || w.len() + len as u64 <= self.cap);
        if !fits {
            self.roll()?;
        }
        self.pending_doc = true;
        Ok(())
    }

    /// Write an encoded piece.
    pub fn write(&mut self, enc: &Encoded) -> Result<()> {
        let n = enc.ids.len();
        let mut bounds: Vec<usize> = Vec::with_capacity(enc.doc_starts.len() + 2);
        bounds.push(0);
        bounds.extend(enc.doc_starts.iter().map(|&d| d as usize));
        bounds.push(n);
        bounds.dedup();
        let mut si = 0;
        let mut sents: Vec<u32> = Vec::new();
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            if enc.doc_starts.binary_search(&(a as u32)).is_ok() {
                self.start_doc(b - a)?;
            }
            sents.clear();
            while si < enc.sentence_starts.len() && (enc.sentence_starts[si] as usize) < b {
                let s = enc.sentence_starts[si] as usize;
                if s > a {
                    sents.push((s - a) as u32);
                }
                si += 1;
            }
            self.push(&enc.ids[a..b], &sents)?;
        }
        Ok(())
    }

    /// Close the last shard and return the split's summary.
    pub fn finish(mut self) -> Result<SplitMeta> {
        if let (Some(eos), true) = (self.eos, self.any_doc) {
            self.push(&[eos], &[])?;
        }
        self.roll()?;
        Ok(self.meta)
    }
}
