//! Memory-mapped token shards: pretext shards, llm.c `.bin` files and nanoGPT's raw
//! uint16 `train.bin` / `val.bin`. A shard is never read whole: reads copy windows out of
//! the mapping, and once reads have touched [`MAX_BLOCKS`] distinct 2 MiB blocks the mapping's pages are dropped
//! from the process (`madvise(MADV_DONTNEED)`; they stay in the OS page cache), so
//! resident memory stays bounded however large the corpus and however long training runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::{Mmap, UncheckedAdvice};

use super::format::{llmc, Header, HEADER_BYTES};
use crate::data::hash::TokenChecksum;
use crate::error::{Error, Result};

/// Granularity of the access record: the largest span one page fault may map
/// (fault-around maps 64 KiB; a large folio at most a 2 MiB PMD).
const BLOCK_BYTES: u64 = 2 << 20;
/// Distinct blocks touched after which the mapping's pages are released, bounding what
/// one shard keeps resident to `MAX_BLOCKS × BLOCK_BYTES` (32 MiB) in the worst case
/// (about 130 KiB per random read was measured on Linux 6.18).
pub const MAX_BLOCKS: usize = 16;

/// How to interpret a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardFormat {
    /// By content: pretext magic, else llm.c magic, else (for `*.bin`) raw uint16.
    Auto,
    Pretext,
    LlmC,
    /// nanoGPT: bare little-endian uint16 tokens, no header.
    RawU16,
}

/// What the caller expects of a shard; each mismatch is an error naming the field.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// The model's vocabulary size.
    pub vocab_size: Option<usize>,
    /// The tokenizer fingerprint (pretext shards only).
    pub fingerprint: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pretext,
    LlmC,
    RawU16,
}

