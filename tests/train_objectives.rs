//! Short pre-training runs of each encoder objective on the same character-level corpus (the
//! documentation embedded in the binary): BERT with MLM + NSP, T5 with span corruption and
//! BART with denoising each bring the validation loss well below ln V (the loss of a uniform
//! guess, where training starts) and the token accuracy well above chance (1/V).

use std::path::{Path, PathBuf};

use pretext::data::prepare::{prepare, Input, PrepareOptions};
use pretext::data::Corpus;
use pretext::train::metrics::read_records;
use pretext::train::presets::train_config;
use pretext::train::runner::{train, RunOptions};

fn corpus(dir: &Path) -> PathBuf {
    let text = dir.join("text.txt");
    std::fs::write(&text, pretext::train::builtin::text()).unwrap();
    let out = dir.join("corpus");
    let opts = PrepareOptions {
        specials: Some("pad,unk,cls,sep,mask,bos,eos".into()),
        sentinels: 20,
        ..PrepareOptions::default()
    };
    prepare(&Input::TextFile(text), &out, &opts).unwrap();
    out
}

fn run(arch: &str, steps: u64) -> (f64, f64, Option<f64>, f64) {
    let dir =
        std::env::temp_dir().join(format!("pretext-objectives-{arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = corpus(&dir);
    let vocab = Corpus::open(&data, None)
        .unwrap()
        .tokenizer
        .unwrap()
        .vocab_size() as f64;
    let mut cfg = train_config(arch, "tiny").unwrap();
    cfg.steps = steps;
    cfg.decay_iters = steps;
    cfg.warmup = steps / 10;
    cfg.batch_size = 8;
    cfg.seq_len = 64;
    cfg.eval_interval = steps;
    cfg.eval_iters = 4;
    let out = dir.join("run");
    let opts = RunOptions {
        data,
        out: out.clone(),
        resume: false,
        steps: None,
        progress: false,
        stop_after: None,
    };
    train(cfg, &opts).unwrap();
    let recs = read_records(&out.join("metrics.jsonl")).unwrap();
    let val = recs
        .iter()
        .rev()
        .find(|r| r["split"] == "val")
        .unwrap()
        .clone();
    std::fs::remove_dir_all(&dir).unwrap();
    let f = |k: &str| val.get(k).and_then(|v| v.as_f64());
    // For BERT the loss is L_mlm + L_nsp: compare the token-level part with ln V.
    let token_loss = f("mlm_loss").or(f("loss")).unwrap();
    (
        vocab.ln(),
        token_loss,
        f("nsp_accuracy"),
        f("token_accuracy").unwrap(),
    )
}

fn check(arch: &str, steps: u64) {
    let (ln_v, loss, nsp, acc) = run(arch, steps);
    println!("{arch}: ln V = {ln_v:.3}, val token loss {loss:.3}, token accuracy {acc:.3}, NSP accuracy {nsp:?}");
    if let Some(n) = nsp {
        assert!(n > 0.6, "{arch}: NSP accuracy {n} not above chance 0.5");
    }
    if let Some(n) = nsp {
        assert!(n > 0.6, "{arch}: NSP accuracy {n} not above chance 0.5");
    }
    assert!(
        loss < ln_v - 1.0,
        "{arch}: val loss {loss} not well below ln V = {ln_v}"
    );
    let chance = (-ln_v).exp();
    assert!(
        acc > 5.0 * chance,
        "{arch}: token accuracy {acc} not well above chance {chance}"
    );
}

#[test]
fn bert_mlm_nsp_learns() {
    check("bert", 120);
}

#[test]
fn t5_span_corruption_learns() {
    check("t5", 80);
}

#[test]
fn bart_denoising_learns() {
    check("bart", 80);
}
