//! Special tokens the objectives need, declared once per tokenizer and saved with it
//! (`special_tokens.json`): [PAD], [UNK], [CLS], [SEP], [MASK] / <mask>, BOS, EOS, and the
//! T5 sentinels `<extra_id_i>`, whose ids descend from the end of the vocabulary
//! (`<extra_id_0>` = V − 1, `<extra_id_1>` = V − 2, …), as in HF's `len(tokenizer) − i − 1`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A role an objective asks a special token for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Pad,
    Unk,
    Cls,
    Sep,
    Mask,
    Bos,
    Eos,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Pad,
        Role::Unk,
        Role::Cls,
        Role::Sep,
        Role::Mask,
        Role::Bos,
        Role::Eos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Pad => "pad",
            Role::Unk => "unk",
            Role::Cls => "cls",
            Role::Sep => "sep",
            Role::Mask => "mask",
            Role::Bos => "bos",
            Role::Eos => "eos",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// The string a new (char or trained BPE) tokenizer gives this role by default.
    pub fn default_token(self) -> &'static str {
        match self {
            Role::Pad => "[PAD]",
            Role::Unk => "[UNK]",
            Role::Cls => "[CLS]",
            Role::Sep => "[SEP]",
            Role::Mask => "[MASK]",
            Role::Bos => "<s>",
            Role::Eos => "</s>",
        }
    }

    /// Strings that fill this role in the Hugging Face tokenizers, in order of preference
    /// (BERT, T5/BART/RoBERTa, GPT-2).
    pub fn known_tokens(self) -> &'static [&'static str] {
        match self {
            Role::Pad => &["[PAD]", "<pad>"],
            Role::Unk => &["[UNK]", "<unk>", "<|endoftext|>"],
            Role::Cls => &["[CLS]", "<s>"],
            Role::Sep => &["[SEP]", "</s>"],
            Role::Mask => &["[MASK]", "<mask>"],
            Role::Bos => &["<s>", "<|endoftext|>"],
            Role::Eos => &["</s>", "<|endoftext|>"],
        }
    }
}

/// The string of sentinel `i`.
pub fn sentinel_token(i: usize) -> String {
    format!("<extra_id_{i}>")
}

/// What a user asks for when creating a tokenizer: roles (each with an optional string
/// overriding [`Role::default_token`]) and a number of T5 sentinels.
/// Parsed from `"pad,unk,eos=<|endoftext|>"`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecialSpec {
    pub roles: Vec<(Role, String)>,
    pub sentinels: usize,
}

impl SpecialSpec {
    pub fn parse(list: &str, sentinels: usize) -> Result<Self> {
        let mut roles: Vec<(Role, String)> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, token) = match item.split_once('=') {
                Some((n, t)) => (n.trim(), Some(t.to_string())),
                None => (item, None),
            };
            let role = Role::parse(name).ok_or_else(|| {
                Error::msg(format!(
                    "special tokens: unknown role `{name}` (expected one of pad, unk, cls, sep, mask, bos, eos)"
                ))
            })?;
            if roles.iter().any(|(r, _)| *r == role) {
                return Err(Error::msg(format!(
                    "special tokens: role `{name}` given twice"
                )));
            }
            let token = token.unwrap_or_else(|| role.default_token().to_string());
            if token.is_empty() {
                return Err(Error::msg(format!(
                    "special tokens: role `{name}` has an empty token"
                )));
            }
            roles.push((role, token));
        }
        Ok(SpecialSpec { roles, sentinels })
    }

    /// The distinct token strings in declaration order (two roles may share one, as
    /// GPT-2's bos = eos = `<|endoftext|>`).
    pub fn distinct_tokens(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, t) in &self.roles {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// One special token: its id and its string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialToken {
    pub id: u32,
    pub token: String,
}

/// The resolved special tokens of one tokenizer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unk: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos: Option<SpecialToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos: Option<SpecialToken>,
    /// Ids of `<extra_id_0>`, `<extra_id_1>`, … in that order.
    #[serde(default)]
    pub sentinels: Vec<u32>,
}

impl SpecialTokens {
    pub fn get(&self, role: Role) -> Option<&SpecialToken> {
        match role {
            Role::Pad => self.pad.as_ref(),
            Role::Unk => self.unk.as_ref(),
            Role::Cls => self.cls.as_ref(),
            Role::Sep => self.sep.as_ref(),
            Role::Mask => self.mask.as_ref(),
            Role::Bos => self.bos.as_ref(),
            Role::Eos => self.eos.as_ref(),
        }
    }

