//! `pretext prepare INPUT --tokenizer SPEC --out DIR`: tokenize a text file, a folder
//! of text files, a JSONL file or stdin (`-`) into a corpus folder of token shards.

use std::path::PathBuf;

use clap::{Args as ClapArgs, ValueEnum};

use crate::data::prepare::{self, Input, PrepareOptions, StreamSource, TokenizerSpec};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Text file and folder by what they are; `.jsonl` / `.ndjson` files as JSONL.
    Auto,
    Text,
    Dir,
    Jsonl,
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A text file, a folder of text files, a JSONL file, or `-` for stdin.
    pub input: PathBuf,
    /// `char`, `bpe:VOCAB_SIZE` (train a byte-level BPE), or the path of a
    /// tokenizer.json or tokenizer folder.
    #[arg(long)]
    pub tokenizer: String,
    /// Output corpus folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of the input held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed of the document split.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Special tokens, e.g. `pad,unk,cls,sep,mask` or `bos=<|endoftext|>,eos=<|endoftext|>`
    /// (default: none for char, <|endoftext|> as bos/eos for bpe, those found in a file).
    #[arg(long)]
    pub specials: Option<String>,
    /// Number of T5 sentinels <extra_id_i> (ids descending from the end of the vocabulary).
    #[arg(long, default_value_t = 0)]
    pub sentinels: usize,
    /// Append the EOS token after every document.
    #[arg(long)]
    pub append_eos: bool,
    /// Most tokens per shard.
    #[arg(long, default_value_t = prepare::DEFAULT_SHARD_TOKENS)]
    pub shard_tokens: u64,
    /// MiB of input a `bpe:N` tokenizer is trained on.
    #[arg(long, default_value_t = prepare::DEFAULT_BPE_SAMPLE_BYTES >> 20)]
    pub bpe_sample_mib: u64,
    /// Replace an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn input_of(path: &std::path::Path, format: InputFormat, text_field: &str) -> Result<Input> {
    if path.as_os_str() == "-" {
        return Ok(Input::Stream(StreamSource {
            name: "stdin".into(),
            size_hint: None,
            reopenable: false,
            open: Box::new(|| Ok(Box::new(std::io::stdin()))),
        }));
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "input not found"),
        ));
    }
    let jsonl = || Input::Jsonl {
        path: path.to_path_buf(),
        field: text_field.to_string(),
    };
    Ok(match format {
        InputFormat::Text => Input::TextFile(path.to_path_buf()),
        InputFormat::Dir => Input::Dir(path.to_path_buf()),
        InputFormat::Jsonl => jsonl(),
        InputFormat::Auto if path.is_dir() => Input::Dir(path.to_path_buf()),
        InputFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => jsonl(),
            _ => Input::TextFile(path.to_path_buf()),
        },
    })
}

pub fn run(args: Args) -> Result<()> {
    let input = input_of(&args.input, args.format, &args.text_field)?;
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::parse(&args.tokenizer)?,
        specials: args.specials,
        sentinels: args.sentinels,
        val_fraction: args.val_fraction,
        seed: args.seed,
        append_eos: args.append_eos,
        shard_tokens: args.shard_tokens,
        bpe_sample_bytes: args.bpe_sample_mib << 20,
        progress: !args.quiet,
        overwrite: args.force,
    };
    let r = prepare::prepare(&input, &args.out, &opts)?;
    let m = &r.meta;
    let secs = r.tokenizer_seconds + r.encode_seconds;
    eprintln!(
        "prepared {} ({} MB) in {:.1} s ({:.1} MB/s tokenizing) -> {}",
        m.source.input,
        r.bytes as f64 / 1e6,
        secs,
        r.bytes as f64 / 1e6 / r.encode_seconds.max(1e-9),
        args.out.display()
    );
    eprintln!(
        "tokenizer: {} vocab {} (fingerprint {}); train {} tokens / {} documents; val {} tokens / {} documents",
        m.tokenizer.kind,
        m.tokenizer.vocab_size,
        m.tokenizer.fingerprint,
        m.splits["train"].tokens,
        m.splits["train"].documents,
        m.splits["val"].tokens,
        m.splits["val"].documents
    );
    Ok(())
}
