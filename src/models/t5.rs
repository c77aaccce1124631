//! T5 (encoder-decoder, pre-RMSNorm) as Hugging Face's `T5ForConditionalGeneration`, with its
//! parameter names and numerics (tests/fixtures/hf/NOTES.md §5):
//!   stack input  x₀ = shared[ids]                       (no scaling, no absolute positions)
//!   per block    x = x + o(MHA(RMS(x)) + relative bias)  (scores QKᵀ, scaling 1)
//!                x = x + o(CrossMHA(RMS(x), enc))         (decoder only, no bias)
//!                x = x + FFN(RMS(x))                      relu: wo(relu(wi x));
//!                                                         gated: wo(act(wi_0 x) ⊙ wi_1 x)
//!   stack output RMS_final(x)
//!   logits       lm_head(dec · d_model^-0.5) when `scale_decoder_outputs`, else lm_head(dec);
//!                lm_head tied to `shared` unless the checkpoint holds `lm_head.weight` (v1.1).
//! The relative position bias is an Embedding(num_buckets, H) lookup of bucket(j − (i + past)),
//! computed once per stack (block 0's table) and added to every block's scores; its gradient
//! flows into `relative_attention_bias.weight` through the attention op's bias input.

use std::path::Path;

use crate::autograd::{no_grad, ParamStore, Var};
use crate::error::{Error, Result};
use crate::nn::attention::{merge_heads, split_heads, KvCache};
use crate::nn::{
    attend, dropout, join, no_init_weights, Activation, AttnMask, Embedding, Init, Linear, RmsNorm,
    Train,
};
use crate::tensor::{AttentionMasks, DType, Rng, Tensor};

use super::checkpoint::Checkpoint;
use super::config::{read_family, ModelConfig, T5Config};
use super::shift::shift_tokens_right;
use super::t5_buckets::bucket_matrix;
#[cfg(test)]
use super::t5_buckets::relative_position_bucket;
use super::weights;

/// One attention module (`SelfAttention` or `EncDecAttention`): bias-free q, k, v (H·K, D) and
/// o (D, H·K).
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

enum Ffn {
    /// wo(act(wi x))
    Plain { wi: Linear, wo: Linear },
    /// wo(act(wi_0 x) ⊙ wi_1 x)
    Gated {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
    },
}

struct Block {
    self_attn: Attention,
    self_ln: RmsNorm,
    /// Decoder blocks: cross-attention over the encoder output and its norm.
    cross: Option<(Attention, RmsNorm)>,
    ffn: Ffn,
    ffn_ln: RmsNorm,
}

/// The encoder or the decoder stack.
struct Stack {
    blocks: Vec<Block>,
    /// Block 0's `relative_attention_bias` (num_buckets, H), shared by every block.
    rel_bias: Embedding,
    final_ln: RmsNorm,
    is_decoder: bool,
}

/// Output of one stack.
pub struct T5StackOutput {
    /// After `final_layer_norm`, (B, T, D).
    pub hidden: Var,
    /// HF's `*_hidden_states`: the embeddings, each block's output but the last, then `hidden`.
    pub hidden_states: Vec<Var>,
}

/// Output of a full forward pass.
pub struct T5Output {
    /// (B, T_dec, V)
    pub logits: Var,
    pub encoder: T5StackOutput,
    pub decoder: T5StackOutput,
}

/// State of incremental decoding: the encoder output and its padding mask, the decoder
/// self-attention keys/values so far (grows by one position per step) and the cross-attention
/// keys/values, computed once from the encoder output on the first step.
pub struct T5Cache {
    /// (B, T_enc, D)
    pub encoder_hidden: Tensor,
    /// (B, T_enc), 1 = real token, 0 = padding.
    pub encoder_mask: Option<Tensor>,
    pub self_attn: KvCache,
    pub cross_attn: Vec<Option<(Tensor, Tensor)>>,
}

impl T5Cache {
    pub fn new(encoder_hidden: Tensor, encoder_mask: Option<Tensor>) -> T5Cache {
        T5Cache {
            encoder_hidden,
            encoder_mask,
            self_attn: KvCache::default(),
            cross_attn: Vec::new(),
        }
    }
    /// Decoder positions already processed.
    pub fn past_len(&self) -> usize {
        self.self_attn.past_len()
    }
}

