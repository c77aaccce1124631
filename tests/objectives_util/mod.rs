//! Shared helpers of the objectives tests: a small vocabulary with every special token.
#![allow(dead_code)]

use pretext::data::tokenizer::{SpecialToken, SpecialTokens};
use pretext::objectives::ObjectiveTokens;
use pretext::tensor::Rng;

pub const V: usize = 200;
pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const CLS: u32 = 2;
pub const SEP: u32 = 3;
pub const MASK: u32 = 4;
pub const BOS: u32 = 5;
pub const EOS: u32 = 6;
/// Ordinary tokens are `FIRST..SENTINEL_LOW`.
pub const FIRST: u32 = 7;
pub const SENTINEL_LOW: u32 = 100;

fn st(id: u32, s: &str) -> Option<SpecialToken> {
    Some(SpecialToken {
        id,
        token: s.into(),
    })
}

/// The specials of the test vocabulary; 100 sentinels `<extra_id_i>` = `199 − i`.
pub fn specials() -> SpecialTokens {
    SpecialTokens {
        pad: st(PAD, "[PAD]"),
        unk: st(UNK, "[UNK]"),
        cls: st(CLS, "[CLS]"),
        sep: st(SEP, "[SEP]"),
        mask: st(MASK, "[MASK]"),
        bos: st(BOS, "<s>"),
        eos: st(EOS, "</s>"),
        sentinels: (0..100).map(|i| V as u32 - 1 - i).collect(),
    }
}

pub fn tokens() -> ObjectiveTokens {
    ObjectiveTokens::new(&specials(), V).unwrap()
}

/// `n` ordinary tokens.
pub fn random_ids(rng: &mut Rng, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| FIRST + rng.below((SENTINEL_LOW - FIRST) as u64) as u32)
        .collect()
}

pub fn is_sentinel(id: i64) -> bool {
    id >= SENTINEL_LOW as i64 && id < V as i64
}
