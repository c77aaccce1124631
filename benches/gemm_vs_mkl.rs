//! f32 GEMM C = A·B against MKL in one process: pretext and MKL's `sgemm` (loaded at run time
//! from the library PyTorch links, or any library that exports MKL's Fortran `sgemm_` and
//! `MKL_Set_Num_Threads_Local`) alternate call by call on the same A, B and C.
//!
//! `tools/bench_vs_torch.py` pairs two processes (PyTorch, and pretext serving); here both
//! libraries see the same operands in the same caches, the order within a pair alternates,
//! and the ratio is the median over pairs of pretext's rate / MKL's. The thread that times a
//! unit busy-waits `--gap-ms` before it (as the paired script does), so that the other
//! library's workers have stopped spinning.
//!
//! ```text
//! PRETEXT_MKL_LIB=$(python -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib/libtorch_cpu.so")') \
//!   cargo bench --bench gemm_vs_mkl -- [--threads 1 2] [--pairs 21] [--gap-ms 20] \
//!   [--shapes sq1024,gpt2_mlp_up,…] [--isa avx512|avx2] [--json FILE]
//! ```
//! `--isa avx2` compares the AVX2 paths: pretext's level is forced (`isa::force`) and MKL is
//! started with `MKL_ENABLE_INSTRUCTIONS=AVX2` (unless that variable is already set), as a
//! machine without AVX-512 would run both.
//! Shapes: sq256 sq512 sq1024 sq2048 gpt2_mlp_up (4096×768×3072) gpt2_mlp_down (4096×3072×768)
//! shakespeare_up (768×128×512) shakespeare_down (768×512×128), or `M×K×N`.
//! The process allocates through pretext's caching allocator, as the `pretext` binary does
//! (`pool::CachingAlloc`: blocks of 2 MiB or more on transparent huge pages), so that
//! pretext's packing buffers and the shared operands are held as `pretext bench` and
//! `tools/bench_vs_torch.py` hold them; MKL's own buffers are MKL's.
//! Without `PRETEXT_MKL_LIB` it prints why and exits 0; under `cargo test` (no `--bench`
//! argument) it checks one small product against MKL and times nothing.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Instant;

use clap::Parser;

use pretext::backend::cpu::gemm::{sgemm_batched, GemmLayout};
use pretext::backend::cpu::isa::{self, Isa};
use pretext::backend::cpu::pool::CachingAlloc;
use pretext::backend::cpu::threads;

mod common;
use common::fill;

#[global_allocator]
static ALLOC: CachingAlloc = CachingAlloc;

extern "C" {
    fn dlopen(file: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}
const RTLD_NOW: c_int = 2;
const RTLD_GLOBAL: c_int = 0x100;

/// MKL's Fortran `sgemm_` (column-major, every argument by reference, LP64 integers).
type Sgemm = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const c_int,
    *const c_int,
    *const c_int,
    *const f32,
    *const f32,
    *const c_int,
    *const f32,
    *const c_int,
    *const f32,
    *mut f32,
    *const c_int,
);
/// `MKL_Set_Num_Threads_Local(n)`: MKL's threads for calls from this thread.
type SetThreads = unsafe extern "C" fn(c_int) -> c_int;

struct Mkl {
    sgemm: Sgemm,
    set_threads: SetThreads,
}

