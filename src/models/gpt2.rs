//! GPT-2 (decoder-only, pre-LN), with Hugging Face's parameter names and numerics:
//!   x₀ = wte[ids] + wpe[past + t]
//!   per block: x = x + c_proj(MHA_causal(ln_1 x));  x = x + mlp.c_proj(act(mlp.c_fc(ln_2 x)))
//!   h = ln_f(x);  logits = h · wteᵀ (tied lm_head)
//! HF stores the four Conv1D weights as (in, out); pretext keeps (out, in) Linear layout and
//! transposes them on load and save. nanoGPT's variant (no biases, exact GELU) is the same
//! model with `bias = false` and `activation_function = "gelu"`.

use std::path::Path;

use crate::autograd::{ParamStore, Var};
use crate::error::{Error, Result};
use crate::nn::attention::{merge_heads, split_heads, KvCache};
use crate::nn::{
    attend, dropout, join, no_init_weights, Activation, AttnMask, Embedding, Init, LayerNorm,
    Linear, Train,
};
use crate::tensor::{AttentionMasks, DType, Rng, Tensor};

use super::checkpoint::Checkpoint;
use super::config::{read_family, Gpt2Config, ModelConfig};
use super::weights;

/// Which head sits on the transformer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gpt2Head {
    /// GPT2LMHeadModel: logits over the vocabulary (tied to wte).
    Lm,
    /// GPT2ForSequenceClassification: `score` (labels, C) pooled at the last non-pad token.
    SequenceClassification(usize),
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    pub config: Gpt2Config,
    pub head: Gpt2Head,
    pub store: ParamStore,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    score: Option<Linear>,
}

/// Hidden states of one forward pass.
pub struct Gpt2Output {
    /// Final hidden states after ln_f, (B, T, C).
    pub hidden: Var,
    /// HF's `hidden_states`: the embeddings, then each block's output, the last one after ln_f.
    pub hidden_states: Vec<Var>,
}

/// Names of the Conv1D weights HF stores as (in, out).
fn is_conv1d(name: &str) -> bool {
    name.ends_with("attn.c_attn.weight")
        || name.ends_with("attn.c_proj.weight")
        || name.ends_with("mlp.c_fc.weight")
        || name.ends_with("mlp.c_proj.weight")
}

