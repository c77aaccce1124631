//! Hugging Face `tokenizer.json` tokenizers (BPE, WordPiece, Unigram: GPT-2, BERT, T5,
//! BART) through the `tokenizers` crate, and training a GPT-2 style byte-level BPE
//! (ByteLevel pre-tokenizer without prefix space, ByteLevel decoder) on a corpus.

use std::collections::HashSet;
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTok};

use super::special::{sentinel_token, SpecialSpec};
use crate::error::{Error, Result};

fn hf_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::msg(format!("{what}: {e}"))
}

/// Load a `tokenizer.json`.
pub fn load(path: &Path) -> Result<HfTok> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json here"),
        ));
    }
    HfTok::from_file(path).map_err(|e| Error::format(path, "tokenizer.json", e.to_string()))
}

/// Encode without the post-processor's special tokens; `ends` gets each token's end
/// byte offset in `text`.
pub fn encode_into(
    tok: &HfTok,
    text: &str,
    ids: &mut Vec<u32>,
    ends: Option<&mut Vec<usize>>,
) -> Result<()> {
    let enc = tok
        .encode(text, false)
        .map_err(|e| hf_err("tokenizer encode", e))?;
    ids.extend_from_slice(enc.get_ids());
    if let Some(ends) = ends {
        ends.extend(enc.get_offsets().iter().map(|o| o.1));
    }
    Ok(())
}

/// Encode with the post-processor's special tokens (BERT's [CLS] … [SEP]).
pub fn encode_with_special(tok: &HfTok, text: &str) -> Result<Vec<u32>> {
    let enc = tok
        .encode(text, true)
        .map_err(|e| hf_err("tokenizer encode", e))?;
    Ok(enc.get_ids().to_vec())
}

pub fn decode(tok: &HfTok, ids: &[u32]) -> Result<String> {
    if let Some(&bad) = ids.iter().find(|&&i| tok.id_to_token(i).is_none()) {
        // (get_vocab_size builds the whole vocabulary map: only worth it for the message.)
        let v = tok.get_vocab_size(true);
        return Err(Error::msg(format!(
            "tokenizer decode: id {bad} is outside the vocabulary of size {v}"
        )));
    }
    tok.decode(ids, false)
        .map_err(|e| hf_err("tokenizer decode", e))
}

/// Train a byte-level BPE of `vocab_size` ids in all: the 256 byte symbols, the merges,
/// the declared special tokens (ids 0.., as HF's trainer places them) and the sentinels
/// (added last, so `<extra_id_0>` is the highest id). `texts` is consumed once.
pub fn train_byte_level_bpe<I>(texts: I, vocab_size: usize, spec: &SpecialSpec) -> Result<HfTok>
where
    I: Iterator<Item = String> + Send,
{
    let specials = spec.distinct_tokens();
    let min = 256 + specials.len() + spec.sentinels;
    if vocab_size < min {
        return Err(Error::msg(format!(
            "bpe:{vocab_size}: a byte-level BPE needs at least {min} ids (256 bytes + {} special tokens + {} sentinels)",
            specials.len(),
            spec.sentinels
        )));
    }
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size - spec.sentinels)
        .min_frequency(0)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|s| AddedToken::from(s.clone(), true))
                .collect(),
        )
        .initial_alphabet(alphabet)
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    let mut tok = HfTok::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
    tok.with_post_processor(Some(ByteLevel::new(false, false, true)));
    tok.with_decoder(Some(ByteLevel::new(false, false, true)));
    tok.train(&mut trainer, texts)
        .map_err(|e| hf_err("bpe training", e))?;
    // Sentinels in reverse so <extra_id_{n-1}> gets the lowest of them and <extra_id_0> V-1.
    let sentinels: Vec<AddedToken> = (0..spec.sentinels)
        .rev()
        .map(|i| AddedToken::from(sentinel_token(i), true))
        .collect();
    tok.add_special_tokens(&sentinels);
    Ok(tok)
}
