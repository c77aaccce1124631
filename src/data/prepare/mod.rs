//! `pretext prepare`: text → tokenizer → token shards, in one streaming pass (plus one
//! pass to build a char vocabulary, or over a sample to train a BPE), with constant
//! memory whatever the input size.
//!
//! Pieces of input ([`input`]) are read in batches of about [`BATCH_BYTES`]; a batch is
//! tokenized in parallel (rayon) while the next one is read, then written in order.
//! Everything goes to `OUT.partial/`; shards have a temporary name until finished, and
//! `meta.json` is written last; then the folder is renamed to `OUT`. An interrupted
//! prepare leaves no `OUT` (and nothing in `OUT.partial` that opens as a corpus).

pub mod encode;
pub mod input;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

pub use input::{Input, Piece, Pieces, StreamSource};

use crate::data::corpus::{
    CorpusMeta, SourceMeta, TokenizerMeta, FORMAT_NAME, FORMAT_VERSION, META_FILE, TOKENIZER_DIR,
};
use crate::data::fsutil::write_atomic;
use crate::data::shard::width_for_vocab;
use crate::data::tokenizer::{hf, CharTokenizer, SpecialSpec, SpecialTokens, Tokenizer};
use crate::error::{Error, Result};
use encode::{encode_piece, Encoded};
use writer::SplitWriter;

/// Text per parallel tokenization batch.
pub const BATCH_BYTES: usize = 4 << 20;
/// Default most tokens per shard.
pub const DEFAULT_SHARD_TOKENS: u64 = 1 << 30;
/// Default text sample a BPE is trained on.
pub const DEFAULT_BPE_SAMPLE_BYTES: u64 = 64 << 20;

/// `char`, `bpe:VOCAB_SIZE`, or a path to a `tokenizer.json` / tokenizer folder.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerSpec {
    Char,
    Bpe { vocab_size: usize },
    File(PathBuf),
}

impl TokenizerSpec {
    pub fn parse(s: &str) -> Result<Self> {
        if s == "char" {
            return Ok(TokenizerSpec::Char);
        }
        if let Some(v) = s.strip_prefix("bpe:") {
            let vocab_size = v.parse().map_err(|_| {
                Error::msg(format!(
                    "tokenizer spec {s:?}: `{v}` is not a vocabulary size"
                ))
            })?;
            return Ok(TokenizerSpec::Bpe { vocab_size });
        }
        let p = PathBuf::from(s);
        if !p.exists() {
            return Err(Error::msg(format!(
                "tokenizer spec {s:?}: expected `char`, `bpe:VOCAB_SIZE`, or the path of a tokenizer.json or tokenizer folder (no such file)"
            )));
        }
        Ok(TokenizerSpec::File(p))
    }

    /// Special tokens used when none are given: none for char, GPT-2's `<|endoftext|>`
    /// as bos and eos for a trained BPE, and those found in the file for a file.
    pub fn default_specials(&self) -> &'static str {
        match self {
            TokenizerSpec::Bpe { .. } => "bos=<|endoftext|>,eos=<|endoftext|>",
            _ => "",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub tokenizer: TokenizerSpec,
    /// Role list (`"pad,unk,eos=</s>"`); `None` = [`TokenizerSpec::default_specials`].
    pub specials: Option<String>,
    /// T5 sentinels to add (char, bpe) or require (file).
    pub sentinels: usize,
    pub val_fraction: f64,
    pub seed: u64,
    /// Append the EOS token after every document.
    pub append_eos: bool,
    pub shard_tokens: u64,
    pub bpe_sample_bytes: u64,
    pub progress: bool,
    /// Replace an existing output folder.
    pub overwrite: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            tokenizer: TokenizerSpec::Char,
            specials: None,
            sentinels: 0,
            val_fraction: 0.1,
            seed: 1337,
            append_eos: false,
            shard_tokens: DEFAULT_SHARD_TOKENS,
            bpe_sample_bytes: DEFAULT_BPE_SAMPLE_BYTES,
            progress: false,
            overwrite: false,
        }
    }
}

/// What a prepare did.
#[derive(Clone, Debug)]
pub struct PrepareReport {
    pub meta: CorpusMeta,
    /// Input bytes tokenized.
    pub bytes: u64,
    /// Seconds spent building the tokenizer (char pass or BPE training).
    pub tokenizer_seconds: f64,
    /// Seconds of the tokenize-and-write pass.
    pub encode_seconds: f64,
}

