//! BART (encoder-decoder, post-LN), with Hugging Face's parameter names and numerics:
//!   embed(ids, past) = layernorm_embedding(shared[ids]·scale + positions[past + t + 2])
//!   encoder layer: x = LN(x + MHA(x));  x = LN(x + fc2(gelu(fc1 x)))
//!   decoder layer: x = LN(x + MHA_causal(x));  x = LN(x + MHA(x, enc));  x = LN(x + FFN(x))
//!   logits = dec · sharedᵀ + final_logits_bias (a buffer, not trained)
//! Positions are offset by 2 (`BartLearnedPositionalEmbedding`); q is scaled by head_dim^-½.

use std::collections::BTreeMap;
use std::path::Path;

use crate::autograd::{no_grad, ParamStore, Var};
use crate::error::{Error, Result};
use crate::nn::attention::KvCache;
use crate::nn::{
    dropout, join, no_init_weights, Activation, AttnMask, Embedding, Init, KvMode, LayerNorm,
    Linear, MhaNames, MultiHeadAttention, Train,
};
use crate::tensor::{AttentionMasks, DType, Rng, Tensor};

use super::checkpoint::{Checkpoint, RawTensor};
use super::config::{read_family, BartConfig, ModelConfig};
use super::shift::shift_tokens_right;
use super::weights;

struct Ffn {
    fc1: Linear,
    fc2: Linear,
    ln: LayerNorm,
}

struct EncoderLayer {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    ffn: Ffn,
}

struct DecoderLayer {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    cross: MultiHeadAttention,
    cross_ln: LayerNorm,
    ffn: Ffn,
}

struct Stack {
    positions: Embedding,
    ln_emb: LayerNorm,
}

pub struct Bart {
    pub config: BartConfig,
    pub store: ParamStore,
    shared: Embedding,
    enc: Stack,
    dec: Stack,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    /// (1, V) added to the logits; a buffer (no gradient), saved with the checkpoint.
    pub final_logits_bias: Tensor,
}

pub struct BartOutput {
    pub logits: Var,
    pub encoder_hidden_states: Vec<Var>,
    pub decoder_hidden_states: Vec<Var>,
}

/// Incremental-decoding state: the decoder's self-attention keys/values and the
/// cross-attention keys/values computed once from the encoder output.
#[derive(Default)]
pub struct BartCache {
    pub self_kv: KvCache,
    pub cross_kv: KvCache,
}

const LN_EPS: f32 = 1e-5;

