//! Text generation: next-token choice from logits (greedy, temperature, top-k, top-p) and
//! the decoding loops with the KV cache.

pub mod decode;
pub mod sampling;

pub use decode::{generate, Generated};
pub use sampling::{sample_next, SamplingConfig};
