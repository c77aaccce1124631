//! Samplers on a real prepared corpus (synthetic text, char tokenizer with every
//! special declared): windows come from the stream, sentence pieces from one document
//! at sentence boundaries, pairs follow the NSP layout, and every objective builds
//! reproducible batches end to end. Tiny Shakespeare is used too when present.

use std::path::{Path, PathBuf};

use pretext::data::prepare::{prepare, Input, PrepareOptions, StreamSource, TokenizerSpec};
use pretext::data::synth::SyntheticText;
use pretext::data::Tokenizer;
use pretext::data::{Corpus, TokenStream};
use pretext::objectives::{render_row, Example, Objective, ObjectiveTokens, NAMES};
use pretext::tensor::Rng;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-obj-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options() -> PrepareOptions {
    PrepareOptions {
        tokenizer: TokenizerSpec::Char,
        specials: Some("pad,unk,cls,sep,mask,bos,eos".into()),
        sentinels: 40,
        shard_tokens: 40_000,
        ..Default::default()
    }
}

fn synthetic_corpus(name: &str) -> Corpus {
    let out = tmpdir(name).join("corpus");
    let input = Input::Stream(StreamSource {
        name: "synthetic".into(),
        size_hint: Some(150_000),
        reopenable: true,
        open: Box::new(|| Ok(Box::new(SyntheticText::new(150_000, 7)))),
    });
    prepare(&input, &out, &options()).unwrap();
    Corpus::open(&out, None).unwrap()
}

fn window_ids(e: &Example) -> &[u32] {
    match e {
        Example::Window(w) => &w.ids,
        Example::Pair(_) => panic!("expected a window"),
    }
}

/// All documents with their sentence starts.
fn documents(s: &TokenStream) -> Vec<(Vec<u32>, Vec<usize>)> {
    (0..s.doc_count())
        .map(|d| {
            let starts = s
                .doc_sentences(d)
                .unwrap()
                .iter()
                .map(|r| r.start as usize)
                .collect();
            (s.doc_tokens(d).unwrap(), starts)
        })
        .collect()
}

#[test]
fn windows_and_sentence_pieces_come_from_the_stream() {
    let c = synthetic_corpus("pieces");
    let s = &c.train;
    assert!(s.shards().len() >= 3);
    let tok = c.tokenizer.as_ref().unwrap();
    let t = ObjectiveTokens::from_tokenizer(tok).unwrap();
    // CLM windows: exact length, a substring of the stream.
    let mut all = vec![0u32; s.len() as usize];
    s.read(0, &mut all).unwrap();
    let text = tok.decode(&all).unwrap();
    let clm = Objective::from_name("clm", 96, &t).unwrap();
    let mut sampler = clm.sampler(s).unwrap();
    let mut rng = Rng::new(1);
    for e in sampler.sample(s, &mut rng, 32).unwrap() {
        let ids = window_ids(&e);
        assert_eq!(ids.len(), 96);
        assert!(text.contains(&tok.decode(ids).unwrap()));
    }
    // BART pieces: whole sentences of one document, starting at a sentence start.
    let docs = documents(s);
    let bart = Objective::from_name("denoise", 128, &t).unwrap();
    let mut sampler = bart.sampler(s).unwrap();
    let mut multi = 0;
    for e in sampler.sample(s, &mut rng, 64).unwrap() {
        let Example::Window(w) = &e else { panic!() };
        assert!(!w.ids.is_empty() && w.ids.len() <= 126);
        let found = docs.iter().any(|(d, starts)| {
            starts.iter().any(|&o| {
                d.len() >= o + w.ids.len()
                    && d[o..o + w.ids.len()] == w.ids[..]
                    && w.sentence_starts.iter().all(|&x| starts.contains(&(o + x)))
                    // The piece ends at a sentence end (or the document's end).
                    && (o + w.ids.len() == d.len() || starts.contains(&(o + w.ids.len())))
            })
        });
        assert!(
            found,
            "piece not aligned to a document's sentences: {:?}",
            tok.decode(&w.ids)
        );
        multi += (w.sentence_starts.len() > 1) as usize;
    }
    assert!(multi > 10, "only {multi} pieces with several sentences");
}

