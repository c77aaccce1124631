//! BERT (encoder-only, post-LN), with Hugging Face's parameter names and numerics:
//!   h₀ = LN(word[ids] + position[t] + token_type[tt])          (LN eps 1e-12)
//!   per layer: a = LN(x + dense(MHA(x)));  x = LN(a + dense(gelu(intermediate(a))))
//!   pooled = tanh(pooler(h[:, 0]))
//! Heads: MLM (dense → gelu → LN → decoder tied to the word embeddings + bias), NSP
//! (Linear(H, 2) on pooled), sequence classification (Linear on pooled) and token
//! classification (Linear on every position).

use std::path::Path;

use crate::autograd::{ParamStore, Var};
use crate::error::{Error, Result};
use crate::nn::{
    dropout, join, no_init_weights, Activation, AttnMask, Embedding, Init, KvMode, LayerNorm,
    Linear, MhaNames, MultiHeadAttention, Train,
};
use crate::tensor::{AttentionMasks, DType, Rng, Tensor};

use super::checkpoint::Checkpoint;
use super::config::{read_family, BertConfig, ModelConfig};
use super::weights;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BertHead {
    /// BertModel: encoder and pooler, no head (parameters without the `bert.` prefix).
    Base,
    /// BertForPreTraining: MLM + NSP.
    PreTraining,
    /// BertForMaskedLM: MLM only, no pooler.
    MaskedLm,
    /// BertForSequenceClassification with this many labels.
    SequenceClassification(usize),
    /// BertForTokenClassification with this many labels (no pooler).
    TokenClassification(usize),
}

impl BertHead {
    fn prefix(self) -> &'static str {
        if self == BertHead::Base {
            ""
        } else {
            "bert"
        }
    }
    fn has_pooler(self) -> bool {
        !matches!(self, BertHead::MaskedLm | BertHead::TokenClassification(_))
    }
    fn architecture(self) -> &'static str {
        match self {
            BertHead::Base => "BertModel",
            BertHead::PreTraining => "BertForPreTraining",
            BertHead::MaskedLm => "BertForMaskedLM",
            BertHead::SequenceClassification(_) => "BertForSequenceClassification",
            BertHead::TokenClassification(_) => "BertForTokenClassification",
        }
    }
}

struct Layer {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_ln: LayerNorm,
}

struct MlmHead {
    dense: Linear,
    ln: LayerNorm,
    bias: Var,
}

pub struct Bert {
    pub config: BertConfig,
    pub head: BertHead,
    pub store: ParamStore,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    mlm: Option<MlmHead>,
    nsp: Option<Linear>,
    classifier: Option<Linear>,
}

pub struct BertOutput {
    /// Last layer's hidden states (B, T, H).
    pub hidden: Var,
    /// HF's `hidden_states`: embeddings output, then each layer's output.
    pub hidden_states: Vec<Var>,
    /// tanh(pooler(h[:, 0])) (B, H), when the model has a pooler.
    pub pooled: Option<Var>,
}