pub struct T5 {
    pub config: T5Config,
    pub store: ParamStore,
    /// Whether `lm_head` is `shared` (no `lm_head.weight` tensor).
    pub tied: bool,
    shared: Embedding,
    encoder: Stack,
    decoder: Stack,
    lm_head: Option<Linear>,
}

/// Where a stack's decoder-only inputs come from: the encoder output (differentiable, full
/// pass) or the cache (generation).
enum CrossSource<'a> {
    None,
    Full(&'a Var, Option<&'a Tensor>),
    Cached(&'a mut T5Cache),
}

fn check_act(act: &str) -> Result<()> {
    Activation::from_hf("t5", act).map(|_| ())
}

fn activate(x: &Var, act: &str) -> Result<Var> {
    Activation::from_hf("t5", act)?.apply(x)
}

fn rank2(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match t.shape() {
        [b, l] => Ok((*b, *l)),
        s => Err(Error::shape(op, &[s], format!("{what} must be (B, T)"))),
    }
}

impl Attention {
    fn new(
        s: &mut ParamStore,
        prefix: &str,
        config: &T5Config,
        rng: &mut Rng,
    ) -> Result<Attention> {
        let (d, hk) = (config.d_model, config.inner_dim());
        let f = config.initializer_factor as f32;
        let dk = (d * config.d_kv) as f32;
        Ok(Attention {
            q: Linear::new(
                s,
                &join(prefix, "q"),
                d,
                hk,
                false,
                Init::Normal(f / dk.sqrt()),
                rng,
            )?,
            k: Linear::new(
                s,
                &join(prefix, "k"),
                d,
                hk,
                false,
                Init::Normal(f / (d as f32).sqrt()),
                rng,
            )?,
            v: Linear::new(
                s,
                &join(prefix, "v"),
                d,
                hk,
                false,
                Init::Normal(f / (d as f32).sqrt()),
                rng,
            )?,
            o: Linear::new(
                s,
                &join(prefix, "o"),
                hk,
                d,
                false,
                Init::Normal(f / (hk as f32).sqrt()),
                rng,
            )?,
        })
    }

    /// (K, V) of `src` (B, T, D), each (B, H, T, K).
    fn keys_values(&self, src: &Var, heads: usize) -> Result<(Var, Var)> {
        Ok((
            split_heads(&self.k.forward(src)?, heads)?,
            split_heads(&self.v.forward(src)?, heads)?,
        ))
    }

    /// o(merge(softmax(Q Kᵀ + bias + mask) V)) for queries from `x` (B, Tq, D).
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        x: &Var,
        k: &Var,
        v: &Var,
        bias: Option<&Var>,
        mask: &AttnMask,
        heads: usize,
        p: f32,
        train: &mut Train,
    ) -> Result<Var> {
        let q = split_heads(&self.q.forward(x)?, heads)?;
        let y = attend(&q, k, v, bias, mask, p, train)?;
        self.o.forward(&merge_heads(&y)?)
    }
}

impl Ffn {
    fn new(s: &mut ParamStore, prefix: &str, config: &T5Config, rng: &mut Rng) -> Result<Ffn> {
        let (d, ff) = (config.d_model, config.d_ff);
        let f = config.initializer_factor as f32;
        let wi_init = Init::Normal(f / (d as f32).sqrt());
        let wo_init = Init::Normal(f / (ff as f32).sqrt());
        Ok(if config.gated() {
            Ffn::Gated {
                wi_0: Linear::new(s, &join(prefix, "wi_0"), d, ff, false, wi_init, rng)?,
                wi_1: Linear::new(s, &join(prefix, "wi_1"), d, ff, false, wi_init, rng)?,
                wo: Linear::new(s, &join(prefix, "wo"), ff, d, false, wo_init, rng)?,
            }
        } else {
            Ffn::Plain {
                wi: Linear::new(s, &join(prefix, "wi"), d, ff, false, wi_init, rng)?,
                wo: Linear::new(s, &join(prefix, "wo"), ff, d, false, wo_init, rng)?,
            }
        })
    }