impl Mkl {
    fn load(path: &str) -> Result<Mkl, String> {
        let c_path = CString::new(path).map_err(|_| format!("{path}: a NUL in the path"))?;
        // SAFETY: FFI: dlopen takes a NUL-terminated path; a null handle is checked.
        let handle = unsafe { dlopen(c_path.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: FFI: dlerror returns a NUL-terminated message after a failed dlopen.
            let why = unsafe { CStr::from_ptr(dlerror()) }.to_string_lossy();
            return Err(format!("cannot load {path}: {why}"));
        }
        let symbol = |name: &CStr| {
            // SAFETY: FFI: a valid handle and a NUL-terminated name; null is checked.
            let p = unsafe { dlsym(handle, name.as_ptr()) };
            (!p.is_null())
                .then_some(p)
                .ok_or_else(|| format!("{path} has no symbol {name:?}"))
        };
        let (sgemm, set_threads) = (symbol(c"sgemm_")?, symbol(c"MKL_Set_Num_Threads_Local")?);
        // SAFETY: FFI: the symbols are MKL's, with the signatures of `Sgemm` and `SetThreads`.
        unsafe {
            Ok(Mkl {
                sgemm: std::mem::transmute::<*mut c_void, Sgemm>(sgemm),
                set_threads: std::mem::transmute::<*mut c_void, SetThreads>(set_threads),
            })
        }
    }

    /// Row-major C[m×n] = A[m×k]·B[k×n], as MKL's column-major Cᵀ = Bᵀ·Aᵀ.
    fn gemm(&self, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        assert!(
            a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
            "operands too short"
        );
        let (mi, ki, ni) = (m as c_int, k as c_int, n as c_int);
        let (one, zero) = (1.0f32, 0.0f32);
        // SAFETY: FFI: A, B and C hold m·k, k·n and m·n floats (asserted), laid out as the
        // leading dimensions say; C is not aliased.
        unsafe {
            (self.sgemm)(
                c"N".as_ptr(),
                c"N".as_ptr(),
                &ni,
                &mi,
                &ki,
                &one,
                b.as_ptr(),
                &ni,
                a.as_ptr(),
                &ki,
                &zero,
                c.as_mut_ptr(),
                &ni,
            )
        }
    }

    fn threads(&self, t: usize) {
        // SAFETY: FFI: takes the thread count by value.
        unsafe { (self.set_threads)(t as c_int) };
    }
}

fn shape(name: &str) -> Result<(usize, usize, usize), String> {
    Ok(match name {
        "sq256" => (256, 256, 256),
        "sq512" => (512, 512, 512),
        "sq1024" => (1024, 1024, 1024),
        "sq2048" => (2048, 2048, 2048),
        "gpt2_mlp_up" => (4096, 768, 3072),
        "gpt2_mlp_down" => (4096, 3072, 768),
        "shakespeare_up" => (768, 128, 512),
        "shakespeare_down" => (768, 512, 128),
        other => {
            let d: Vec<usize> = other
                .split(['x', '×'])
                .map(|s| s.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("shape {other:?}: a listed name or M×K×N"))?;
            match d[..] {
                [m, k, n] if m * k * n > 0 => (m, k, n),
                _ => return Err(format!("shape {other:?}: a listed name or M×K×N")),
            }
        }
    })
}

/// `cargo bench --bench gemm_vs_mkl -- [options]` (cargo adds `--bench`).
#[derive(Parser)]
struct Args {
    /// Set by `cargo bench`: time (without it, under `cargo test`, check one product).
    #[arg(long)]
    bench: bool,
    /// Thread counts, each run in turn (pretext's pool and MKL's threads alike).
    #[arg(
        long,
        num_args = 1..,
        default_values_t = [1u64, 2],
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    threads: Vec<u64>,
    /// Pairs of timed units per shape and thread count.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u64).range(1..))]
    pairs: u64,
    /// Busy wait before each timed unit, milliseconds.
    #[arg(long, default_value_t = 20.0)]
    gap_ms: f64,
    /// Listed names or M×K×N, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sq256,sq512,sq1024,sq2048,gpt2_mlp_up,gpt2_mlp_down,shakespeare_up,shakespeare_down"
    )]
    shapes: Vec<String>,
    /// Also write the table and every timed unit as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// Instruction set of both libraries: `avx512` or `avx2` (default: each library's best
    /// on this CPU).
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
}

/// `--isa`: the levels MKL can be held to as well.
fn parse_isa(s: &str) -> Result<Isa, String> {
    match Isa::parse(s) {
        Some(l @ (Isa::Avx512 | Isa::Avx2)) => Ok(l),
        _ => Err(format!("{s:?}: expected avx512 or avx2")),
    }
}

/// MKL's name for `level` in `MKL_ENABLE_INSTRUCTIONS`.
fn mkl_instructions(level: Isa) -> &'static str {
    match level {
        Isa::Avx512 => "AVX512",
        _ => "AVX2",
    }
}

/// First quartile, median and third quartile of `v` (non-empty).
fn quartiles(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[v.len() / 2], v[(3 * v.len()) / 4])
}

fn busy_wait(ms: f64) {
    let t = Instant::now();
    while t.elapsed().as_secs_f64() * 1e3 < ms {
        std::hint::spin_loop();
    }
}

