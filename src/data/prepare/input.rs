//! Reading prepare's input as a stream of text pieces, never the whole input at once.
//!
//! Documents:
//! - a single text file (or stream): paragraphs — a document starts at a non-blank line
//!   that follows one or more blank lines; the blank lines stay with the paragraph
//!   before them, so concatenating the documents gives back the file byte for byte;
//! - a folder: each file (recursively, in sorted path order) is one document;
//! - JSONL: each non-blank line is one document, its text the string field `field`.
//!
//! A document longer than [`PIECE_BYTES`] is cut into several pieces (at a line end when
//! it has one, else at a character boundary); only the first piece starts the document.
//!
//! Train/validation split: for a text file of known size, by position as nanoGPT does —
//! the first `⌊n·(1 − f)⌋` bytes (moved forward to a character boundary) are train, the
//! rest validation. Otherwise by document: each document goes to validation with
//! probability `f`, drawn from the seeded RNG in document order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::data::rng::SplitMix64;
use crate::error::{Error, Result};

/// Largest piece handed to the tokenizer.
pub const PIECE_BYTES: usize = 256 << 10;
/// Longest JSONL line accepted.
pub const MAX_JSONL_LINE: usize = 1 << 30;

type OpenFn = dyn Fn() -> Result<Box<dyn Read + Send>> + Send + Sync;

/// A text stream that can be opened (again), e.g. stdin or a generator.
pub struct StreamSource {
    pub name: String,
    pub size_hint: Option<u64>,
    /// Whether `open` may be called more than once (needed to build a char vocabulary
    /// or train a BPE before tokenizing).
    pub reopenable: bool,
    pub open: Box<OpenFn>,
}

/// What `prepare` reads.
pub enum Input {
    TextFile(PathBuf),
    Dir(PathBuf),
    Jsonl { path: PathBuf, field: String },
    Stream(StreamSource),
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::TextFile(p) | Input::Dir(p) | Input::Jsonl { path: p, .. } => {
                p.display().to_string()
            }
            Input::Stream(s) => s.name.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Input::TextFile(_) => "text",
            Input::Dir(_) => "dir",
            Input::Jsonl { .. } => "jsonl",
            Input::Stream(_) => "stream",
        }
    }

    /// What a document is for this input.
    pub fn documents(&self) -> &'static str {
        match self {
            Input::TextFile(_) | Input::Stream(_) => "paragraphs",
            Input::Dir(_) => "files",
            Input::Jsonl { .. } => "jsonl-lines",
        }
    }

    pub fn reopenable(&self) -> bool {
        match self {
            Input::Stream(s) => s.reopenable,
            _ => true,
        }
    }

    /// Files of a folder input, sorted.
    fn files(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
                let e = e.map_err(|e| Error::io(&d, e))?;
                let p = e.path();
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let ft = e.file_type().map_err(|e| Error::io(&p, e))?;
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    out.push(p);
                }
            }
        }
        out.sort();
        if out.is_empty() {
            return Err(Error::msg(format!(
                "{}: the folder holds no files",
                dir.display()
            )));
        }
        Ok(out)
    }

    /// Total input bytes, when known.
    pub fn total_bytes(&self) -> Result<Option<u64>> {
        let size = |p: &Path| -> Result<u64> {
            Ok(std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len())
        };
        Ok(match self {
            Input::TextFile(p) | Input::Jsonl { path: p, .. } => Some(size(p)?),
            Input::Dir(d) => Some(
                Self::files(d)?
                    .iter()
                    .map(|p| size(p))
                    .sum::<Result<u64>>()?,
            ),
            Input::Stream(s) => s.size_hint,
        })
    }
}

/// A piece of text and where it belongs. Pieces of several small documents are
/// packed together up to [`PIECE_BYTES`]; `doc_starts` says where each one begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    /// Byte offsets in `text` where a document starts (increasing).
    pub doc_starts: Vec<usize>,
    /// The piece belongs to the validation split.
    pub val: bool,
}

/// How documents are assigned to splits.
enum Split {
    /// Bytes before `at` are train (single text file of known size).
    Position { at: u64 },
    /// Each document is validation with probability `frac`.
    Document { frac: f64, rng: SplitMix64 },
}

struct LineReader {
    r: BufReader<Box<dyn Read + Send>>,
    name: String,
}

