//! The pretext token shard format (all integers little-endian):
//!
//! ```text
//! offset size  field
//!      0    8  magic              b"PRTXSHRD"
//!      8    4  version            u32 = 1
//!     12    4  token_width        u32: 2 (u16 tokens, vocab ≤ 65536) or 4 (u32)
//!     16    8  token_count        u64
//!     24    4  vocab_size         u32
//!     28    4  flags              u32 = 0 (reserved)
//!     32    8  tokenizer_fp       u64 fingerprint of the tokenizer (see data::tokenizer)
//!     40    8  doc_count          u64 entries in the document index
//!     48    8  sentence_count     u64 entries in the sentence index
//!     56    8  token_checksum     u64 FNV-1a over token values (data::hash::TokenChecksum)
//!     64    8  header_checksum    u64 FNV-1a of bytes 0..64
//!     72   56  reserved           zero
//!    128       tokens             token_count × token_width bytes
//!              padding            zero bytes up to a multiple of 4
//!              doc_starts         doc_count × u32: token position where each document starts
//!              sentence_starts    sentence_count × u32: token position where each sentence starts
//! ```
//!
//! The file size must equal `128 + pad4(token_count·width) + 4·(doc_count + sentence_count)`.
//! Positions are relative to the shard, so a shard holds at most `u32::MAX` tokens.

use std::path::Path;

use crate::data::hash::fnv1a;
use crate::error::{Error, Result};

pub const MAGIC: [u8; 8] = *b"PRTXSHRD";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 128;
/// Most tokens one shard may hold (index positions are u32).
pub const MAX_SHARD_TOKENS: u64 = u32::MAX as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub token_width: u32,
    pub token_count: u64,
    pub vocab_size: u32,
    pub tokenizer_fp: u64,
    pub doc_count: u64,
    pub sentence_count: u64,
    pub token_checksum: u64,
}

/// Token width for a vocabulary: u16 when every id fits, else u32.
pub fn width_for_vocab(vocab_size: usize) -> u32 {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

fn pad4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

impl Header {
    /// Byte offset of the document index.
    pub fn index_offset(&self) -> u64 {
        HEADER_BYTES as u64 + pad4(self.token_count * self.token_width as u64)
    }

    pub fn expected_file_size(&self) -> u64 {
        self.index_offset() + 4 * (self.doc_count + self.sentence_count)
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.token_width.to_le_bytes());
        b[16..24].copy_from_slice(&self.token_count.to_le_bytes());
        b[24..28].copy_from_slice(&self.vocab_size.to_le_bytes());
        b[32..40].copy_from_slice(&self.tokenizer_fp.to_le_bytes());
        b[40..48].copy_from_slice(&self.doc_count.to_le_bytes());
        b[48..56].copy_from_slice(&self.sentence_count.to_le_bytes());
        b[56..64].copy_from_slice(&self.token_checksum.to_le_bytes());
        let h = fnv1a(&b[0..64]);
        b[64..72].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Parse and check a header; `file_size` is the size of the whole file.
    pub fn decode(path: &Path, b: &[u8], file_size: u64) -> Result<Header> {
        let f = |field: &str, msg: String| Error::format(path, field, msg);
        if b.len() < HEADER_BYTES {
            return Err(f(
                "header",
                format!(
                    "file is {} bytes, shorter than the {HEADER_BYTES}-byte header (truncated?)",
                    b.len()
                ),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        if b[0..8] != MAGIC {
            let msg = if b[0..8].iter().all(|&x| x == 0) {
                "all zero: the shard was never finished (an interrupted prepare?)".to_string()
            } else {
                format!("expected {:?}, found {:?}", MAGIC, &b[0..8])
            };
            return Err(f("magic", msg));
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(f("version", format!("expected {VERSION}, found {version}")));
        }
        let stored = u64_at(64);
        let actual = fnv1a(&b[0..64]);
        if stored != actual {
            return Err(f(
                "header_checksum",
                format!("stored {stored:016x}, computed {actual:016x}: the header is corrupted"),
            ));
        }
        let h = Header {
            token_width: u32_at(12),
            token_count: u64_at(16),
            vocab_size: u32_at(24),
            tokenizer_fp: u64_at(32),
            doc_count: u64_at(40),
            sentence_count: u64_at(48),
            token_checksum: u64_at(56),
        };
        if h.token_width != 2 && h.token_width != 4 {
            return Err(f(
                "token_width",
                format!("expected 2 or 4, found {}", h.token_width),
            ));
        }
        if h.token_count > MAX_SHARD_TOKENS {
            return Err(f(
                "token_count",
                format!("{} exceeds {MAX_SHARD_TOKENS}", h.token_count),
            ));
        }
        if h.doc_count > h.token_count.max(1) || h.sentence_count > h.token_count.max(1) {
            return Err(f(
                "doc_count",
                format!(
                    "{} documents / {} sentences for {} tokens",
                    h.doc_count, h.sentence_count, h.token_count
                ),
            ));
        }
        let want = h.expected_file_size();
        if file_size != want {
            return Err(f(
                "size",
                format!(
                    "file is {file_size} bytes but the header (token_count {}, width {}, doc_count {}, sentence_count {}) needs {want}{}",
                    h.token_count,
                    h.token_width,
                    h.doc_count,
                    h.sentence_count,
                    if file_size < want { " (truncated)" } else { "" }
                ),
            ));
        }
        Ok(h)
    }
}

/// llm.c `.bin` token files: a header of 256 i32 `[magic, version, ntok, 0…]`, then
/// the tokens. GPT-2: magic 20240520, version 1, u16; Llama 3: 20240801, version 7, u32.
pub mod llmc {
    pub const HEADER_BYTES: usize = 1024;
    pub const MAGIC_GPT2: i32 = 20240520;
    pub const MAGIC_LLAMA3: i32 = 20240801;

    /// Token width for a (magic, version) pair, if llm.c defines one.
    pub fn width(magic: i32, version: i32) -> Option<u32> {
        match (magic, version) {
            (MAGIC_GPT2, 1) => Some(2),
            (MAGIC_LLAMA3, 7) => Some(4),
            _ => None,
        }
    }
}
