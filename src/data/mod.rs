//! The data layer: tokenizers, token shards, and batches — below the tensor module
//! (batches are plain `Vec<u32>` with a shape).
//!
//! - [`tokenizer`]: character-level, trained byte-level BPE, Hugging Face `tokenizer.json`;
//!   special tokens; save/load next to corpora and checkpoints.
//! - [`prepare`]: text → token shards, streaming, parallel, atomic (`pretext prepare`).
//! - [`shard`]: the shard format, its writer, and a memory-mapped reader (also llm.c
//!   and nanoGPT token files).
//! - [`stream`], [`corpus`]: several shards as one corpus; the corpus folder and `meta.json`.
//! - [`sampler`]: random-window batches (nanoGPT) and epoch-ordered batches, seeded.
//! - [`rng`]: the seeded RNG of this layer; [`synth`]: synthetic text for benchmarks.

pub mod corpus;
pub mod fsutil;
pub mod hash;
pub mod prepare;
pub mod rng;
pub mod sampler;
pub mod shard;
pub mod stream;
pub mod synth;
pub mod tokenizer;

pub use corpus::{Corpus, CorpusMeta};
pub use prepare::{prepare, Input, PrepareOptions, PrepareReport, StreamSource, TokenizerSpec};
pub use rng::SplitMix64;
pub use sampler::{EpochBatcher, EpochOrder, RandomWindows, TokenBatch};
pub use shard::{Expect, Shard, ShardFormat};
pub use stream::TokenStream;
pub use tokenizer::{Role, SpecialSpec, SpecialTokens, Tokenizer};
