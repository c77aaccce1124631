//! `set_matmul_precision(Medium)` (mixed precision): every f32 matmul multiplies the
//! bf16-rounded operands exactly and sums in f32, forward and backward, and a training run
//! at "medium" follows the f32 run's loss; "high" (three bf16 products) keeps about 16 bits. The setting is process-wide, so this file is its
//! own test binary and its checks run in one test, in sequence.

mod gemm_util;

use gemm_util::{exact_product, fill};
use half::bf16;
use pretext::autograd::Var;
use pretext::backend::cpu::gemm::{
    matmul_precision, set_matmul_precision, Bf16Path, MatmulPrecision,
};
use pretext::backend::cpu::isa;
use pretext::data::prepare::{prepare, Input, PrepareOptions};
use pretext::data::Corpus;
use pretext::tensor::Tensor;
use pretext::train::presets::train_config;
use pretext::train::runner::{train, RunOptions};

fn round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

fn max_diff(x: &[f32], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

/// Forward and both gradients of sum(A·B ⊙ G) at the current precision.
fn matmul_and_grads(
    a: &[f32],
    b: &[f32],
    g: &[f32],
    (m, k, n): (usize, usize, usize),
) -> [Vec<f32>; 3] {
    let va = Var::param(Tensor::from_vec(a.to_vec(), &[m, k]).unwrap());
    let vb = Var::param(Tensor::from_vec(b.to_vec(), &[k, n]).unwrap());
    let gt = Var::constant(Tensor::from_vec(g.to_vec(), &[m, n]).unwrap());
    let c = va.matmul(&vb).unwrap();
    let loss = c.mul(&gt).unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let out = c.value().to_vec_f32().unwrap();
    [
        out,
        va.grad().unwrap().to_vec_f32().unwrap(),
        vb.grad().unwrap().to_vec_f32().unwrap(),
    ]
}

fn matmuls_at_medium_precision() {
    let (m, k, n) = (37, 70, 45);
    let (a, b, g) = (fill(m * k, 1), fill(k * n, 2), fill(m * n, 3));
    let (ar, br, gr) = (round(&a), round(&b), round(&g));
    // Transposes as row-major copies for the gradient references: dA = G·Bᵀ, dB = Aᵀ·G.
    let t = |x: &[f32], r: usize, c: usize| -> Vec<f32> {
        (0..c * r).map(|i| x[(i % r) * c + i / r]).collect()
    };
    // Exact products of bf16 values, f32 sums of ≤ 70 terms of magnitude ≤ 1: within 1e-5.
    let tol = 1e-5;
    // f32 and bf16 operands differ by up to 2⁻⁹ relative: far more than `tol` over 70 terms.
    let apart = 1e-3;

    set_matmul_precision(MatmulPrecision::Medium);
    let [c, da, db] = matmul_and_grads(&a, &b, &g, (m, k, n));
    assert!(max_diff(&c, &exact_product(&ar, &br, m, k, n)) < tol);
    assert!(max_diff(&da, &exact_product(&gr, &t(&br, k, n), m, n, k)) < tol);
    assert!(max_diff(&db, &exact_product(&t(&ar, m, k), &gr, k, m, n)) < tol);
    assert!(
        max_diff(&c, &exact_product(&a, &b, m, k, n)) > apart,
        "medium precision gave the f32 product: the setting was not followed"
    );

    set_matmul_precision(MatmulPrecision::Highest);
    let [c, da, _] = matmul_and_grads(&a, &b, &g, (m, k, n));
    assert!(max_diff(&c, &exact_product(&a, &b, m, k, n)) < tol);
    assert!(max_diff(&da, &exact_product(&g, &t(&b, k, n), m, n, k)) < tol);
}

/// A new, quiet run on `data` into `out`.
fn fresh_run(data: std::path::PathBuf, out: std::path::PathBuf) -> RunOptions {
    RunOptions {
        data,
        out,
        resume: false,
        steps: None,
        progress: false,
        stop_after: None,
    }
}

/// Final training loss of a short tiny-GPT run on the built-in text at `precision`.
fn train_loss(precision: &str, dir: &std::path::Path) -> f32 {
    let corpus = dir.join("corpus");
    if !corpus.exists() {
        let text = dir.join("text.txt");
        std::fs::write(&text, pretext::train::builtin::text()).unwrap();
        prepare(&Input::TextFile(text), &corpus, &PrepareOptions::default()).unwrap();
    }
    let mut cfg = train_config("gpt", "tiny").unwrap();
    cfg.steps = 200;
    cfg.decay_iters = 200;
    cfg.warmup = 20;
    cfg.batch_size = 8;
    cfg.seq_len = 64;
    cfg.eval_interval = 200;
    cfg.eval_iters = 4;
    cfg.matmul_precision = precision.into();
    train(cfg, &fresh_run(corpus, dir.join(precision)))
        .unwrap()
        .last_val_loss
        .unwrap()
}

fn training_at_medium_precision() {
    let dir = std::env::temp_dir().join(format!("pretext-precision-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let highest = train_loss("highest", &dir);
    let medium = train_loss("medium", &dir);
    // The run restores the process's setting when it ends.
    assert_eq!(matmul_precision(), MatmulPrecision::Highest);
    let vocab = Corpus::open(&dir.join("corpus"), None)
        .unwrap()
        .tokenizer
        .unwrap()
        .vocab_size() as f32;
    println!(
        "tiny GPT, 200 steps: val loss {highest:.4} (highest), {medium:.4} (medium); ln V = {:.3}",
        vocab.ln()
    );
    // Both learn (from ln V, a uniform guess) and agree closely.
    assert!(highest < vocab.ln() - 1.0 && medium < vocab.ln() - 1.0);
    assert!((highest - medium).abs() < 0.05, "{highest} vs {medium}");
    assert_ne!(
        highest, medium,
        "medium precision trained bit-identically to f32"
    );
    let mut cfg = train_config("gpt", "tiny").unwrap();
    cfg.matmul_precision = "low".into();
    let e = train(cfg, &fresh_run(dir.join("corpus"), dir.join("bad")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"low\""), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `pretext train --matmul-precision medium` says so, saves it with the checkpoint (a
/// resumed run keeps it), and an unknown value is refused naming the choices.
fn cli_flag() {
    let dir = std::env::temp_dir().join(format!("pretext-precision-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pretext"))
            .args([
                "train",
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--seq-len",
                "16",
            ])
            .args([
                "--eval-iters",
                "1",
                "--quiet",
                "--sample-tokens",
                "0",
                "--out",
            ])
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--matmul-precision", "medium"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("medium matmul precision"), "{stdout}");
    let state = std::fs::read_to_string(dir.join("checkpoint/state.json")).unwrap();
    assert!(
        state.contains("\"matmul_precision\": \"medium\""),
        "{state}"
    );
    let out = run(&["--matmul-precision", "low"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("highest") && stderr.contains("high") && stderr.contains("medium"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// At "high", a matmul large enough for the three bf16 products (on AMX) is within their
/// 2⁻¹⁴·Σ|a||b| of the exact product and not f32's result; where the CPU has no AMX tiles
/// it is f32's, bit for bit. Its gradients follow the same setting.
fn matmuls_at_high_precision() {
    let (m, k, n) = (256, 512, 512);
    let (a, b, g) = (fill(m * k, 4), fill(k * n, 5), fill(m * n, 6));
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let bound = exact_product(&abs(&a), &abs(&b), m, k, n);
    set_matmul_precision(MatmulPrecision::Highest);
    let [c32, da32, _] = matmul_and_grads(&a, &b, &g, (m, k, n));
    set_matmul_precision(MatmulPrecision::High);
    let [c, da, _] = matmul_and_grads(&a, &b, &g, (m, k, n));
    set_matmul_precision(MatmulPrecision::Highest);
    if Bf16Path::at(isa::active().min(isa::detected())) == Bf16Path::Amx {
        let exact = exact_product(&a, &b, m, k, n);
        for ((&x, &e), &s) in c.iter().zip(&exact).zip(&bound) {
            assert!(
                (x as f64 - e).abs() <= s * (2f64.powi(-14) + 1e-6),
                "{x} vs {e}"
            );
        }
        assert_ne!(c, c32, "high precision gave the f32 product on AMX");
        assert_ne!(da, da32, "the gradient ignored high precision on AMX");
    } else {
        assert_eq!(c, c32, "high precision without AMX tiles is f32");
        assert_eq!(da, da32);
    }
}

#[test]
fn precision_settings_matmuls_and_training() {
    matmuls_at_high_precision();
    matmuls_at_medium_precision();
    training_at_medium_precision();
    cli_flag();
}
