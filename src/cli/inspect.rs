//! `pretext inspect --objective mlm|nsp|clm|span|denoise --text "..." [--seed N]
//! [--checkpoint DIR]`: shows, token by token, what an objective does to a text — the
//! corrupted input, the labels, which positions carry loss — and, with a checkpoint, each
//! loss position's contribution −log p(target) and their mean, which is the batch loss.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::autograd::no_grad;
use crate::data::prepare::{build_tokenizer, Input, PrepareOptions, TokenizerSpec};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::objectives::{render_row, Batch, Example, Objective, ObjectiveTokens};
use crate::tensor::{Rng, Tensor};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// mlm, nsp (BERT's MLM + NSP), clm, span (T5) or denoise (BART).
    #[arg(long)]
    pub objective: String,
    #[arg(long)]
    pub text: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A run folder or checkpoint: use its tokenizer and show each position's loss.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// Without a checkpoint: a character tokenizer of the text itself, with the special tokens
/// every objective needs and 40 T5 sentinels.
fn text_tokenizer(text: &str) -> Result<Tokenizer> {
    let dir = std::env::temp_dir().join(format!("pretext-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("text.txt");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::Char,
        specials: Some("pad,unk,cls,sep,mask,bos,eos".into()),
        sentinels: 40,
        ..PrepareOptions::default()
    };
    let tok = build_tokenizer(&Input::TextFile(path), &opts);
    let _ = std::fs::remove_dir_all(&dir);
    tok
}

/// Token ids of the text and the token index where each sentence starts.
fn encode_sentences(tok: &Tokenizer, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let mut ids = Vec::new();
    let mut starts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // A sentence ends after . ! or ? and the whitespace that follows.
        let end = rest
            .char_indices()
            .find(|&(i, c)| {
                matches!(c, '.' | '!' | '?') && rest[i + 1..].starts_with(char::is_whitespace)
            })
            .map(|(i, _)| {
                let after = &rest[i + 1..];
                i + 1 + (after.len() - after.trim_start().len())
            })
            .unwrap_or(rest.len());
        starts.push(ids.len());
        ids.extend(tok.encode(&rest[..end])?);
        rest = &rest[end..];
    }
    Ok((ids, starts))
}

/// The objective sized to the text, and the example built from it.
fn objective_and_example(
    name: &str,
    ids: &[u32],
    starts: &[usize],
    tokens: &ObjectiveTokens,
) -> Result<(Objective, Example)> {
    let n = ids.len();
    if name == "nsp" || name == "mlm_nsp" {
        if starts.len() < 2 {
            return Err(Error::msg(
                "inspect nsp: the text needs at least two sentences (A and its continuation B)",
            ));
        }
        let cut = starts[starts.len() / 2];
        let obj = Objective::from_name("mlm_nsp", n + 3, tokens)?;
        return Ok((
            obj,
            Example::pair(ids[..cut].to_vec(), ids[cut..].to_vec(), false),
        ));
    }
    // The largest model length whose window fits the text.
    let window = |o: &Objective| match o {
        Objective::Clm(c) => c.window_len(),
        Objective::Mlm(m) => m.window_len(),
        Objective::Span(s) => s.window_len(),
        Objective::Denoise(d) => d.window_len(),
        Objective::MlmNsp(m) => m.seq(),
    };
    let mut best = None;
    for seq in (2..=n + 2).rev() {
        if let Ok(o) = Objective::from_name(name, seq, tokens) {
            if window(&o) <= n {
                best = Some(o);
                break;
            }
        }
    }
    let obj = best.ok_or_else(|| {
        Error::msg(format!(
            "inspect {name}: the text ({n} tokens) is too short"
        ))
    })?;
    let w = window(&obj);
    if w < n {
        println!("(the {name} window holds {w} of the text's {n} tokens; the rest is not shown)");
    }
    let st: Vec<usize> = starts.iter().copied().filter(|&s| s < w).collect();
    Ok((obj, Example::with_sentences(ids[..w].to_vec(), st)))
}

/// Logits (1, T, V) of the model on row 0 of the batch.
fn logits(model: &Model, b: &Batch) -> Result<Tensor> {
    let t = |v: &[i64], cols: usize| Tensor::from_vec(v.to_vec(), &[b.batch, cols]);
    let ids = t(&b.input_ids, b.seq)?;
    let mask = t(&b.attention_mask, b.seq)?;
    no_grad(|| -> Result<Tensor> {
        Ok(match model {
            Model::Gpt2(m) => m
                .lm_logits(&m.forward(&ids, Some(&mask), None, None)?.hidden)?
                .value()
                .clone(),
            Model::Bert(m) => {
                let tt = b.token_type_ids.as_ref().map(|v| t(v, b.seq)).transpose()?;
                m.mlm_logits(&m.forward(&ids, tt.as_ref(), Some(&mask), None)?.hidden)?
                    .value()
                    .clone()
            }
            Model::T5(m) => {
                let dec = t(
                    b.decoder_input_ids
                        .as_ref()
                        .ok_or_else(|| Error::msg("no decoder inputs"))?,
                    b.dec_seq,
                )?;
                m.forward(&ids, Some(&mask), &dec, None, None)?
                    .logits
                    .value()
                    .clone()
            }
            Model::Bart(m) => {
                let dec = t(
                    b.decoder_input_ids
                        .as_ref()
                        .ok_or_else(|| Error::msg("no decoder inputs"))?,
                    b.dec_seq,
                )?;
                m.forward(&ids, Some(&mask), &dec, None)?
                    .logits
                    .value()
                    .clone()
            }
        })
    })
}

pub fn run(a: Args) -> Result<()> {
    let (model, tok) = match &a.checkpoint {
        Some(c) => {
            let (m, t) = super::generate::resolve_checkpoint(c)?;
            (Some(Model::load(&m)?), Tokenizer::load(&t)?)
        }
        None => (None, text_tokenizer(&a.text)?),
    };
    let tokens = ObjectiveTokens::from_tokenizer(&tok)?;
    let (ids, starts) = encode_sentences(&tok, &a.text)?;
    let (obj, example) = objective_and_example(&a.objective, &ids, &starts, &tokens)?;
    let mut rng = Rng::new(a.seed);
    let batch = obj.build(&[example], &mut rng)?;
    let name = |id: i64| -> String {
        let s = tok
            .id_to_token(id as u32)
            .unwrap_or_else(|| format!("<{id}>"));
        match s.as_str() {
            " " => "␣".into(),
            "\n" => "⏎".into(),
            _ => s,
        }
    };
    println!(
        "objective {} (loss: {}), seed {}",
        obj.name(),
        obj.loss().name(),
        a.seed
    );
    print!("{}", render_row(&batch, 0, name));
    let Some(model) = model else {
        println!("(pass --checkpoint to see each position's loss)");
        return Ok(());
    };
    let z = logits(&model, &batch)?;
    let lp = z.log_softmax_last()?.to_vec_f32()?;
    let v = *z.shape().last().expect("rank 3");
    let positions = batch.loss_positions();
    println!("position  target  −log p(target)");
    let mut total = 0.0f64;
    for p in &positions {
        let nll = -lp[p.pos * v + p.target as usize] as f64;
        total += nll;
        println!("{:>8}  {:>6}  {nll:.4}", p.pos, name(p.target));
    }
    println!(
        "loss = mean over {} positions = {:.4}   (ln V = {:.4} at initialisation)",
        positions.len(),
        total / positions.len().max(1) as f64,
        (v as f64).ln()
    );
    Ok(())
}