/// Largest |x − y| over the two results, against the largest |y|.
fn rel_diff(x: &[f32], y: &[f32]) -> f32 {
    let scale = y
        .iter()
        .fold(0f32, |s, v| s.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    x.iter().zip(y).fold(0f32, |d, (a, b)| d.max((a - b).abs())) / scale
}

fn main() {
    // Under `cargo test` (no `--bench`) the arguments are the test harness's: not parsed.
    let bench = std::env::args().any(|a| a == "--bench");
    let a = if bench {
        Args::parse()
    } else {
        Args::parse_from(["gemm_vs_mkl"])
    };
    let Ok(path) = std::env::var("PRETEXT_MKL_LIB") else {
        println!("gemm_vs_mkl: skipped: set PRETEXT_MKL_LIB to a library with MKL's sgemm_ (e.g. torch/lib/libtorch_cpu.so)");
        return;
    };
    if let Some(level) = a.isa {
        isa::force(Some(level));
        if isa::active() != level {
            eprintln!(
                "gemm_vs_mkl: this CPU cannot run {} (best: {})",
                level.name(),
                isa::detected().name()
            );
            std::process::exit(2);
        }
        if std::env::var_os("MKL_ENABLE_INSTRUCTIONS").is_none() {
            // MKL reads it when it first dispatches; nothing else runs yet (one thread).
            std::env::set_var("MKL_ENABLE_INSTRUCTIONS", mkl_instructions(level));
        }
    }
    let mkl_isa = std::env::var("MKL_ENABLE_INSTRUCTIONS").ok();
    let mkl = match Mkl::load(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gemm_vs_mkl: {e}");
            std::process::exit(1);
        }
    };
    if !a.bench {
        // Under `cargo test`: one small product must agree.
        let (m, k, n) = (37, 70, 45);
        let (x, y) = (fill(m * k, 1), fill(k * n, 2));
        let (mut c0, mut c1) = (vec![0f32; m * n], vec![0f32; m * n]);
        mkl.threads(1);
        mkl.gemm(m, k, n, &x, &y, &mut c0);
        let l = GemmLayout::row_major(m, n, k);
        sgemm_batched(&l, &x, &[0], &y, &[0], 0.0, &mut c1, &[0]).expect("pretext sgemm");
        let d = rel_diff(&c1, &c0);
        assert!(
            d < 1e-5,
            "pretext and MKL differ by {d:e} (relative) on {m}×{k}×{n}"
        );
        println!(
            "gemm_vs_mkl: {m}×{k}×{n} agrees with MKL ({d:.1e} relative); pass --bench to time"
        );
        return;
    }
    let mut rows = Vec::new();
    println!(
        "pretext {}, MKL {}",
        isa::active().name(),
        mkl_isa
            .as_deref()
            .map_or("at its default".to_string(), |v| format!(
                "with MKL_ENABLE_INSTRUCTIONS={v}"
            ))
    );
    println!(
        "{:<18} {:>16} {:>3} {:>11} {:>9} {:>6} {:>11} {:>9}",
        "shape", "m×k×n", "thr", "pretext GF/s", "MKL GF/s", "ratio", "pairs IQR", "rel diff"
    );
    for t in a.threads.iter().map(|&t| t as usize) {
        let pool = match threads::pool(Some(t)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("gemm_vs_mkl: {e}");
                std::process::exit(1);
            }
        };
        // MKL's thread count is per calling thread: this one.
        mkl.threads(t);
        for name in &a.shapes {
            let (m, k, n) = match shape(name) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("gemm_vs_mkl: {e}");
                    std::process::exit(2);
                }
            };
            let (x, y) = (fill(m * k, 1), fill(k * n, 2));
            let (mut c_mkl, mut c_ours) = (vec![0f32; m * n], vec![0f32; m * n]);
            let l = GemmLayout::row_major(m, n, k);
            let flop = 2.0 * (m * k * n) as f64;
            // Calls per timed unit: at least ~20 ms of work at 100 GFLOP/s per thread.
            let inner = ((2e9 * t as f64 / flop).ceil() as usize).clamp(1, 10_000);
            // One timed unit of `inner` calls, after the gap, each library on the thread it
            // would run on: pretext's on a worker of its pool (every call from inside the
            // pool, as a training step makes them), MKL's on this thread, whose CPU mask its
            // OpenMP workers inherit (a pinned pool worker would squeeze them onto one CPU).
            // The timing thread busy-waits through the gap: one woken from sleep starts
            // slower on this host.
            let mut run = |ours: bool| {
                let mut unit = || {
                    busy_wait(a.gap_ms);
                    let s = Instant::now();
                    for _ in 0..inner {
                        if ours {
                            sgemm_batched(&l, &x, &[0], &y, &[0], 0.0, &mut c_ours, &[0])
                                .expect("pretext sgemm");
                        } else {
                            mkl.gemm(m, k, n, &x, &y, &mut c_mkl);
                        }
                    }
                    flop * inner as f64 / s.elapsed().as_secs_f64() / 1e9
                };
                if ours {
                    pool.install(unit)
                } else {
                    unit()
                }
            };
            run(false);
            run(true);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for p in 0..a.pairs {
                if p % 2 == 0 {
                    theirs.push(run(false));
                    ours.push(run(true));
                } else {
                    ours.push(run(true));
                    theirs.push(run(false));
                }
            }
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, m)| o / m).collect();
            let (q1, r, q3) = quartiles(&ratios);
            let d = rel_diff(&c_ours, &c_mkl);
            let (go, gm) = (quartiles(&ours).1, quartiles(&theirs).1);
            println!(
                "{name:<18} {:>16} {t:>3} {go:>11.1} {gm:>9.1} {r:>6.2} {:>11} {d:>9.1e}",
                format!("{m}×{k}×{n}"),
                format!("{q1:.2}–{q3:.2}")
            );
            rows.push(serde_json::json!({
                "shape": name, "m": m, "k": k, "n": n, "threads": t, "calls_per_rep": inner,
                "pretext_gflops": ours, "mkl_gflops": theirs, "ratio_median": r,
                "ratio_iqr": [q1, q3], "rel_diff": d,
            }));
        }
    }
    if let Some(file) = a.json {
        let doc = serde_json::json!({
            "protocol": "one process, pretext and MKL sgemm_ alternating call by call (order alternating per pair), same operands",
            "library": path, "pairs": a.pairs, "gap_ms": a.gap_ms,
            "pretext_isa": isa::active().name(), "mkl_enable_instructions": mkl_isa,
            "rows": rows,
        });
        let tmp = format!("{file}.tmp");
        let text = serde_json::to_string_pretty(&doc).expect("JSON");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &file)) {
            eprintln!("gemm_vs_mkl: cannot write {file}: {e}");
            std::process::exit(1);
        }
        println!("wrote {file}");
    }
}
