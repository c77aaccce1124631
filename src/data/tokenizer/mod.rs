//! Tokenizers: character-level, trained byte-level BPE, and any Hugging Face
//! `tokenizer.json`, behind one type with encode/decode, the vocabulary, the special
//! tokens, a fingerprint, and save/load to a directory.
//!
//! A tokenizer directory holds `tokenizer.json` (Hugging Face format: trained BPE and
//! loaded files) or `char.json` (character-level), plus `special_tokens.json`. One is
//! saved next to each corpus and each checkpoint so `generate` and `eval` decode with
//! the vocabulary that trained the model.

pub mod char;
pub mod hf;
pub mod special;

use std::path::{Path, PathBuf};

pub use self::char::CharTokenizer;
pub use special::{sentinel_token, Role, SpecialSpec, SpecialToken, SpecialTokens};

use crate::data::fsutil::{read_to_string, write_atomic};
use crate::data::hash::fnv1a_extend;
use crate::error::{Error, Result};

pub const HF_FILE: &str = "tokenizer.json";
pub const CHAR_FILE: &str = "char.json";
pub const SPECIALS_FILE: &str = "special_tokens.json";

enum Inner {
    Char(Box<CharTokenizer>),
    Hf(Box<tokenizers::Tokenizer>),
}

/// A tokenizer and its special tokens.
pub struct Tokenizer {
    inner: Inner,
    specials: SpecialTokens,
    fingerprint: u64,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials)
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish()
    }
}

impl Tokenizer {
    pub fn from_char(tok: CharTokenizer, specials: SpecialTokens) -> Result<Self> {
        Self::build(Inner::Char(Box::new(tok)), specials)
    }

    pub fn from_hf(tok: tokenizers::Tokenizer, specials: SpecialTokens) -> Result<Self> {
        Self::build(Inner::Hf(Box::new(tok)), specials)
    }

    /// A Hugging Face tokenizer with its special tokens found by their usual strings.
    pub fn from_hf_detect(tok: tokenizers::Tokenizer) -> Result<Self> {
        let specials = SpecialTokens::detect(|s| tok.token_to_id(s));
        Self::from_hf(tok, specials)
    }

    fn build(inner: Inner, specials: SpecialTokens) -> Result<Self> {
        let mut t = Tokenizer {
            inner,
            specials,
            fingerprint: 0,
        };
        t.specials
            .validate(Path::new(SPECIALS_FILE), t.vocab_size(), |id| {
                t.id_to_token(id)
            })?;
        t.fingerprint = t.compute_fingerprint()?;
        Ok(t)
    }

