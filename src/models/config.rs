//! Hugging Face `config.json` for the four model families (BERT, GPT-2, T5, BART).
//!
//! Each config struct holds the fields pretext uses, with HF's names and HF's defaults (transformers
//! 5.23 `configuration_<family>.py`), plus `architectures` and an `extra` map that keeps every other key
//! (`transformers_version`, `id2label`, `summary_*`, ...) so that reading and writing a file preserves it.
//! Fields are read one by one so that a bad value is reported with its field name and file.
//! [`ModelConfig`] dispatches on `model_type`. Presets (`tiny` / `small` / `base`, nanoGPT shapes)
//! give configs for training from scratch; callers set `vocab_size` to match their tokenizer.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// `eos_token_id` and friends: HF allows one id or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    /// The first id (the one used to pad finished rows when the list has several).
    pub fn first(&self) -> Option<u32> {
        match self {
            TokenIds::One(id) => Some(*id),
            TokenIds::Many(ids) => ids.first().copied(),
        }
    }
    /// Whether `id` is one of the ids.
    pub fn contains(&self, id: u32) -> bool {
        match self {
            TokenIds::One(x) => *x == id,
            TokenIds::Many(ids) => ids.contains(&id),
        }
    }
}

/// Read `key` from `map` (removing it) as a `T`; absent means `default`. A value of the wrong type is
/// an error naming the field and the file.
fn take<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
    default: T,
    path: &Path,
) -> Result<T> {
    match map.remove(key) {
        None => Ok(default),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::format(path, key, format!("value {v} is not valid: {e}"))),
    }
}

fn put<T: Serialize>(map: &mut Map<String, Value>, key: &str, value: &T) -> Result<()> {
    let v = serde_json::to_value(value)
        .map_err(|e| Error::msg(format!("config field `{key}`: {e}")))?;
    map.insert(key.to_string(), v);
    Ok(())
}

/// Declares a config struct with HF field names and defaults, its `Default`, and its JSON map
/// reader / writer. `extra` holds every key that is not a declared field.
macro_rules! hf_config {
    (
        $(#[$meta:meta])*
        $name:ident, $model_type:literal,
        { $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// HF `architectures` (e.g. `["BertForPreTraining"]`); written only when set.
            pub architectures: Option<Vec<String>>,
            /// Every other key of the file, kept verbatim for the round trip.
            pub extra: Map<String, Value>,
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* architectures: None, extra: Map::new() }
            }
        }

        impl $name {
            /// The HF `model_type` of this family.
            pub const MODEL_TYPE: &'static str = $model_type;

            /// Build from a parsed `config.json` object; `path` names the file in errors.
            /// A `model_type` key, if present, must be this family's.
            pub fn from_json_map(mut map: Map<String, Value>, path: &Path) -> Result<Self> {
                if let Some(mt) = map.remove("model_type") {
                    if mt.as_str() != Some($model_type) {
                        return Err(Error::format(
                            path,
                            "model_type",
                            format!("expected \"{}\", found {mt}", $model_type),
                        ));
                    }
                }
                let d = Self::default();
                Ok(Self {
                    $( $field: take(&mut map, stringify!($field), d.$field, path)?, )*
                    architectures: take(&mut map, "architectures", None, path)?,
                    extra: map,
                })
            }

            /// The declared fields, `architectures`, `model_type` and `extra` as a JSON object.
            fn fields_to_json(&self) -> Result<Map<String, Value>> {
                let mut m = self.extra.clone();
                $( put(&mut m, stringify!($field), &self.$field)?; )*
                if let Some(a) = &self.architectures {
                    put(&mut m, "architectures", a)?;
                }
                m.insert("model_type".into(), Value::String($model_type.into()));
                Ok(m)
            }
        }
    };
}

/// Number of classification labels as HF derives it: `num_labels` if written, else `len(id2label)`,
/// else `default` (2 for most models, 3 for BART).
fn num_labels_from(extra: &Map<String, Value>, default: usize) -> usize {
    if let Some(n) = extra.get("num_labels").and_then(Value::as_u64) {
        return n as usize;
    }
    match extra.get("id2label").and_then(Value::as_object) {
        Some(m) => m.len(),
        None => default,
    }
}

