//! Streaming shard writer. Tokens go to `NAME.tmp` behind a zeroed header (so a partly
//! written file never parses), the two index arrays to side files; `finish` appends the
//! indices, writes the real header, fsyncs and renames `NAME.tmp` to `NAME`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::{Header, HEADER_BYTES, MAX_SHARD_TOKENS};
use crate::data::fsutil::tmp_path;
use crate::data::hash::TokenChecksum;
use crate::error::{Error, Result};

pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    tokens: BufWriter<File>,
    docs_path: PathBuf,
    docs: BufWriter<File>,
    sents_path: PathBuf,
    sents: BufWriter<File>,
    header: Header,
    checksum: TokenChecksum,
    last_doc: Option<u64>,
    last_sent: Option<u64>,
    scratch: Vec<u8>,
}

fn side(path: &Path, ext: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(ext);
    path.with_file_name(name)
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

impl ShardWriter {
    pub fn create(
        path: &Path,
        token_width: u32,
        vocab_size: u32,
        tokenizer_fp: u64,
    ) -> Result<Self> {
        let tmp = tmp_path(path);
        let mut tokens = create(&tmp)?;
        tokens
            .write_all(&[0u8; HEADER_BYTES])
            .map_err(|e| Error::io(&tmp, e))?;
        let docs_path = side(path, ".docs.tmp");
        let sents_path = side(path, ".sents.tmp");
        Ok(ShardWriter {
            path: path.to_path_buf(),
            docs: create(&docs_path)?,
            sents: create(&sents_path)?,
            docs_path,
            sents_path,
            tmp,
            tokens,
            header: Header {
                token_width,
                token_count: 0,
                vocab_size,
                tokenizer_fp,
                doc_count: 0,
                sentence_count: 0,
                token_checksum: 0,
            },
            checksum: TokenChecksum::default(),
            last_doc: None,
            last_sent: None,
            scratch: Vec::new(),
        })
    }

    pub fn len(&self) -> u64 {
        self.header.token_count
    }

    pub fn is_empty(&self) -> bool {
        self.header.token_count == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append tokens; every id must be below the vocabulary size.
    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        if self.header.token_count + ids.len() as u64 > MAX_SHARD_TOKENS {
            return Err(Error::msg(format!(
                "{}: a shard holds at most {MAX_SHARD_TOKENS} tokens",
                self.path.display()
            )));
        }
        let v = self.header.vocab_size;
        let max = ids.iter().copied().fold(0, u32::max);
        if !ids.is_empty() && max >= v {
            return Err(Error::msg(format!(
                "{}: token id {max} is outside the vocabulary of size {v}",
                self.path.display()
            )));
        }
        let w = self.header.token_width as usize;
        self.scratch.resize(ids.len() * w, 0);
        if w == 2 {
            for (c, &t) in self.scratch.chunks_exact_mut(2).zip(ids) {
                c.copy_from_slice(&(t as u16).to_le_bytes());
            }
        } else {
            for (c, &t) in self.scratch.chunks_exact_mut(4).zip(ids) {
                c.copy_from_slice(&t.to_le_bytes());
            }
        }
        self.tokens
            .write_all(&self.scratch)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.checksum.update(ids);
        self.header.token_count += ids.len() as u64;
        Ok(())
    }

    /// Record that a document starts at the current position (repeats are ignored).
    pub fn mark_doc_start(&mut self) -> Result<()> {
        let pos = self.header.token_count;
        if self.last_doc == Some(pos) {
            return Ok(());
        }
        self.last_doc = Some(pos);
        self.docs
            .write_all(&(pos as u32).to_le_bytes())
            .map_err(|e| Error::io(&self.docs_path, e))?;
        self.header.doc_count += 1;
        self.mark_sentence_start(pos)
    }

    /// Record that a sentence starts at token `pos` of this shard; positions must not
    /// decrease (repeats are ignored).
    pub fn mark_sentence_start(&mut self, pos: u64) -> Result<()> {
        if let Some(last) = self.last_sent {
            if pos <= last {
                return Ok(());
            }
        }
        self.last_sent = Some(pos);
        self.sents
            .write_all(&(pos as u32).to_le_bytes())
            .map_err(|e| Error::io(&self.sents_path, e))?;
        self.header.sentence_count += 1;
        Ok(())
    }

    /// Complete the shard and move it to its final name. Returns its header.
    pub fn finish(mut self) -> Result<Header> {
        let tmp = self.tmp.clone();
        let io = |e| Error::io(&tmp, e);
        let tok_bytes = self.header.token_count * self.header.token_width as u64;
        let pad = (tok_bytes.div_ceil(4) * 4 - tok_bytes) as usize;
        self.tokens.write_all(&[0u8; 4][..pad]).map_err(io)?;
        for (side, w) in [(&self.docs_path, self.docs), (&self.sents_path, self.sents)] {
            let f = w
                .into_inner()
                .map_err(|e| Error::io(side, e.into_error()))?;
            drop(f);
            let mut r = BufReader::new(File::open(side).map_err(|e| Error::io(side, e))?);
            std::io::copy(&mut r, &mut self.tokens).map_err(io)?;
            fs::remove_file(side).map_err(|e| Error::io(side, e))?;
        }
        self.header.token_checksum = self.checksum.value();
        let mut f = self
            .tokens
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(&self.header.encode()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.header)
    }
}