#[test]
fn nsp_pairs_from_the_stream() {
    let c = synthetic_corpus("pairs");
    let s = &c.train;
    let t = ObjectiveTokens::from_tokenizer(c.tokenizer.as_ref().unwrap()).unwrap();
    let o = Objective::from_name("mlm_nsp", 128, &t).unwrap();
    let mut sampler = o.sampler(s).unwrap();
    let mut rng = Rng::new(2);
    let docs = documents(s);
    let (mut random, mut n) = (0, 0);
    for _ in 0..8 {
        let ex = sampler.sample(s, &mut rng, 64).unwrap();
        for e in &ex {
            let Example::Pair(p) = e else { panic!() };
            n += 1;
            random += p.is_random_next as usize;
            if !p.is_random_next {
                // A then B, contiguous inside one document.
                let ab: Vec<u32> = p.a.iter().chain(&p.b).copied().collect();
                assert!(docs
                    .iter()
                    .any(|(d, _)| d.windows(ab.len()).any(|w| w == ab.as_slice())));
            }
        }
        let b = o.build(&ex, &mut rng).unwrap();
        b.validate().unwrap();
        let nsp = b.nsp_labels.as_ref().unwrap();
        for (r, e) in ex.iter().enumerate() {
            let Example::Pair(p) = e else { panic!() };
            assert_eq!(nsp[r], p.is_random_next as i64);
            assert_eq!(b.input_row(r)[0], t.cls.unwrap() as i64);
        }
    }
    let share = random as f64 / n as f64;
    eprintln!("nsp on synthetic paragraphs: {random} random of {n} ({share:.3})");
    // Documents whose last chunk is one sentence add random nexts: at least 1/2.
    assert!(share > 0.42 && share < 0.75, "random share {share}");
}

fn run_all(s: &TokenStream, tok: &Tokenizer, seq: usize, batch: usize) {
    let t = &ObjectiveTokens::from_tokenizer(tok).unwrap();
    for name in NAMES {
        let o = Objective::from_name(name, seq, t).unwrap();
        let run = |seed: u64| {
            let mut sampler = o.sampler(s).unwrap();
            let mut rng = Rng::new(seed);
            (0..2)
                .map(|_| o.next_batch(&mut sampler, s, batch, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let start = std::time::Instant::now();
        let a = run(9);
        let ms = start.elapsed().as_secs_f64() * 1e3 / 2.0;
        assert_eq!(a, run(9), "{name}: same seed, same batches");
        assert_ne!(a[0], a[1], "{name}: consecutive batches differ");
        for b in &a {
            b.validate().unwrap();
            assert_eq!(b.loss, o.loss());
            assert_eq!((b.batch, b.seq, b.dec_seq), (batch, o.seq(), o.dec_seq()));
            assert!(b.loss_count() > 0, "{name}: nothing to learn");
        }
        eprintln!(
            "{name}: batch {batch}×{seq} in {ms:.2} ms, {} loss positions",
            a[0].loss_count()
        );
        let view = render_row(&a[0], 0, |id| {
            let s = tok
                .id_to_token(id as u32)
                .unwrap_or_else(|| format!("#{id}"));
            s.replace('\n', "⏎")
        });
        assert!(view.contains("loss at"));
        eprintln!("{view}");
    }
}

#[test]
fn every_objective_builds_batches_from_a_corpus() {
    let c = synthetic_corpus("all");
    run_all(&c.train, c.tokenizer.as_ref().unwrap(), 128, 16);
}

#[test]
fn tiny_shakespeare_end_to_end() {
    let path = std::env::var("PRETEXT_SHAKESPEARE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinyshakespeare.txt")
        });
    if !path.is_file() {
        eprintln!(
            "skipped: {} is absent (set PRETEXT_SHAKESPEARE)",
            path.display()
        );
        return;
    }
    let out = tmpdir("shakespeare").join("corpus");
    prepare(&Input::TextFile(path), &out, &options()).unwrap();
    let c = Corpus::open(&out, None).unwrap();
    let t = ObjectiveTokens::from_tokenizer(c.tokenizer.as_ref().unwrap()).unwrap();
    eprintln!(
        "tiny shakespeare: {} train tokens, {} documents, vocabulary {}",
        c.train.len(),
        c.train.doc_count(),
        t.vocab_size
    );
    run_all(&c.train, c.tokenizer.as_ref().unwrap(), 256, 32);
}