    fn forward(&self, x: &Var, act: &str, p: f32, train: &mut Train) -> Result<Var> {
        let (h, wo) = match self {
            Ffn::Plain { wi, wo } => (activate(&wi.forward(x)?, act)?, wo),
            Ffn::Gated { wi_0, wi_1, wo } => (
                activate(&wi_0.forward(x)?, act)?.mul(&wi_1.forward(x)?)?,
                wo,
            ),
        };
        wo.forward(&dropout(&h, p, train)?)
    }
}

impl Stack {
    fn new(
        s: &mut ParamStore,
        prefix: &str,
        n_layers: usize,
        is_decoder: bool,
        config: &T5Config,
        rng: &mut Rng,
    ) -> Result<Stack> {
        let d = config.d_model;
        let eps = config.layer_norm_epsilon as f32;
        let f = config.initializer_factor as f32;
        let mut blocks = Vec::with_capacity(n_layers);
        let mut rel_bias = None;
        for i in 0..n_layers {
            let p = format!("{prefix}.block.{i}.layer");
            let sa = format!("{p}.0.SelfAttention");
            let self_attn = Attention::new(s, &sa, config, rng)?;
            if i == 0 {
                rel_bias = Some(Embedding::new(
                    s,
                    &join(&sa, "relative_attention_bias"),
                    config.relative_attention_num_buckets,
                    config.num_heads,
                    Init::Normal(f / (d as f32).sqrt()),
                    rng,
                )?);
            }
            let self_ln = RmsNorm::new(s, &format!("{p}.0.layer_norm"), d, eps, rng)?;
            let (cross, ff) = if is_decoder {
                let a = Attention::new(s, &format!("{p}.1.EncDecAttention"), config, rng)?;
                let ln = RmsNorm::new(s, &format!("{p}.1.layer_norm"), d, eps, rng)?;
                (Some((a, ln)), 2)
            } else {
                (None, 1)
            };
            let ffn = Ffn::new(s, &format!("{p}.{ff}.DenseReluDense"), config, rng)?;
            let ffn_ln = RmsNorm::new(s, &format!("{p}.{ff}.layer_norm"), d, eps, rng)?;
            blocks.push(Block {
                self_attn,
                self_ln,
                cross,
                ffn,
                ffn_ln,
            });
        }
        let rel_bias = rel_bias.ok_or_else(|| Error::msg(format!("t5: {prefix} has no layers")))?;
        let final_ln = RmsNorm::new(s, &format!("{prefix}.final_layer_norm"), d, eps, rng)?;
        Ok(Stack {
            blocks,
            rel_bias,
            final_ln,
            is_decoder,
        })
    }

    /// Relative position bias (1, H, Tq, Tk) for queries at positions past..past+Tq and keys at
    /// 0..Tk: bias[h, i, j] = table[bucket(j − (i + past)), h].
    fn position_bias(&self, config: &T5Config, tq: usize, tk: usize, past: usize) -> Result<Var> {
        let ids: Vec<i64> = bucket_matrix(
            tq,
            tk,
            past,
            !self.is_decoder,
            config.relative_attention_num_buckets,
            config.relative_attention_max_distance,
        )
        .into_iter()
        .map(|b| b as i64)
        .collect();
        let ids = Tensor::from_vec(ids, &[tq, tk])?;
        // (Tq, Tk, H) → (H, Tq, Tk) → (1, H, Tq, Tk)
        self.rel_bias
            .forward(&ids)?
            .permute(&[2, 0, 1])?
            .unsqueeze(0)
    }
}

impl T5 {
    /// A randomly initialised model (HF `_init_weights`, see NOTES.md §5), lm_head tied to
    /// `shared` unless `tie_word_embeddings` is false.
    pub fn new(config: T5Config, rng: &mut Rng) -> Result<T5> {
        let tied = config.tie_word_embeddings != Some(false);
        T5::with_tied(config, tied, rng)
    }

