//! Autoregressive decoding of one sequence with the KV cache, for every family:
//!   GPT-2: the prompt is the context; each new token is fed back alone (positions continue).
//!     When the context would pass n_positions, the cache is dropped and the last
//!     n_positions − 1 tokens are re-encoded (nanoGPT's crop).
//!   T5 / BART: the prompt is encoded once; the decoder starts from decoder_start_token_id.
//! Each step's token comes from `sample_next`; decoding stops at EOS or after `max_new` tokens.

use super::sampling::{sample_next, SamplingConfig};
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::models::{BartCache, Model, T5Cache};
use crate::nn::attention::KvCache;
use crate::tensor::{Rng, Tensor};

/// What `generate` produced: the new tokens (EOS included when it was emitted).
pub struct Generated {
    pub tokens: Vec<u32>,
    pub stopped_at_eos: bool,
}

fn ids(v: &[u32]) -> Result<Tensor> {
    Tensor::from_vec(v.iter().map(|&t| t as i64).collect(), &[1, v.len()])
}

/// The hidden states (B, T, C) of the last position only, (B, 1, C): the LM head of a GPT
/// prompt then costs one row instead of T (a 500-token prompt against GPT-2's 50257 × 768
/// head would otherwise multiply 500 rows to keep one).
fn last_position(hidden: &crate::autograd::Var) -> Result<crate::autograd::Var> {
    let t = hidden.shape()[1];
    hidden.narrow(1, t - 1, 1)
}

fn last_row(logits: &Tensor) -> Result<Vec<f32>> {
    let s = logits.shape();
    let (t, v) = (s[s.len() - 2], s[s.len() - 1]);
    logits.narrow(-2, t - 1, 1)?.reshape(&[v])?.to_vec_f32()
}

/// Generate up to `max_new` tokens after `prompt`, calling `on_token` as each one is chosen.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    sampling: &SamplingConfig,
    eos: Option<u32>,
    seed: u64,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generated> {
    sampling.validate()?;
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut pick = |logits: &[f32], out: &mut Vec<u32>| -> Result<bool> {
        let t = sample_next(logits, sampling, &mut rng)? as u32;
        out.push(t);
        on_token(t)?;
        Ok(Some(t) == eos)
    };
    no_grad(|| match model {
        Model::Gpt2(g) => {
            if prompt.is_empty() {
                return Err(Error::msg(
                    "generate: GPT needs a non-empty prompt (at least one token)",
                ));
            }
            let max_pos = g.config.n_positions;
            let mut context: Vec<u32> = prompt.to_vec();
            let start = context.len().saturating_sub(max_pos - 1);
            let mut cache = KvCache::default();
            let h = g.forward(&ids(&context[start..])?, None, Some(&mut cache), None)?;
            let mut logits = last_row(&g.lm_logits(&last_position(&h.hidden)?)?.value())?;
            for _ in 0..max_new {
                if pick(&logits, &mut out)? {
                    return Ok(Generated {
                        tokens: out,
                        stopped_at_eos: true,
                    });
                }
                context.push(*out.last().expect("just pushed"));
                let h = if cache.past_len() + 1 > max_pos {
                    cache = KvCache::default();
                    let s = context.len() - (max_pos - 1);
                    g.forward(&ids(&context[s..])?, None, Some(&mut cache), None)?
                } else {
                    g.forward(
                        &ids(&context[context.len() - 1..])?,
                        None,
                        Some(&mut cache),
                        None,
                    )?
                };
                logits = last_row(&g.lm_logits(&last_position(&h.hidden)?)?.value())?;
            }
            Ok(Generated {
                tokens: out,
                stopped_at_eos: false,
            })
        }
        Model::T5(m) => {
            let mut cache: T5Cache = m.start_cache(&ids(prompt)?, None)?;
            let mut next = m.decoder_start()? as u32;
            for _ in 0..max_new {
                let logits = last_row(&m.decode_step(&ids(&[next])?, None, &mut cache)?)?;
                if pick(&logits, &mut out)? {
                    return Ok(Generated {
                        tokens: out,
                        stopped_at_eos: true,
                    });
                }
                next = *out.last().expect("just pushed");
            }
            Ok(Generated {
                tokens: out,
                stopped_at_eos: false,
            })
        }
        Model::Bart(m) => {
            let enc = m
                .encode(&ids(prompt)?, None, None)?
                .pop()
                .expect("encoder states");
            let mut cache = BartCache::default();
            let mut next = m.config.decoder_start_token_id.unwrap_or(2);
            for _ in 0..max_new {
                let h = m.decode(&ids(&[next])?, &enc, None, Some(&mut cache), None)?;
                let logits = last_row(&m.lm_logits(h.last().expect("decoder states"))?.value())?;
                if pick(&logits, &mut out)? {
                    return Ok(Generated {
                        tokens: out,
                        stopped_at_eos: true,
                    });
                }
                next = *out.last().expect("just pushed");
            }
            Ok(Generated {
                tokens: out,
                stopped_at_eos: false,
            })
        }
        Model::Bert(_) => Err(Error::msg(
            "generate: BERT is an encoder; generation needs a GPT, T5 or BART checkpoint",
        )),
    })
}