/// Set `id2label` / `label2id` to `LABEL_0..LABEL_{n-1}`, as HF does for `num_labels = n`.
fn set_num_labels(extra: &mut Map<String, Value>, n: usize) {
    let mut id2label = Map::new();
    let mut label2id = Map::new();
    for i in 0..n {
        id2label.insert(i.to_string(), Value::String(format!("LABEL_{i}")));
        label2id.insert(format!("LABEL_{i}"), Value::from(i));
    }
    extra.remove("num_labels");
    extra.insert("id2label".into(), Value::Object(id2label));
    extra.insert("label2id".into(), Value::Object(label2id));
}

hf_config!(
    /// `BertConfig` (bert-base-uncased defaults).
    BertConfig, "bert",
    {
        vocab_size: usize = 30522,
        hidden_size: usize = 768,
        num_hidden_layers: usize = 12,
        num_attention_heads: usize = 12,
        intermediate_size: usize = 3072,
        /// "gelu" is the exact erf form.
        hidden_act: String = "gelu".into(),
        hidden_dropout_prob: f64 = 0.1,
        attention_probs_dropout_prob: f64 = 0.1,
        max_position_embeddings: usize = 512,
        type_vocab_size: usize = 2,
        initializer_range: f64 = 0.02,
        layer_norm_eps: f64 = 1e-12,
        /// Also the `padding_idx` of `word_embeddings` (no gradient into that row from lookups).
        pad_token_id: Option<u32> = Some(0),
        bos_token_id: Option<u32> = None,
        eos_token_id: Option<TokenIds> = None,
        /// Dropout before the classifier; `None` means `hidden_dropout_prob`.
        classifier_dropout: Option<f64> = None,
        is_decoder: bool = false,
        tie_word_embeddings: bool = true,
    }
);

hf_config!(
    /// `GPT2Config` (gpt2 124M defaults). `hidden_size` = `n_embd`, `num_hidden_layers` = `n_layer`.
    Gpt2Config, "gpt2",
    {
        vocab_size: usize = 50257,
        n_positions: usize = 1024,
        n_embd: usize = 768,
        n_layer: usize = 12,
        n_head: usize = 12,
        /// MLP width; `None` means 4 * n_embd.
        n_inner: Option<usize> = None,
        /// "gelu_new" is the tanh form; nanoGPT uses "gelu" (exact erf).
        activation_function: String = "gelu_new".into(),
        resid_pdrop: f64 = 0.1,
        embd_pdrop: f64 = 0.1,
        attn_pdrop: f64 = 0.1,
        layer_norm_epsilon: f64 = 1e-5,
        initializer_range: f64 = 0.02,
        /// Scores are multiplied by head_dim^-0.5 when true.
        scale_attn_weights: bool = true,
        /// Scores are further divided by (layer_idx + 1) when true.
        scale_attn_by_inverse_layer_idx: bool = false,
        reorder_and_upcast_attn: bool = false,
        bos_token_id: Option<u32> = Some(50256),
        eos_token_id: Option<TokenIds> = Some(TokenIds::One(50256)),
        /// Needed by GPT2ForSequenceClassification to find the last non-pad token.
        pad_token_id: Option<u32> = None,
        tie_word_embeddings: bool = true,
    }
);

hf_config!(
    /// `T5Config` (t5-small defaults).
    T5Config, "t5",
    {
        vocab_size: usize = 32128,
        d_model: usize = 512,
        d_kv: usize = 64,
        d_ff: usize = 2048,
        num_layers: usize = 6,
        /// `None` means `num_layers`.
        num_decoder_layers: Option<usize> = None,
        num_heads: usize = 8,
        relative_attention_num_buckets: usize = 32,
        relative_attention_max_distance: usize = 128,
        dropout_rate: f64 = 0.1,
        layer_norm_epsilon: f64 = 1e-6,
        initializer_factor: f64 = 1.0,
        /// "relu" (original T5) or "gated-<act>" (v1.1: "gated-gelu").
        feed_forward_proj: String = "relu".into(),
        /// Written by transformers 5.x; `None` means derived from `feed_forward_proj`.
        dense_act_fn: Option<String> = None,
        /// Written by transformers 5.x; `None` means derived from `feed_forward_proj`.
        is_gated_act: Option<bool> = None,
        is_encoder_decoder: bool = true,
        pad_token_id: Option<u32> = Some(0),
        eos_token_id: Option<TokenIds> = Some(TokenIds::One(1)),
        /// Checkpoints set it to the pad id (0); `None` means `pad_token_id`.
        decoder_start_token_id: Option<u32> = None,
        /// HF 4.x: false for v1.1 (untied lm_head, no output scaling). `None` means true.
        tie_word_embeddings: Option<bool> = None,
        /// transformers 5.x: whether logits use `dec_out * d_model^-0.5`; wins over `tie_word_embeddings`.
        scale_decoder_outputs: Option<bool> = None,
    }
);

