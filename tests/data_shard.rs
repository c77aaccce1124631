//! Shards: validation on open (truncated, corrupted, mismatched — each a clear error
//! naming the file and field), llm.c and nanoGPT files, the document and sentence
//! index, and the seeded samplers.

use std::path::{Path, PathBuf};

use pretext::data::prepare::{prepare, Input, PrepareOptions, StreamSource, TokenizerSpec};
use pretext::data::shard::{Expect, Shard, ShardFormat};
use pretext::data::synth::SyntheticText;
use pretext::data::{Corpus, EpochBatcher, RandomWindows, SplitMix64, TokenBatch, TokenStream};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-shard-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn synth_input(bytes: u64, seed: u64) -> Input {
    Input::Stream(StreamSource {
        name: "synthetic".into(),
        size_hint: Some(bytes),
        reopenable: true,
        open: Box::new(move || Ok(Box::new(SyntheticText::new(bytes, seed)))),
    })
}

/// A char corpus of ~200 KB of synthetic text in shards of at most 40 000 tokens.
fn small_corpus(dir: &Path) -> PathBuf {
    let out = dir.join("corpus");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::Char,
        shard_tokens: 40_000,
        ..Default::default()
    };
    prepare(&synth_input(200_000, 3), &out, &opts).unwrap();
    out
}

fn first_shard(corpus: &Path) -> PathBuf {
    corpus.join("train-00000.ptok")
}

fn open_err(path: &Path, expect: Expect) -> String {
    Shard::open(path, ShardFormat::Auto, expect)
        .unwrap_err()
        .to_string()
}

