//! `pretext embed --model DIR --text "..." [--pool cls|mean|none]`: feature-based use of a
//! pretrained BERT encoder. Prints, per input, one JSON object with the token ids and either
//! the pooled vector (cls: h[:, 0]; mean: the mean of h over the sequence's tokens) or every
//! token's hidden state (none). Inputs: each --text, or each line of stdin when none is given.
//! The tokenizer comes from the model folder (tokenizer.json, or a WordPiece vocab.txt);
//! `--ids "101 7592 102"` gives token ids directly instead.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, ValueEnum};
use serde_json::json;

use super::Weights;
use crate::autograd::no_grad;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::models::Bert;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    Cls,
    Mean,
    None,
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A BERT model folder (Hugging Face layout: config.json, model.safetensors, and
    /// tokenizer.json or vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Input text; repeat for several. Without it, each line of stdin is one input.
    #[arg(long)]
    pub text: Vec<String>,
    /// Token ids (space-separated) instead of text; repeat for several inputs.
    #[arg(long)]
    pub ids: Vec<String>,
    #[arg(long, value_enum, default_value_t = Pool::Cls)]
    pub pool: Pool,
    /// f32, or bf16: the encoder's matrices held in bf16 (weight-only bf16).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
}

/// The tokenizer of a Hugging Face model folder: tokenizer.json, or BERT's vocab.txt.
pub fn model_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        let t = tokenizers::Tokenizer::from_file(&json)
            .map_err(|e| Error::format(&json, "tokenizer.json", e.to_string()))?;
        return Tokenizer::from_hf_detect(t);
    }
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let wp = WordPiece::from_file(&vocab.to_string_lossy())
            .build()
            .map_err(|e| Error::format(&vocab, "vocab.txt", e.to_string()))?;
        let id = |t: &str| -> Result<(String, u32)> {
            use tokenizers::Model as _;
            wp.token_to_id(t)
                .map(|i| (t.to_string(), i))
                .ok_or_else(|| {
                    Error::format(&vocab, t, "special token missing from the vocabulary")
                })
        };
        let post = BertProcessing::new(id("[SEP]")?, id("[CLS]")?);
        let mut t = tokenizers::Tokenizer::new(wp);
        t.with_normalizer(Some(BertNormalizer::default()))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(post));
        return Tokenizer::from_hf_detect(t);
    }
    Err(Error::msg(format!(
        "{}: no tokenizer.json or vocab.txt; pass token ids with --ids",
        dir.display()
    )))
}

/// Pool hidden states h (1, T, H) of one input.
pub fn pool(h: &Tensor, how: Pool) -> Result<serde_json::Value> {
    let (t, d) = (h.shape()[1], h.shape()[2]);
    let v = h.to_vec_f32()?;
    Ok(match how {
        Pool::Cls => json!(v[..d].to_vec()),
        Pool::Mean => {
            let mut m = vec![0.0f32; d];
            for row in v.chunks(d) {
                m.iter_mut().zip(row).for_each(|(a, b)| *a += b / t as f32);
            }
            json!(m)
        }
        Pool::None => json!(v.chunks(d).map(|r| r.to_vec()).collect::<Vec<_>>()),
    })
}

pub fn run(a: Args) -> Result<()> {
    let model = Bert::from_pretrained_as(&a.model, a.weights.dtype())?;
    let mut inputs: Vec<(Option<String>, Vec<u32>)> = Vec::new();
    for s in &a.ids {
        let ids = s
            .split_whitespace()
            .map(|x| {
                x.parse::<u32>()
                    .map_err(|_| Error::msg(format!("--ids: `{x}` is not a token id")))
            })
            .collect::<Result<Vec<_>>>()?;
        inputs.push((None, ids));
    }
    if a.ids.is_empty() {
        let tok = model_tokenizer(&a.model)?;
        let texts: Vec<String> = if a.text.is_empty() {
            std::io::stdin()
                .lock()
                .lines()
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io("stdin", e))?
        } else {
            a.text.clone()
        };
        for text in texts {
            let ids = tok.encode_with_special(&text)?;
            inputs.push((Some(text), ids));
        }
    }
    for (text, ids) in inputs {
        if ids.is_empty() {
            return Err(Error::msg("embed: an input has no tokens"));
        }
        let t = Tensor::from_vec(ids.iter().map(|&i| i as i64).collect(), &[1, ids.len()])?;
        let out = no_grad(|| model.forward(&t, None, None, None))?;
        let h = out.hidden.value().clone();
        let mut obj = json!({ "ids": ids, "pool": format!("{:?}", a.pool).to_lowercase() });
        if let Some(text) = text {
            obj["text"] = json!(text);
        }
        let key = if a.pool == Pool::None {
            "hidden"
        } else {
            "embedding"
        };
        obj[key] = pool(&h, a.pool)?;
        println!("{obj}");
    }
    Ok(())
}
