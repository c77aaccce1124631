//! `pretext bench WORKLOAD`: timing of CPU kernels on synthetic inputs.
//!
//! Workloads live in one registry (`WORKLOADS`): each has a name, a one-line description and
//! a function that prepares its inputs from the shared arguments and returns a closure
//! running one repetition plus the flops that repetition performs. The harness warms up,
//! calibrates how many calls make one timed repetition (≥ `--min-rep-ms`), times `--reps`
//! repetitions and prints the median and min–max per call in ms and GFLOP/s (or one JSON
//! object with `--json`). With `--serve` it instead times one repetition per request on stdin,
//! so that a driver can alternate repetitions with another framework's (`serve`). Workloads:
//! gemm, microkernel, softmax, layernorm, gelu, attention, decode, peak; a new one adds a registry entry
//! and, if it needs them, arguments.

use std::time::Instant;

use clap::{Args as ClapArgs, ValueEnum};
use half::bf16;
use serde_json::json;

use super::Weights;
use crate::autograd::no_grad;
use crate::backend::cpu::activation::Gelu;
use crate::backend::cpu::gemm::{self, peak, Bf16Path, GemmLayout};
use crate::backend::cpu::isa::{self, Isa};
use crate::error::{Error, Result};
use crate::models::weights::is_matrix;
use crate::models::{Gpt2, Gpt2Head, Model};
use crate::nn::attention::KvCache;
use crate::tensor::{AttentionMasks, AttnDropout, Rng, Tensor};
use crate::train::presets;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// f32 inputs, f32 products.
    F32,
    /// bf16 inputs, bf16 products accumulated in f32.
    Bf16,
    /// f32 inputs (master weights) rounded to bf16 while packing, then as bf16.
    #[value(name = "bf16-mixed")]
    Bf16Mixed,
    /// f32 A times bf16 B widened exactly, f32 products (weight-only bf16 inference).
    #[value(name = "f32-bf16w")]
    F32Bf16W,
    /// f32 inputs at the "high" matmul precision: each operand as two bf16 values, three bf16
    /// products (on AMX; elsewhere f32). GFLOP/s count the f32 product's 2·m·n·k.
    #[value(name = "f32-high")]
    F32High,
}

/// Element type of a GEMM's C.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CDtype {
    /// The f32 sums.
    F32,
    /// The f32 sums rounded to bf16 once, at the end (as `torch.matmul` on bf16 tensors).
    Bf16,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Workload to time, or `list` to name them.
    pub workload: String,
    /// Rows of A and C.
    #[arg(long, default_value_t = 512)]
    pub m: usize,
    /// Inner dimension.
    #[arg(long, default_value_t = 512)]
    pub k: usize,
    /// Columns of B and C.
    #[arg(long, default_value_t = 512)]
    pub n: usize,
    /// Independent problems per call (batched GEMM, e.g. attention heads).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Read A as the transpose of a k × m row-major matrix.
    #[arg(long)]
    pub ta: bool,
    /// Read B as the transpose of an n × k row-major matrix.
    #[arg(long)]
    pub tb: bool,
    /// Element type of the operands (bf16: f32 accumulation, f32 C; bf16-mixed: f32 operands
    /// rounded to bf16 while packing, as mixed precision from f32 master weights; f32-bf16w:
    /// f32 A times bf16 B, as weight-only bf16 inference).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Element type of C (gemm): bf16 only with `--dtype bf16`.
    #[arg(long, value_enum, default_value_t = CDtype::F32)]
    pub c_dtype: CDtype,
    /// Threads (a local rayon pool); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Kernel level: avx512, avx2 or scalar (default: best supported / PRETEXT_ISA).
    #[arg(long)]
    pub isa: Option<String>,
    /// Timed repetitions (at least 5).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Untimed warm-up repetitions.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Minimum duration of one timed repetition, in ms (short calls are repeated).
    #[arg(long, default_value_t = 20.0)]
    pub min_rep_ms: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Serve repetitions on request instead of timing `--reps`: after preparing and warming
    /// up, print one JSON line (the workload, its flops and the first call's seconds), then
    /// for every line on stdin holding a call count run that many calls and answer one JSON
    /// line `{"s_per_call": …}`, until stdin closes. A driver (`tools/bench_vs_torch.py`)
    /// alternates these repetitions one by one with another framework's, so that both sides
    /// of each pair meet the same state of a noisy machine.
    #[arg(long)]
    pub serve: bool,
    /// Attention heads (attention).
    #[arg(long, default_value_t = 12)]
    pub heads: usize,
    /// Sequence length (attention).
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Head dimension (attention).
    #[arg(long, default_value_t = 64)]
    pub head_dim: usize,
    /// Causal mask (attention).
    #[arg(long)]
    pub causal: bool,
    /// Dropout probability of the attention probabilities, in [0, 1) (attention; the fused
    /// kernels' counter-based mask, fixed seed).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Time forward + backward instead of forward only (softmax, layernorm, gelu, attention).
    #[arg(long)]
    pub backward: bool,
    /// GELU's tanh approximation instead of the exact erf form (gelu).
    #[arg(long)]
    pub tanh: bool,
    /// B panels per sweep (microkernel): 1 at a small --k keeps both panels in L1; 16 at
    /// --k 384 streams B from L2, as the AVX-512 GEMM's blocking does.
    #[arg(long, default_value_t = 1)]
    pub panels: usize,
    /// Model (decode): a GPT preset of `train --preset`, randomly initialised.
    #[arg(long, default_value = "gpt2-124m")]
    pub preset: String,
    /// Vocabulary size (decode).
    #[arg(long, default_value_t = 50257)]
    pub vocab: usize,
    /// Positions already in the KV cache when the timed step runs (decode).
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    /// How the model's matrices are held (decode): f32, or bf16 (weight-only bf16).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
}