#[test]
fn corpus_opens_and_index_is_consistent() {
    let dir = tmpdir("index");
    let out = small_corpus(&dir);
    let c = Corpus::open(&out, None).unwrap();
    let meta = c.meta.as_ref().unwrap();
    assert!(
        c.train.shards().len() >= 4,
        "{} shards",
        c.train.shards().len()
    );
    assert_eq!(meta.source.split, "document");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut SyntheticText::new(200_000, 3), &mut text).unwrap();
    assert_eq!(text.len(), 200_000);
    assert_eq!(c.train.len() + c.val.len(), text.chars().count() as u64);
    assert!(
        c.val.len() > 5_000 && c.val.len() < 40_000,
        "val {}",
        c.val.len()
    );
    c.train.verify().unwrap();
    c.val.verify().unwrap();
    let tok = c.tokenizer.as_ref().unwrap();
    // Documents are paragraphs: each but the last ends with a blank line; sentences
    // inside a document start after '.', '!' or '?' + whitespace.
    let mut sentences = 0;
    for d in 0..c.train.doc_count() {
        let toks = c.train.doc_tokens(d).unwrap();
        let text = tok.decode(&toks).unwrap();
        assert!(
            text.ends_with("\n\n") || d + 1 == c.train.doc_count(),
            "doc {d}: {text:?}"
        );
        let sents = c.train.doc_sentences(d).unwrap();
        assert_eq!(sents[0].start, 0);
        assert_eq!(sents.last().unwrap().end, toks.len() as u64);
        for w in sents.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            // A sentence ends with its mark and the whitespace after it; the next one
            // starts with a non-whitespace character.
            let before = tok
                .decode(&toks[w[0].start as usize..w[0].end as usize])
                .unwrap();
            let trimmed = before.trim_end();
            assert!(
                trimmed.ends_with(['.', '!', '?']) && trimmed.len() < before.len(),
                "{before:?}"
            );
            let next = tok
                .decode(&toks[w[1].start as usize..w[1].start as usize + 1])
                .unwrap();
            assert!(!next.starts_with(char::is_whitespace), "{next:?}");
        }
        sentences += sents.len();
    }
    assert!(sentences as u64 > 2 * c.train.doc_count());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_shards_are_clear_errors() {
    let dir = tmpdir("trunc");
    let out = small_corpus(&dir);
    let src = first_shard(&out);
    let bytes = std::fs::read(&src).unwrap();
    let p = dir.join("cut.ptok");
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = open_err(&p, Expect::default());
    assert!(
        e.contains("cut.ptok") && e.contains("`size`") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(&p, &bytes[..60]).unwrap();
    let e = open_err(&p, Expect::default());
    assert!(e.contains("`header`") && e.contains("truncated"), "{e}");
    // A shard cut inside a corpus makes the corpus fail to open.
    std::fs::write(&src, &bytes[..bytes.len() / 2]).unwrap();
    let e = Corpus::open(&out, None).unwrap_err().to_string();
    assert!(e.contains("train-00000.ptok") && e.contains("size"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupted_shards_are_clear_errors() {
    let dir = tmpdir("corrupt");
    let out = small_corpus(&dir);
    let bytes = std::fs::read(first_shard(&out)).unwrap();
    let p = dir.join("bad.ptok");
    let write = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        std::fs::write(&p, &b).unwrap();
    };
    write(&|b| b[0] = b'X');
    assert!(open_err(&p, Expect::default()).contains("`magic`"));
    write(&|b| b[..8].fill(0));
    assert!(open_err(&p, Expect::default()).contains("never finished"));
    write(&|b| b[8] = 9);
    assert!(open_err(&p, Expect::default()).contains("`version`"));
    write(&|b| b[17] ^= 1); // token_count
    let e = open_err(&p, Expect::default());
    assert!(
        e.contains("`header_checksum`") && e.contains("bad.ptok"),
        "{e}"
    );
    // A flipped token: opens (the check is O(n)), but verify() and reads catch it.
    write(&|b| b[128 + 2 * 100] ^= 0x01);
    let s = Shard::open(&p, ShardFormat::Auto, Expect::default()).unwrap();
    let e = s.verify().unwrap_err().to_string();
    assert!(e.contains("`token_checksum`"), "{e}");
    write(&|b| b[128 + 2 * 100 + 1] = 0xff); // id ≥ 65280 > vocab
    let s = Shard::open(&p, ShardFormat::Auto, Expect::default()).unwrap();
    let mut buf = vec![0u32; 200];
    let e = s.read(0, &mut buf).unwrap_err().to_string();
    assert!(
        e.contains("`tokens`") && e.contains("position 100") && e.contains("vocabulary"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_shards_are_clear_errors() {
    let dir = tmpdir("mismatch");
    let out = small_corpus(&dir);
    let p = first_shard(&out);
    let good = Shard::open(&p, ShardFormat::Pretext, Expect::default()).unwrap();
    let v = good.vocab_size().unwrap() as usize;
    let fp = good.header().unwrap().tokenizer_fp;
    let e = open_err(
        &p,
        Expect {
            vocab_size: Some(v + 1),
            fingerprint: None,
        },
    );
    assert!(
        e.contains("`vocab_size`") && e.contains(&format!("{v}")),
        "{e}"
    );
    let e = open_err(
        &p,
        Expect {
            vocab_size: Some(v),
            fingerprint: Some(fp ^ 1),
        },
    );
    assert!(e.contains("`tokenizer_fp`"), "{e}");
    let e = Corpus::open(&out, Some(v + 7)).unwrap_err().to_string();
    assert!(e.contains("meta.json") && e.contains("vocab_size"), "{e}");
    // A shard from another corpus (other tokenizer) in this corpus.
    let other = dir.join("other");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::Char,
        ..Default::default()
    };
    prepare(&synth_input(5_000, 99), &other, &opts).unwrap();
    std::fs::copy(other.join("train-00000.ptok"), out.join("train-00001.ptok")).unwrap();
    let e = Corpus::open(&out, None).unwrap_err().to_string();
    assert!(
        e.contains("train-00001.ptok") && (e.contains("tokenizer_fp") || e.contains("vocab_size")),
        "{e}"
    );
    // Missing corpus / not a corpus.
    let e = Corpus::open(&dir.join("nothing"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn write_llmc(path: &Path, magic: i32, version: i32, tokens: &[u16]) {
    let mut b = Vec::new();
    let mut header = [0i32; 256];
    header[0] = magic;
    header[1] = version;
    header[2] = tokens.len() as i32;
    for h in header {
        b.extend(h.to_le_bytes());
    }
    for t in tokens {
        b.extend(t.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn llmc_and_nanogpt_files() {
    let dir = tmpdir("foreign");
    let toks: Vec<u16> = (0..5000u32).map(|i| (i * 7919 % 50257) as u16).collect();
    let llmc = dir.join("llmc");
    std::fs::create_dir_all(&llmc).unwrap();
    write_llmc(&llmc.join("tiny_shakespeare_train.bin"), 20240520, 1, &toks);
    write_llmc(
        &llmc.join("tiny_shakespeare_val.bin"),
        20240520,
        1,
        &toks[..1000],
    );
    let c = Corpus::open(&llmc, Some(50257)).unwrap();
    assert_eq!(c.train.len(), 5000);
    assert_eq!(c.val.len(), 1000);
    let mut buf = vec![0u32; 10];
    c.train.read(4990, &mut buf).unwrap();
    assert_eq!(
        buf,
        toks[4990..].iter().map(|&t| t as u32).collect::<Vec<_>>()
    );
    // Bad version, and size inconsistent with the header.
    let p = dir.join("bad_train.bin");
    write_llmc(&p, 20240520, 3, &toks);
    assert!(open_err(&p, Expect::default()).contains("`version`"));
    write_llmc(&p, 20240520, 1, &toks);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 2]).unwrap();
    let e = open_err(&p, Expect::default());
    assert!(e.contains("`size`") && e.contains("truncated"), "{e}");

    // nanoGPT: raw uint16 train.bin / val.bin.
    let nano = dir.join("nano");
    std::fs::create_dir_all(&nano).unwrap();
    let raw = |ts: &[u16]| ts.iter().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>();
    let small: Vec<u16> = (0..3000u16).map(|i| i % 65).collect();
    std::fs::write(nano.join("train.bin"), raw(&small)).unwrap();
    std::fs::write(nano.join("val.bin"), raw(&small[..300])).unwrap();
    let e = Corpus::open(&nano, None).unwrap_err().to_string();
    assert!(e.contains("vocab"), "{e}");
    let c = Corpus::open(&nano, Some(65)).unwrap();
    assert_eq!((c.train.len(), c.val.len()), (3000, 300));
    // An id past the model's vocabulary is caught on read.
    let c = Corpus::open(&nano, Some(60)).unwrap();
    let mut buf = vec![0u32; 100];
    assert!(c
        .train
        .read(0, &mut buf)
        .unwrap_err()
        .to_string()
        .contains("vocabulary"));
    std::fs::write(nano.join("train.bin"), [1u8, 2, 3]).unwrap();
    assert!(Corpus::open(&nano, Some(65))
        .unwrap_err()
        .to_string()
        .contains("`size`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_windows_are_nanogpt_batches_and_reproducible() {
    let dir = tmpdir("windows");
    let out = small_corpus(&dir);
    let c = Corpus::open(&out, None).unwrap();
    let (b, t) = (12, 64);
    let mut w = RandomWindows::new(&c.train, t).unwrap();
    let expected_windows: u64 = c.train.shards().iter().map(|s| s.len() - t as u64).sum();
    assert_eq!(w.window_count(), expected_windows);
    let mut r1 = SplitMix64::new(5);
    let mut r2 = SplitMix64::new(5);
    let mut b1 = TokenBatch::default();
    let mut b2 = TokenBatch::default();
    for _ in 0..20 {
        w.sample(&c.train, &mut r1, b, &mut b1).unwrap();
        w.sample(&c.train, &mut r2, b, &mut b2).unwrap();
        assert_eq!(b1, b2);
        assert_eq!((b1.batch, b1.seq, b1.x.len()), (b, t, b * t));
        for row in 0..b {
            let x = &b1.x[row * t..(row + 1) * t];
            let y = &b1.y[row * t..(row + 1) * t];
            assert_eq!(&x[1..], &y[..t - 1]);
        }
    }
    // Each row is tokens[i..i+T] / tokens[i+1..i+T+1] for the drawn i, inside one shard.
    let mut r3 = SplitMix64::new(9);
    let starts: Vec<u64> = (0..b).map(|_| w.draw(&mut r3)).collect();
    let mut r3 = SplitMix64::new(9);
    w.sample(&c.train, &mut r3, b, &mut b1).unwrap();
    let bounds: Vec<u64> = c
        .train
        .shards()
        .iter()
        .scan(0, |s, sh| {
            *s += sh.len();
            Some(*s)
        })
        .collect();
    for (row, &i) in starts.iter().enumerate() {
        let mut win = vec![0u32; t + 1];
        c.train.read(i, &mut win).unwrap();
        assert_eq!(&b1.x[row * t..(row + 1) * t], &win[..t]);
        assert_eq!(&b1.y[row * t..(row + 1) * t], &win[1..]);
        let end = i + t as u64 + 1;
        assert!(
            !bounds.iter().any(|&e| i < e && end > e),
            "window {i}..{end} crosses a shard end"
        );
    }
    // Another seed, another batch.
    w.sample(&c.train, &mut SplitMix64::new(6), b, &mut b2)
        .unwrap();
    assert_ne!(b1.x, b2.x);
    // Offsets are uniform: on a stream of T+3 tokens the 3 windows each come up.
    let s = Shard::open(&first_shard(&out), ShardFormat::Pretext, Expect::default()).unwrap();
    let one = TokenStream::from_shards(vec![s]).unwrap();
    let w1 = RandomWindows::new(&one, (one.len() - 3) as usize).unwrap();
    let mut counts = [0u32; 3];
    let mut r = SplitMix64::new(1);
    for _ in 0..3000 {
        counts[w1.draw(&mut r) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&n| (850..1150).contains(&n)),
        "{counts:?}"
    );
    assert!(RandomWindows::new(&one, one.len() as usize).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_window_sweep_covers_each_window_once_in_order() {
    let dir = tmpdir("sweep");
    let out = small_corpus(&dir);
    let c = Corpus::open(&out, None).unwrap();
    let t = 16;
    let mut w = RandomWindows::new(&c.train, t).unwrap();
    let n = w.window_count();
    // The starts, shard by shard, are every offset at which T+1 tokens fit in the shard.
    let mut expected = Vec::new();
    let mut base = 0;
    for sh in c.train.shards() {
        expected.extend((0..sh.len() - t as u64).map(|o| base + o));
        base += sh.len();
    }
    let starts: Vec<u64> = (0..n).map(|u| w.start(u)).collect();
    assert_eq!(starts, expected);
    // A sweep in batches of 7 (the last one partial) reads exactly those windows.
    let mut tb = TokenBatch::default();
    let mut u = 0;
    while u < n {
        let b = 7.min((n - u) as usize);
        w.windows_at(&c.train, u, b, &mut tb).unwrap();
        for row in 0..b {
            let mut win = vec![0u32; t + 1];
            c.train.read(expected[u as usize + row], &mut win).unwrap();
            assert_eq!(&tb.x[row * t..(row + 1) * t], &win[..t]);
            assert_eq!(&tb.y[row * t..(row + 1) * t], &win[1..]);
        }
        u += b as u64;
    }
    let err = w.windows_at(&c.train, n - 2, 3, &mut tb).unwrap_err();
    assert!(err.to_string().contains("windows"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn epoch_batches_follow_a_seeded_document_order() {
    let dir = tmpdir("epoch");
    let out = small_corpus(&dir);
    let c = Corpus::open(&out, None).unwrap();
    let (b, t) = (4, 50);
    let order = pretext::data::EpochOrder::new(c.train.doc_count(), 11);
    let mut expected = Vec::new();
    for d in order.iter(0) {
        expected.extend(c.train.doc_tokens(d).unwrap());
    }
    assert_eq!(expected.len() as u64, c.train.len());
    let mut e1 = EpochBatcher::new(&c.train, 11).unwrap();
    let mut e2 = EpochBatcher::new(&c.train, 11).unwrap();
    let mut got = Vec::new();
    let mut b1 = TokenBatch::default();
    let mut b2 = TokenBatch::default();
    let steps = c.train.len() as usize / (b * t);
    for _ in 0..steps {
        e1.next_batch(&c.train, b, t, &mut b1).unwrap();
        e2.next_batch(&c.train, b, t, &mut b2).unwrap();
        assert_eq!(b1, b2);
        assert_eq!(&b1.x[1..], &b1.y[..b * t - 1]);
        got.extend_from_slice(&b1.x);
    }
    assert_eq!(got, expected[..got.len()]);
    assert_eq!(e1.epoch(), 0);
    for _ in 0..3 {
        e1.next_batch(&c.train, b, t, &mut b1).unwrap();
    }
    assert_eq!(e1.epoch(), 1);
    // The next epoch has another order.
    let second: Vec<u64> = order.iter(1).take(20).collect();
    let first: Vec<u64> = order.iter(0).take(20).collect();
    assert_ne!(first, second);
    std::fs::remove_dir_all(&dir).unwrap();
}
