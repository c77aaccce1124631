//! A prepared corpus folder and its `meta.json`:
//!
//! ```text
//! DIR/meta.json            counts, vocabulary size, special token ids, shard list
//! DIR/tokenizer/           the tokenizer that made the shards (see data::tokenizer)
//! DIR/train-00000.ptok …   train shards (data::shard::format)
//! DIR/val-00000.ptok …     validation shards
//! ```
//!
//! [`Corpus::open`] also opens folders of foreign token files: nanoGPT's `train.bin` /
//! `val.bin` (raw uint16, the vocabulary size must be given) and llm.c's
//! `*train*.bin` / `*val*.bin` (1024-byte header).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shard::{Expect, ShardFormat};
use super::stream::TokenStream;
use super::tokenizer::{SpecialTokens, Tokenizer};
use crate::data::fsutil::read_to_string;
use crate::error::{Error, Result};

pub const META_FILE: &str = "meta.json";
pub const TOKENIZER_DIR: &str = "tokenizer";
pub const FORMAT_NAME: &str = "pretext-corpus";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenizerMeta {
    /// "char" or "hf".
    pub kind: String,
    /// 16 hex digits; equals every shard's `tokenizer_fp`.
    pub fingerprint: String,
    pub vocab_size: usize,
    pub special_tokens: SpecialTokens,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardMeta {
    pub file: String,
    pub tokens: u64,
    pub documents: u64,
    pub sentences: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitMeta {
    pub tokens: u64,
    pub documents: u64,
    pub sentences: u64,
    pub shards: Vec<ShardMeta>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourceMeta {
    pub input: String,
    /// "text", "dir", "jsonl" or "stream".
    pub kind: String,
    /// What a document is: "paragraphs", "files" or "jsonl-lines".
    pub documents: String,
    /// "position" (nanoGPT's head/tail split) or "document".
    pub split: String,
    pub val_fraction: f64,
    pub seed: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CorpusMeta {
    pub format: String,
    pub version: u32,
    pub tokenizer: TokenizerMeta,
    /// Bytes per token in the shards (2 or 4).
    pub token_width: u32,
    /// Whether an EOS token was appended after each document.
    pub append_eos: bool,
    pub splits: BTreeMap<String, SplitMeta>,
    pub source: SourceMeta,
}

impl CorpusMeta {
    pub fn fingerprint(&self, path: &Path) -> Result<u64> {
        u64::from_str_radix(&self.tokenizer.fingerprint, 16).map_err(|_| {
            Error::format(
                path,
                "tokenizer.fingerprint",
                format!("{:?} is not 16 hex digits", self.tokenizer.fingerprint),
            )
        })
    }
}

/// An opened corpus: its splits as token streams, and (for pretext corpora) the
/// tokenizer and meta.
pub struct Corpus {
    pub dir: PathBuf,
    pub meta: Option<CorpusMeta>,
    pub tokenizer: Option<Tokenizer>,
    pub train: TokenStream,
    pub val: TokenStream,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corpus")
            .field("dir", &self.dir)
            .field("train", &self.train)
            .field("val", &self.val)
            .finish()
    }
}

impl Corpus {
    /// Open `dir`; `vocab_size` is the model's (checked against the corpus; required for
    /// nanoGPT raw files, which do not record it).
    pub fn open(dir: &Path, vocab_size: Option<usize>) -> Result<Corpus> {
        let meta_path = dir.join(META_FILE);
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no corpus folder here"),
            ));
        }
        if !meta_path.is_file() {
            return Self::open_foreign(dir, vocab_size);
        }
        let meta: CorpusMeta = serde_json::from_str(&read_to_string(&meta_path)?)
            .map_err(|e| Error::format(&meta_path, "meta.json", e.to_string()))?;
        if meta.format != FORMAT_NAME {
            return Err(Error::format(
                &meta_path,
                "format",
                format!("expected {FORMAT_NAME:?}, found {:?}", meta.format),
            ));
        }
        if meta.version != FORMAT_VERSION {
            return Err(Error::format(
                &meta_path,
                "version",
                format!("expected {FORMAT_VERSION}, found {}", meta.version),
            ));
        }
        let fp = meta.fingerprint(&meta_path)?;
        let tok = Tokenizer::load(&dir.join(TOKENIZER_DIR))?;
        if tok.fingerprint() != fp {
            return Err(Error::format(
                &meta_path,
                "tokenizer.fingerprint",
                format!(
                    "{:016x} but the saved tokenizer's is {:016x}",
                    fp,
                    tok.fingerprint()
                ),
            ));
        }
        if tok.vocab_size() != meta.tokenizer.vocab_size {
            return Err(Error::format(
                &meta_path,
                "tokenizer.vocab_size",
                format!(
                    "{} but the saved tokenizer has {}",
                    meta.tokenizer.vocab_size,
                    tok.vocab_size()
                ),
            ));
        }
        if let Some(v) = vocab_size {
            if v != tok.vocab_size() {
                return Err(Error::format(
                    &meta_path,
                    "tokenizer.vocab_size",
                    format!(
                        "the corpus has vocabulary size {}, the model has {v}",
                        tok.vocab_size()
                    ),
                ));
            }
        }
        let expect = Expect {
            vocab_size: Some(tok.vocab_size()),
            fingerprint: Some(fp),
        };
        let open_split = |name: &str| -> Result<TokenStream> {
            let Some(split) = meta.splits.get(name) else {
                return TokenStream::from_shards(Vec::new());
            };
            let paths: Vec<PathBuf> = split.shards.iter().map(|s| dir.join(&s.file)).collect();
            let stream = TokenStream::open(&paths, ShardFormat::Pretext, expect)?;
            for (s, m) in stream.shards().iter().zip(&split.shards) {
                if s.len() != m.tokens {
                    return Err(Error::format(
                        s.path(),
                        "token_count",
                        format!("{} but meta.json records {}", s.len(), m.tokens),
                    ));
                }
            }
            Ok(stream)
        };
        let train = open_split("train")?;
        let val = open_split("val")?;
        Ok(Corpus {
            dir: dir.to_path_buf(),
            meta: Some(meta),
            tokenizer: Some(tok),
            train,
            val,
        })
    }

    fn open_foreign(dir: &Path, vocab_size: Option<usize>) -> Result<Corpus> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bin") && p.is_file())
            .collect();
        bins.sort();
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let train: Vec<PathBuf> = bins
            .iter()
            .filter(|p| name(p).contains("train"))
            .cloned()
            .collect();
        let val: Vec<PathBuf> = bins
            .iter()
            .filter(|p| name(p).contains("val"))
            .cloned()
            .collect();
        if train.is_empty() {
            return Err(Error::format(
                dir,
                META_FILE,
                "no meta.json (not a prepared corpus, or an interrupted prepare) and no *train*.bin token files",
            ));
        }
        let expect = Expect {
            vocab_size,
            fingerprint: None,
        };
        let train = TokenStream::open(&train, ShardFormat::Auto, expect)?;
        let val = TokenStream::open(&val, ShardFormat::Auto, expect)?;
        for s in train.shards().iter().chain(val.shards()) {
            if s.vocab_size().is_none() && s.kind() == super::shard::Kind::RawU16 {
                return Err(Error::format(
                    s.path(),
                    "vocab_size",
                    "a nanoGPT raw .bin file records no vocabulary size; pass the model's",
                ));
            }
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            meta: None,
            tokenizer: None,
            train,
            val,
        })
    }

    /// A split by name: "train" or "val".
    pub fn split(&self, name: &str) -> Result<&TokenStream> {
        match name {
            "train" => Ok(&self.train),
            "val" => Ok(&self.val),
            other => Err(Error::msg(format!(
                "corpus split {other:?}: expected \"train\" or \"val\""
            ))),
        }
    }
}