/// One repetition of a workload, and what it does. Prepared and timed on a thread of the
/// benchmark's pool (a model's variables are not `Send`).
struct Prepared {
    /// Flops of one call (for GFLOP/s).
    flops: f64,
    /// Workload parameters reported alongside the timings.
    params: serde_json::Value,
    /// Items made and bytes of weights streamed per call, for rates beside GFLOP/s.
    rate: Option<Rate>,
    call: Box<dyn FnMut() -> Result<()>>,
}

struct Rate {
    /// Items (e.g. tokens) per call and their name.
    items: f64,
    unit: &'static str,
    /// Bytes of weights read per call.
    weight_bytes: f64,
}

struct Workload {
    name: &'static str,
    about: &'static str,
    prepare: fn(&Args, Isa, usize) -> Result<Prepared>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "gemm",
        about: "batched strided GEMM C = A·B (--m --k --n --batch --ta --tb --dtype f32|bf16|bf16-mixed|f32-bf16w --c-dtype f32|bf16)",
        prepare: prepare_gemm,
    },
    Workload {
        name: "microkernel",
        about: "the f32 GEMM micro-kernel alone, each thread on its own A panel against --panels B panels of depth --k (--k 128: in L1; --k 384 --panels 16: B from L2)",
        prepare: prepare_microkernel,
    },
    Workload {
        name: "softmax",
        about: "softmax over the last dim of an m × n tensor (--m --n [--backward]); ~5 ops/element",
        prepare: prepare_softmax,
    },
    Workload {
        name: "layernorm",
        about: "LayerNorm with weight and bias over the last dim of m × n (--m --n [--backward]); ~8 ops/element",
        prepare: prepare_layernorm,
    },
    Workload {
        name: "gelu",
        about: "GELU (erf form, or --tanh) over an m × n tensor (--m --n [--tanh] [--backward]); rate in elements/s",
        prepare: prepare_gelu,
    },
    Workload {
        name: "attention",
        about: "scaled dot-product attention (--batch --heads --seq --head-dim [--causal] [--dropout P] [--backward])",
        prepare: prepare_attention,
    },
    Workload {
        name: "decode",
        about: "one GPT decoding step with the KV cache at --context positions, LM head included (--preset --vocab --context --batch --weights f32|bf16); tokens/s and weight GB/s",
        prepare: prepare_decode,
    },
    Workload {
        name: "peak",
        about: "multiply-add throughput probe: the peak per thread count of the FMA units (--dtype f32) or of the bf16 GEMM's unit (--dtype bf16: AMX tiles, vdpbf16ps)",
        prepare: prepare_peak,
    },
];

pub fn run(args: Args) -> Result<()> {
    if args.workload == "list" {
        for w in WORKLOADS {
            println!("{:<8} {}", w.name, w.about);
        }
        return Ok(());
    }
    let w = WORKLOADS
        .iter()
        .find(|w| w.name == args.workload)
        .ok_or_else(|| {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            Error::msg(format!(
                "bench: unknown workload {:?}; known: {}",
                args.workload,
                names.join(", ")
            ))
        })?;
    if args.reps < 5 {
        return Err(Error::msg(format!(
            "bench: --reps {} is below 5",
            args.reps
        )));
    }
    let level = match &args.isa {
        Some(s) => Isa::parse(s)
            .ok_or_else(|| Error::msg(format!("bench: --isa {s:?} is not avx512, avx2 or scalar")))?
            .min(isa::detected()),
        None => isa::active(),
    };
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    if threads == 0 {
        return Err(Error::msg("bench: --threads must be at least 1"));
    }
    let pool = crate::backend::cpu::threads::pool(Some(threads))
        .map_err(|e| Error::msg(format!("bench: {e}")))?;
    if args.serve {
        return pool.install(|| -> Result<()> {
            let p = (w.prepare)(&args, level, threads)?;
            serve(w.name, level, threads, p, &args)
        });
    }
    let probe = Probe::for_gemm(w.name, args.dtype, level);
    let (flops, params, rate, times, calls, shares) = pool.install(|| -> Result<_> {
        let mut p = (w.prepare)(&args, level, threads)?;
        let (times, calls) = time(&mut p.call, &args)?;
        let shares = match probe {
            Some(probe) => paired_shares(&mut p.call, p.flops, calls, probe, args.reps)?,
            None => Vec::new(),
        };
        Ok((p.flops, p.params, p.rate, times, calls, shares))
    })?;
    // The peak: the best of a burst of probes after the timing, or of the probes paired with
    // the repetitions (spread over the whole timing: a burst alone can fall inside a moment
    // when the host's other load slows this core, and read 108 GFLOP/s against 175).
    let peak = probe.map(|probe| {
        let burst = pool.install(|| peak_flops(probe, threads));
        let paired = shares.iter().map(|s| s.probe_rate).fold(0.0, f64::max);
        (probe, burst.max(paired))
    });
    let shares: Vec<f64> = shares.iter().map(|s| s.share).collect();
    report(
        w.name, &args, level, threads, flops, params, rate, &times, calls, peak, &shares,
    );
    Ok(())
}