impl LineReader {
    /// Append the next line (through '\n') to `out`, at most `cap` bytes of it.
    /// Returns (bytes appended, line complete); (0, _) at end of input.
    fn read_line(&mut self, out: &mut Vec<u8>, cap: usize) -> Result<(usize, bool)> {
        let mut n = 0;
        loop {
            let buf = self.r.fill_buf().map_err(|e| Error::io(&self.name, e))?;
            if buf.is_empty() {
                return Ok((n, true));
            }
            let room = cap - n;
            let (take, done) = match buf[..buf.len().min(room)].iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), buf.len() >= room),
            };
            out.extend_from_slice(&buf[..take]);
            self.r.consume(take);
            n += take;
            if done {
                let complete = out.last() == Some(&b'\n');
                return Ok((n, complete));
            }
        }
    }
}

/// Produces the [`Piece`]s of an input in order.
pub struct Pieces {
    sources: VecDeque<(String, Box<OpenFnOnce>)>,
    cur: Option<LineReader>,
    docs_per_source: bool,
    jsonl_field: Option<String>,
    split: Split,
    /// Bytes consumed so far (all sources).
    consumed: u64,
    pending: VecDeque<Piece>,
    /// Text not yet emitted, and the offsets in it where documents start.
    buf: Vec<u8>,
    buf_docs: Vec<usize>,
    seen_blank: bool,
    in_val: bool,
    jsonl_line: u64,
}

type OpenFnOnce = dyn FnOnce() -> Result<Box<dyn Read + Send>> + Send;

fn open_file(p: &Path) -> Result<Box<dyn Read + Send>> {
    Ok(Box::new(File::open(p).map_err(|e| Error::io(p, e))?))
}