hf_config!(
    /// `BartConfig` (bart-large defaults, as HF's class).
    BartConfig, "bart",
    {
        vocab_size: usize = 50265,
        max_position_embeddings: usize = 1024,
        d_model: usize = 1024,
        encoder_layers: usize = 12,
        encoder_ffn_dim: usize = 4096,
        encoder_attention_heads: usize = 16,
        decoder_layers: usize = 12,
        decoder_ffn_dim: usize = 4096,
        decoder_attention_heads: usize = 16,
        encoder_layerdrop: f64 = 0.0,
        decoder_layerdrop: f64 = 0.0,
        /// "gelu" is the exact erf form.
        activation_function: String = "gelu".into(),
        dropout: f64 = 0.1,
        attention_dropout: f64 = 0.0,
        activation_dropout: f64 = 0.0,
        init_std: f64 = 0.02,
        classifier_dropout: f64 = 0.0,
        /// Token embeddings are multiplied by sqrt(d_model) when true.
        scale_embedding: bool = false,
        /// Also the `padding_idx` of `shared` (no gradient into that row from lookups).
        pad_token_id: Option<u32> = Some(1),
        bos_token_id: Option<u32> = Some(0),
        eos_token_id: Option<TokenIds> = Some(TokenIds::One(2)),
        decoder_start_token_id: Option<u32> = Some(2),
        /// Generation forces this token at the last step when max_length is reached.
        forced_eos_token_id: Option<TokenIds> = Some(TokenIds::One(2)),
        is_encoder_decoder: bool = true,
        tie_word_embeddings: bool = true,
    }
);

impl BertConfig {
    /// The `config.json` object (keys sorted, `model_type` included).
    pub fn to_json_map(&self) -> Result<Map<String, Value>> {
        self.fields_to_json()
    }
    /// Classification labels (`len(id2label)`, default 2).
    pub fn num_labels(&self) -> usize {
        num_labels_from(&self.extra, 2)
    }
    pub fn set_num_labels(&mut self, n: usize) {
        set_num_labels(&mut self.extra, n)
    }
    /// head_dim = hidden_size / num_attention_heads.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// 2 layers, width 128, 2 heads, MLP 512 (Google's BERT-Tiny shape).
    pub fn tiny() -> Self {
        Self {
            hidden_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 512,
            ..Self::default()
        }
    }
    /// 4 layers, width 512, 8 heads, MLP 2048 (Google's BERT-Small shape).
    pub fn small() -> Self {
        Self {
            hidden_size: 512,
            num_hidden_layers: 4,
            num_attention_heads: 8,
            intermediate_size: 2048,
            ..Self::default()
        }
    }
    /// bert-base: 12 layers, width 768, 12 heads, MLP 3072.
    pub fn base() -> Self {
        Self::default()
    }
}

