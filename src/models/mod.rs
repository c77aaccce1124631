//! Model families on top of the tensor core: BERT, GPT-2, T5, BART.
//!
//! `config` reads and writes Hugging Face `config.json`; `checkpoint` reads and writes safetensors
//! as named raw f32 arrays. Both are free of tensor-core types so that they build on their own.
//! The parity facts the model code must reproduce are in `tests/fixtures/hf/NOTES.md`.

pub mod checkpoint;
pub mod config;

pub use checkpoint::{Checkpoint, RawTensor};
pub use config::{BartConfig, BertConfig, Gpt2Config, ModelConfig, T5Config, TokenIds};
pub mod bart;
pub mod bert;
pub mod gpt2;
pub mod shift;
pub mod weights;

pub use bart::{Bart, BartCache, BartOutput};
pub use bert::{Bert, BertHead, BertOutput};
pub use gpt2::{Gpt2, Gpt2Head};
pub use shift::shift_tokens_right;
