//! The special token ids the objectives use, taken from a tokenizer's [`SpecialTokens`],
//! with an error naming the objective and the missing role when one is needed but not
//! declared.
//!
//! How a tokenizer gets them (see `data::prepare`): a `char` tokenizer has no specials
//! unless declared at `pretext prepare --specials pad,cls,sep,mask,bos,eos --sentinels N`
//! (they take the ids after the characters; sentinels take the last ids); a trained
//! `bpe:V` tokenizer gets `bos = eos = <|endoftext|>` by default and the same
//! `--specials` / `--sentinels` flags for more; a Hugging Face `tokenizer.json` has its
//! specials found by their usual strings ([CLS]/<s>, [MASK]/<mask>, <extra_id_i>, …).

use crate::data::tokenizer::{Role, SpecialTokens, Tokenizer};
use crate::error::{Error, Result};

/// Special ids and vocabulary size, as the batch builders need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectiveTokens {
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub cls: Option<u32>,
    pub sep: Option<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Ids of `<extra_id_0>`, `<extra_id_1>`, … in that order (T5: 32099, 32098, …).
    pub sentinels: Vec<u32>,
    /// `len(tokenizer)`: random replacement tokens are drawn from `0..vocab_size`.
    pub vocab_size: usize,
    /// Every special id (roles, [UNK] included, and sentinels), sorted: HF's
    /// `all_special_ids`, which masked-LM selection never picks.
    pub special_ids: Vec<u32>,
}

impl ObjectiveTokens {
    /// Check every id against `vocab_size`.
    pub fn new(specials: &SpecialTokens, vocab_size: usize) -> Result<Self> {
        if vocab_size == 0 {
            return Err(Error::msg("objective tokens: the vocabulary is empty"));
        }
        for role in Role::ALL {
            if let Some(id) = specials.id(role) {
                if id as usize >= vocab_size {
                    return Err(Error::msg(format!(
                        "objective tokens: the {} token has id {id}, outside the vocabulary of size {vocab_size}",
                        role.name()
                    )));
                }
            }
        }
        if let Some((i, &id)) = specials
            .sentinels
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= vocab_size)
        {
            return Err(Error::msg(format!(
                "objective tokens: sentinel <extra_id_{i}> has id {id}, outside the vocabulary of size {vocab_size}"
            )));
        }
        Ok(ObjectiveTokens {
            pad: specials.pad(),
            mask: specials.mask(),
            cls: specials.cls(),
            sep: specials.sep(),
            bos: specials.bos(),
            eos: specials.eos(),
            sentinels: specials.sentinels.clone(),
            vocab_size,
            special_ids: specials.all_ids(),
        })
    }

    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Self> {
        Self::new(tok.specials(), tok.vocab_size())
    }

    /// Whether `id` is one of [`ObjectiveTokens::special_ids`].
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    pub fn id(&self, role: Role) -> Option<u32> {
        match role {
            Role::Pad => self.pad,
            Role::Mask => self.mask,
            Role::Cls => self.cls,
            Role::Sep => self.sep,
            Role::Bos => self.bos,
            Role::Eos => self.eos,
            // [UNK] is only ever excluded from masking (it is in `special_ids`).
            Role::Unk => None,
        }
    }

    /// The id of `role`, or an error saying that `objective` needs it and how to declare it.
    pub fn need(&self, role: Role, objective: &str) -> Result<u32> {
        self.id(role).ok_or_else(|| missing(objective, role.name()))
    }

    /// At least `n` sentinels, or an error saying how many are declared.
    pub fn need_sentinels(&self, n: usize, objective: &str) -> Result<&[u32]> {
        if self.sentinels.len() < n {
            return Err(Error::msg(format!(
                "{objective} needs {n} sentinel tokens <extra_id_0..{}>; the tokenizer declares {} (prepare with --sentinels {n} or more)",
                n.saturating_sub(1),
                self.sentinels.len()
            )));
        }
        Ok(&self.sentinels[..n])
    }
}

fn missing(objective: &str, role: &str) -> Error {
    Error::msg(format!(
        "{objective} needs a {role} token; the tokenizer declares none (declare one when preparing the corpus: --specials {role},... for char and bpe tokenizers, or a special_tokens.json beside a tokenizer.json)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::SpecialToken;

    fn tok(id: u32, s: &str) -> Option<SpecialToken> {
        Some(SpecialToken {
            id,
            token: s.into(),
        })
    }

    #[test]
    fn missing_role_error_names_objective_and_role() {
        let st = SpecialTokens {
            pad: tok(0, "[PAD]"),
            ..Default::default()
        };
        let t = ObjectiveTokens::new(&st, 10).unwrap();
        let e = t.need(Role::Mask, "mlm").unwrap_err().to_string();
        assert!(
            e.contains("mlm needs a mask token; the tokenizer declares none"),
            "{e}"
        );
        let e = t
            .need_sentinels(3, "span corruption")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs 3 sentinel") && e.contains("declares 0"),
            "{e}"
        );
    }

    #[test]
    fn ids_outside_vocab_are_rejected_and_specials_sorted() {
        let st = SpecialTokens {
            mask: tok(12, "[MASK]"),
            ..Default::default()
        };
        let e = ObjectiveTokens::new(&st, 10).unwrap_err().to_string();
        assert!(e.contains("mask token has id 12"), "{e}");
        let st = SpecialTokens {
            unk: tok(7, "[UNK]"),
            cls: tok(3, "[CLS]"),
            sentinels: vec![9, 8],
            ..Default::default()
        };
        let t = ObjectiveTokens::new(&st, 10).unwrap();
        assert_eq!(t.special_ids, vec![3, 7, 8, 9]);
        assert!(t.is_special(7) && !t.is_special(4));
    }
}