/// Per-call times in seconds of `reps` repetitions after warm-up and calibration, and the
/// calls per repetition.
fn time(call: &mut dyn FnMut() -> Result<()>, args: &Args) -> Result<(Vec<f64>, usize)> {
    for _ in 0..args.warmup.max(1) {
        call()?;
    }
    let calls = calls_per_rep(call, args.min_rep_ms)?;
    let mut times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let t = Instant::now();
        for _ in 0..calls {
            call()?;
        }
        times.push(t.elapsed().as_secs_f64() / calls as f64);
    }
    Ok((times, calls))
}

/// Calibration batches: calls doubling from one until a batch lasts a repetition, or at
/// least `CALIBRATE_SHARE` of one with at least `CALIBRATE_MIN_CALLS` calls.
const CALIBRATE_SHARE: f64 = 0.1;
const CALIBRATE_MIN_CALLS: usize = 8;

/// Calls that make one repetition of at least `min_rep_ms`, from the fastest per-call time
/// of warm batches of 1, 2, 4, … calls. One call is no measure: the first after a pause
/// pays for waking the pool's workers. Calibrated from the cold first call, softmax 768 ×
/// 128 on 2 threads (17 µs a call warm, 3.6 ms cold) ran repetitions of 6 calls instead of
/// 20 ms (Intel host, session 39).
fn calls_per_rep(call: &mut dyn FnMut() -> Result<()>, min_rep_ms: f64) -> Result<usize> {
    let target = min_rep_ms * 1e-3;
    let mut best = f64::INFINITY;
    let mut n = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            call()?;
        }
        let s = t.elapsed().as_secs_f64();
        best = best.min(s / n as f64);
        let long_enough =
            s >= target || (s >= CALIBRATE_SHARE * target && n >= CALIBRATE_MIN_CALLS);
        if long_enough || n >= 1 << 20 {
            break;
        }
        n *= 2;
    }
    Ok((target / best.max(1e-9)).ceil().clamp(1.0, 1e6) as usize)
}

/// The workload's share of `probe`'s peak, repetition by repetition: each repetition of
/// `calls` calls is followed by the probe on every thread of the pool for about as long, and
/// the repetition's rate is divided by that probe's. On a shared machine whose speed drifts
/// from one moment to the next (neighbours, clocks) both halves of a pair see the same
/// conditions, where the best of a separate burst of probes and the median repetition need
/// not. Returns `reps` shares (1 = the probe's rate) with the probe's rates.
fn paired_shares(
    call: &mut dyn FnMut() -> Result<()>,
    flops: f64,
    calls: usize,
    probe: Probe,
    reps: usize,
) -> Result<Vec<Share>> {
    let iters = probe.iters();
    let per_probe = probe.run(1).0 * iters as f64;
    let threads = rayon::current_num_threads() as f64;
    let mut shares = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..calls {
            call()?;
        }
        let rep = t.elapsed().as_secs_f64();
        // Probe rounds of ~0.1-0.2 ms until about as long as the repetition took.
        let (t, mut rounds) = (Instant::now(), 0usize);
        while rounds == 0 || t.elapsed().as_secs_f64() < rep {
            rayon::broadcast(|_| std::hint::black_box(probe.run(iters).1));
            rounds += 1;
        }
        let probe_rate = per_probe * threads * rounds as f64 / t.elapsed().as_secs_f64();
        shares.push(Share {
            share: flops * calls as f64 / rep / probe_rate,
            probe_rate,
        });
    }
    Ok(shares)
}

/// One repetition's rate as a share of the probe run right after it, and that probe's rate
/// (flop/s).
struct Share {
    share: f64,
    probe_rate: f64,
}