impl Bart {
    /// Randomly initialised as HF's `_init_weights`: N(0, init_std) for Linear and Embedding
    /// weights, zero biases, LayerNorm 1/0, zero final_logits_bias.
    pub fn new(config: BartConfig, rng: &mut Rng) -> Result<Bart> {
        let d = config.d_model;
        for heads in [
            config.encoder_attention_heads,
            config.decoder_attention_heads,
        ] {
            if heads == 0 || !d.is_multiple_of(heads) {
                return Err(Error::msg(format!(
                    "bart: d_model {d} is not divisible by {heads} heads"
                )));
            }
        }
        let init = Init::Normal(config.init_std as f32);
        let mut store = ParamStore::new();
        let s = &mut store;
        let mut shared = Embedding::new(s, "model.shared", config.vocab_size, d, init, rng)?;
        shared.padding_idx = config.pad_token_id.map(|p| p as usize);
        let stack = |s: &mut ParamStore, name: &str, rng: &mut Rng| -> Result<Stack> {
            let p = format!("model.{name}");
            Ok(Stack {
                positions: Embedding::new(
                    s,
                    &join(&p, "embed_positions"),
                    config.max_position_embeddings + 2,
                    d,
                    init,
                    rng,
                )?,
                ln_emb: LayerNorm::new(
                    s,
                    &join(&p, "layernorm_embedding"),
                    d,
                    true,
                    true,
                    LN_EPS,
                    rng,
                )?,
            })
        };
        let enc = stack(s, "encoder", rng)?;
        let dec = stack(s, "decoder", rng)?;
        let mha = |s: &mut ParamStore, p: &str, heads: usize, rng: &mut Rng| {
            let names = MhaNames {
                q: &join(p, "q_proj"),
                k: &join(p, "k_proj"),
                v: &join(p, "v_proj"),
                o: &join(p, "out_proj"),
            };
            MultiHeadAttention::new(s, names, d, d, heads, true, init, rng)
        };
        let ffn = |s: &mut ParamStore, p: &str, dim: usize, rng: &mut Rng| -> Result<Ffn> {
            Ok(Ffn {
                fc1: Linear::new(s, &join(p, "fc1"), d, dim, true, init, rng)?,
                fc2: Linear::new(s, &join(p, "fc2"), dim, d, true, init, rng)?,
                ln: LayerNorm::new(s, &join(p, "final_layer_norm"), d, true, true, LN_EPS, rng)?,
            })
        };
        let mut encoder = Vec::new();
        for i in 0..config.encoder_layers {
            let p = format!("model.encoder.layers.{i}");
            encoder.push(EncoderLayer {
                attn: mha(
                    s,
                    &join(&p, "self_attn"),
                    config.encoder_attention_heads,
                    rng,
                )?,
                attn_ln: LayerNorm::new(
                    s,
                    &join(&p, "self_attn_layer_norm"),
                    d,
                    true,
                    true,
                    LN_EPS,
                    rng,
                )?,
                ffn: ffn(s, &p, config.encoder_ffn_dim, rng)?,
            });
        }
        let mut decoder = Vec::new();
        for i in 0..config.decoder_layers {
            let p = format!("model.decoder.layers.{i}");
            decoder.push(DecoderLayer {
                attn: mha(
                    s,
                    &join(&p, "self_attn"),
                    config.decoder_attention_heads,
                    rng,
                )?,
                attn_ln: LayerNorm::new(
                    s,
                    &join(&p, "self_attn_layer_norm"),
                    d,
                    true,
                    true,
                    LN_EPS,
                    rng,
                )?,
                cross: mha(
                    s,
                    &join(&p, "encoder_attn"),
                    config.decoder_attention_heads,
                    rng,
                )?,
                cross_ln: LayerNorm::new(
                    s,
                    &join(&p, "encoder_attn_layer_norm"),
                    d,
                    true,
                    true,
                    LN_EPS,
                    rng,
                )?,
                ffn: ffn(s, &p, config.decoder_ffn_dim, rng)?,
            });
        }
        let final_logits_bias = Tensor::zeros(&[1, config.vocab_size]);
        Ok(Bart {
            config,
            store,
            shared,
            enc,
            dec,
            encoder,
            decoder,
            final_logits_bias,
        })
    }

    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Bart> {
        Self::from_pretrained_as(dir, DType::F32)
    }