pub struct Shard {
    path: PathBuf,
    map: Mmap,
    kind: Kind,
    width: usize,
    data_offset: usize,
    len: u64,
    vocab_size: Option<u32>,
    header: Option<Header>,
    /// 2 MiB blocks of the file touched since the last release.
    touched: Mutex<Vec<u64>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("len", &self.len)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl Shard {
    pub fn open(path: &Path, format: ShardFormat, expect: Expect) -> Result<Shard> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // SAFETY: the mapping is read-only and shards are immutable once renamed into
        // place (writers use a temporary name); a file truncated by another process
        // underneath would fault, which is the documented limit of memory-mapped input.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let _ = map.advise(memmap2::Advice::Random);
        let head = &map[..map.len().min(HEADER_BYTES)];
        let kind = match format {
            ShardFormat::Pretext => Kind::Pretext,
            ShardFormat::LlmC => Kind::LlmC,
            ShardFormat::RawU16 => Kind::RawU16,
            ShardFormat::Auto => {
                let first = head
                    .get(0..4)
                    .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
                if head.starts_with(&super::format::MAGIC) {
                    Kind::Pretext
                } else if matches!(first, Some(llmc::MAGIC_GPT2) | Some(llmc::MAGIC_LLAMA3)) {
                    Kind::LlmC
                } else if path.extension().is_some_and(|e| e == "bin") {
                    Kind::RawU16
                } else {
                    Kind::Pretext // reports the bad magic
                }
            }
        };
        let mut shard = Shard {
            path: path.to_path_buf(),
            kind,
            width: 2,
            data_offset: 0,
            len: 0,
            vocab_size: None,
            header: None,
            touched: Mutex::new(Vec::new()),
            map,
        };
        match kind {
            Kind::Pretext => {
                let h = Header::decode(path, &shard.map, size)?;
                shard.width = h.token_width as usize;
                shard.data_offset = HEADER_BYTES;
                shard.len = h.token_count;
                shard.vocab_size = Some(h.vocab_size);
                if let Some(fp) = expect.fingerprint {
                    if fp != h.tokenizer_fp {
                        return Err(Error::format(
                            path,
                            "tokenizer_fp",
                            format!(
                                "shard was made with tokenizer {:016x}, expected {fp:016x}",
                                h.tokenizer_fp
                            ),
                        ));
                    }
                }
                shard.header = Some(h);
            }
            Kind::LlmC => {
                if size < llmc::HEADER_BYTES as u64 {
                    return Err(Error::format(
                        path,
                        "header",
                        format!("file is {size} bytes, shorter than llm.c's 1024-byte header (truncated?)"),
                    ));
                }
                let i32_at =
                    |o: usize| i32::from_le_bytes(shard.map[o..o + 4].try_into().expect("4 bytes"));
                let (magic, version, ntok) = (i32_at(0), i32_at(4), i32_at(8));
                let width = llmc::width(magic, version).ok_or_else(|| {
                    if magic == llmc::MAGIC_GPT2 || magic == llmc::MAGIC_LLAMA3 {
                        Error::format(
                            path,
                            "version",
                            format!("llm.c magic {magic} with unknown version {version}"),
                        )
                    } else {
                        Error::format(
                            path,
                            "magic",
                            format!("expected llm.c magic 20240520 or 20240801, found {magic}"),
                        )
                    }
                })?;
                if ntok < 0 {
                    return Err(Error::format(
                        path,
                        "token_count",
                        format!("negative: {ntok}"),
                    ));
                }
                let want = llmc::HEADER_BYTES as u64 + width as u64 * ntok as u64;
                if size != want {
                    return Err(Error::format(
                        path,
                        "size",
                        format!(
                            "file is {size} bytes but the header (ntok {ntok}, {width}-byte tokens) needs {want}{}",
                            if size < want { " (truncated)" } else { "" }
                        ),
                    ));
                }
                shard.width = width as usize;
                shard.data_offset = llmc::HEADER_BYTES;
                shard.len = ntok as u64;
            }
            Kind::RawU16 => {
                if size % 2 != 0 {
                    return Err(Error::format(
                        path,
                        "size",
                        format!("{size} bytes is not a whole number of uint16 tokens (truncated?)"),
                    ));
                }
                shard.len = size / 2;
            }
        }
        if let Some(v) = expect.vocab_size {
            match shard.vocab_size {
                Some(sv) if sv as usize != v => {
                    return Err(Error::format(
                        path,
                        "vocab_size",
                        format!("shard has vocabulary size {sv}, the model has {v}"),
                    ))
                }
                Some(_) => {}
                None => {
                    if shard.width == 2 && v > 1 << 16 {
                        return Err(Error::format(
                            path,
                            "vocab_size",
                            format!("uint16 tokens cannot hold the model's vocabulary of {v}"),
                        ));
                    }
                    shard.vocab_size = Some(v as u32);
                }
            }
        }
        if shard.kind == Kind::Pretext {
            shard.check_index_ends()?;
        }
        Ok(shard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Number of tokens.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Vocabulary size from the header or from [`Expect`]; `None` if neither said.
    pub fn vocab_size(&self) -> Option<u32> {
        self.vocab_size
    }
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }
    pub fn token_width(&self) -> usize {
        self.width
    }

    fn index_u32(&self, byte_offset: u64, i: u64) -> u32 {
        let o = (byte_offset + 4 * i) as usize;
        self.note_access(o as u64, 4);
        u32::from_le_bytes(self.map[o..o + 4].try_into().expect("4 bytes"))
    }

    /// Number of documents (1 for llm.c and raw files, whose documents are not indexed).
    pub fn doc_count(&self) -> u64 {
        match &self.header {
            Some(h) => h.doc_count,
            None => u64::from(self.len > 0),
        }
    }

    /// Token position where document `i` starts.
    pub fn doc_start(&self, i: u64) -> u64 {
        match &self.header {
            Some(h) => self.index_u32(h.index_offset(), i) as u64,
            None => 0,
        }
    }

    /// Token range of document `i`.
    pub fn doc_range(&self, i: u64) -> std::ops::Range<u64> {
        let end = if i + 1 < self.doc_count() {
            self.doc_start(i + 1)
        } else {
            self.len
        };
        self.doc_start(i)..end
    }

    pub fn sentence_count(&self) -> u64 {
        match &self.header {
            Some(h) => h.sentence_count,
            None => u64::from(self.len > 0),
        }
    }

    /// Token position where sentence `i` starts (every document start is one).
    pub fn sentence_start(&self, i: u64) -> u64 {
        match &self.header {
            Some(h) => self.index_u32(h.index_offset() + 4 * h.doc_count, i) as u64,
            None => 0,
        }
    }

    /// Token ranges of the sentences of document `d`.
    pub fn doc_sentences(&self, d: u64) -> Vec<std::ops::Range<u64>> {
        let r = self.doc_range(d);
        let n = self.sentence_count();
        // First sentence index whose start is ≥ r.start (sentence starts are increasing).
        let (mut lo, mut hi) = (0u64, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.sentence_start(mid) < r.start {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        let mut i = lo;
        while i < n {
            let s = self.sentence_start(i);
            if s >= r.end {
                break;
            }
            let e = if i + 1 < n {
                self.sentence_start(i + 1).min(r.end)
            } else {
                r.end
            };
            out.push(s..e);
            i += 1;
        }
        out
    }

    /// Cheap index checks done on open: first entries at 0, last ones inside the shard.
    fn check_index_ends(&self) -> Result<()> {
        let h = self.header.expect("pretext shard has a header");
        let check = |field: &str, count: u64, at: &dyn Fn(u64) -> u64| -> Result<()> {
            if count == 0 {
                return Ok(());
            }
            if at(0) != 0 {
                return Err(Error::format(
                    &self.path,
                    field,
                    format!("first entry is {}, not 0", at(0)),
                ));
            }
            let last = at(count - 1);
            if last >= h.token_count {
                return Err(Error::format(
                    &self.path,
                    field,
                    format!("last entry {last} is past the {} tokens", h.token_count),
                ));
            }
            Ok(())
        };
        check("doc_starts", h.doc_count, &|i| self.doc_start(i))?;
        check("sentence_starts", h.sentence_count, &|i| {
            self.sentence_start(i)
        })
    }

    /// Full scan: every id below the vocabulary, the token checksum, and strictly
    /// increasing indices. O(shard size); releases the pages it touched.
    pub fn verify(&self) -> Result<()> {
        // A full scan reads ahead; sampling goes back to random access after it.
        let _ = self.map.advise(memmap2::Advice::Sequential);
        let mut sum = TokenChecksum::default();
        let mut buf = vec![0u32; 1 << 16];
        let mut pos = 0;
        while pos < self.len {
            let n = (self.len - pos).min(buf.len() as u64) as usize;
            self.read(pos, &mut buf[..n])?;
            sum.update(&buf[..n]);
            pos += n as u64;
        }
        if let Some(h) = &self.header {
            if sum.value() != h.token_checksum {
                return Err(Error::format(
                    &self.path,
                    "token_checksum",
                    format!(
                        "stored {:016x}, computed {:016x}: the tokens are corrupted",
                        h.token_checksum,
                        sum.value()
                    ),
                ));
            }
            for (field, count, at) in [
                (
                    "doc_starts",
                    h.doc_count,
                    &(|i| self.doc_start(i)) as &dyn Fn(u64) -> u64,
                ),
                ("sentence_starts", h.sentence_count, &|i| {
                    self.sentence_start(i)
                }),
            ] {
                for i in 1..count {
                    if at(i) <= at(i - 1) {
                        return Err(Error::format(
                            &self.path,
                            field,
                            format!(
                                "entry {i} ({}) does not increase on entry {} ({})",
                                at(i),
                                i - 1,
                                at(i - 1)
                            ),
                        ));
                    }
                }
            }
        }
        self.release();
        let _ = self.map.advise(memmap2::Advice::Random);
        Ok(())
    }

    /// Copy tokens `start .. start + out.len()` into `out`, checking each id against the
    /// vocabulary size when known.
    pub fn read(&self, start: u64, out: &mut [u32]) -> Result<()> {
        let end = start + out.len() as u64;
        if end > self.len {
            return Err(Error::Index {
                op: "shard read",
                msg: format!(
                    "{}: tokens {start}..{end} past the end ({} tokens)",
                    self.path.display(),
                    self.len
                ),
            });
        }
        let a = self.data_offset + start as usize * self.width;
        let bytes = &self.map[a..a + out.len() * self.width];
        if self.width == 2 {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = u16::from_le_bytes([c[0], c[1]]) as u32;
            }
        } else {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        if let Some(v) = self.vocab_size {
            if let Some(i) = out.iter().position(|&t| t >= v) {
                return Err(Error::format(
                    &self.path,
                    "tokens",
                    format!(
                        "token {} at position {} is outside the vocabulary of size {v}",
                        out[i],
                        start + i as u64
                    ),
                ));
            }
        }
        self.note_access(a as u64, bytes.len() as u64);
        Ok(())
    }

    /// Record that bytes `a..a+len` of the mapping were read; release the mapping's
    /// pages when more than [`MAX_BLOCKS`] distinct blocks have been touched.
    fn note_access(&self, a: u64, len: u64) {
        let (first, last) = (a / BLOCK_BYTES, (a + len.max(1) - 1) / BLOCK_BYTES);
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        for b in first..=last {
            if !touched.contains(&b) {
                touched.push(b);
            }
        }
        if touched.len() > MAX_BLOCKS {
            touched.clear();
            drop(touched);
            self.release();
        }
    }

    /// Ask the OS to read tokens `start .. start + n` into the page cache in the
    /// background (`MADV_WILLNEED`; nothing is mapped into the process). A hint only.
    pub fn prefetch(&self, start: u64, n: u64) {
        if n == 0 || start + n > self.len {
            return;
        }
        const PAGE: usize = 4096;
        let a = self.data_offset + start as usize * self.width;
        let b = a + n as usize * self.width;
        let a = a / PAGE * PAGE;
        let _ = self.map.advise_range(memmap2::Advice::WillNeed, a, b - a);
    }

    /// Drop this mapping's resident pages from the process.
    pub fn release(&self) {
        // SAFETY: MADV_DONTNEED on a read-only shared file mapping only unmaps the pages
        // from this process; the next access faults them back in from the page cache
        // with the same content (the mapping is never written), so a reader on another
        // thread, or a slice into the mapping, sees the same bytes before and after.
        let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
    }
}