    /// `"char"` or `"hf"`.
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Char(_) => "char",
            Inner::Hf(_) => "hf",
        }
    }

    /// Canonical serialization of the tokenizer file.
    fn canonical(&self) -> Result<String> {
        match &self.inner {
            Inner::Char(c) => Ok(c.to_json()),
            Inner::Hf(t) => t
                .to_string(false)
                .map_err(|e| Error::msg(format!("tokenizer serialization: {e}"))),
        }
    }

    /// FNV-1a 64 of the canonical tokenizer serialization followed by the canonical
    /// special-token json: equal fingerprints mean equal vocabularies and specials.
    fn compute_fingerprint(&self) -> Result<u64> {
        let specials =
            serde_json::to_string(&self.specials).map_err(|e| Error::msg(e.to_string()))?;
        let h = fnv1a_extend(crate::data::hash::FNV_OFFSET, self.kind().as_bytes());
        let h = fnv1a_extend(h, self.canonical()?.as_bytes());
        Ok(fnv1a_extend(h, specials.as_bytes()))
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Number of ids, added tokens included (HF's `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Char(c) => c.vocab_size(),
            Inner::Hf(t) => t.get_vocab_size(true),
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Char(c) => c.token_to_id(token),
            Inner::Hf(t) => t.token_to_id(token),
        }
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Char(c) => c.id_to_token(id),
            Inner::Hf(t) => t.id_to_token(id),
        }
    }

    /// The Hugging Face tokenizer underneath, if any (for pair encodings, templates).
    pub fn hf(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.inner {
            Inner::Hf(t) => Some(t),
            Inner::Char(_) => None,
        }
    }

    /// Token ids of `text`, without added special tokens (what corpora store).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.encode_into(text, &mut ids, None)?;
        Ok(ids)
    }

    /// Append the ids of `text` to `ids` and, when given, each token's end byte offset
    /// in `text` to `ends`.
    pub fn encode_into(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        ends: Option<&mut Vec<usize>>,
    ) -> Result<()> {
        match &self.inner {
            Inner::Char(c) => c.encode_into(text, self.specials.unk(), ids, ends),
            Inner::Hf(t) => hf::encode_into(t, text, ids, ends),
        }
    }

    /// Ids with the post-processor's special tokens (BERT: [CLS] text [SEP]); for the
    /// char tokenizer, the same as [`Tokenizer::encode`].
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Char(_) => self.encode(text),
            Inner::Hf(t) => hf::encode_with_special(t, text),
        }
    }

    /// Text of `ids`, special tokens written out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Inner::Char(c) => c.decode(ids),
            Inner::Hf(t) => hf::decode(t, ids),
        }
    }

    /// Write the tokenizer directory (created if missing), each file atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (name, stale) = match self.inner {
            Inner::Char(_) => (CHAR_FILE, HF_FILE),
            Inner::Hf(_) => (HF_FILE, CHAR_FILE),
        };
        write_atomic(&dir.join(name), self.canonical()?.as_bytes())?;
        let specials =
            serde_json::to_string_pretty(&self.specials).map_err(|e| Error::msg(e.to_string()))?;
        write_atomic(&dir.join(SPECIALS_FILE), specials.as_bytes())?;
        let stale = dir.join(stale);
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
        }
        Ok(())
    }

    /// Load a tokenizer directory, or a `tokenizer.json` / `char.json` file directly.
    /// Without `special_tokens.json`, the specials are found by their usual strings.
    pub fn load(path: &Path) -> Result<Self> {
        let (dir, file): (PathBuf, PathBuf) = if path.is_dir() {
            let hf = path.join(HF_FILE);
            let ch = path.join(CHAR_FILE);
            let file = if hf.is_file() {
                hf
            } else if ch.is_file() {
                ch
            } else {
                return Err(Error::format(
                    path,
                    "tokenizer",
                    format!("the directory holds neither {HF_FILE} nor {CHAR_FILE}"),
                ));
            };
            (path.to_path_buf(), file)
        } else {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, path.to_path_buf())
        };
        let text = read_to_string(&file)?;
        let is_char = serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| v.get("type").and_then(|t| t.as_str()) == Some("char"))
            .unwrap_or(false);
        let specials_path = dir.join(SPECIALS_FILE);
        let saved: Option<SpecialTokens> = if specials_path.is_file() {
            let s = read_to_string(&specials_path)?;
            Some(
                serde_json::from_str(&s)
                    .map_err(|e| Error::format(&specials_path, "special_tokens", e.to_string()))?,
            )
        } else {
            None
        };
        let tok = if is_char {
            let c = CharTokenizer::from_json(&file, &text)?;
            let specials = match saved {
                Some(s) => s,
                None => {
                    let mut st = SpecialTokens::default();
                    for role in Role::ALL {
                        st.set(role, c.special_token(role.default_token()));
                    }
                    let mut i = 0;
                    while let Some(t) = c.special_token(&sentinel_token(i)) {
                        st.sentinels.push(t.id);
                        i += 1;
                    }
                    st
                }
            };
            Tokenizer::build(Inner::Char(Box::new(c)), specials)
        } else {
            let t = hf::load(&file)?;
            let specials = saved.unwrap_or_else(|| SpecialTokens::detect(|s| t.token_to_id(s)));
            Tokenizer::build(Inner::Hf(Box::new(t)), specials)
        };
        tok.map_err(|e| match e {
            Error::Format { field, msg, .. } => Error::Format {
                path: specials_path.clone(),
                field,
                msg,
            },
            other => other,
        })
    }
}