/// `--serve`: warm up, announce the workload, then one timed repetition per stdin line (its
/// call count), each answered with the seconds per call, until stdin closes.
fn serve(name: &str, level: Isa, threads: usize, p: Prepared, args: &Args) -> Result<()> {
    use std::io::{BufRead, Write};
    let Prepared {
        flops,
        params,
        mut call,
        ..
    } = p;
    let t0 = Instant::now();
    call()?;
    let first = t0.elapsed().as_secs_f64();
    for _ in 1..args.warmup {
        call()?;
    }
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| Error::msg(format!("bench --serve: {e}"));
    let hello = json!({
        "workload": name,
        "params": params,
        "threads": threads,
        "isa": level.name(),
        "flops": flops,
        "first_s": first,
    });
    writeln!(out, "{hello}")
        .and_then(|_| out.flush())
        .map_err(io)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(io)?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        let calls: usize =
            line.parse().ok().filter(|&c| c > 0).ok_or_else(|| {
                Error::msg(format!("bench --serve: {line:?} is not a call count"))
            })?;
        let t = Instant::now();
        for _ in 0..calls {
            call()?;
        }
        let per = t.elapsed().as_secs_f64() / calls as f64;
        writeln!(out, "{}", json!({ "s_per_call": per }))
            .and_then(|_| out.flush())
            .map_err(io)?;
    }
    Ok(())
}

/// The multiply-add unit a GEMM runs on, probed for the peak its efficiency is measured
/// against: f32 FMAs at a level, `vdpbf16ps`, or AMX tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Fma(Isa),
    Bf16Dot,
    Amx,
}

impl Probe {
    /// The unit of the bf16 path at `level` (none for the emulated tile unit).
    fn for_bf16(level: Isa) -> Option<Probe> {
        match Bf16Path::at(level) {
            Bf16Path::Amx => Some(Probe::Amx),
            Bf16Path::Avx512Bf16 => Some(Probe::Bf16Dot),
            Bf16Path::F32(l) => Some(Probe::Fma(l)),
            #[cfg(feature = "emu")]
            Bf16Path::AmxEmulated => None,
        }
    }

    /// The unit workload `name` runs on with operands `dtype` (GEMMs only).
    fn for_gemm(name: &str, dtype: Dtype, level: Isa) -> Option<Probe> {
        match (name, dtype) {
            ("gemm", Dtype::F32 | Dtype::F32Bf16W | Dtype::F32High)
            | ("microkernel", Dtype::F32) => Some(Probe::Fma(level)),
            ("gemm", Dtype::Bf16 | Dtype::Bf16Mixed) => Probe::for_bf16(level),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Probe::Fma(_) => "FMA",
            Probe::Bf16Dot => "vdpbf16ps",
            Probe::Amx => "AMX",
        }
    }

    /// (flops, checksum) of `iters` rounds on the calling thread.
    fn run(self, iters: usize) -> (f64, f32) {
        match self {
            Probe::Fma(level) => peak::fma_probe(level, iters),
            // `for_bf16` picks these only where the CPU has them.
            Probe::Bf16Dot => peak::bf16_dot_probe(iters).unwrap_or((0.0, 0.0)),
            Probe::Amx => peak::amx_probe(iters).unwrap_or((0.0, 0.0)),
        }
    }

    /// Rounds per call of about the same duration for every unit (~0.4 ms on the Intel host),
    /// long beside waking the pool's threads for each call: with 8× fewer, `bench peak`
    /// (4 calls' worth per timed call) read 0.89–0.92 of twice one thread's rate on two
    /// threads, 0.95–0.96 with these (two rounds each, alternating).
    fn iters(self) -> usize {
        match self {
            Probe::Fma(_) | Probe::Bf16Dot => 1 << 17,
            Probe::Amx => 1 << 16,
        }
    }
}