    pub fn set(&mut self, role: Role, tok: Option<SpecialToken>) {
        let slot = match role {
            Role::Pad => &mut self.pad,
            Role::Unk => &mut self.unk,
            Role::Cls => &mut self.cls,
            Role::Sep => &mut self.sep,
            Role::Mask => &mut self.mask,
            Role::Bos => &mut self.bos,
            Role::Eos => &mut self.eos,
        };
        *slot = tok;
    }

    pub fn id(&self, role: Role) -> Option<u32> {
        self.get(role).map(|t| t.id)
    }
    pub fn pad(&self) -> Option<u32> {
        self.id(Role::Pad)
    }
    pub fn unk(&self) -> Option<u32> {
        self.id(Role::Unk)
    }
    pub fn cls(&self) -> Option<u32> {
        self.id(Role::Cls)
    }
    pub fn sep(&self) -> Option<u32> {
        self.id(Role::Sep)
    }
    pub fn mask(&self) -> Option<u32> {
        self.id(Role::Mask)
    }
    pub fn bos(&self) -> Option<u32> {
        self.id(Role::Bos)
    }
    pub fn eos(&self) -> Option<u32> {
        self.id(Role::Eos)
    }

    /// Number of T5 sentinels.
    pub fn sentinel_count(&self) -> usize {
        self.sentinels.len()
    }

    /// Id of `<extra_id_i>`, if the tokenizer has that many sentinels.
    pub fn sentinel_id(&self, i: usize) -> Option<u32> {
        self.sentinels.get(i).copied()
    }

    /// Every special id (roles and sentinels), sorted and deduplicated: HF's
    /// `all_special_ids`, which the MLM collator never masks.
    pub fn all_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Role::ALL.iter().filter_map(|r| self.id(*r)).collect();
        ids.extend(&self.sentinels);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Check every id against the vocabulary through `id_to_token`; `what` names the file.
    pub fn validate(
        &self,
        what: &std::path::Path,
        vocab_size: usize,
        id_to_token: impl Fn(u32) -> Option<String>,
    ) -> Result<()> {
        for role in Role::ALL {
            if let Some(t) = self.get(role) {
                match id_to_token(t.id) {
                    Some(s) if s == t.token => {}
                    Some(s) => {
                        return Err(Error::format(
                            what,
                            role.name(),
                            format!("id {} is `{s}` in the vocabulary, not `{}`", t.id, t.token),
                        ))
                    }
                    None => {
                        return Err(Error::format(
                            what,
                            role.name(),
                            format!("id {} is outside the vocabulary of size {vocab_size}", t.id),
                        ))
                    }
                }
            }
        }
        for (i, &id) in self.sentinels.iter().enumerate() {
            let want = sentinel_token(i);
            if id_to_token(id).as_deref() != Some(want.as_str()) {
                return Err(Error::format(
                    what,
                    format!("sentinels[{i}]"),
                    format!("id {id} is not `{want}` in the vocabulary"),
                ));
            }
        }
        Ok(())
    }

    /// Find the roles and sentinels of a Hugging Face vocabulary by their usual strings.
    pub fn detect(token_to_id: impl Fn(&str) -> Option<u32>) -> SpecialTokens {
        let mut st = SpecialTokens::default();
        for role in Role::ALL {
            let found = role.known_tokens().iter().find_map(|s| {
                token_to_id(s).map(|id| SpecialToken {
                    id,
                    token: s.to_string(),
                })
            });
            st.set(role, found);
        }
        let mut i = 0;
        while let Some(id) = token_to_id(&sentinel_token(i)) {
            st.sentinels.push(id);
            i += 1;
        }
        st
    }

    /// Resolve a [`SpecialSpec`] against a vocabulary that already contains its strings.
    pub fn resolve(
        spec: &SpecialSpec,
        token_to_id: impl Fn(&str) -> Option<u32>,
    ) -> Result<SpecialTokens> {
        let mut st = SpecialTokens::default();
        for (role, token) in &spec.roles {
            let id = token_to_id(token).ok_or_else(|| {
                Error::msg(format!(
                    "special token `{token}` for role {} is not in the tokenizer's vocabulary",
                    role.name()
                ))
            })?;
            st.set(
                *role,
                Some(SpecialToken {
                    id,
                    token: token.clone(),
                }),
            );
        }
        for i in 0..spec.sentinels {
            let s = sentinel_token(i);
            let id = token_to_id(&s).ok_or_else(|| {
                Error::msg(format!(
                    "sentinel `{s}` is not in the tokenizer's vocabulary"
                ))
            })?;
            st.sentinels.push(id);
        }
        Ok(st)
    }
}