    /// `from_pretrained` with the matrices (`weights::is_matrix`) read as `matrices`: F32, or
    /// BF16 for weight-only bf16 inference (see `Model::cast_matrices`).
    pub fn from_pretrained_as(dir: impl AsRef<Path>, matrices: DType) -> Result<Bart> {
        let dir = dir.as_ref();
        let config = read_family(dir, "bart", |c| match c {
            ModelConfig::Bart(c) => Some(c),
            _ => None,
        })?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        // Every parameter is loaded below: none is drawn first.
        let mut model = no_init_weights(|| Bart::new(config, &mut Rng::new(0)))?;
        weights::load_store(&model.store, &ckpt, &|_| false, matrices)?;
        if ckpt.contains("final_logits_bias") {
            let raw = ckpt.get_shaped("final_logits_bias", &[1, model.config.vocab_size])?;
            model.final_logits_bias = Tensor::from_vec(raw.data, &raw.shape)?;
        }
        Ok(model)
    }

    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.architectures = Some(vec!["BartForConditionalGeneration".into()]);
        ModelConfig::Bart(config).save(dir.join("config.json"))?;
        let fb = &self.final_logits_bias;
        let mut extra = BTreeMap::new();
        extra.insert(
            "final_logits_bias".to_string(),
            RawTensor::new(fb.shape().to_vec(), fb.to_vec_f32()?)?,
        );
        weights::save_store(
            dir.join("model.safetensors"),
            &self.store,
            &|_| false,
            extra,
        )
    }

    fn embed(&self, stack: &Stack, ids: &Tensor, past: usize, train: &mut Train) -> Result<Var> {
        let t = ids.shape()[1];
        if past + t > self.config.max_position_embeddings {
            return Err(Error::shape(
                "bart",
                &[ids.shape()],
                format!(
                    "{} positions exceed max_position_embeddings {}",
                    past + t,
                    self.config.max_position_embeddings
                ),
            ));
        }
        let tok = self.shared.forward(ids)?;
        let tok = if self.config.scale_embedding {
            tok.mul_scalar((self.config.d_model as f32).sqrt())?
        } else {
            tok
        };
        let pos = Tensor::arange_i64(past as i64 + 2, (past + t) as i64 + 2);
        let x = stack
            .ln_emb
            .forward(&tok.add(&stack.positions.forward(&pos)?)?)?;
        dropout(&x, self.config.dropout as f32, train)
    }

    fn act(&self, x: &Var) -> Result<Var> {
        Activation::from_hf("bart", &self.config.activation_function)?.apply(x)
    }

    fn ffn(&self, f: &Ffn, x: &Var, train: &mut Train) -> Result<Var> {
        let h = self.act(&f.fc1.forward(x)?)?;
        let h = dropout(&h, self.config.activation_dropout as f32, train)?;
        let h = dropout(&f.fc2.forward(&h)?, self.config.dropout as f32, train)?;
        f.ln.forward(&x.add(&h)?)
    }

    /// Encoder: ids (B, S) and padding mask (B, S) → hidden states of every layer (last = output).
    pub fn encode(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut train: Train,
    ) -> Result<Vec<Var>> {
        if ids.rank() != 2 {
            return Err(Error::shape(
                "bart encode",
                &[ids.shape()],
                "ids must be (B, S)",
            ));
        }
        let mut x = self.embed(&self.enc, ids, 0, &mut train)?;
        let mut states = vec![x.clone()];
        let (b, s) = (ids.shape()[0], ids.shape()[1]);
        let p_attn = self.config.attention_dropout as f32;
        let masks = AttnMask::new(
            AttentionMasks {
                causal: false,
                key_padding: attention_mask.cloned(),
                scale: None,
                dropout: None,
            },
            b,
            s,
            s,
        )?;
        let p = self.config.dropout as f32;
        for l in &self.encoder {
            let a = l
                .attn
                .forward(&x, &x, None, &masks, KvMode::None, p_attn, &mut train)?;
            x = l.attn_ln.forward(&x.add(&dropout(&a, p, &mut train)?)?)?;
            x = self.ffn(&l.ffn, &x, &mut train)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// Decoder over `dec_ids` (B, T) attending to `enc` (B, S, D) → hidden states of every
    /// layer. With a cache, `dec_ids` are the new positions only.
    pub fn decode(
        &self,
        dec_ids: &Tensor,
        enc: &Var,
        enc_mask: Option<&Tensor>,
        mut cache: Option<&mut BartCache>,
        mut train: Train,
    ) -> Result<Vec<Var>> {
        if dec_ids.rank() != 2 {
            return Err(Error::shape(
                "bart decode",
                &[dec_ids.shape()],
                "decoder ids must be (B, T)",
            ));
        }
        if let Some(c) = cache.as_deref_mut() {
            if c.self_kv.num_layers() != self.decoder.len() {
                c.self_kv = KvCache::new(self.decoder.len());
                c.cross_kv = KvCache::new(self.decoder.len());
            }
        }
        let past = cache.as_ref().map_or(0, |c| c.self_kv.past_len());
        let mut x = self.embed(&self.dec, dec_ids, past, &mut train)?;
        let mut states = vec![x.clone()];
        let (b, t, src_len) = (dec_ids.shape()[0], dec_ids.shape()[1], enc.shape()[1]);
        let p_attn = self.config.attention_dropout as f32;
        let self_masks = AttnMask::new(
            AttentionMasks {
                causal: true,
                key_padding: None,
                scale: None,
                dropout: None,
            },
            b,
            t,
            past + t,
        )?;
        let cross_masks = AttnMask::new(
            AttentionMasks {
                causal: false,
                key_padding: enc_mask.cloned(),
                scale: None,
                dropout: None,
            },
            b,
            t,
            src_len,
        )?;
        let p = self.config.dropout as f32;
        for (i, l) in self.decoder.iter().enumerate() {
            let (self_kv, cross_kv) = match cache.as_deref_mut() {
                Some(c) => (KvMode::Append(&mut c.self_kv, i), Some(&mut c.cross_kv)),
                None => (KvMode::None, None),
            };
            let a = l
                .attn
                .forward(&x, &x, None, &self_masks, self_kv, p_attn, &mut train)?;
            x = l.attn_ln.forward(&x.add(&dropout(&a, p, &mut train)?)?)?;
            let cross_kv = match cross_kv {
                Some(c) => KvMode::Static(c, i),
                None => KvMode::None,
            };
            let c = l
                .cross
                .forward(&x, enc, None, &cross_masks, cross_kv, p_attn, &mut train)?;
            x = l.cross_ln.forward(&x.add(&dropout(&c, p, &mut train)?)?)?;
            x = self.ffn(&l.ffn, &x, &mut train)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// logits (B, T, V) = h · sharedᵀ + final_logits_bias.
    pub fn lm_logits(&self, hidden: &Var) -> Result<Var> {
        let s = hidden.shape();
        let d = self.config.d_model;
        let rows = s[0] * s[1];
        let logits = hidden
            .reshape(&[rows, d])?
            .matmul(&self.shared.weight.transpose(0, 1)?)?
            .add(&Var::constant(self.final_logits_bias.clone()))?;
        logits.reshape(&[s[0], s[1], self.config.vocab_size])
    }

    /// Full forward: decoder inputs default to `shift_tokens_right(labels)`.
    pub fn forward(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        mut train: Train,
    ) -> Result<BartOutput> {
        let enc_states = self.encode(ids, attention_mask, train.as_deref_mut())?;
        let enc = enc_states.last().expect("embeddings at least").clone();
        let dec_states = self.decode(decoder_input_ids, &enc, attention_mask, None, train)?;
        let logits = self.lm_logits(dec_states.last().expect("embeddings at least"))?;
        Ok(BartOutput {
            logits,
            encoder_hidden_states: enc_states,
            decoder_hidden_states: dec_states,
        })
    }

    /// Seq2seq loss: mean cross-entropy of the logits against `labels` (−100 ignored), with
    /// decoder inputs `shift_tokens_right(labels, pad, decoder_start)`.
    pub fn loss(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: &Tensor,
        train: Train,
    ) -> Result<(BartOutput, Var)> {
        let pad = self.config.pad_token_id.unwrap_or(1) as i64;
        let start = self.config.decoder_start_token_id.unwrap_or(2) as i64;
        let dec_in = shift_tokens_right(labels, pad, start)?;
        let out = self.forward(ids, attention_mask, &dec_in, train)?;
        let loss = out.logits.cross_entropy(labels, -100, 0.0)?;
        Ok((out, loss))
    }

    /// Greedy decoding with the KV cache: each row starts from `decoder_start_token_id`, takes
    /// the arg-max token at each step (first index on ties), and after emitting EOS is padded.
    /// Returns the sequences (start token included) and each step's last-position logits.
    pub fn generate_greedy(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        max_new_tokens: usize,
    ) -> Result<(Vec<Vec<i64>>, Vec<Tensor>)> {
        no_grad(|| {
            let b = ids.shape()[0];
            let enc = self
                .encode(ids, attention_mask, None)?
                .pop()
                .expect("states");
            let start = self.config.decoder_start_token_id.unwrap_or(2) as i64;
            let eos = self
                .config
                .eos_token_id
                .as_ref()
                .and_then(|e| e.first())
                .map(|e| e as i64);
            let pad = self.config.pad_token_id.unwrap_or(1) as i64;
            let mut seqs = vec![vec![start]; b];
            let mut done = vec![false; b];
            let mut cache = BartCache::default();
            let mut step_logits = Vec::new();
            let mut next = Tensor::from_vec(vec![start; b], &[b, 1])?;
            for _ in 0..max_new_tokens {
                let h = self.decode(&next, &enc, attention_mask, Some(&mut cache), None)?;
                let logits = self.lm_logits(h.last().expect("states"))?;
                let last = logits.value().reshape(&[b, self.config.vocab_size])?;
                let (_, arg) = last.max_dims_with_arg(&[-1], false)?;
                step_logits.push(last);
                let mut toks = Vec::with_capacity(b);
                for r in 0..b {
                    let tok = if done[r] { pad } else { arg[r] as i64 };
                    if Some(tok) == eos {
                        done[r] = true;
                    }
                    seqs[r].push(tok);
                    toks.push(tok);
                }
                next = Tensor::from_vec(toks, &[b, 1])?;
                if done.iter().all(|&d| d) {
                    break;
                }
            }
            Ok((seqs, step_logits))
        })
    }
}