impl Bert {
    /// Randomly initialised as HF's `_init_weights`: N(0, initializer_range) for Linear and
    /// Embedding weights, zero biases, LayerNorm 1/0.
    pub fn new(config: BertConfig, head: BertHead, rng: &mut Rng) -> Result<Bert> {
        let h = config.hidden_size;
        if config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            return Err(Error::msg(format!(
                "bert: hidden_size {h} is not divisible by num_attention_heads {}",
                config.num_attention_heads
            )));
        }
        let init = Init::Normal(config.initializer_range as f32);
        let eps = config.layer_norm_eps as f32;
        let p = head.prefix();
        let mut store = ParamStore::new();
        let s = &mut store;
        let e = join(p, "embeddings");
        let mut word = Embedding::new(
            s,
            &join(&e, "word_embeddings"),
            config.vocab_size,
            h,
            init,
            rng,
        )?;
        word.padding_idx = config.pad_token_id.map(|i| i as usize);
        let position = Embedding::new(
            s,
            &join(&e, "position_embeddings"),
            config.max_position_embeddings,
            h,
            init,
            rng,
        )?;
        let token_type = Embedding::new(
            s,
            &join(&e, "token_type_embeddings"),
            config.type_vocab_size,
            h,
            init,
            rng,
        )?;
        let emb_ln = LayerNorm::new(s, &join(&e, "LayerNorm"), h, true, true, eps, rng)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = join(p, &format!("encoder.layer.{i}"));
            let names = MhaNames {
                q: &join(&l, "attention.self.query"),
                k: &join(&l, "attention.self.key"),
                v: &join(&l, "attention.self.value"),
                o: &join(&l, "attention.output.dense"),
            };
            layers.push(Layer {
                attn: MultiHeadAttention::new(
                    s,
                    names,
                    h,
                    h,
                    config.num_attention_heads,
                    true,
                    init,
                    rng,
                )?,
                attn_ln: LayerNorm::new(
                    s,
                    &join(&l, "attention.output.LayerNorm"),
                    h,
                    true,
                    true,
                    eps,
                    rng,
                )?,
                intermediate: Linear::new(
                    s,
                    &join(&l, "intermediate.dense"),
                    h,
                    config.intermediate_size,
                    true,
                    init,
                    rng,
                )?,
                output: Linear::new(
                    s,
                    &join(&l, "output.dense"),
                    config.intermediate_size,
                    h,
                    true,
                    init,
                    rng,
                )?,
                output_ln: LayerNorm::new(
                    s,
                    &join(&l, "output.LayerNorm"),
                    h,
                    true,
                    true,
                    eps,
                    rng,
                )?,
            });
        }
        let pooler = if head.has_pooler() {
            Some(Linear::new(
                s,
                &join(p, "pooler.dense"),
                h,
                h,
                true,
                init,
                rng,
            )?)
        } else {
            None
        };
        let mlm = if matches!(head, BertHead::PreTraining | BertHead::MaskedLm) {
            Some(MlmHead {
                dense: Linear::new(s, "cls.predictions.transform.dense", h, h, true, init, rng)?,
                ln: LayerNorm::new(
                    s,
                    "cls.predictions.transform.LayerNorm",
                    h,
                    true,
                    true,
                    eps,
                    rng,
                )?,
                bias: s.add("cls.predictions.bias", Tensor::zeros(&[config.vocab_size]))?,
            })
        } else {
            None
        };
        let nsp = if head == BertHead::PreTraining {
            Some(Linear::new(
                s,
                "cls.seq_relationship",
                h,
                2,
                true,
                init,
                rng,
            )?)
        } else {
            None
        };
        let classifier = match head {
            BertHead::SequenceClassification(n) | BertHead::TokenClassification(n) => {
                Some(Linear::new(s, "classifier", h, n, true, init, rng)?)
            }
            _ => None,
        };
        Ok(Bert {
            config,
            head,
            store,
            word,
            position,
            token_type,
            emb_ln,
            layers,
            pooler,
            mlm,
            nsp,
            classifier,
        })
    }

    /// The head a checkpoint holds, from its tensor names.
    fn detect_head(ckpt: &Checkpoint, config: &BertConfig) -> BertHead {
        if ckpt.contains("cls.seq_relationship.weight") {
            BertHead::PreTraining
        } else if ckpt.contains("cls.predictions.bias") {
            BertHead::MaskedLm
        } else if ckpt.contains("classifier.weight") {
            if ckpt.contains("bert.pooler.dense.weight") {
                BertHead::SequenceClassification(config.num_labels())
            } else {
                BertHead::TokenClassification(config.num_labels())
            }
        } else {
            BertHead::Base
        }
    }

    /// Load a Hugging Face model directory (config.json + model.safetensors); the head is the
    /// one the checkpoint holds.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Bert> {
        Self::from_pretrained_as(dir, DType::F32)
    }

    /// `from_pretrained` with the matrices (`weights::is_matrix`) read as `matrices`: F32, or
    /// BF16 for weight-only bf16 inference (see `Model::cast_matrices`).
    pub fn from_pretrained_as(dir: impl AsRef<Path>, matrices: DType) -> Result<Bert> {
        let dir = dir.as_ref();
        let config = read_family(dir, "bert", |c| match c {
            ModelConfig::Bert(c) => Some(c),
            _ => None,
        })?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let head = Bert::detect_head(&ckpt, &config);
        // Every parameter is loaded below: none is drawn first.
        let model = no_init_weights(|| Bert::new(config, head, &mut Rng::new(0)))?;
        weights::load_store(&model.store, &ckpt, &|_| false, matrices)?;
        Ok(model)
    }

    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.architectures = Some(vec![self.head.architecture().into()]);
        ModelConfig::Bert(config).save(dir.join("config.json"))?;
        weights::save_store(
            dir.join("model.safetensors"),
            &self.store,
            &|_| false,
            Default::default(),
        )
    }

    /// Encoder forward. ids, token_type_ids, attention_mask: (B, T) integers.
    pub fn forward(
        &self,
        ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        mut train: Train,
    ) -> Result<BertOutput> {
        let t = match ids.shape() {
            [_, t] => *t,
            s => return Err(Error::shape("bert", &[s], "ids must be (B, T)")),
        };
        if t > self.config.max_position_embeddings {
            return Err(Error::shape(
                "bert",
                &[ids.shape()],
                format!(
                    "{t} positions exceed max_position_embeddings {}",
                    self.config.max_position_embeddings
                ),
            ));
        }
        let tt = match token_type_ids {
            Some(tt) if tt.shape() != ids.shape() => {
                return Err(Error::shape(
                    "bert",
                    &[ids.shape(), tt.shape()],
                    "token_type_ids must match ids",
                ))
            }
            Some(tt) => tt.clone(),
            None => Tensor::from_vec(vec![0i64; ids.numel()], ids.shape())?,
        };
        let pos = Tensor::arange_i64(0, t as i64);
        let e = self
            .word
            .forward(ids)?
            .add(&self.token_type.forward(&tt)?)?
            .add(&self.position.forward(&pos)?)?;
        let p = self.config.hidden_dropout_prob as f32;
        let mut x = dropout(&self.emb_ln.forward(&e)?, p, &mut train)?;
        let mut hidden_states = vec![x.clone()];
        let p_attn = self.config.attention_probs_dropout_prob as f32;
        let masks = AttnMask::new(
            AttentionMasks {
                causal: false,
                key_padding: attention_mask.cloned(),
                scale: None,
                dropout: None,
            },
            ids.shape()[0],
            t,
            t,
        )?;
        for l in &self.layers {
            let a = l
                .attn
                .forward(&x, &x, None, &masks, KvMode::None, p_attn, &mut train)?;
            let a = l.attn_ln.forward(&x.add(&dropout(&a, p, &mut train)?)?)?;
            let f = l.intermediate.forward(&a)?;
            let f = Activation::from_hf("bert", &self.config.hidden_act)?.apply(&f)?;
            let f = l.output.forward(&f)?;
            x = l.output_ln.forward(&a.add(&dropout(&f, p, &mut train)?)?)?;
            hidden_states.push(x.clone());
        }
        let pooled = match &self.pooler {
            Some(pooler) => {
                let b = ids.shape()[0];
                let first = x.narrow(1, 0, 1)?.reshape(&[b, self.config.hidden_size])?;
                Some(pooler.forward(&first)?.tanh()?)
            }
            None => None,
        };
        Ok(BertOutput {
            hidden: x,
            hidden_states,
            pooled,
        })
    }

    /// MLM logits (B, T, V) = LN(gelu(dense h)) · wordᵀ + bias.
    pub fn mlm_logits(&self, hidden: &Var) -> Result<Var> {
        let m = self
            .mlm
            .as_ref()
            .ok_or_else(|| Error::msg("bert: this model has no MLM head"))?;
        let z = m.ln.forward(&m.dense.forward(hidden)?.gelu()?)?;
        let s = z.shape();
        let h = self.config.hidden_size;
        let rows: usize = s[..2].iter().product();
        let logits = z
            .reshape(&[rows, h])?
            .matmul(&self.word.weight.transpose(0, 1)?)?
            .add(&m.bias)?;
        logits.reshape(&[s[0], s[1], self.config.vocab_size])
    }

    /// NSP logits (B, 2) from the pooled output.
    pub fn nsp_logits(&self, pooled: &Var) -> Result<Var> {
        self.nsp
            .as_ref()
            .ok_or_else(|| Error::msg("bert: this model has no NSP head"))?
            .forward(pooled)
    }

    /// Classifier logits: (B, C) on the pooled output for sequence classification, (B, T, C)
    /// on every position for token classification (with the classifier dropout before it).
    pub fn classifier_logits(&self, out: &BertOutput, mut train: Train) -> Result<Var> {
        let c = self
            .classifier
            .as_ref()
            .ok_or_else(|| Error::msg("bert: this model has no classifier"))?;
        let p = self
            .config
            .classifier_dropout
            .unwrap_or(self.config.hidden_dropout_prob) as f32;
        let input = match self.head {
            BertHead::SequenceClassification(_) => out
                .pooled
                .as_ref()
                .ok_or_else(|| Error::msg("bert: no pooler"))?,
            _ => &out.hidden,
        };
        c.forward(&dropout(input, p, &mut train)?)
    }

    /// BERT's pre-training loss: mean MLM cross-entropy over positions whose label is not −100,
    /// plus NSP cross-entropy. Returns (mlm_logits, nsp_logits, mlm_loss, nsp_loss, total).
    #[allow(clippy::too_many_arguments)]
    pub fn pretraining_loss(
        &self,
        ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        mlm_labels: &Tensor,
        nsp_labels: &Tensor,
        train: Train,
    ) -> Result<(Var, Var, Var, Var, Var)> {
        let out = self.forward(ids, token_type_ids, attention_mask, train)?;
        let mlm_logits = self.mlm_logits(&out.hidden)?;
        let pooled = out
            .pooled
            .as_ref()
            .ok_or_else(|| Error::msg("bert: no pooler"))?;
        let nsp_logits = self.nsp_logits(pooled)?;
        let mlm_loss = mlm_logits.cross_entropy(mlm_labels, -100, 0.0)?;
        let nsp_loss = nsp_logits.cross_entropy(nsp_labels, -100, 0.0)?;
        let total = mlm_loss.add(&nsp_loss)?;
        Ok((mlm_logits, nsp_logits, mlm_loss, nsp_loss, total))
    }
}