impl Pieces {
    /// Start reading `input`. `val_fraction` in [0, 1); `seed` drives the document split.
    pub fn new(input: &Input, val_fraction: f64, seed: u64) -> Result<Pieces> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(Error::msg(format!(
                "val fraction {val_fraction} is not in [0, 1)"
            )));
        }
        let mut sources: VecDeque<(String, Box<OpenFnOnce>)> = VecDeque::new();
        let mut split = Split::Document {
            frac: val_fraction,
            rng: SplitMix64::new(seed),
        };
        let (docs_per_source, jsonl_field) = match input {
            Input::TextFile(p) => {
                let n = input.total_bytes()?.unwrap_or(0);
                split = Split::Position {
                    at: (n as f64 * (1.0 - val_fraction)) as u64,
                };
                let p2 = p.clone();
                sources.push_back((p.display().to_string(), Box::new(move || open_file(&p2))));
                (false, None)
            }
            Input::Dir(d) => {
                for f in Input::files(d)? {
                    let name = f.display().to_string();
                    sources.push_back((name, Box::new(move || open_file(&f))));
                }
                (true, None)
            }
            Input::Jsonl { path, field } => {
                let p2 = path.clone();
                sources.push_back((path.display().to_string(), Box::new(move || open_file(&p2))));
                (false, Some(field.clone()))
            }
            Input::Stream(s) => {
                let r = (s.open)()?;
                let mut once = Some(r);
                sources.push_back((
                    s.name.clone(),
                    Box::new(move || once.take().ok_or_else(|| Error::msg("stream opened twice"))),
                ));
                (false, None)
            }
        };
        Ok(Pieces {
            sources,
            cur: None,
            docs_per_source,
            jsonl_field,
            split,
            consumed: 0,
            pending: VecDeque::new(),
            buf: Vec::with_capacity(PIECE_BYTES + (64 << 10)),
            buf_docs: Vec::new(),
            seen_blank: false,
            in_val: false,
            jsonl_line: 0,
        })
    }

    /// Bytes of input consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Next piece, or `None` at the end of the input.
    pub fn next_piece(&mut self) -> Result<Option<Piece>> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(Some(p));
            }
            if self.cur.is_none() {
                let Some((name, open)) = self.sources.pop_front() else {
                    return Ok(None);
                };
                self.cur = Some(LineReader {
                    r: BufReader::with_capacity(1 << 20, open()?),
                    name,
                });
                self.seen_blank = false;
                self.jsonl_line = 0;
                if self.jsonl_field.is_none() {
                    self.doc_start_at(self.buf.len())?;
                }
            }
            if self.jsonl_field.is_some() {
                self.step_jsonl()?;
            } else {
                self.step_text()?;
            }
        }
    }

    fn name(&self) -> String {
        self.cur
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    /// A document starts at byte `pos` of `buf`: draw its split and, when that differs
    /// from the split of the text before it, emit that text first.
    fn doc_start_at(&mut self, mut pos: usize) -> Result<()> {
        if let Split::Document { frac, rng } = &mut self.split {
            let val = rng.next_f64() < *frac;
            if val != self.in_val {
                // The text before `pos` leaves as a piece; the document now starts at 0.
                self.emit_upto(pos)?;
                pos = 0;
                self.in_val = val;
            }
        }
        if self.buf_docs.last() != Some(&pos) {
            self.buf_docs.push(pos);
        }
        Ok(())
    }

    /// Move `buf[..k]` out as a piece; `k` must be a character boundary.
    fn emit_upto(&mut self, k: usize) -> Result<()> {
        if k == 0 {
            return Ok(());
        }
        if let Err(e) = std::str::from_utf8(&self.buf[..k]) {
            let at = self.consumed - (self.buf.len() - e.valid_up_to()) as u64;
            return Err(Error::msg(format!(
                "{}: not UTF-8 near byte {at}",
                self.name()
            )));
        }
        let text = String::from_utf8(self.buf[..k].to_vec()).expect("validated above");
        self.buf.drain(..k);
        let split = self.buf_docs.partition_point(|&d| d < k);
        let mut later = self.buf_docs.split_off(split);
        for d in &mut later {
            *d -= k;
        }
        let doc_starts = std::mem::replace(&mut self.buf_docs, later);
        self.pending.push_back(Piece {
            text,
            doc_starts,
            val: self.in_val,
        });
        Ok(())
    }

    /// Emit full pieces while `buf` holds at least [`PIECE_BYTES`], cutting at a line
    /// end in the second half of the piece when there is one, else at a character
    /// boundary.
    fn emit_full(&mut self) -> Result<()> {
        while self.buf.len() >= PIECE_BYTES {
            let mut cut = PIECE_BYTES;
            if let Some(nl) = self.buf[PIECE_BYTES / 2..PIECE_BYTES]
                .iter()
                .rposition(|&b| b == b'\n')
            {
                cut = PIECE_BYTES / 2 + nl + 1;
            }
            while cut > 0 && cut < self.buf.len() && (self.buf[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            if cut == 0 {
                cut = PIECE_BYTES;
            }
            self.emit_upto(cut)?;
        }
        Ok(())
    }

    fn step_text(&mut self) -> Result<()> {
        let start = self.buf.len();
        let cur = self.cur.as_mut().expect("source open");
        let (n, complete) = cur.read_line(&mut self.buf, PIECE_BYTES)?;
        if n == 0 {
            self.emit_upto(self.buf.len())?;
            self.cur = None;
            return Ok(());
        }
        let off = self.consumed;
        self.consumed += n as u64;
        if !self.docs_per_source {
            let blank = complete && self.buf[start..].iter().all(|b| b.is_ascii_whitespace());
            if !blank && self.seen_blank {
                self.doc_start_at(start)?;
            }
            self.seen_blank = blank;
        }
        if let Split::Position { at } = self.split {
            if !self.in_val && off + n as u64 > at {
                // Cut at byte `at`, moved forward past UTF-8 continuation bytes.
                let start = self.buf.len() - n;
                let mut k = start + at.saturating_sub(off) as usize;
                while k < self.buf.len() && (self.buf[k] & 0xC0) == 0x80 {
                    k += 1;
                }
                self.emit_upto(k)?;
                self.in_val = true;
                self.doc_start_at(0)?;
            }
        }
        self.emit_full()
    }

    fn step_jsonl(&mut self) -> Result<()> {
        let mut line = Vec::new();
        let cur = self.cur.as_mut().expect("source open");
        let (n, complete) = cur.read_line(&mut line, MAX_JSONL_LINE)?;
        if n == 0 {
            self.emit_upto(self.buf.len())?;
            self.cur = None;
            return Ok(());
        }
        self.consumed += n as u64;
        self.jsonl_line += 1;
        let lineno = self.jsonl_line;
        if !complete && n >= MAX_JSONL_LINE {
            return Err(Error::msg(format!(
                "{}: line {lineno} is longer than {MAX_JSONL_LINE} bytes",
                self.name()
            )));
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        let field = self.jsonl_field.clone().expect("jsonl mode");
        let v: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| Error::msg(format!("{}: line {lineno}: not JSON: {e}", self.name())))?;
        let text = v.get(&field).and_then(|t| t.as_str()).ok_or_else(|| {
            Error::msg(format!(
                "{}: line {lineno}: no string field `{field}`",
                self.name()
            ))
        })?;
        self.doc_start_at(self.buf.len())?;
        self.buf.extend_from_slice(text.as_bytes());
        self.emit_full()
    }
}
