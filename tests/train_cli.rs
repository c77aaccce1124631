//! The trainer end to end: an interrupted-and-resumed run reproduces the uninterrupted run's
//! losses exactly; Ctrl-C writes a checkpoint before exiting; `--device cuda` without a GPU
//! fails fast; the run folder gets metrics, a loss curve and a checkpoint that `generate`
//! and `eval` read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pretext::data::prepare::{prepare, Input, PrepareOptions};
use pretext::train::metrics::read_records;
use pretext::train::presets::train_config;
use pretext::train::runner::{train, RunOptions};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small character-level corpus (the embedded docs), prepared once per test.
fn corpus(dir: &Path) -> PathBuf {
    let text = dir.join("text.txt");
    std::fs::write(&text, pretext::train::builtin::text()).unwrap();
    let out = dir.join("corpus");
    prepare(&Input::TextFile(text), &out, &PrepareOptions::default()).unwrap();
    out
}

fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    read_records(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter(|r| r["split"] == "train")
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_losses_exactly() {
    let dir = tmp("resume");
    let data = corpus(&dir);
    let mut cfg = train_config("gpt", "tiny").unwrap();
    cfg.steps = 12;
    cfg.batch_size = 4;
    cfg.seq_len = 32;
    cfg.log_interval = 1;
    cfg.eval_interval = 6;
    cfg.eval_iters = 2;
    cfg.dropout = 0.1; // the dropout stream must resume too
    cfg.grad_accum = 2;
    let run = |out: &Path, resume: bool, stop_after: Option<u64>| {
        let opts = RunOptions {
            data: data.clone(),
            out: out.to_path_buf(),
            resume,
            steps: None,
            progress: false,
            stop_after,
        };
        train(cfg.clone(), &opts).unwrap()
    };
    let straight = dir.join("straight");
    let s = run(&straight, false, None);
    assert_eq!(s.steps, 12);
    let split = dir.join("split");
    let first = run(&split, false, Some(5));
    assert!(first.interrupted && first.steps == 5);
    let second = run(&split, true, None);
    assert_eq!(second.steps, 12);
    let (a, b) = (train_losses(&straight), train_losses(&split));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "resumed losses differ from the uninterrupted run");
    for f in [
        "metrics.jsonl",
        "loss.svg",
        "checkpoint/state.json",
        "checkpoint/model/model.safetensors",
        "checkpoint/optimizer.safetensors",
    ] {
        assert!(straight.join(f).is_file(), "{f} missing");
    }
    // The loss fell from about ln V at initialisation.
    assert!(a[0].1 > a[11].1, "loss did not fall: {a:?}");
    check_eval(&straight);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval` on a finished run: the validation loss as JSON, and with `--weights bf16` the loss
/// of the model with its matrices in bf16, near the f32 one but not equal to it.
fn check_eval(run: &Path) {
    let eval = |weights: &str| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
            .args(["eval", "--checkpoint"])
            .arg(run)
            .args(["--all-windows", "--weights", weights])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (f, b) = (eval("f32"), eval("bf16"));
    assert_eq!(
        (f["weights"].as_str(), b["weights"].as_str()),
        (Some("f32"), Some("bf16"))
    );
    let (lf, lb) = (f["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
    assert!(lf.is_finite() && lf > 0.0, "{f}");
    assert!(
        lf != lb && (lf - lb).abs() < 0.05 * lf,
        "f32 {lf} vs bf16 {lb}"
    );
}

#[test]
fn ctrl_c_writes_a_checkpoint_before_exiting() {
    let dir = tmp("ctrlc");
    let data = corpus(&dir);
    let out = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "train",
            "--quiet",
            "--steps",
            "100000",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--sample-tokens",
            "0",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .spawn()
        .unwrap();
    // Wait until training has logged a few steps, then send SIGINT.
    let t0 = Instant::now();
    while train_losses(&out).len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap())
            .unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step >= 20, "checkpoint at step {step}");
    assert!(!out.join("checkpoint.partial").exists());
    // and the run resumes from it
    let r = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "train",
            "--quiet",
            "--resume",
            "--sample-tokens",
            "0",
            "--steps",
        ])
        .arg((step + 3).to_string())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(train_losses(&out).last().unwrap().0, step + 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn device_cuda_without_a_gpu_fails_fast_with_a_clear_message() {
    let t0 = Instant::now();
    let r = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["train", "--device", "cuda"])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("cuda") || err.contains("CUDA"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}