    /// A randomly initialised model with the lm_head tied to `shared` or not.
    pub fn with_tied(config: T5Config, tied: bool, rng: &mut Rng) -> Result<T5> {
        if config.num_heads == 0 || config.d_kv == 0 || config.d_model == 0 {
            return Err(Error::msg(
                "t5: d_model, d_kv and num_heads must be positive",
            ));
        }
        if config.num_layers == 0 || config.decoder_layers() == 0 {
            return Err(Error::msg("t5: the encoder and decoder need ≥ 1 layer"));
        }
        let nb = config.relative_attention_num_buckets;
        if nb < 4 || config.relative_attention_max_distance <= nb / 2 {
            return Err(Error::msg(format!(
                "t5: relative_attention_num_buckets {nb} must be ≥ 4 and \
                 relative_attention_max_distance {} greater than num_buckets / 2",
                config.relative_attention_max_distance
            )));
        }
        check_act(&config.act_fn())?;
        let f = config.initializer_factor as f32;
        let mut store = ParamStore::new();
        let s = &mut store;
        let shared = Embedding::new(
            s,
            "shared",
            config.vocab_size,
            config.d_model,
            Init::Normal(f),
            rng,
        )?;
        let encoder = Stack::new(s, "encoder", config.num_layers, false, &config, rng)?;
        let decoder = Stack::new(s, "decoder", config.decoder_layers(), true, &config, rng)?;
        let lm_head = if tied {
            None
        } else {
            Some(Linear::new(
                s,
                "lm_head",
                config.d_model,
                config.vocab_size,
                false,
                Init::Normal(f),
                rng,
            )?)
        };
        Ok(T5 {
            config,
            store,
            tied,
            shared,
            encoder,
            decoder,
            lm_head,
        })
    }