impl Gpt2Config {
    /// The `config.json` object (keys sorted, `model_type` included).
    pub fn to_json_map(&self) -> Result<Map<String, Value>> {
        self.fields_to_json()
    }
    /// MLP width: `n_inner` or 4 * n_embd.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }
    pub fn num_labels(&self) -> usize {
        num_labels_from(&self.extra, 2)
    }
    pub fn set_num_labels(&mut self, n: usize) {
        set_num_labels(&mut self.extra, n)
    }
    /// Whether Linear layers and LayerNorms have biases. HF GPT-2 always has them; the pretext
    /// extension key `"bias": false` (nanoGPT's `bias=False`) removes them.
    pub fn bias(&self) -> bool {
        self.extra
            .get("bias")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
    pub fn set_bias(&mut self, bias: bool) {
        if bias {
            self.extra.remove("bias");
        } else {
            self.extra.insert("bias".into(), Value::Bool(false));
        }
    }

    /// 2 layers, width 128, 4 heads, 256 positions.
    pub fn tiny() -> Self {
        Self {
            n_layer: 2,
            n_embd: 128,
            n_head: 4,
            n_positions: 256,
            ..Self::default()
        }
    }
    /// 6 layers, width 384, 6 heads, 512 positions.
    pub fn small() -> Self {
        Self {
            n_layer: 6,
            n_embd: 384,
            n_head: 6,
            n_positions: 512,
            ..Self::default()
        }
    }
    /// GPT-2 124M (gpt2): 12 layers, width 768, 12 heads, 1024 positions, vocab 50257.
    pub fn base() -> Self {
        Self::default()
    }
    /// Same as [`Gpt2Config::base`].
    pub fn gpt2_124m() -> Self {
        Self::default()
    }
    /// nanoGPT shakespeare_char, CPU recipe: vocab 65, block 64, 4 layers, 4 heads, width 128,
    /// dropout 0, exact GELU, no biases, LayerNorm eps 1e-5, tied embeddings.
    pub fn shakespeare_char_cpu() -> Self {
        Self::nanogpt(65, 64, 4, 4, 128, 0.0)
    }
    /// nanoGPT shakespeare_char, GPU recipe: vocab 65, block 256, 6 layers, 6 heads, width 384,
    /// dropout 0.2, exact GELU, no biases.
    pub fn shakespeare_char_gpu() -> Self {
        Self::nanogpt(65, 256, 6, 6, 384, 0.2)
    }
    fn nanogpt(
        vocab: usize,
        block: usize,
        layers: usize,
        heads: usize,
        width: usize,
        dropout: f64,
    ) -> Self {
        let mut c = Self {
            vocab_size: vocab,
            n_positions: block,
            n_layer: layers,
            n_head: heads,
            n_embd: width,
            activation_function: "gelu".into(),
            resid_pdrop: dropout,
            embd_pdrop: dropout,
            attn_pdrop: dropout,
            bos_token_id: None,
            eos_token_id: None,
            ..Self::default()
        };
        c.set_bias(false);
        c
    }
}

impl T5Config {
    /// The `config.json` object (keys sorted, `model_type` included). The derived fields
    /// `dense_act_fn`, `is_gated_act`, `scale_decoder_outputs`, `tie_word_embeddings` and
    /// `decoder_start_token_id` are written with their effective values, never `null`: transformers
    /// 5.x would take a `null` literally (no output scaling, no activation, no decoder start).
    pub fn to_json_map(&self) -> Result<Map<String, Value>> {
        let mut m = self.fields_to_json()?;
        put(&mut m, "dense_act_fn", &self.act_fn())?;
        put(&mut m, "is_gated_act", &self.gated())?;
        put(
            &mut m,
            "scale_decoder_outputs",
            &self.scale_decoder_outputs(),
        )?;
        put(
            &mut m,
            "tie_word_embeddings",
            &self.tie_word_embeddings.unwrap_or(true),
        )?;
        if let Some(start) = self.decoder_start() {
            put(&mut m, "decoder_start_token_id", &start)?;
        }
        Ok(m)
    }
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }
    /// Whether the FFN is gated (`wi_0`, `wi_1`): `is_gated_act` if written, else
    /// `feed_forward_proj` starts with "gated-".
    pub fn gated(&self) -> bool {
        self.is_gated_act
            .unwrap_or_else(|| self.feed_forward_proj.starts_with("gated-"))
    }
    /// FFN activation: `dense_act_fn` if written, else the last part of `feed_forward_proj`, with
    /// "gated-gelu" meaning "gelu_new" (the tanh form), as HF does.
    pub fn act_fn(&self) -> String {
        if let Some(a) = &self.dense_act_fn {
            return a.clone();
        }
        if self.feed_forward_proj == "gated-gelu" {
            return "gelu_new".into();
        }
        self.feed_forward_proj
            .rsplit('-')
            .next()
            .unwrap_or("relu")
            .to_string()
    }
    /// Whether logits are computed from `dec_out * d_model^-0.5`: `scale_decoder_outputs` if written
    /// (transformers 5.x), else `tie_word_embeddings != false` (HF 4.x rule).
    pub fn scale_decoder_outputs(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings != Some(false))
    }
    /// decoder_start_token_id, defaulting to the pad id.
    pub fn decoder_start(&self) -> Option<u32> {
        self.decoder_start_token_id.or(self.pad_token_id)
    }
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }
    /// A check of `feed_forward_proj` as HF's `validate_architecture`: "act" or "gated-act".
    pub fn validate(&self, path: &Path) -> Result<()> {
        let parts: Vec<&str> = self.feed_forward_proj.split('-').collect();
        if parts.len() > 2 || (parts.len() == 2 && parts[0] != "gated") {
            return Err(Error::format(
                path,
                "feed_forward_proj",
                format!(
                    "`{}` is not \"<act>\" or \"gated-<act>\"",
                    self.feed_forward_proj
                ),
            ));
        }
        Ok(())
    }

    /// d_model 128, 4 heads of 32, d_ff 512, 2+2 layers, relu FFN.
    pub fn tiny() -> Self {
        Self {
            d_model: 128,
            d_kv: 32,
            num_heads: 4,
            d_ff: 512,
            num_layers: 2,
            decoder_start_token_id: Some(0),
            ..Self::default()
        }
    }
    /// t5-small: d_model 512, 8 heads of 64, d_ff 2048, 6+6 layers, relu FFN.
    pub fn small() -> Self {
        Self {
            decoder_start_token_id: Some(0),
            ..Self::default()
        }
    }
    /// t5-base: d_model 768, 12 heads of 64, d_ff 3072, 12+12 layers, relu FFN.
    pub fn base() -> Self {
        Self {
            d_model: 768,
            num_heads: 12,
            d_ff: 3072,
            num_layers: 12,
            decoder_start_token_id: Some(0),
            ..Self::default()
        }
    }
    /// Turn this config into the v1.1 variant: gated-gelu FFN, untied lm_head, no output scaling.
    pub fn into_v1_1(mut self) -> Self {
        self.feed_forward_proj = "gated-gelu".into();
        self.dense_act_fn = None;
        self.is_gated_act = None;
        self.tie_word_embeddings = Some(false);
        self.scale_decoder_outputs = Some(false);
        self
    }
}

