//! Token shards on disk: the pretext format ([`format`]), its streaming writer, and a
//! memory-mapped reader that also opens llm.c and nanoGPT token files.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{width_for_vocab, Header};
pub use reader::{Expect, Kind, Shard, ShardFormat};
pub use writer::ShardWriter;