    /// Load a Hugging Face model directory (config.json + model.safetensors). The lm_head is
    /// tied iff the checkpoint has no `lm_head.weight`.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<T5> {
        Self::from_pretrained_as(dir, DType::F32)
    }

    /// `from_pretrained` with the matrices (`weights::is_matrix`) read as `matrices`: F32, or
    /// BF16 for weight-only bf16 inference (see `Model::cast_matrices`).
    pub fn from_pretrained_as(dir: impl AsRef<Path>, matrices: DType) -> Result<T5> {
        let dir = dir.as_ref();
        let config = read_family(dir, "t5", |c| match c {
            ModelConfig::T5(c) => Some(c),
            _ => None,
        })?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let tied = !ckpt.contains("lm_head.weight");
        // Every parameter is loaded below: none is drawn first.
        let model = no_init_weights(|| T5::with_tied(config, tied, &mut Rng::new(0)))?;
        weights::load_store(&model.store, &ckpt, &|_| false, matrices)?;
        Ok(model)
    }

    /// Write config.json and model.safetensors (HF layout, loadable by transformers). The config
    /// records `tie_word_embeddings` and `scale_decoder_outputs` explicitly so that both readers
    /// agree on the output scaling.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.architectures = Some(vec!["T5ForConditionalGeneration".into()]);
        config.tie_word_embeddings = Some(self.tied);
        config.scale_decoder_outputs = Some(self.config.scale_decoder_outputs());
        config.decoder_start_token_id = self.config.decoder_start();
        ModelConfig::T5(config).save(dir.join("config.json"))?;
        weights::save_store(
            dir.join("model.safetensors"),
            &self.store,
            &|_| false,
            Default::default(),
        )
    }

    fn heads(&self) -> usize {
        self.config.num_heads
    }

    /// Run one stack over `ids` (B, T). `self_mask` is the padding mask of the stack's own keys
    /// (B, past + T); the decoder also attends over the encoder output (`cross`).
    fn run_stack(
        &self,
        stack: &Stack,
        ids: &Tensor,
        self_mask: Option<&Tensor>,
        mut cross: CrossSource,
        train: &mut Train,
    ) -> Result<T5StackOutput> {
        let op = if stack.is_decoder {
            "t5 decoder"
        } else {
            "t5 encoder"
        };
        let (b, t) = rank2(op, "ids", ids)?;
        let past = match &cross {
            CrossSource::Cached(c) => c.past_len(),
            _ => 0,
        };
        if let Some(m) = self_mask {
            if m.shape() != [b, past + t] {
                return Err(Error::shape(
                    op,
                    &[ids.shape(), m.shape()],
                    format!("attention mask must be (B, {})", past + t),
                ));
            }
        }
        if let CrossSource::Cached(c) = &mut cross {
            let n = stack.blocks.len();
            if c.self_attn.num_layers() != n {
                c.self_attn = KvCache::new(n);
            }
            if c.cross_attn.len() != n {
                c.cross_attn = vec![None; n];
            }
        }
        let h = self.heads();
        let p = self.config.dropout_rate as f32;
        let act = self.config.act_fn();
        let mut x = dropout(&self.shared.forward(ids)?, p, train)?;
        let mut hidden_states = vec![x.clone()];
        let bias = stack.position_bias(&self.config, t, past + t, past)?;
        let self_masks = AttnMask::new(
            AttentionMasks {
                causal: stack.is_decoder,
                key_padding: self_mask.cloned(),
                scale: Some(1.0),
                dropout: None,
            },
            b,
            t,
            past + t,
        )?;
        let (enc_var, enc_mask) = match &cross {
            CrossSource::Full(e, m) => (Some((*e).clone()), m.cloned()),
            CrossSource::Cached(c) => (
                Some(Var::constant(c.encoder_hidden.clone())),
                c.encoder_mask.clone(),
            ),
            CrossSource::None => (None, None),
        };
        let enc_len = enc_var.as_ref().map_or(0, |e| e.shape()[1]);
        let cross_masks = AttnMask::new(
            AttentionMasks {
                causal: false,
                key_padding: enc_mask,
                scale: Some(1.0),
                dropout: None,
            },
            b,
            t,
            enc_len,
        )?;
        for (li, blk) in stack.blocks.iter().enumerate() {
            // self-attention
            let n = blk.self_ln.forward(&x)?;
            let (k, v) = blk.self_attn.keys_values(&n, h)?;
            let (k, v) = match &mut cross {
                CrossSource::Cached(c) => c.self_attn.extend(li, &k, &v)?,
                _ => (k, v),
            };
            let y = blk
                .self_attn
                .attend(&n, &k, &v, Some(&bias), &self_masks, h, p, train)?;
            x = x.add(&dropout(&y, p, train)?)?;
            // cross-attention
            if let Some((attn, ln)) = &blk.cross {
                let enc = enc_var.as_ref().ok_or_else(|| {
                    Error::msg("t5 decoder: cross-attention needs the encoder output")
                })?;
                let (k, v) = match &mut cross {
                    CrossSource::Cached(c) => match &c.cross_attn[li] {
                        Some((k, v)) => (Var::constant(k.clone()), Var::constant(v.clone())),
                        None => {
                            let (k, v) = attn.keys_values(enc, h)?;
                            c.cross_attn[li] = Some((k.value().clone(), v.value().clone()));
                            (k, v)
                        }
                    },
                    _ => attn.keys_values(enc, h)?,
                };
                let n = ln.forward(&x)?;
                let y = attn.attend(&n, &k, &v, None, &cross_masks, h, p, train)?;
                x = x.add(&dropout(&y, p, train)?)?;
            }
            // feed-forward
            let y = blk.ffn.forward(&blk.ffn_ln.forward(&x)?, &act, p, train)?;
            x = x.add(&dropout(&y, p, train)?)?;
            if li + 1 < stack.blocks.len() {
                hidden_states.push(x.clone());
            }
        }
        let hidden = dropout(&stack.final_ln.forward(&x)?, p, train)?;
        hidden_states.push(hidden.clone());
        Ok(T5StackOutput {
            hidden,
            hidden_states,
        })
    }

    /// Encoder: ids (B, T) with padding mask (B, T) → (B, T, D).
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut train: Train,
    ) -> Result<T5StackOutput> {
        self.run_stack(
            &self.encoder,
            input_ids,
            attention_mask,
            CrossSource::None,
            &mut train,
        )
    }

    /// Decoder over the whole target prefix: `decoder_input_ids` (B, T), optional decoder padding
    /// mask (B, T) on top of the causal one, encoder output (B, S, D) with its mask (B, S).
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        encoder_hidden: &Var,
        encoder_mask: Option<&Tensor>,
        mut train: Train,
    ) -> Result<T5StackOutput> {
        let (b, _) = rank2("t5 decoder", "decoder_input_ids", decoder_input_ids)?;
        let es = encoder_hidden.shape();
        if es.len() != 3 || es[0] != b || es[2] != self.config.d_model {
            return Err(Error::shape(
                "t5 decoder",
                &[decoder_input_ids.shape(), &es],
                format!(
                    "encoder output must be (B = {b}, S, {})",
                    self.config.d_model
                ),
            ));
        }
        if let Some(m) = encoder_mask {
            if m.shape() != [b, es[1]] {
                return Err(Error::shape(
                    "t5 decoder",
                    &[&es, m.shape()],
                    "encoder attention mask must be (B, S)",
                ));
            }
        }
        self.run_stack(
            &self.decoder,
            decoder_input_ids,
            decoder_attention_mask,
            CrossSource::Full(encoder_hidden, encoder_mask),
            &mut train,
        )
    }

    /// Logits (…, V) of decoder outputs (…, D): lm_head(dec · D^-0.5) when
    /// `scale_decoder_outputs`, else lm_head(dec); the tied lm_head is `shared`.
    pub fn lm_logits(&self, dec: &Var) -> Result<Var> {
        let d = self.config.d_model;
        let h = if self.config.scale_decoder_outputs() {
            dec.mul_scalar((d as f64).powf(-0.5) as f32)?
        } else {
            dec.clone()
        };
        match &self.lm_head {
            Some(l) => l.forward(&h),
            None => {
                let s = h.shape();
                let rows = s[..s.len() - 1].iter().product();
                let logits = h
                    .reshape(&[rows, d])?
                    .matmul(&self.shared.weight.transpose(0, 1)?)?;
                let mut out = s.clone();
                *out.last_mut().expect("rank ≥ 1") = self.config.vocab_size;
                logits.reshape(&out)
            }
        }
    }

    /// Full forward pass: encoder over `input_ids` (B, S) with `attention_mask` (B, S), decoder over
    /// `decoder_input_ids` (B, T) (causal, plus `decoder_attention_mask` (B, T) if given) → logits.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        mut train: Train,
    ) -> Result<T5Output> {
        let (b, s) = rank2("t5", "input_ids", input_ids)?;
        if let Some(m) = attention_mask {
            if m.shape() != [b, s] {
                return Err(Error::shape(
                    "t5",
                    &[input_ids.shape(), m.shape()],
                    "attention_mask must match input_ids",
                ));
            }
        }
        let encoder = self.encode(input_ids, attention_mask, train.as_deref_mut())?;
        let decoder = self.decode(
            decoder_input_ids,
            decoder_attention_mask,
            &encoder.hidden,
            attention_mask,
            train,
        )?;
        let logits = self.lm_logits(&decoder.hidden)?;
        Ok(T5Output {
            logits,
            encoder,
            decoder,
        })
    }

    /// The decoder start id (config's, defaulting to the pad id).
    pub fn decoder_start(&self) -> Result<i64> {
        self.config.decoder_start().map(i64::from).ok_or_else(|| {
            Error::msg("t5: config has neither decoder_start_token_id nor pad_token_id")
        })
    }

    /// Seq2seq loss as T5ForConditionalGeneration: decoder inputs = shift_tokens_right(labels, pad,
    /// decoder_start); loss = mean CE(logits, labels) over labels ≠ −100 (no shift).
    /// Returns the forward output and the loss.
    pub fn loss(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: &Tensor,
        train: Train,
    ) -> Result<(T5Output, Var)> {
        rank2("t5 loss", "labels", labels)?;
        let pad = self.config.pad_token_id.map(i64::from).ok_or_else(|| {
            Error::msg("t5 loss: config has no pad_token_id to replace -100 in decoder inputs")
        })?;
        let dec_ids = shift_tokens_right(labels, pad, self.decoder_start()?)?;
        let out = self.forward(input_ids, attention_mask, &dec_ids, None, train)?;
        let loss = out.logits.cross_entropy(labels, -100, 0.0)?;
        Ok((out, loss))
    }

    /// Start incremental decoding: encode `input_ids` (B, S) once (without gradients).
    pub fn start_cache(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<T5Cache> {
        let enc = no_grad(|| self.encode(input_ids, attention_mask, None))?;
        let hidden = enc.hidden.value().clone();
        Ok(T5Cache::new(hidden, attention_mask.cloned()))
    }

    /// One incremental decoder step without gradients: `ids` (B, t) are the next decoder tokens
    /// (positions past..past+t); `decoder_attention_mask`, if given, is (B, past + t). Appends their
    /// keys/values to the cache and returns the logits (B, t, V).
    pub fn decode_step(
        &self,
        ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        cache: &mut T5Cache,
    ) -> Result<Tensor> {
        let (b, _) = rank2("t5 decode_step", "ids", ids)?;
        let es = cache.encoder_hidden.shape();
        if es.len() != 3 || es[0] != b {
            return Err(Error::shape(
                "t5 decode_step",
                &[ids.shape(), es],
                "the cache's encoder output must be (B, S, D) with the ids' batch size",
            ));
        }
        no_grad(|| {
            let out = self.run_stack(
                &self.decoder,
                ids,
                decoder_attention_mask,
                CrossSource::Cached(cache),
                &mut None,
            )?;
            Ok(self.lm_logits(&out.hidden)?.value().clone())
        })
    }

    /// Greedy decoding with the KV cache (HF `generate(do_sample=False, num_beams=1)` without
    /// logits processors): sequences start with the decoder start id; each step appends the
    /// argmax (first index on ties) of the last position's logits; a row that emits EOS is
    /// finished and gets pad afterwards; stops after `max_new_tokens` or when every row is done.
    pub fn generate_greedy(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        max_new_tokens: usize,
    ) -> Result<Vec<Vec<i64>>> {
        Ok(self
            .generate_greedy_with_scores(input_ids, attention_mask, max_new_tokens)?
            .0)
    }

    /// `generate_greedy`, also returning each step's logits (B, V) (HF's `scores`).
    pub fn generate_greedy_with_scores(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        max_new_tokens: usize,
    ) -> Result<(Vec<Vec<i64>>, Vec<Tensor>)> {
        let (b, _) = rank2("t5 generate", "input_ids", input_ids)?;
        let start = self.decoder_start()?;
        let eos = self.config.eos_token_id.clone();
        // HF uses eos as pad when the config has no pad id
        let pad = self
            .config
            .pad_token_id
            .or_else(|| eos.as_ref().and_then(|e| e.first()))
            .map(i64::from);
        let v = self.config.vocab_size;
        let mut cache = self.start_cache(input_ids, attention_mask)?;
        let mut seqs = vec![vec![start]; b];
        let mut done = vec![false; b];
        let mut scores = Vec::with_capacity(max_new_tokens);
        let mut input = Tensor::from_vec(vec![start; b], &[b, 1])?;
        for _ in 0..max_new_tokens {
            let logits = self.decode_step(&input, None, &mut cache)?;
            let t = logits.shape()[1];
            let last = logits.narrow(1, t - 1, 1)?.contiguous()?.reshape(&[b, v])?;
            let (_, arg) = last.max_dims_with_arg(&[-1], false)?;
            let mut next = Vec::with_capacity(b);
            for r in 0..b {
                let tok = if done[r] {
                    pad.ok_or_else(|| Error::msg("t5 generate: no pad_token_id or eos_token_id"))?
                } else {
                    arg[r] as i64
                };
                if let Some(e) = &eos {
                    if tok >= 0 && e.contains(tok as u32) {
                        done[r] = true;
                    }
                }
                seqs[r].push(tok);
                next.push(tok);
            }
            scores.push(last);
            if done.iter().all(|&d| d) {
                break;
            }
            input = Tensor::from_vec(next, &[b, 1])?;
        }
        Ok((seqs, scores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_position_buckets_match_the_spec_vectors() {
        let rel = [
            -200i64, -128, -64, -32, -16, -9, -8, -7, -1, 0, 1, 7, 8, 9, 12, 16, 32, 64, 100, 127,
            128,
        ];
        let want = [
            15usize, 15, 14, 12, 10, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 28, 30, 31, 31, 31,
        ];
        let got: Vec<usize> = rel
            .iter()
            .map(|&r| relative_position_bucket(r, true, 32, 128))
            .collect();
        assert_eq!(got, want, "bidirectional");
        let rel = [-200i64, -128, -100, -64, -32, -16, -8, -1, 0, 5];
        let want = [31usize, 31, 30, 26, 21, 16, 8, 1, 0, 0];
        let got: Vec<usize> = rel
            .iter()
            .map(|&r| relative_position_bucket(r, false, 32, 128))
            .collect();
        assert_eq!(got, want, "unidirectional");
    }

    #[test]
    fn rejects_degenerate_configs() {
        let mut c = T5Config::tiny();
        c.relative_attention_num_buckets = 2;
        assert!(T5::new(c, &mut Rng::new(0)).is_err());
        let mut c = T5Config::tiny();
        c.feed_forward_proj = "gated-tanhh".into();
        assert!(T5::new(c, &mut Rng::new(0)).is_err());
    }
}