impl Gpt2 {
    /// A randomly initialised model (HF's `_init_weights`: N(0, initializer_range), residual
    /// projections `c_proj` N(0, initializer_range/√(2·n_layer)), biases 0, LayerNorm 1/0).
    pub fn new(config: Gpt2Config, head: Gpt2Head, rng: &mut Rng) -> Result<Gpt2> {
        let c = config.n_embd;
        if config.n_head == 0 || !c.is_multiple_of(config.n_head) {
            return Err(Error::msg(format!(
                "gpt2: n_embd {c} is not divisible by n_head {}",
                config.n_head
            )));
        }
        let std = config.initializer_range as f32;
        let proj_std = std / (2.0 * config.n_layer as f32).sqrt();
        let bias = config.bias();
        let eps = config.layer_norm_epsilon as f32;
        let inner = config.n_inner.unwrap_or(4 * c);
        let mut store = ParamStore::new();
        let s = &mut store;
        let wte = Embedding::new(
            s,
            "transformer.wte",
            config.vocab_size,
            c,
            Init::Normal(std),
            rng,
        )?;
        let wpe = Embedding::new(
            s,
            "transformer.wpe",
            config.n_positions,
            c,
            Init::Normal(std),
            rng,
        )?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("transformer.h.{i}");
            blocks.push(Block {
                ln_1: LayerNorm::new(s, &join(&p, "ln_1"), c, true, bias, eps, rng)?,
                c_attn: Linear::new(
                    s,
                    &join(&p, "attn.c_attn"),
                    c,
                    3 * c,
                    bias,
                    Init::Normal(std),
                    rng,
                )?,
                c_proj: Linear::new(
                    s,
                    &join(&p, "attn.c_proj"),
                    c,
                    c,
                    bias,
                    Init::Normal(proj_std),
                    rng,
                )?,
                ln_2: LayerNorm::new(s, &join(&p, "ln_2"), c, true, bias, eps, rng)?,
                c_fc: Linear::new(
                    s,
                    &join(&p, "mlp.c_fc"),
                    c,
                    inner,
                    bias,
                    Init::Normal(std),
                    rng,
                )?,
                mlp_proj: Linear::new(
                    s,
                    &join(&p, "mlp.c_proj"),
                    inner,
                    c,
                    bias,
                    Init::Normal(proj_std),
                    rng,
                )?,
            });
        }
        let ln_f = LayerNorm::new(s, "transformer.ln_f", c, true, bias, eps, rng)?;
        let score = match head {
            Gpt2Head::Lm => None,
            Gpt2Head::SequenceClassification(n) => Some(Linear::new(
                s,
                "score",
                c,
                n,
                false,
                Init::Normal(std),
                rng,
            )?),
        };
        Ok(Gpt2 {
            config,
            head,
            store,
            wte,
            wpe,
            blocks,
            ln_f,
            score,
        })
    }

    /// Load a Hugging Face model directory (config.json + model.safetensors).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Gpt2> {
        Self::from_pretrained_as(dir, DType::F32)
    }

    /// `from_pretrained` with the matrices (`weights::is_matrix`) read as `matrices`: F32, or
    /// BF16 for weight-only bf16 inference (see `Model::cast_matrices`).
    pub fn from_pretrained_as(dir: impl AsRef<Path>, matrices: DType) -> Result<Gpt2> {
        let dir = dir.as_ref();
        let config = read_family(dir, "gpt2", |c| match c {
            ModelConfig::Gpt2(c) => Some(c),
            _ => None,
        })?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let head = if ckpt.contains("score.weight") {
            Gpt2Head::SequenceClassification(config.num_labels())
        } else {
            Gpt2Head::Lm
        };
        // Every parameter is loaded below: none is drawn first.
        let model = no_init_weights(|| Gpt2::new(config, head, &mut Rng::new(0)))?;
        weights::load_store(&model.store, &ckpt, &is_conv1d, matrices)?;
        Ok(model)
    }

    /// Write config.json and model.safetensors (HF layout, loadable by transformers).
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.architectures = Some(vec![match self.head {
            Gpt2Head::Lm => "GPT2LMHeadModel".into(),
            Gpt2Head::SequenceClassification(_) => "GPT2ForSequenceClassification".into(),
        }]);
        ModelConfig::Gpt2(config).save(dir.join("config.json"))?;
        weights::save_store(
            dir.join("model.safetensors"),
            &self.store,
            &is_conv1d,
            Default::default(),
        )
    }

    /// Transformer forward: ids (B, T) → hidden states. `attention_mask` (B, past + T) marks
    /// real (1) and padding (0) keys; `cache` holds the keys/values of earlier positions.
    pub fn forward(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        mut train: Train,
    ) -> Result<Gpt2Output> {
        let (b, t) = match ids.shape() {
            [b, t] => (*b, *t),
            s => return Err(Error::shape("gpt2", &[s], "ids must be (B, T)")),
        };
        let past = cache.as_ref().map_or(0, |c| c.past_len());
        if past + t > self.config.n_positions {
            return Err(Error::shape(
                "gpt2",
                &[ids.shape()],
                format!(
                    "{} positions exceed n_positions {}",
                    past + t,
                    self.config.n_positions
                ),
            ));
        }
        if let Some(m) = attention_mask {
            if m.shape() != [b, past + t] {
                return Err(Error::shape(
                    "gpt2",
                    &[ids.shape(), m.shape()],
                    format!("attention_mask must be (B, {})", past + t),
                ));
            }
        }
        if let Some(c) = cache.as_deref_mut() {
            if c.num_layers() != self.blocks.len() {
                *c = KvCache::new(self.blocks.len());
            }
        }
        let pos = Tensor::arange_i64(past as i64, (past + t) as i64);
        let mut x = self.wte.forward(ids)?.add(&self.wpe.forward(&pos)?)?;
        let p_drop = self.config.embd_pdrop as f32;
        x = dropout(&x, p_drop, &mut train)?;
        let mut hidden_states = vec![x.clone()];
        let c = self.config.n_embd;
        let h = self.config.n_head;
        let head_dim = c / h;
        let p_attn = self.config.attn_pdrop as f32;
        let masks = AttnMask::new(
            AttentionMasks {
                causal: true,
                key_padding: attention_mask.cloned(),
                scale: None,
                dropout: None,
            },
            ids.shape()[0],
            ids.shape()[1],
            past + ids.shape()[1],
        )?;
        for (li, blk) in self.blocks.iter().enumerate() {
            // attention: q | k | v = split(c_attn(ln_1 x)) along features
            let a = blk.c_attn.forward(&blk.ln_1.forward(&x)?)?;
            let q = split_heads(&a.narrow(-1, 0, c)?, h)?;
            let k = split_heads(&a.narrow(-1, c, c)?, h)?;
            let v = split_heads(&a.narrow(-1, 2 * c, c)?, h)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => cache.extend(li, &k, &v)?,
                None => (k, v),
            };
            let mut scale = if self.config.scale_attn_weights {
                1.0 / (head_dim as f32).sqrt()
            } else {
                1.0
            };
            if self.config.scale_attn_by_inverse_layer_idx {
                scale /= (li + 1) as f32;
            }
            let masks = masks.with_scale(scale);
            let y = merge_heads(&attend(&q, &k, &v, None, &masks, p_attn, &mut train)?)?;
            let y = blk.c_proj.forward(&y)?;
            let p = self.config.resid_pdrop as f32;
            let y = dropout(&y, p, &mut train)?;
            x = x.add(&y)?;
            // MLP
            let m = blk.c_fc.forward(&blk.ln_2.forward(&x)?)?;
            let m = Activation::from_hf("gpt2", &self.config.activation_function)?.apply(&m)?;
            let m = blk.mlp_proj.forward(&m)?;
            let m = dropout(&m, p, &mut train)?;
            x = x.add(&m)?;
            if li + 1 < self.blocks.len() {
                hidden_states.push(x.clone());
            }
        }
        let hidden = self.ln_f.forward(&x)?;
        hidden_states.push(hidden.clone());
        Ok(Gpt2Output {
            hidden,
            hidden_states,
        })
    }

    /// LM logits (B, T, V) = hidden · wteᵀ.
    pub fn lm_logits(&self, hidden: &Var) -> Result<Var> {
        let s = hidden.shape();
        let c = self.config.n_embd;
        let rows = s[..s.len() - 1].iter().product();
        let logits = hidden
            .reshape(&[rows, c])?
            .matmul(&self.wte.weight.transpose(0, 1)?)?;
        let mut out = s.clone();
        *out.last_mut().expect("rank 3") = self.config.vocab_size;
        logits.reshape(&out)
    }

    /// Causal LM loss as GPT2LMHeadModel: logits of positions 0..T−1 predict labels 1..T
    /// (labels = input ids, −100 where no loss applies). Returns (logits, loss).
    pub fn lm_loss(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: &Tensor,
        train: Train,
    ) -> Result<(Var, Var)> {
        if labels.shape() != ids.shape() {
            return Err(Error::shape(
                "gpt2 lm_loss",
                &[ids.shape(), labels.shape()],
                "labels must match ids",
            ));
        }
        let out = self.forward(ids, attention_mask, None, train)?;
        let logits = self.lm_logits(&out.hidden)?;
        let t = ids.shape()[1];
        let loss = if t < 2 {
            return Err(Error::shape(
                "gpt2 lm_loss",
                &[ids.shape()],
                "need at least 2 positions to shift",
            ));
        } else {
            logits.narrow(1, 0, t - 1)?.cross_entropy(
                &labels.narrow(1, 1, t - 1)?.contiguous()?,
                -100,
                0.0,
            )?
        };
        Ok((logits, loss))
    }

    /// Sequence-classification logits (B, labels), pooled at each row's last non-pad token
    /// (`argmax_t t·[ids ≠ pad]`, transformers 5 rule; without a pad id, the last position).
    pub fn classify(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: Train,
    ) -> Result<Var> {
        let score = self
            .score
            .as_ref()
            .ok_or_else(|| Error::msg("gpt2: this model has no sequence-classification head"))?;
        let out = self.forward(ids, attention_mask, None, train)?;
        let token_logits = score.forward(&out.hidden)?; // (B, T, L)
        let (b, t) = (ids.shape()[0], ids.shape()[1]);
        let labels = token_logits.shape()[2];
        let idv = ids.indices("gpt2 classify")?;
        let pooled_pos: Vec<i64> = (0..b)
            .map(|r| match self.config.pad_token_id {
                Some(pad) => (0..t)
                    .filter(|&j| idv[r * t + j] != pad as usize)
                    .max()
                    .unwrap_or(0) as i64,
                None => (t - 1) as i64,
            })
            .collect();
        if self.config.pad_token_id.is_none() && b != 1 {
            return Err(Error::msg("gpt2 classify: without pad_token_id only batch size 1 is defined (as in transformers)"));
        }
        let index: Vec<i64> = pooled_pos
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, labels))
            .collect();
        let index = Tensor::from_vec(index, &[b, 1, labels])?;
        token_logits.gather(1, &index)?.reshape(&[b, labels])
    }
}