/// Peak in flop/s of `threads` threads on `probe`'s unit: best of 9 short probes run on
/// every thread of the current pool at once.
fn peak_flops(probe: Probe, threads: usize) -> f64 {
    let iters = probe.iters();
    let per_call = probe.run(1).0 * (iters * threads) as f64;
    (0..9)
        .map(|_| {
            let t = Instant::now();
            rayon::broadcast(|_| std::hint::black_box(probe.run(iters).1));
            per_call / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[allow(clippy::too_many_arguments)]
fn report(
    name: &str,
    args: &Args,
    level: Isa,
    threads: usize,
    flops: f64,
    params: serde_json::Value,
    rate: Option<Rate>,
    times: &[f64],
    calls: usize,
    peak: Option<(Probe, f64)>,
    paired: &[f64],
) {
    let (probe, peak) = (peak.map(|(p, _)| p), peak.map(|(_, f)| f));
    let paired = (!paired.is_empty()).then(|| {
        let mut s = paired.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        (s[s.len() / 2], s[(3 * s.len()) / 4], s[s.len() / 4])
    });
    let mut s = times.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        0.5 * (s[s.len() / 2 - 1] + s[s.len() / 2])
    };
    let (min, max) = (s[0], s[s.len() - 1]);
    let gf = |t: f64| flops / t * 1e-9;
    if args.json {
        let v = json!({
            "workload": name,
            "params": params,
            "threads": threads,
            "isa": level.name(),
            "reps": s.len(),
            "calls_per_rep": calls,
            "median_ms": med * 1e3,
            "min_ms": min * 1e3,
            "max_ms": max * 1e3,
            "gflops_median": gf(med),
            "gflops_best": gf(min),
            "gflops_worst": gf(max),
            "peak_gflops": peak.map(|p| p * 1e-9),
            "pct_of_peak_median": peak.map(|p| 100.0 * flops / med / p),
            "pct_of_peak_best": peak.map(|p| 100.0 * flops / min / p),
            "peak_probe": probe.map(Probe::name),
            "pct_of_peak_paired_median": paired.map(|(m, _, _)| 100.0 * m),
            "pct_of_peak_paired_iqr": paired.map(|(_, hi, lo)| [100.0 * lo, 100.0 * hi]),
        });
        let mut v = v;
        if let Some(r) = &rate {
            v[format!("{}_per_s_median", r.unit)] = json!(r.items / med);
            v["weight_gb_per_s_median"] = json!(r.weight_bytes / med * 1e-9);
        }
        println!("{v}");
    } else {
        println!("{name} {params} threads={threads} isa={}", level.name());
        println!(
            "  median {:.4} ms ({:.1} GFLOP/s)   min {:.4} ms ({:.1})   max {:.4} ms ({:.1})   [{} reps of {} calls]",
            med * 1e3,
            gf(med),
            min * 1e3,
            gf(min),
            max * 1e3,
            gf(max),
            s.len(),
            calls
        );
        if let Some(r) = &rate {
            println!(
                "  {:.1} {}/s, weights streamed at {:.1} GB/s (median)",
                r.items / med,
                r.unit,
                r.weight_bytes / med * 1e-9
            );
        }
        if let (Some(p), Some(probe)) = (peak, probe) {
            println!(
                "  {} peak {:.1} GFLOP/s on {threads} thread(s): median {:.0}%, best {:.0}% of peak",
                probe.name(),
                p * 1e-9,
                100.0 * flops / med / p,
                100.0 * flops / min / p
            );
        }
        if let (Some((m, hi, lo)), Some(probe)) = (paired, probe) {
            println!(
                "  each repetition against the {} probe run right after it: median {:.0}% \
                 (IQR {:.0}-{:.0}%)",
                probe.name(),
                100.0 * m,
                100.0 * lo,
                100.0 * hi
            );
        }
    }
}

/// Deterministic inputs in [-1, 1) from a splitmix64 stream (seeded, no global state).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn prepare_gemm(args: &Args, level: Isa, _threads: usize) -> Result<Prepared> {
    let (m, k, n, batch) = (args.m, args.k, args.n, args.batch);
    positive("gemm", &[("m", m), ("k", k), ("n", n), ("batch", batch)])?;
    let mut l = GemmLayout::row_major(m, n, k);
    if args.ta {
        (l.a_rs, l.a_cs) = (1, m);
    }
    if args.tb {
        (l.b_rs, l.b_cs) = (1, k);
    }
    let offs = |size: usize| (0..batch).map(|i| i * size).collect::<Vec<_>>();
    let (ao, bo, co) = (offs(m * k), offs(k * n), offs(m * n));
    let a = fill(batch * m * k, 1);
    let b = fill(batch * k * n, 2);
    let mut c = vec![0.0f32; batch * m * n];
    if args.c_dtype == CDtype::Bf16 && args.dtype != Dtype::Bf16 {
        return Err(Error::msg("bench gemm: --c-dtype bf16 needs --dtype bf16"));
    }
    let kernel = match args.dtype {
        Dtype::F32 | Dtype::F32Bf16W => level.name().to_string(),
        Dtype::Bf16 | Dtype::Bf16Mixed => Bf16Path::at(level).name(),
        Dtype::F32High => gemm::high_kernel_name(level, &l),
    };
    let mut params = json!({
        "m": m, "k": k, "n": n, "batch": batch, "ta": args.ta, "tb": args.tb,
        "dtype": args.dtype.to_possible_value().map(|v| v.get_name().to_string()), "kernel": kernel,
        "c_dtype": args.c_dtype.to_possible_value().map(|v| v.get_name().to_string()),
    });
    if level == Isa::Avx512 && matches!(args.dtype, Dtype::F32 | Dtype::F32Bf16W) {
        params["f32_broadcast"] = json!(gemm::broadcast::active().name());
    }
    let call: Box<dyn FnMut() -> Result<()>> = match args.dtype {
        Dtype::F32 => {
            Box::new(move || gemm::sgemm_batched_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co))
        }
        Dtype::Bf16 => {
            let a: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
            let b: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
            if args.c_dtype == CDtype::Bf16 {
                let path = gemm::Bf16Path::at(level);
                let mut c = vec![bf16::ZERO; batch * m * n];
                Box::new(move || {
                    gemm::bgemm_batched_to_bf16_path(path, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co)
                })
            } else {
                Box::new(move || {
                    gemm::bgemm_batched_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co)
                })
            }
        }
        Dtype::Bf16Mixed => Box::new(move || {
            gemm::sgemm_batched_bf16_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co)
        }),
        Dtype::F32High => Box::new(move || {
            gemm::sgemm_batched_high_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co)
        }),
        Dtype::F32Bf16W => {
            let b: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
            Box::new(move || {
                gemm::sgemm_batched_wbf16_isa(level, &l, &a, &ao, &b, &bo, 0.0, &mut c, &co)
            })
        }
    };
    Ok(Prepared {
        rate: None,
        flops: 2.0 * (m * n * k * batch) as f64,
        params,
        call,
    })
}