/// `OUT.partial`, the folder a prepare writes into.
pub fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn progress_bar(show: bool, total: Option<u64>, msg: &'static str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let (pb, tpl) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{msg} [{elapsed_precise}] {spinner} {binary_bytes} {binary_bytes_per_sec}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(tpl) {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb
}

/// Build the tokenizer the spec asks for (reading the input when it must).
pub fn build_tokenizer(input: &Input, opts: &PrepareOptions) -> Result<Tokenizer> {
    let roles = opts
        .specials
        .clone()
        .unwrap_or_else(|| opts.tokenizer.default_specials().to_string());
    let spec = SpecialSpec::parse(&roles, opts.sentinels)?;
    let needs_pass = !matches!(opts.tokenizer, TokenizerSpec::File(_));
    if needs_pass && !input.reopenable() {
        return Err(Error::msg(format!(
            "{}: `char` and `bpe:N` build their vocabulary from a first pass over the input, which this stream cannot give; pass a saved tokenizer instead",
            input.name()
        )));
    }
    match &opts.tokenizer {
        TokenizerSpec::Char => {
            let mut pieces = Pieces::new(input, 0.0, 0)?;
            let pb = progress_bar(opts.progress, input.total_bytes()?, "char vocabulary");
            let mut ascii = [false; 128];
            let mut other = BTreeSet::new();
            while let Some(p) = pieces.next_piece()? {
                if p.text.is_ascii() {
                    for &b in p.text.as_bytes() {
                        ascii[b as usize] = true;
                    }
                } else {
                    for c in p.text.chars() {
                        if (c as u32) < 128 {
                            ascii[c as usize] = true;
                        } else {
                            other.insert(c);
                        }
                    }
                }
                pb.set_position(pieces.consumed());
            }
            pb.finish_and_clear();
            let mut chars: BTreeSet<char> = (0u8..128)
                .filter(|&b| ascii[b as usize])
                .map(char::from)
                .collect();
            chars.extend(other);
            let (c, specials) = CharTokenizer::new(&chars, &spec)?;
            Tokenizer::from_char(c, specials)
        }
        TokenizerSpec::Bpe { vocab_size } => {
            let mut pieces = Pieces::new(input, 0.0, 0)?;
            let limit = opts.bpe_sample_bytes;
            let mut err: Option<Error> = None;
            let mut taken = 0u64;
            let it = std::iter::from_fn(|| {
                if taken >= limit || err.is_some() {
                    return None;
                }
                match pieces.next_piece() {
                    Ok(Some(p)) => {
                        taken += p.text.len() as u64;
                        Some(p.text)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        err = Some(e);
                        None
                    }
                }
            });
            let tok = hf::train_byte_level_bpe(it, *vocab_size, &spec);
            if let Some(e) = err {
                return Err(e);
            }
            let tok = tok?;
            let specials = SpecialTokens::resolve(&spec, |s| tok.token_to_id(s))?;
            Tokenizer::from_hf(tok, specials)
        }
        TokenizerSpec::File(p) => {
            let t = Tokenizer::load(p)?;
            if opts.specials.is_none() && opts.sentinels == 0 {
                return Ok(t);
            }
            let mut specials = if opts.specials.is_some() {
                SpecialTokens::resolve(
                    &SpecialSpec {
                        roles: spec.roles.clone(),
                        sentinels: 0,
                    },
                    |s| t.token_to_id(s),
                )?
            } else {
                t.specials().clone()
            };
            // Sentinels found in the file stay unless --sentinels asks for a number.
            if spec.sentinels == 0 {
                specials.sentinels = t.specials().sentinels.clone();
            } else {
                specials.sentinels = SpecialTokens::resolve(
                    &SpecialSpec {
                        roles: vec![],
                        sentinels: spec.sentinels,
                    },
                    |s| t.token_to_id(s),
                )?
                .sentinels;
            }
            match t.hf() {
                Some(h) => Tokenizer::from_hf(h.clone(), specials),
                None => Err(Error::msg(format!(
                    "{}: the special tokens of a saved char tokenizer are fixed; prepare with `char` to declare others",
                    p.display()
                ))),
            }
        }
    }
}

