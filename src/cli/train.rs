//! `pretext train`: pre-train a model with its objective on a corpus, then print a sample.
//! With no `--data`, it trains a small character-level GPT on text embedded in the binary.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

use crate::backend::cpu::gemm::MatmulPrecision;
use crate::data::prepare::{self, Input, PrepareOptions, TokenizerSpec};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::generate::{generate, SamplingConfig};
use crate::train::runner::{train, RunOptions};
use crate::train::{builtin, checkpoint, presets, TrainConfig};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Model family: gpt, bert, t5 or bart.
    #[arg(long, default_value = "gpt")]
    pub arch: String,
    /// Objective (default: the family's own: clm, mlm_nsp, span, denoise).
    #[arg(long)]
    pub objective: Option<String>,
    /// A corpus folder from `pretext prepare`, or a text file / folder of text files, which is
    /// prepared into RUN_DIR/corpus first (character-level unless --tokenizer says otherwise).
    /// Default: the documentation embedded in the binary.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tokenizer for raw text given to --data: char, bpe:VOCAB_SIZE or a tokenizer.json.
    #[arg(long, default_value = "char")]
    pub tokenizer: String,
    /// Model and hyper-parameter preset (gpt: tiny, nanogpt-shakespeare-cpu, nanogpt-shakespeare, gpt2-124m).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Run folder: checkpoint/, metrics.jsonl, loss.svg.
    #[arg(long, default_value = "runs/default")]
    pub out: PathBuf,
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tokens per example (GPT block size).
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate (the minimum is a tenth of it unless --min-lr).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub min_lr: Option<f32>,
    #[arg(long)]
    pub warmup: Option<u64>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    #[arg(long)]
    pub grad_clip: Option<f32>,
    #[arg(long)]
    pub dropout: Option<f32>,
    #[arg(long)]
    pub eval_interval: Option<u64>,
    #[arg(long)]
    pub eval_iters: Option<usize>,
    /// Checkpoint every N steps (always at the end and on Ctrl-C).
    #[arg(long)]
    pub ckpt_interval: Option<u64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads for the kernels (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matrix products in f32 ("highest"), with each operand as two bf16 values and three bf16
    /// products ("high": about 16 significant bits, on AMX tiles; f32 elsewhere), or with bf16
    /// operands and f32 accumulation ("medium": AMX tiles or vdpbf16ps where the CPU has
    /// them), like PyTorch's torch.set_float32_matmul_precision. Weights, optimizer state and
    /// gradients stay f32.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(MatmulPrecision::NAMES))]
    pub matmul_precision: Option<String>,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Characters/tokens of the sample printed at the end (0: none).
    #[arg(long, default_value_t = 300)]
    pub sample_tokens: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Stop after this many steps of this invocation, writing a checkpoint (for testing resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

/// Runs `f` on a worker thread of a pool of `threads` workers (default: one per core), each
/// pinned to a CPU of its own (`backend::cpu::threads`). The kernels' parallel loops then
/// start from inside the pool; called from the main thread, each loop would be handed to the
/// pool and waited for (a futex wake-up and sleep per loop, ~7% of a small model's step in a
/// profile).
pub fn in_pool<R: Send>(threads: Option<usize>, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    crate::backend::cpu::threads::pool(threads)?.install(f)
}

/// Refuse a device this build or machine cannot use, before any work.
pub fn check_device(device: &str) -> Result<()> {
    match device {
        "cpu" => Ok(()),
        "cuda" => {
            // Fails fast, without touching the GPU path, when no driver can be loaded.
            crate::backend::cuda::device::driver_present()?;
            Err(Error::Device {
                op: "train",
                msg: "a CUDA driver is present, but training runs on the CPU tensor engine in this \
                      version (the CUDA kernels run through `pretext cuda-check` and the kernel tests); \
                      use --device cpu"
                    .into(),
            })
        }
        other => Err(Error::msg(format!(
            "unknown device \"{other}\"; expected cpu or cuda"
        ))),
    }
}

fn apply_overrides(c: &mut TrainConfig, a: &Args) {
    if let Some(o) = &a.objective {
        c.objective = o.clone();
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { c.$field = v; } )* };
    }
    set!(
        steps,
        batch_size,
        seq_len,
        grad_accum,
        min_lr,
        warmup,
        weight_decay,
        grad_clip,
        dropout,
        eval_interval,
        eval_iters,
        ckpt_interval,
        seed
    );
    if let Some(p) = &a.matmul_precision {
        c.matmul_precision = p.clone();
    }
    if let Some(lr) = a.lr {
        c.lr = lr;
        if a.min_lr.is_none() {
            c.min_lr = lr / 10.0;
        }
    }
    if a.steps.is_some() {
        c.decay_iters = c.steps;
        c.warmup = c.warmup.min(c.steps / 5);
        if let Some(w) = a.warmup {
            c.warmup = w;
        }
    }
}