/// Locks `m`; a poisoned lock only follows a panic inside a sweep, after which the panels are
/// still whole.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The f32 micro-kernel alone (`gemm::MicroKernelBench`), on every thread of the pool at
/// once, each thread with panels of its own; its result checked exactly before timing.
fn prepare_microkernel(args: &Args, level: Isa, threads: usize) -> Result<Prepared> {
    if args.dtype != Dtype::F32 {
        return Err(Error::msg(
            "bench microkernel: the micro-kernel is timed with --dtype f32 only",
        ));
    }
    let (kc, panels) = (args.k, args.panels);
    positive("microkernel", &[("k", kc), ("panels", panels)])?;
    // One per thread, each built and checked on the thread that will sweep it (its pages
    // local to that core); `broadcast` returns them in the order of the threads' indices.
    let built: Vec<Result<gemm::MicroKernelBench>> = rayon::broadcast(|_| {
        let mut m = gemm::MicroKernelBench::new(level, kc, panels)?;
        m.check()?;
        Ok(m)
    });
    let benches: Vec<std::sync::Mutex<gemm::MicroKernelBench>> = built
        .into_iter()
        .map(|m| m.map(std::sync::Mutex::new))
        .collect::<Result<_>>()?;
    let (kernel, mr, nr, per_sweep) = {
        let m = lock(&benches[0]);
        let (kernel, mr, nr) = m.kernel();
        (kernel, mr, nr, m.flops_per_sweep())
    };
    // Sweeps per call: ~2^24 flops per thread (~0.1 ms), so that waking the pool's threads
    // is a small part of a call even for one short panel.
    let sweeps = ((1u64 << 24) as f64 / per_sweep).ceil() as usize;
    let flops = per_sweep * (sweeps * threads) as f64;
    let kib = |floats: usize| (floats * 4) as f64 / 1024.0;
    let mut params = json!({
        "k": kc, "panels": panels, "kernel": kernel.name(), "tile": [mr, nr], "sweeps_per_call": sweeps,
        "a_panel_kib": kib(mr * kc), "b_panels_kib": kib(panels * kc * nr),
    });
    if kernel == Isa::Avx512 {
        params["f32_broadcast"] = json!(gemm::broadcast::active().name());
    }
    Ok(Prepared {
        rate: None,
        flops,
        params,
        call: Box::new(move || {
            rayon::broadcast(|ctx| {
                let mut m = lock(&benches[ctx.index()]);
                for _ in 0..sweeps {
                    m.sweep();
                }
            });
            Ok(())
        }),
    })
}

fn positive(what: &str, sizes: &[(&str, usize)]) -> Result<()> {
    match sizes.iter().find(|s| s.1 == 0) {
        Some((name, _)) => Err(Error::msg(format!(
            "bench {what}: --{name} must be positive"
        ))),
        None => Ok(()),
    }
}

/// Softmax rows through the tensor op (allocation included, as in training).
fn prepare_softmax(args: &Args, _level: Isa, _threads: usize) -> Result<Prepared> {
    let (m, n) = (args.m, args.n);
    positive("softmax", &[("m", m), ("n", n)])?;
    let x = Tensor::from_vec(fill(m * n, 3), &[m, n])?;
    let dy = Tensor::from_vec(fill(m * n, 4), &[m, n])?;
    let backward = args.backward;
    Ok(Prepared {
        rate: None,
        flops: (if backward { 9.0 } else { 5.0 }) * (m * n) as f64,
        params: json!({ "m": m, "n": n, "backward": backward, "unit": "element ops" }),
        call: Box::new(move || {
            let y = x.softmax_last()?;
            if backward {
                std::hint::black_box(Tensor::softmax_last_backward(&y, &dy)?);
            }
            std::hint::black_box(y);
            Ok(())
        }),
    })
}