/// Prepare `input` into the corpus folder `out`.
pub fn prepare(input: &Input, out: &Path, opts: &PrepareOptions) -> Result<PrepareReport> {
    if out.exists() && !opts.overwrite {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| Error::io(out, e))?
                .next()
                .is_none();
        if !empty {
            return Err(Error::msg(format!(
                "{}: the output folder exists; remove it or pass --force to replace it",
                out.display()
            )));
        }
    }
    if opts.shard_tokens == 0 || opts.shard_tokens > crate::data::shard::format::MAX_SHARD_TOKENS {
        return Err(Error::msg(format!(
            "shard size {} tokens: must be in 1..={}",
            opts.shard_tokens,
            crate::data::shard::format::MAX_SHARD_TOKENS
        )));
    }
    let tmp = partial_dir(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = prepare_into(input, out, &tmp, opts);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn prepare_into(
    input: &Input,
    out: &Path,
    tmp: &Path,
    opts: &PrepareOptions,
) -> Result<PrepareReport> {
    let t0 = Instant::now();
    let tok = build_tokenizer(input, opts)?;
    let tokenizer_seconds = t0.elapsed().as_secs_f64();
    tok.save(&tmp.join(TOKENIZER_DIR))?;

    let vocab = tok.vocab_size();
    let width = width_for_vocab(vocab);
    let eos = if opts.append_eos {
        Some(tok.specials().eos().ok_or_else(|| {
            Error::msg("--append-eos: the tokenizer has no eos token (declare one with --specials eos=...)")
        })?)
    } else {
        None
    };
    let fp = tok.fingerprint();
    let mk = |name| SplitWriter::new(name, tmp, width, vocab as u32, fp, opts.shard_tokens, eos);
    let mut writers = [mk("train"), mk("val")];

    let t1 = Instant::now();
    let total = input.total_bytes()?;
    let pb = progress_bar(opts.progress, total, "tokenizing");
    let mut pieces = Pieces::new(input, opts.val_fraction, opts.seed)?;
    let read_batch = |pieces: &mut Pieces| -> Result<Vec<Piece>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            match pieces.next_piece()? {
                Some(p) => {
                    bytes += p.text.len();
                    batch.push(p);
                }
                None => break,
            }
        }
        Ok(batch)
    };
    let mut batch = read_batch(&mut pieces)?;
    while !batch.is_empty() {
        let (encoded, next) = rayon::join(
            || {
                batch
                    .par_iter()
                    .map(|p| encode_piece(&tok, p))
                    .collect::<Result<Vec<Encoded>>>()
            },
            || read_batch(&mut pieces),
        );
        for (p, e) in batch.iter().zip(encoded?) {
            writers[p.val as usize].write(&e)?;
        }
        pb.set_position(pieces.consumed());
        batch = next?;
    }
    pb.finish_and_clear();
    let bytes = pieces.consumed();
    let [train, val] = writers;
    let mut splits = BTreeMap::new();
    splits.insert("train".to_string(), train.finish()?);
    splits.insert("val".to_string(), val.finish()?);
    let encode_seconds = t1.elapsed().as_secs_f64();

    let meta = CorpusMeta {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tokenizer: TokenizerMeta {
            kind: tok.kind().into(),
            fingerprint: format!("{fp:016x}"),
            vocab_size: vocab,
            special_tokens: tok.specials().clone(),
        },
        token_width: width,
        append_eos: opts.append_eos,
        splits,
        source: SourceMeta {
            input: input.name(),
            kind: input.kind().into(),
            documents: input.documents().into(),
            split: if matches!(input, Input::TextFile(_)) {
                "position"
            } else {
                "document"
            }
            .into(),
            val_fraction: opts.val_fraction,
            seed: opts.seed,
            bytes,
        },
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::msg(e.to_string()))?;
    write_atomic(&tmp.join(META_FILE), json.as_bytes())?;

    if out.exists() {
        let mut old = out.as_os_str().to_os_string();
        old.push(format!(".old-{}", std::process::id()));
        let old = PathBuf::from(old);
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(PrepareReport {
        meta,
        bytes,
        tokenizer_seconds,
        encode_seconds,
    })
}