/// The corpus folder to train on: given, prepared from raw text, or from the built-in text.
fn corpus_dir(a: &Args) -> Result<PathBuf> {
    let prepared = a.out.join("corpus");
    let opts = |spec: &str| -> Result<PrepareOptions> {
        Ok(PrepareOptions {
            tokenizer: TokenizerSpec::parse(spec)?,
            progress: !a.quiet,
            overwrite: true,
            seed: a.seed.unwrap_or(1337),
            ..PrepareOptions::default()
        })
    };
    match &a.data {
        Some(p) if p.join("meta.json").is_file() || p.join("train.bin").is_file() => Ok(p.clone()),
        Some(p) if p.is_file() => {
            prepare::prepare(&Input::TextFile(p.clone()), &prepared, &opts(&a.tokenizer)?)?;
            Ok(prepared)
        }
        Some(p) if p.is_dir() => {
            prepare::prepare(&Input::Dir(p.clone()), &prepared, &opts(&a.tokenizer)?)?;
            Ok(prepared)
        }
        Some(p) => Err(Error::io(
            p,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such corpus, file or folder",
            ),
        )),
        None => {
            std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
            let text_path = a.out.join("builtin.txt");
            crate::data::fsutil::write_atomic(&text_path, builtin::text().as_bytes())?;
            prepare::prepare(&Input::TextFile(text_path), &prepared, &opts("char")?)?;
            Ok(prepared)
        }
    }
}

/// Print a sample from the trained model, streaming it as it is generated.
pub fn print_sample(run_dir: &Path, tokens: usize, seed: u64) -> Result<()> {
    let ck = checkpoint::checkpoint_dir(run_dir);
    let model = crate::models::Model::load(&ck.join("model"))?;
    let tok = Tokenizer::load(&ck.join("tokenizer"))?;
    let prompt = tok.encode("\n")?;
    let prompt = if prompt.is_empty() { vec![0] } else { prompt };
    let cfg = SamplingConfig {
        temperature: 0.8,
        top_k: Some(40),
        top_p: None,
    };
    println!("--- sample (temperature 0.8, top-k 40) ---");
    let mut shown = String::new();
    let mut all = Vec::new();
    generate(&model, &prompt, tokens, &cfg, None, seed, |t| {
        all.push(t);
        let text = tok.decode(&all)?;
        if text.len() > shown.len() && text.starts_with(&shown) {
            print!("{}", &text[shown.len()..]);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            shown = text;
        }
        Ok(())
    })?;
    println!("\n---");
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    check_device(&a.device)?;
    in_pool(a.threads, || run_in_pool(a))
}

fn run_in_pool(a: Args) -> Result<()> {
    let mut cfg = presets::train_config(&a.arch, &a.preset)?;
    apply_overrides(&mut cfg, &a);
    let data = if a.resume {
        PathBuf::new()
    } else {
        corpus_dir(&a)?
    };
    if !a.resume {
        println!(
            "training {} ({}) with {} on {} for {} steps, {} matmul precision → {}",
            cfg.arch,
            cfg.preset,
            cfg.objective,
            data.display(),
            cfg.steps,
            cfg.matmul_precision,
            a.out.display()
        );
    }
    let opts = RunOptions {
        data,
        out: a.out.clone(),
        resume: a.resume,
        steps: a.steps,
        progress: !a.quiet,
        stop_after: a.stop_after,
    };
    let s = train(cfg.clone(), &opts)?;
    println!(
        "{} steps in {:.1} s ({:.0} tokens/s); last train loss {:.4}{}",
        s.steps,
        s.seconds,
        s.tokens_per_second,
        s.last_train_loss,
        s.last_val_loss
            .map(|v| format!(", val loss {v:.4}"))
            .unwrap_or_default()
    );
    if s.interrupted {
        println!(
            "resume with: pretext train --out {} --resume",
            a.out.display()
        );
        return Ok(());
    }
    println!(
        "metrics: {}, loss curve: {}",
        a.out.join("metrics.jsonl").display(),
        a.out.join("loss.svg").display()
    );
    if a.sample_tokens > 0 {
        print_sample(&a.out, a.sample_tokens, cfg.seed)?;
    }
    Ok(())
}