/// LayerNorm (γ, β) forward, and the backward from its saved statistics.
fn prepare_layernorm(args: &Args, _level: Isa, _threads: usize) -> Result<Prepared> {
    let (m, n) = (args.m, args.n);
    positive("layernorm", &[("m", m), ("n", n)])?;
    let x = Tensor::from_vec(fill(m * n, 5), &[m, n])?;
    let dy = Tensor::from_vec(fill(m * n, 6), &[m, n])?;
    let (g, b) = (Tensor::ones(&[n]), Tensor::zeros(&[n]));
    let backward = args.backward;
    Ok(Prepared {
        rate: None,
        flops: (if backward { 18.0 } else { 8.0 }) * (m * n) as f64,
        params: json!({ "m": m, "n": n, "backward": backward, "unit": "element ops" }),
        call: Box::new(move || {
            let out = x.layer_norm(Some(&g), Some(&b), 1e-5)?;
            if backward {
                std::hint::black_box(Tensor::norm_backward(
                    &x,
                    Some(&g),
                    out.mean.as_ref(),
                    &out.rstd,
                    &dy,
                )?);
            }
            std::hint::black_box(out);
            Ok(())
        }),
    })
}

/// GELU through the tensor op (allocation included) and its fused backward dx = dy ⊙ gelu'(x).
/// The rate counts elements (one per element forward, two with the backward).
fn prepare_gelu(args: &Args, _level: Isa, _threads: usize) -> Result<Prepared> {
    let (m, n) = (args.m, args.n);
    positive("gelu", &[("m", m), ("n", n)])?;
    let x = Tensor::from_vec(fill(m * n, 11).iter().map(|v| 3.0 * v).collect(), &[m, n])?;
    let dy = Tensor::from_vec(fill(m * n, 12), &[m, n])?;
    let (backward, tanh) = (args.backward, args.tanh);
    let kind = if tanh { Gelu::Tanh } else { Gelu::Erf };
    Ok(Prepared {
        rate: None,
        flops: (if backward { 2.0 } else { 1.0 }) * (m * n) as f64,
        params: json!({ "m": m, "n": n, "backward": backward, "form": if tanh { "tanh" } else { "erf" }, "unit": "elements" }),
        call: Box::new(move || {
            let y = if tanh { x.gelu_tanh()? } else { x.gelu()? };
            if backward {
                std::hint::black_box(Tensor::gelu_backward(&x, &dy, kind)?);
            }
            std::hint::black_box(y);
            Ok(())
        }),
    })
}

/// The attention op on (B, H, T, D): forward 4·B·H·T²·D flops (half with a causal mask),
/// backward counted as 2.5× the forward (its five T×T×D products).
fn prepare_attention(args: &Args, _level: Isa, _threads: usize) -> Result<Prepared> {
    let (b, h, t, d) = (args.batch, args.heads, args.seq, args.head_dim);
    positive(
        "attention",
        &[("batch", b), ("heads", h), ("seq", t), ("head-dim", d)],
    )?;
    let shape = [b, h, t, d];
    let n = b * h * t * d;
    let (q, k, v) = (
        Tensor::from_vec(fill(n, 7), &shape)?,
        Tensor::from_vec(fill(n, 8), &shape)?,
        Tensor::from_vec(fill(n, 9), &shape)?,
    );
    let dout = Tensor::from_vec(fill(n, 10), &shape)?;
    let masks = AttentionMasks {
        causal: args.causal,
        key_padding: None,
        scale: None,
        dropout: (args.dropout != 0.0).then_some(AttnDropout {
            p: args.dropout,
            seed: 1,
        }),
    };
    let backward = args.backward;
    let fwd = 4.0 * (b * h * t * t * d) as f64 * if args.causal { 0.5 } else { 1.0 };
    Ok(Prepared {
        rate: None,
        flops: if backward { 3.5 * fwd } else { fwd },
        params: json!({ "batch": b, "heads": h, "seq": t, "head_dim": d, "causal": args.causal, "dropout": args.dropout, "backward": backward }),
        call: Box::new(move || {
            let (out, stats) = Tensor::attention_with_stats(&q, &k, &v, None, &masks)?;
            if backward {
                std::hint::black_box(Tensor::attention_backward(
                    &q, &k, &v, None, &masks, &out, &stats, &dout, false,
                )?);
            }
            std::hint::black_box(out);
            Ok(())
        }),
    })
}