impl BartConfig {
    /// The `config.json` object (keys sorted, `model_type` included).
    pub fn to_json_map(&self) -> Result<Map<String, Value>> {
        self.fields_to_json()
    }
    pub fn num_labels(&self) -> usize {
        num_labels_from(&self.extra, 3)
    }
    pub fn set_num_labels(&mut self, n: usize) {
        set_num_labels(&mut self.extra, n)
    }
    /// sqrt(d_model) when `scale_embedding`, else 1.
    pub fn embed_scale(&self) -> f64 {
        if self.scale_embedding {
            (self.d_model as f64).sqrt()
        } else {
            1.0
        }
    }
    /// Learned position table rows: max_position_embeddings + 2 (positions are looked up at t + 2).
    pub fn position_rows(&self) -> usize {
        self.max_position_embeddings + 2
    }

    /// d_model 128, 2+2 layers, 4 heads, FFN 512, 256 positions.
    pub fn tiny() -> Self {
        Self::shape(128, 2, 4, 512, 256)
    }
    /// d_model 512, 4+4 layers, 8 heads, FFN 2048, 1024 positions.
    pub fn small() -> Self {
        Self::shape(512, 4, 8, 2048, 1024)
    }
    /// bart-base: d_model 768, 6+6 layers, 12 heads, FFN 3072, 1024 positions.
    pub fn base() -> Self {
        Self::shape(768, 6, 12, 3072, 1024)
    }
    fn shape(d: usize, layers: usize, heads: usize, ffn: usize, positions: usize) -> Self {
        Self {
            d_model: d,
            encoder_layers: layers,
            decoder_layers: layers,
            encoder_attention_heads: heads,
            decoder_attention_heads: heads,
            encoder_ffn_dim: ffn,
            decoder_ffn_dim: ffn,
            max_position_embeddings: positions,
            ..Self::default()
        }
    }
}

