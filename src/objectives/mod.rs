//! Pre-training objectives as pure, seeded batch builders on token ids (no tensors, no
//! models): each turns examples (token windows with sentence boundaries, or sentence
//! pairs) into a [`Batch`] of inputs, attention masks and labels (−100 where no loss
//! applies), and names its [`Loss`].
//!
//! | objective | model | batch | loss |
//! |---|---|---|---|
//! | [`clm`] | GPT-2 | `x`, labels `x` (model shifts) | `mean −log p(x_{t+1} \| x_≤t)` |
//! | [`mlm`] | BERT | 15% selected, 80/10/10 | `mean_{t∈S} −log p(x_t \| x̃)` |
//! | [`nsp`] (`mlm_nsp`) | BERT | `[CLS] A [SEP] B [SEP]`, segments | `L_mlm + L_nsp` |
//! | [`span`] | T5 | sentinel-spanned inputs / targets | `mean −log p(y_t \| y_<t, x̃)` |
//! | [`denoise`] | BART | permuted + span-infilled source | `mean −log p(y_t \| y_<t, x̃)` |
//!
//! [`finetune`] holds the fine-tuning label masks (completion-only, token
//! classification). Every random choice comes from the one [`Rng`] passed in, so the
//! same seed gives the same batch. [`Sampler`] draws examples from a
//! [`TokenStream`](crate::data::TokenStream).

pub mod batch;
pub mod clm;
pub mod denoise;
pub mod example;
pub mod finetune;
pub mod inspect;
pub mod mlm;
pub mod nsp;
pub mod random;
pub mod sampler;
pub mod span;
pub mod tokens;
pub mod words;

pub use batch::{shift_right, Batch, Loss, LossPosition, IGNORE};
pub use clm::Clm;
pub use denoise::{Denoise, DenoiseConfig, Noised};
pub use example::{Example, Pair, Window};
pub use inspect::render_row;
pub use mlm::{Mlm, MlmConfig};
pub use nsp::{create_instances_from_document, truncate_seq_pair, MlmNsp, SentenceSource};
pub use sampler::Sampler;
pub use span::{compute_input_and_target_lengths, SpanConfig, SpanCorruption};
pub use tokens::ObjectiveTokens;
pub use words::{WordRule, WordTable};

use crate::data::TokenStream;
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// The names [`Objective::from_name`] accepts.
pub const NAMES: [&str; 5] = ["clm", "mlm", "mlm_nsp", "span", "denoise"];

/// One pre-training objective, configured.
#[derive(Clone, Debug)]
pub enum Objective {
    Clm(Clm),
    Mlm(Mlm),
    MlmNsp(MlmNsp),
    Span(SpanCorruption),
    Denoise(Denoise),
}

impl Objective {
    /// An objective with its reference defaults for model length `seq`:
    /// `clm`, `mlm` (token level, `[CLS] w [SEP]`), `mlm_nsp`, `span` (d = 0.15, μ = 3),
    /// `denoise` (30%, λ = 3, all sentences permuted).
    pub fn from_name(name: &str, seq: usize, tokens: &ObjectiveTokens) -> Result<Self> {
        Ok(match name {
            "clm" => Objective::Clm(Clm::new(seq, tokens)?),
            "mlm" => Objective::Mlm(Mlm::new(MlmConfig::new(seq), tokens)?),
            "mlm_nsp" => Objective::MlmNsp(MlmNsp::new(MlmConfig::new(seq), tokens)?),
            "span" => Objective::Span(SpanCorruption::new(SpanConfig::new(seq), tokens)?),
            "denoise" => Objective::Denoise(Denoise::new(DenoiseConfig::new(seq), tokens)?),
            other => {
                return Err(Error::msg(format!(
                    "unknown objective `{other}` (expected one of {})",
                    NAMES.join(", ")
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::Clm(_) => "clm",
            Objective::Mlm(_) => "mlm",
            Objective::MlmNsp(_) => "mlm_nsp",
            Objective::Span(_) => "span",
            Objective::Denoise(_) => "denoise",
        }
    }

    pub fn loss(&self) -> Loss {
        match self {
            Objective::Clm(_) => Loss::CausalLm,
            Objective::Mlm(_) => Loss::MaskedLm,
            Objective::MlmNsp(_) => Loss::MaskedLmNsp,
            Objective::Span(_) | Objective::Denoise(_) => Loss::Seq2Seq,
        }
    }

    /// Encoder (or decoder-only) row length.
    pub fn seq(&self) -> usize {
        match self {
            Objective::Clm(o) => o.seq(),
            Objective::Mlm(o) => o.config().seq,
            Objective::MlmNsp(o) => o.seq(),
            Objective::Span(o) => o.config().seq,
            Objective::Denoise(o) => o.config().seq,
        }
    }

    /// Label row length (`dec_seq` of the batches): T5's target length, else `seq`.
    pub fn dec_seq(&self) -> usize {
        match self {
            Objective::Span(o) => o.target_len(),
            _ => self.seq(),
        }
    }

    pub fn build(&self, examples: &[Example], rng: &mut Rng) -> Result<Batch> {
        match self {
            Objective::Clm(o) => o.build(examples, rng),
            Objective::Mlm(o) => o.build(examples, rng),
            Objective::MlmNsp(o) => o.build(examples, rng),
            Objective::Span(o) => o.build(examples, rng),
            Objective::Denoise(o) => o.build(examples, rng),
        }
    }

    /// The sampler this objective's examples come from.
    pub fn sampler(&self, stream: &TokenStream) -> Result<Sampler> {
        match self {
            Objective::Clm(o) => Sampler::windows(stream, o.window_len()),
            Objective::Mlm(o) => Sampler::windows(stream, o.window_len()),
            Objective::MlmNsp(o) => Sampler::pairs(stream, o.seq(), o.short_seq_prob),
            Objective::Span(o) => Sampler::windows(stream, o.window_len()),
            Objective::Denoise(o) => Sampler::sentences(stream, o.window_len()),
        }
    }

    /// Draw `batch` examples with `sampler` and build them (one RNG for both).
    pub fn next_batch(
        &self,
        sampler: &mut Sampler,
        stream: &TokenStream,
        batch: usize,
        rng: &mut Rng,
    ) -> Result<Batch> {
        let examples = sampler.sample(stream, rng, batch)?;
        self.build(&examples, rng)
    }
}
