//! An interrupted prepare leaves no readable corpus: the `pretext` binary is killed
//! while it waits for more input on stdin (after it has written shard data), and
//! neither the output folder nor anything in its `.partial` folder opens.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pretext::data::prepare::{partial_dir, prepare, Input, PrepareOptions, TokenizerSpec};
use pretext::data::shard::{Expect, Shard, ShardFormat};
use pretext::data::synth::SyntheticText;
use pretext::data::Corpus;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-intr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bytes written so far to files in `dir` (recursively).
fn written(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                written(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

#[test]
fn killed_prepare_leaves_no_readable_corpus() {
    let dir = tmpdir("kill");
    // A char tokenizer saved beforehand (stdin cannot be read twice to build one), with
    // [UNK] for characters its sample did not show.
    let seed_text = dir.join("seed.txt");
    let mut sample = String::new();
    std::io::Read::read_to_string(&mut SyntheticText::new(300_000, 1), &mut sample).unwrap();
    std::fs::write(&seed_text, &sample).unwrap();
    let seed_corpus = dir.join("seed");
    prepare(
        &Input::TextFile(seed_text),
        &seed_corpus,
        &PrepareOptions {
            tokenizer: TokenizerSpec::Char,
            specials: Some("unk".into()),
            ..Default::default()
        },
    )
    .unwrap();

    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "prepare",
            "-",
            "--quiet",
            "--shard-tokens",
            "1000000",
            "--tokenizer",
        ])
        .arg(seed_corpus.join("tokenizer"))
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 40 MB of input: several 8 MiB batches are tokenized and written; then the input
    // stays open, so prepare is blocked mid-way when it is killed.
    let mut gen = SyntheticText::new(40 << 20, 2);
    std::io::copy(&mut gen, &mut stdin).unwrap();
    stdin.flush().unwrap();
    let partial = partial_dir(&out);
    let t0 = Instant::now();
    while written(&partial) < 20 << 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "prepare wrote nothing in 60 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("prepare exited early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // Finished shards of the partial run exist, but nothing opens as a corpus.
    assert!(
        !out.exists(),
        "the output folder must only appear when prepare completes"
    );
    assert!(Corpus::open(&out, None).is_err());
    let e = Corpus::open(&partial, None).unwrap_err().to_string();
    assert!(e.contains("meta.json"), "{e}");
    let mut unfinished = 0;
    for entry in std::fs::read_dir(&partial).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file()
            && p.to_string_lossy().contains(".ptok.tmp")
            && !p.to_string_lossy().contains("docs")
            && !p.to_string_lossy().contains("sents")
        {
            // The shard being written has a zeroed header.
            let e = Shard::open(&p, ShardFormat::Pretext, Expect::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("never finished") || e.contains("header"), "{e}");
            unfinished += 1;
        }
    }
    assert!(
        unfinished >= 1,
        "expected a shard in progress in {}",
        partial.display()
    );

    // A complete run over the same kind of input (stdin closed) produces the corpus.
    let out2 = dir.join("out2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["prepare", "-", "--quiet", "--tokenizer"])
        .arg(seed_corpus.join("tokenizer"))
        .arg("--out")
        .arg(&out2)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::copy(&mut SyntheticText::new(2 << 20, 3), &mut stdin).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = Corpus::open(&out2, None).unwrap();
    assert!(c.train.len() > 1 << 20);
    assert!(!partial_dir(&out2).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