/// A config of any supported family, chosen by `model_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Bert(BertConfig),
    Gpt2(Gpt2Config),
    T5(T5Config),
    Bart(BartConfig),
}

/// The `model_type` values pretext implements.
pub const SUPPORTED_MODEL_TYPES: [&str; 4] = ["bert", "gpt2", "t5", "bart"];

impl ModelConfig {
    /// Read a `config.json` (or a directory holding one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let mut path: PathBuf = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("config.json");
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_json_str(&text, &path)
    }

    /// Parse `config.json` text; `path` names the file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::format(path, "<json>", e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(Error::format(
                path,
                "<json>",
                "the top level is not an object",
            ));
        };
        let model_type = match map.get("model_type") {
            None => {
                return Err(Error::format(
                    path,
                    "model_type",
                    format!(
                        "missing; pretext supports {}",
                        SUPPORTED_MODEL_TYPES.join(", ")
                    ),
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(Error::format(
                    path,
                    "model_type",
                    format!("{other} is not a string"),
                ))
            }
        };
        match model_type.as_str() {
            "bert" => Ok(ModelConfig::Bert(BertConfig::from_json_map(map, path)?)),
            "gpt2" => Ok(ModelConfig::Gpt2(Gpt2Config::from_json_map(map, path)?)),
            "t5" => {
                let c = T5Config::from_json_map(map, path)?;
                c.validate(path)?;
                Ok(ModelConfig::T5(c))
            }
            "bart" => Ok(ModelConfig::Bart(BartConfig::from_json_map(map, path)?)),
            other => Err(Error::format(
                path,
                "model_type",
                format!(
                    "unknown architecture \"{other}\"; pretext supports {}",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            )),
        }
    }

    pub fn model_type(&self) -> &'static str {
        match self {
            ModelConfig::Bert(_) => BertConfig::MODEL_TYPE,
            ModelConfig::Gpt2(_) => Gpt2Config::MODEL_TYPE,
            ModelConfig::T5(_) => T5Config::MODEL_TYPE,
            ModelConfig::Bart(_) => BartConfig::MODEL_TYPE,
        }
    }

    pub fn architectures(&self) -> Option<&[String]> {
        match self {
            ModelConfig::Bert(c) => c.architectures.as_deref(),
            ModelConfig::Gpt2(c) => c.architectures.as_deref(),
            ModelConfig::T5(c) => c.architectures.as_deref(),
            ModelConfig::Bart(c) => c.architectures.as_deref(),
        }
    }

    pub fn to_json_map(&self) -> Result<Map<String, Value>> {
        match self {
            ModelConfig::Bert(c) => c.to_json_map(),
            ModelConfig::Gpt2(c) => c.to_json_map(),
            ModelConfig::T5(c) => c.to_json_map(),
            ModelConfig::Bart(c) => c.to_json_map(),
        }
    }

    /// Pretty JSON with sorted keys, as `save_pretrained` writes it.
    pub fn to_json_string(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(&Value::Object(self.to_json_map()?))
            .map_err(|e| Error::msg(format!("config serialisation: {e}")))?;
        s.push('\n');
        Ok(s)
    }

    /// Write `config.json` atomically (temp file in the same directory, then rename). A directory
    /// path gets `config.json` appended.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("config.json");
        }
        write_atomic(&path, self.to_json_string()?.as_bytes())
    }
}

/// Write `bytes` to `path` through `<path>.tmp.<pid>` and a rename, so readers never see a partial file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::msg(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Read `dir/config.json` and take it as one family's config (`pick`), or an error naming the
/// file and the `model_type` found when it is another family's.
pub fn read_family<T>(dir: &Path, want: &str, pick: fn(ModelConfig) -> Option<T>) -> Result<T> {
    let path = dir.join("config.json");
    let config = ModelConfig::from_file(&path)?;
    let found = config.model_type();
    pick(config).ok_or_else(|| {
        Error::format(
            &path,
            "model_type",
            format!("expected \"{want}\", found \"{found}\""),
        )
    })
}
