//! Corpus benchmark (not a test): prepare a synthetic corpus of `--gib` GiB generated on
//! the fly (it never exists as a file, nor whole in memory), then sample batches from it.
//! Reports prepare throughput, batch-sampling time per step, and peak resident memory
//! (VmHWM from /proc/self/status) after each phase.
//!
//! Run: cargo run --profile test --example data_bench -- --gib 4 --tokenizer char
//! Flags: --gib F, --tokenizer char|bpe:N|PATH, --dir DIR (default /tmp/pretext-data-bench),
//! --steps N (sampling steps per batch shape), --keep (leave the corpus on disk).

use std::path::PathBuf;
use std::time::Instant;

use pretext::data::prepare::{prepare, Input, PrepareOptions, StreamSource, TokenizerSpec};
use pretext::data::synth::SyntheticText;
use pretext::data::{Corpus, EpochBatcher, RandomWindows, SplitMix64, TokenBatch};

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len() + 1..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn mem() -> String {
    format!(
        "VmHWM {} VmRSS {} (RssAnon {}, RssFile {})",
        status("VmHWM:"),
        status("VmRSS:"),
        status("RssAnon:"),
        status("RssFile:")
    )
}

fn main() -> pretext::Result<()> {
    let mut gib = 4.0f64;
    let mut tokenizer = "char".to_string();
    let mut dir = PathBuf::from("/tmp/pretext-data-bench");
    let mut steps = 2000usize;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--gib" => gib = val().parse().expect("--gib F"),
            "--tokenizer" => tokenizer = val(),
            "--dir" => dir = PathBuf::from(val()),
            "--steps" => steps = val().parse().expect("--steps N"),
            "--keep" => keep = true,
            other => panic!("unknown flag {other}"),
        }
    }
    let bytes = (gib * (1u64 << 30) as f64) as u64;
    let out = dir.join("corpus");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&dir).map_err(|e| pretext::Error::io(&dir, e))?;
    let input = Input::Stream(StreamSource {
        name: format!("synthetic {gib} GiB"),
        size_hint: Some(bytes),
        reopenable: true,
        open: Box::new(move || Ok(Box::new(SyntheticText::new(bytes, 2024)))),
    });
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::parse(&tokenizer)?,
        val_fraction: 0.01,
        progress: true,
        ..Default::default()
    };
    println!(
        "machine: {} threads (rayon), input {gib} GiB = {bytes} bytes, tokenizer {tokenizer}",
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let c0 = cpu_seconds();
    let r = prepare(&input, &out, &opts)?;
    let total = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let toks = r.meta.splits["train"].tokens + r.meta.splits["val"].tokens;
    println!(
        "prepare: {:.1} s total ({:.1} s tokenizer pass/training, {:.1} s tokenize+write): {:.1} MB/s overall, {:.1} MB/s tokenize+write; {} tokens in {} train shards",
        total,
        r.tokenizer_seconds,
        r.encode_seconds,
        bytes as f64 / 1e6 / total,
        bytes as f64 / 1e6 / r.encode_seconds,
        toks,
        r.meta.splits["train"].shards.len()
    );
    println!(
        "prepare CPU time {cpu:.1} s (both threads): {:.1} MB per CPU-second",
        bytes as f64 / 1e6 / cpu
    );
    println!("after prepare: {}", mem());

    let c = Corpus::open(&out, None)?;
    println!("after open: {}", mem());
    let mut rng = SplitMix64::new(1);
    for (b, t) in [(12usize, 64usize), (64, 256)] {
        let mut w = RandomWindows::new(&c.train, t)?;
        let mut batch = TokenBatch::default();
        // Warm-up touches the page cache the way training would.
        for _ in 0..50 {
            w.sample(&c.train, &mut rng, b, &mut batch)?;
        }
        let (t0, c0) = (Instant::now(), cpu_seconds());
        for _ in 0..steps {
            w.sample(&c.train, &mut rng, b, &mut batch)?;
        }
        let per = t0.elapsed().as_secs_f64() / steps as f64;
        let cpu = (cpu_seconds() - c0) / steps as f64;
        println!(
            "random windows {b}x{t}: {:.1} us/step wall, {:.1} us/step CPU over {steps} steps; {}",
            per * 1e6,
            cpu * 1e6,
            mem()
        );
        let mut e = EpochBatcher::new(&c.train, 1)?;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        for _ in 0..steps {
            e.next_batch(&c.train, b, t, &mut batch)?;
        }
        let per = t0.elapsed().as_secs_f64() / steps as f64;
        let cpu = (cpu_seconds() - c0) / steps as f64;
        println!(
            "epoch batches  {b}x{t}: {:.1} us/step wall, {:.1} us/step CPU over {steps} steps; {}",
            per * 1e6,
            cpu * 1e6,
            mem()
        );
    }
    println!("after sampling: {}", mem());
    for s in c.train.shards() {
        s.release();
    }
    println!("after release: {}", mem());
    if !keep {
        std::fs::remove_dir_all(&out).map_err(|e| pretext::Error::io(&out, e))?;
    }
    Ok(())
}