/// Every thread of the pool runs the probe at once; flops summed over threads. `--dtype f32`
/// probes the FMA units at the kernel level; `--dtype bf16` the unit of the bf16 GEMM path
/// (AMX tiles, `vdpbf16ps`, or the FMAs where the CPU has neither).
fn prepare_peak(args: &Args, level: Isa, threads: usize) -> Result<Prepared> {
    let probe = match args.dtype {
        Dtype::F32 => Probe::Fma(level),
        Dtype::Bf16 => Probe::for_bf16(level).ok_or_else(|| {
            Error::msg("bench peak: --dtype bf16 has no hardware unit to probe on this path")
        })?,
        other => {
            return Err(Error::msg(format!(
                "bench peak: --dtype {} has no probe (f32 or bf16)",
                other
                    .to_possible_value()
                    .map_or("?".into(), |v| v.get_name().to_string())
            )))
        }
    };
    let iters = 4 * probe.iters();
    let per_thread = probe.run(1).0 * iters as f64;
    Ok(Prepared {
        rate: None,
        flops: per_thread * threads as f64,
        params: json!({ "iters": iters, "probe": probe.name(), "lanes_per_fma": match probe {
            Probe::Fma(Isa::Avx512) => Some(16), Probe::Fma(Isa::Avx2) => Some(8),
            Probe::Fma(Isa::Scalar) => Some(1), Probe::Bf16Dot | Probe::Amx => None } }),
        call: Box::new(move || {
            rayon::broadcast(|_| std::hint::black_box(probe.run(iters).1));
            Ok(())
        }),
    })
}

/// One decoding step of a randomly initialised GPT (`--batch` sequences, one new token each)
/// against a KV cache holding `--context` positions, LM head included: the cache is cropped
/// back after each call, so every call is the same step. At the active kernel level.
fn prepare_decode(args: &Args, _level: Isa, _threads: usize) -> Result<Prepared> {
    let (b, ctx, vocab) = (args.batch, args.context, args.vocab);
    positive("decode", &[("batch", b), ("vocab", vocab)])?;
    let mut config = presets::gpt_config(&args.preset)?;
    config.vocab_size = vocab;
    if ctx + 1 > config.n_positions {
        return Err(Error::msg(format!(
            "bench decode: --context {ctx} leaves no room for a new token in the preset's {} positions",
            config.n_positions
        )));
    }
    let (layers, width) = (config.n_layer, config.n_embd);
    let model = Model::Gpt2(Gpt2::new(config, Gpt2Head::Lm, &mut Rng::new(0))?);
    model.cast_matrices(args.weights.dtype())?;
    // Every matrix is read whole per step but the position table (one row).
    let (mut matrix_params, mut weight_bytes) = (0usize, 0usize);
    for (name, v) in model.store().iter() {
        let t = v.value();
        if is_matrix(name, t.shape()) && !name.ends_with("wpe.weight") {
            matrix_params += t.numel();
            weight_bytes += t.numel() * t.dtype().size_in_bytes();
        }
    }
    let Model::Gpt2(g) = model else {
        unreachable!("built as a GPT above")
    };
    let ids = |t: usize| -> Result<Tensor> {
        Tensor::from_vec(
            (0..b * t).map(|i| ((i * 7919) % vocab) as i64).collect(),
            &[b, t],
        )
    };
    let mut cache = KvCache::default();
    if ctx > 0 {
        no_grad(|| g.forward(&ids(ctx)?, None, Some(&mut cache), None))?;
    }
    let step = ids(1)?;
    Ok(Prepared {
        // x·W for every matrix, and q·Kᵀ and p·V over ctx + 1 positions in each layer.
        flops: 2.0 * (b * matrix_params) as f64 + 4.0 * (b * layers * (ctx + 1) * width) as f64,
        params: json!({
            "preset": args.preset, "vocab": vocab, "context": ctx, "batch": b,
            "weights": args.weights.dtype().to_string(), "weight_bytes": weight_bytes,
        }),
        rate: Some(Rate {
            items: b as f64,
            unit: "tokens",
            weight_bytes: weight_bytes as f64,
        }),
        call: Box::new(move || {
            no_grad(|| {
                let h = g.forward(&step, None, Some(&mut cache), None)?;
                std::hint::black_box(g.lm_logits(&h.hidden)?);
                Ok::<_, Error>(())
            })?;
            cache.crop(ctx);
            Ok(())
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::calls_per_rep;
    use std::time::{Duration, Instant};

    /// Busy-waits `d` (a sleep may oversleep by far more than a short call lasts).
    fn spin(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {}
    }

    #[test]
    fn calibration_ignores_a_slow_first_call() {
        // A cold first call of 5 ms, then 20 µs calls: repetitions of 20 ms take ~1000 calls
        // (calibrated from the first call they took 4).
        let mut first = true;
        let mut call = || {
            spin(if first {
                Duration::from_millis(5)
            } else {
                Duration::from_micros(20)
            });
            first = false;
            Ok(())
        };
        let calls = calls_per_rep(&mut call, 20.0).unwrap();
        assert!(
            (200..=1000).contains(&calls),
            "{calls} calls per 20 ms repetition"
        );
    }

    #[test]
    fn calls_longer_than_a_repetition_run_one_at_a_time() {
        let mut n = 0;
        let mut call = || {
            n += 1;
            spin(Duration::from_millis(3));
            Ok(())
        };
        assert_eq!(calls_per_rep(&mut call, 2.0).unwrap(), 1);
        assert_eq!(n, 1, "one call lasting a repetition ends the calibration");
        assert_eq!(calls_per_rep(&mut || Ok(()), 0.0).unwrap(), 1);
    }
}
