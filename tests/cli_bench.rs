//! `pretext bench`: the workload list, one JSON object per run with the GEMM dtype and the
//! timing fields, and errors naming the offending flag.

use std::process::{Command, Output};

use pretext::backend::cpu::gemm::Bf16Path;
use pretext::backend::cpu::isa;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pretext"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// Runs a short timing and returns its JSON object.
fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend([
        "--json",
        "--threads",
        "1",
        "--reps",
        "5",
        "--warmup",
        "1",
        "--min-rep-ms",
        "1",
    ]);
    let out = bench(&all);
    assert!(
        out.status.success(),
        "bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn list_names_every_workload() {
    let out = bench(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for w in [
        "gemm",
        "microkernel",
        "softmax",
        "layernorm",
        "gelu",
        "attention",
        "decode",
        "peak",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(w)),
            "{w} missing from:\n{text}"
        );
    }
}

#[test]
fn gemm_reports_each_dtype() {
    for dtype in ["f32", "bf16", "bf16-mixed", "f32-bf16w", "f32-high"] {
        let v = json(&[
            "gemm", "--m", "20", "--k", "9", "--n", "13", "--dtype", dtype,
        ]);
        assert_eq!(v["workload"], "gemm");
        assert_eq!(v["params"]["dtype"], dtype);
        assert_eq!(v["params"]["m"], 20);
        assert_eq!(v["reps"], 5);
        assert!(v["calls_per_rep"].as_u64().unwrap() >= 1, "{v}");
        let (min, median, max) = (
            v["min_ms"].as_f64().unwrap(),
            v["median_ms"].as_f64().unwrap(),
            v["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= median && median <= max, "{v}");
        assert!(v["gflops_median"].as_f64().unwrap() > 0.0, "{v}");
    }
    // "high" names where it runs: a problem this small takes the f32 kernel; one large enough
    // takes three bf16 products on AMX tiles where the CPU has them.
    let small = json(&[
        "gemm", "--m", "20", "--k", "9", "--n", "13", "--dtype", "f32-high",
    ]);
    assert!(
        !small["params"]["kernel"]
            .as_str()
            .unwrap()
            .contains("bf16x3"),
        "{small}"
    );
    let large = json(&[
        "gemm", "--m", "256", "--k", "512", "--n", "512", "--dtype", "f32-high",
    ]);
    let kernel = large["params"]["kernel"].as_str().unwrap();
    assert_eq!(
        kernel.starts_with("bf16x3 on amx_bf16"),
        Bf16Path::at(isa::active().min(isa::detected())) == Bf16Path::Amx,
        "{large}"
    );
}

#[test]
fn peak_probes_the_unit_of_each_gemm_dtype() {
    // f32: the FMA units; bf16: the bf16 GEMM path's unit (AMX tiles, vdpbf16ps, or the FMAs
    // where the CPU has neither), whose peak the bf16 GEMM's efficiency is measured against.
    for (dtype, units) in [
        ("f32", &["FMA"][..]),
        ("bf16", &["AMX", "vdpbf16ps", "FMA"][..]),
    ] {
        let peak = json(&["peak", "--dtype", dtype]);
        let probe = peak["params"]["probe"].as_str().unwrap().to_string();
        assert!(units.contains(&probe.as_str()), "{dtype}: {peak}");
        assert!(peak["gflops_median"].as_f64().unwrap() > 0.0, "{peak}");
        let gemm = json(&[
            "gemm", "--m", "64", "--k", "64", "--n", "64", "--dtype", dtype,
        ]);
        assert_eq!(gemm["peak_probe"], probe.as_str(), "{gemm}");
        let pct = gemm["pct_of_peak_best"].as_f64().unwrap();
        assert!(pct > 0.0 && pct.is_finite(), "{gemm}");
        // Each repetition against the probe run right after it: a median inside its IQR.
        let paired = gemm["pct_of_peak_paired_median"].as_f64().unwrap();
        let iqr = &gemm["pct_of_peak_paired_iqr"];
        let (lo, hi) = (iqr[0].as_f64().unwrap(), iqr[1].as_f64().unwrap());
        assert!(
            paired > 0.0 && paired.is_finite() && lo <= paired && paired <= hi,
            "{gemm}"
        );
    }
    // Workloads without a multiply-add unit report no paired share.
    let sm = json(&["softmax", "--m", "8", "--n", "64"]);
    assert!(sm["pct_of_peak_paired_median"].is_null(), "{sm}");
    let out = bench(&["peak", "--dtype", "bf16-mixed"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dtype bf16-mixed"), "{err}");
}

#[test]
fn gemm_bf16_c_only_with_bf16_operands() {
    let v = json(&[
        "gemm",
        "--m",
        "20",
        "--k",
        "9",
        "--n",
        "13",
        "--dtype",
        "bf16",
        "--c-dtype",
        "bf16",
    ]);
    assert_eq!(v["params"]["c_dtype"], "bf16");
    assert!(v["gflops_median"].as_f64().unwrap() > 0.0, "{v}");
    let out = bench(&["gemm", "--dtype", "f32", "--c-dtype", "bf16", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--c-dtype"), "{err}");
}

/// A decoding step of the tiny GPT preset: tokens/s and the bytes of weights it streams,
/// halved by bf16 matrices (the position table, read one row per step, is not counted).
#[test]
fn decode_reports_tokens_and_weight_bytes() {
    let step = |weights: &str| {
        json(&[
            "decode",
            "--preset",
            "tiny",
            "--vocab",
            "97",
            "--context",
            "20",
            "--batch",
            "2",
            "--weights",
            weights,
        ])
    };
    let (f, b) = (step("f32"), step("bf16"));
    // tiny: 2 layers of width 64 (qkv, proj, fc, fc proj: 12·64² each), LM head 97 × 64.
    let matrices = 2 * 12 * 64 * 64 + 97 * 64;
    assert_eq!(f["params"]["weight_bytes"], 4 * matrices);
    assert_eq!(b["params"]["weight_bytes"], 2 * matrices);
    for v in [&f, &b] {
        assert_eq!(v["workload"], "decode");
        assert_eq!(v["params"]["batch"], 2);
        let tps = v["tokens_per_s_median"].as_f64().unwrap();
        let ms = v["median_ms"].as_f64().unwrap();
        assert!((tps - 2.0 / (ms * 1e-3)).abs() < 1e-6 * tps, "{v}");
        assert!(v["weight_gb_per_s_median"].as_f64().unwrap() > 0.0, "{v}");
    }
    let out = bench(&["decode", "--preset", "tiny", "--context", "5000", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--context"));
}

#[test]
fn bad_sizes_name_the_flag() {
    let out = bench(&["gemm", "--m", "0", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--m"), "{err}");
    let out = bench(&["nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}

/// `--serve`: one announcement line, then one answer per requested repetition, until stdin
/// closes; a line that is not a call count is refused by name.
#[test]
fn serve_answers_one_repetition_per_line() {
    use std::io::Write;
    use std::process::Stdio;
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pretext"))
            .args([
                "bench",
                "softmax",
                "--m",
                "64",
                "--n",
                "96",
                "--threads",
                "1",
            ])
            .args(["--warmup", "1", "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("3\n1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["workload"], "softmax");
    assert_eq!(lines[0]["params"]["m"], 64);
    assert!(lines[0]["flops"].as_f64().unwrap() > 0.0);
    assert!(lines[0]["first_s"].as_f64().unwrap() > 0.0);
    for l in &lines[1..] {
        assert!(l["s_per_call"].as_f64().unwrap() > 0.0, "{l}");
    }
    let out = run("2\nmany\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"many\""));
}

#[test]
fn microkernel_times_each_level_against_the_fma_probe() {
    // `--isa` above the CPU's level falls back to the CPU's best; the tile names the kernel.
    for (isa, tiles) in [
        ("scalar", &[[4, 8]][..]),
        ("avx2", &[[6, 16], [4, 8]][..]),
        ("avx512", &[[12, 32], [6, 16], [4, 8]][..]),
    ] {
        let v = json(&["microkernel", "--k", "40", "--panels", "3", "--isa", isa]);
        assert_eq!(v["workload"], "microkernel");
        assert_eq!(v["params"]["k"], 40);
        assert_eq!(v["params"]["panels"], 3);
        let tile = &v["params"]["tile"];
        assert!(
            tiles.iter().any(|t| *tile == serde_json::json!(t)),
            "{isa}: {v}"
        );
        assert_eq!(v["peak_probe"], "FMA", "{v}");
        assert!(v["gflops_median"].as_f64().unwrap() > 0.0, "{v}");
        assert!(
            v["pct_of_peak_paired_median"].as_f64().unwrap() > 0.0,
            "{v}"
        );
    }
    for (args, names) in [
        (&["microkernel", "--dtype", "bf16"][..], "--dtype f32"),
        (&["microkernel", "--panels", "0"][..], "--panels"),
        (&["microkernel", "--k", "0"][..], "--k"),
        (
            &["microkernel", "--k", "4096", "--panels", "5"][..],
            "16384",
        ),
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{args:?}: {err}");
    }
}
