//! Character-level tokenizer (nanoGPT's shakespeare_char): the vocabulary is the sorted
//! set of characters of the corpus, id = rank; special tokens follow the characters in
//! declaration order, and T5 sentinels take the last ids, `<extra_id_0>` = V − 1.
//!
//! Saved as `char.json`: `{"type": "char", "chars": "...", "specials": [...], "sentinels": n}`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::special::{sentinel_token, SpecialSpec, SpecialToken, SpecialTokens};
use crate::error::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct CharFile {
    #[serde(rename = "type")]
    kind: String,
    /// The characters, in id order, as one string.
    chars: String,
    /// Special token strings in id order (ids chars.len() ..).
    specials: Vec<String>,
    sentinels: usize,
}

#[derive(Clone, Debug)]
pub struct CharTokenizer {
    chars: Vec<char>,
    specials: Vec<String>,
    sentinels: usize,
    ascii: [u32; 128],
    map: HashMap<char, u32>,
    special_ids: HashMap<String, u32>,
}

const NONE: u32 = u32::MAX;

impl CharTokenizer {
    /// Build from a set of characters and the declared specials.
    pub fn new(chars: &BTreeSet<char>, spec: &SpecialSpec) -> Result<(Self, SpecialTokens)> {
        let tok = Self::from_parts(
            chars.iter().copied().collect(),
            spec.distinct_tokens(),
            spec.sentinels,
        )?;
        let specials = SpecialTokens::resolve(spec, |s| tok.token_to_id(s))?;
        Ok((tok, specials))
    }

    fn from_parts(chars: Vec<char>, specials: Vec<String>, sentinels: usize) -> Result<Self> {
        if chars.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::msg(
                "char tokenizer: characters must be sorted and distinct",
            ));
        }
        let mut ascii = [NONE; 128];
        let mut map = HashMap::new();
        for (i, &c) in chars.iter().enumerate() {
            if (c as u32) < 128 {
                ascii[c as usize] = i as u32;
            }
            map.insert(c, i as u32);
        }
        let mut special_ids = HashMap::new();
        for (i, s) in specials.iter().enumerate() {
            special_ids.insert(s.clone(), (chars.len() + i) as u32);
        }
        let total = chars.len() + specials.len();
        for i in 0..sentinels {
            special_ids.insert(sentinel_token(i), (total + sentinels - 1 - i) as u32);
        }
        Ok(CharTokenizer {
            chars,
            specials,
            sentinels,
            ascii,
            map,
            special_ids,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.chars.len() + self.specials.len() + self.sentinels
    }

    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        let mut it = token.chars();
        if let (Some(c), None) = (it.next(), it.next()) {
            if let Some(&id) = self.map.get(&c) {
                return Some(id);
            }
        }
        self.special_ids.get(token).copied()
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        let i = id as usize;
        let nc = self.chars.len();
        let ns = self.specials.len();
        if i < nc {
            Some(self.chars[i].to_string())
        } else if i < nc + ns {
            Some(self.specials[i - nc].clone())
        } else if i < self.vocab_size() {
            Some(sentinel_token(self.vocab_size() - 1 - i))
        } else {
            None
        }
    }

    /// Encode `text` into `ids`, pushing the byte offset where each token ends into `ends`
    /// (when given). A character outside the vocabulary maps to `unk`, or is an error.
    pub fn encode_into(
        &self,
        text: &str,
        unk: Option<u32>,
        ids: &mut Vec<u32>,
        mut ends: Option<&mut Vec<usize>>,
    ) -> Result<()> {
        let bytes = text.as_bytes();
        if bytes.is_ascii() {
            let start = ids.len();
            ids.extend(bytes.iter().map(|&b| self.ascii[b as usize]));
            if ids[start..].contains(&NONE) {
                for (id, &b) in ids[start..].iter_mut().zip(bytes) {
                    if *id == NONE {
                        *id = self.unknown(b as char, unk)?;
                    }
                }
            }
            if let Some(e) = ends.as_deref_mut() {
                e.extend(1..=bytes.len());
            }
            return Ok(());
        }
        for (pos, c) in text.char_indices() {
            let id = match self.map.get(&c) {
                Some(&id) => id,
                None => self.unknown(c, unk)?,
            };
            ids.push(id);
            if let Some(e) = ends.as_deref_mut() {
                e.push(pos + c.len_utf8());
            }
        }
        Ok(())
    }

    fn unknown(&self, c: char, unk: Option<u32>) -> Result<u32> {
        unk.ok_or_else(|| {
            Error::msg(format!(
                "char tokenizer: character {c:?} (U+{:04X}) is not in the vocabulary of {} characters and there is no unk token",
                c as u32,
                self.chars.len()
            ))
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = String::with_capacity(ids.len());
        let nc = self.chars.len();
        for &id in ids {
            if (id as usize) < nc {
                out.push(self.chars[id as usize]);
            } else {
                let s = self.id_to_token(id).ok_or_else(|| {
                    Error::msg(format!(
                        "char tokenizer: id {id} is outside the vocabulary of size {}",
                        self.vocab_size()
                    ))
                })?;
                out.push_str(&s);
            }
        }
        Ok(out)
    }

    /// The canonical serialization (also the bytes of `char.json`).
    pub fn to_json(&self) -> String {
        let f = CharFile {
            kind: "char".into(),
            chars: self.chars.iter().collect(),
            specials: self.specials.clone(),
            sentinels: self.sentinels,
        };
        serde_json::to_string(&f).expect("char tokenizer serializes")
    }

    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let f: CharFile = serde_json::from_str(text)
            .map_err(|e| Error::format(path, "char.json", e.to_string()))?;
        if f.kind != "char" {
            return Err(Error::format(
                path,
                "type",
                format!("expected \"char\", got {:?}", f.kind),
            ));
        }
        Self::from_parts(f.chars.chars().collect(), f.specials, f.sentinels)
            .map_err(|e| Error::format(path, "chars", e.to_string()))
    }

    /// Specials of this tokenizer found by their strings (used when no
    /// `special_tokens.json` is saved beside it).
    pub fn special_token(&self, s: &str) -> Option<SpecialToken> {
        self.special_ids.get(s).map(|&id| SpecialToken {
            id,
            token: s.to_string(),
        })
    }
}
