//! `prepare` round trips: text → prepare → decode gives back the text (char and
//! byte-level BPE), for a text file, a folder and JSONL; nanoGPT's shakespeare_char
//! counts; documents split across shards; output protection.

use std::path::{Path, PathBuf};

use pretext::data::prepare::{prepare, Input, PrepareOptions, TokenizerSpec};
use pretext::data::{Corpus, TokenStream};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pretext-prep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shakespeare() -> Option<PathBuf> {
    let p = std::env::var("PRETEXT_SHAKESPEARE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinyshakespeare.txt")
        });
    if p.is_file() {
        Some(p)
    } else {
        println!(
            "skipped: {} is absent (set PRETEXT_SHAKESPEARE)",
            p.display()
        );
        None
    }
}

fn decode_all(c: &Corpus, s: &TokenStream) -> String {
    let mut ids = vec![0u32; s.len() as usize];
    s.read(0, &mut ids).unwrap();
    c.tokenizer.as_ref().unwrap().decode(&ids).unwrap()
}

fn decode_docs(c: &Corpus, s: &TokenStream) -> Vec<String> {
    (0..s.doc_count())
        .map(|d| {
            c.tokenizer
                .as_ref()
                .unwrap()
                .decode(&s.doc_tokens(d).unwrap())
                .unwrap()
        })
        .collect()
}

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n\n  Indented — café, naïve, 中文 😀! Tabs\there.\nEnd? Yes.\n";

#[test]
fn shakespeare_char_matches_nanogpt_and_round_trips() {
    let Some(src) = shakespeare() else { return };
    let dir = tmpdir("shk-char");
    let out = dir.join("c");
    let r = prepare(
        &Input::TextFile(src.clone()),
        &out,
        &PrepareOptions::default(),
    )
    .unwrap();
    // nanoGPT shakespeare_char: vocab 65, train 1,003,854 tokens, val 111,540.
    assert_eq!(r.meta.tokenizer.vocab_size, 65);
    assert_eq!(r.meta.splits["train"].tokens, 1_003_854);
    assert_eq!(r.meta.splits["val"].tokens, 111_540);
    assert_eq!(r.meta.token_width, 2);
    let c = Corpus::open(&out, Some(65)).unwrap();
    let text = std::fs::read_to_string(&src).unwrap();
    assert_eq!(decode_all(&c, &c.train) + &decode_all(&c, &c.val), text);
    // nanoGPT's stoi: the sorted character set.
    let tok = c.tokenizer.as_ref().unwrap();
    assert_eq!(tok.encode("\n !").unwrap(), vec![0, 1, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shakespeare_bpe_round_trips() {
    let Some(src) = shakespeare() else { return };
    let dir = tmpdir("shk-bpe");
    let out = dir.join("b");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::Bpe { vocab_size: 512 },
        sentinels: 2,
        specials: Some("pad,bos=<|endoftext|>,eos=<|endoftext|>,mask=<mask>".into()),
        ..Default::default()
    };
    let r = prepare(&Input::TextFile(src.clone()), &out, &opts).unwrap();
    assert_eq!(r.meta.tokenizer.kind, "hf");
    let c = Corpus::open(&out, Some(512)).unwrap();
    let tok = c.tokenizer.as_ref().unwrap();
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(tok.specials().sentinel_id(0), Some(511));
    assert_eq!(tok.specials().sentinel_id(1), Some(510));
    let text = std::fs::read_to_string(&src).unwrap();
    let all = decode_all(&c, &c.train) + &decode_all(&c, &c.val);
    assert_eq!(all, text);
    // BPE compresses: under 2/3 of a token per byte with ~250 merges.
    let n = c.train.len() + c.val.len();
    assert!(
        n * 3 < text.len() as u64 * 2,
        "{n} tokens for {} bytes",
        text.len()
    );
    // Its tokenizer loads from the corpus folder and is the one in meta.json.
    let t2 = pretext::data::Tokenizer::load(&out.join("tokenizer")).unwrap();
    assert_eq!(
        format!("{:016x}", t2.fingerprint()),
        c.meta.as_ref().unwrap().tokenizer.fingerprint
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_file_round_trip_char_and_bpe() {
    let dir = tmpdir("text");
    let src = dir.join("in.txt");
    let text = TEXT.repeat(40);
    std::fs::write(&src, &text).unwrap();
    for (name, spec) in [
        ("char", TokenizerSpec::Char),
        ("bpe", TokenizerSpec::Bpe { vocab_size: 300 }),
    ] {
        let out = dir.join(name);
        let opts = PrepareOptions {
            tokenizer: spec,
            val_fraction: 0.25,
            ..Default::default()
        };
        prepare(&Input::TextFile(src.clone()), &out, &opts).unwrap();
        let c = Corpus::open(&out, None).unwrap();
        let train = decode_all(&c, &c.train);
        // nanoGPT's split: the first ⌊n·0.75⌋ bytes are train.
        assert!(
            train.len() >= (text.len() as f64 * 0.75) as usize
                && train.len() <= (text.len() as f64 * 0.75) as usize + 3
        );
        assert_eq!(train + &decode_all(&c, &c.val), text, "{name}");
        // Paragraph documents: concatenated they give back the text, and each of the
        // train documents but the last ends with a blank line.
        let docs = decode_docs(&c, &c.train);
        assert!(docs.len() > 40);
        assert!(
            docs[..docs.len() - 1].iter().all(|d| d.ends_with("\n\n")),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folder_and_jsonl_inputs_split_by_document() {
    let dir = tmpdir("docs");
    let folder = dir.join("texts");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let mut docs = Vec::new();
    for i in 0..60 {
        let d = format!("Document {i}. {}", TEXT.repeat(1 + i % 3));
        let p = if i % 2 == 0 {
            folder.join(format!("{i:03}.txt"))
        } else {
            folder.join("sub").join(format!("{i:03}.txt"))
        };
        std::fs::write(p, &d).unwrap();
        docs.push(d);
    }
    let jsonl = dir.join("docs.jsonl");
    let lines: Vec<String> = docs
        .iter()
        .map(|d| serde_json::json!({"id": 1, "body": d}).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n\n").unwrap();
    for (name, input) in [
        ("folder", Input::Dir(folder.clone())),
        (
            "jsonl",
            Input::Jsonl {
                path: jsonl.clone(),
                field: "body".into(),
            },
        ),
    ] {
        let out = dir.join(name);
        let opts = PrepareOptions {
            tokenizer: TokenizerSpec::Bpe { vocab_size: 320 },
            val_fraction: 0.3,
            seed: 4,
            ..Default::default()
        };
        let r = prepare(&input, &out, &opts).unwrap();
        assert_eq!(r.meta.source.split, "document");
        let c = Corpus::open(&out, None).unwrap();
        assert_eq!(c.train.doc_count() + c.val.doc_count(), 60, "{name}");
        assert!(
            c.val.doc_count() >= 5 && c.val.doc_count() <= 35,
            "{name}: {}",
            c.val.doc_count()
        );
        let mut got = decode_docs(&c, &c.train);
        got.extend(decode_docs(&c, &c.val));
        let mut want = docs.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
        // Same seed, same split; another seed, another split.
        let again = dir.join(format!("{name}-again"));
        prepare(&input, &again, &opts).unwrap();
        assert_eq!(
            Corpus::open(&again, None).unwrap().val.doc_count(),
            c.val.doc_count()
        );
    }
    // A JSONL line without the field names the line.
    std::fs::write(&jsonl, "{\"body\": \"ok\"}\n{\"text\": \"no\"}\n").unwrap();
    let e = prepare(
        &Input::Jsonl {
            path: jsonl.clone(),
            field: "body".into(),
        },
        &dir.join("bad"),
        &PrepareOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 2") && e.contains("body"), "{e}");
    assert!(!dir.join("bad").exists() && !dir.join("bad.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn long_documents_span_shards_and_eos_is_appended() {
    let dir = tmpdir("shards");
    let folder = dir.join("f");
    std::fs::create_dir_all(&folder).unwrap();
    let long = "x".repeat(600_000) + " the end.";
    std::fs::write(folder.join("a.txt"), &long).unwrap();
    std::fs::write(folder.join("b.txt"), "short one").unwrap();
    let out = dir.join("o");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::Char,
        specials: Some("eos".into()),
        append_eos: true,
        val_fraction: 0.0,
        shard_tokens: 250_000,
        ..Default::default()
    };
    prepare(&Input::Dir(folder), &out, &opts).unwrap();
    let c = Corpus::open(&out, None).unwrap();
    let eos = c.tokenizer.as_ref().unwrap().specials().eos().unwrap();
    assert_eq!(c.train.shards().len(), 3);
    assert!(c.train.shards().iter().all(|s| s.len() <= 250_000));
    let all = decode_all(&c, &c.train);
    assert_eq!(all, format!("{long}</s>short one</s>"));
    let mut ids = vec![0; c.train.len() as usize];
    c.train.read(0, &mut ids).unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == eos).count(), 2);
    // The document continued across shards counts as a new document in each.
    assert_eq!(c.train.doc_count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_output_and_bad_input_are_errors() {
    let dir = tmpdir("protect");
    let src = dir.join("in.txt");
    std::fs::write(&src, TEXT).unwrap();
    let out = dir.join("o");
    prepare(
        &Input::TextFile(src.clone()),
        &out,
        &PrepareOptions::default(),
    )
    .unwrap();
    let e = prepare(
        &Input::TextFile(src.clone()),
        &out,
        &PrepareOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("exists") && e.contains("--force"), "{e}");
    let opts = PrepareOptions {
        overwrite: true,
        val_fraction: 0.5,
        ..Default::default()
    };
    prepare(&Input::TextFile(src.clone()), &out, &opts).unwrap();
    assert_eq!(
        Corpus::open(&out, None)
            .unwrap()
            .meta
            .unwrap()
            .source
            .val_fraction,
        0.5
    );
    // Invalid UTF-8 names the file.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"abc\xff\xfedef\n").unwrap();
    let e = prepare(
        &Input::TextFile(bad),
        &dir.join("o2"),
        &PrepareOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bad.txt") && e.contains("UTF-8"), "{e}");
    assert!(!dir.join("o2.partial").exists());
    // A tokenizer.json file as the spec: the GPT-2 fixture.
    let gpt2 = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers/gpt2-bpe/tokenizer.json");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::File(gpt2),
        append_eos: true,
        ..Default::default()
    };
    prepare(&Input::TextFile(src.clone()), &dir.join("o3"), &opts).unwrap();
    let c = Corpus::open(&dir.join("o3"), Some(700)).unwrap();
    assert!(decode_all(&c, &c.train).ends_with("<|endoftext|>"));
    check_no_tmp_files(&dir.join("o3"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_no_tmp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".tmp"), "{n}");
    }
}

#[test]
fn tokenizer_file_with_declared_specials() {
    let dir = tmpdir("hfspec");
    let src = dir.join("in.txt");
    std::fs::write(&src, TEXT.repeat(5)).unwrap();
    let bert = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers/bert-wordpiece/tokenizer.json");
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::File(bert.clone()),
        specials: Some("pad,mask".into()),
        ..Default::default()
    };
    prepare(&Input::TextFile(src.clone()), &dir.join("o"), &opts).unwrap();
    let c = Corpus::open(&dir.join("o"), None).unwrap();
    let s = c.tokenizer.as_ref().unwrap().specials();
    assert!(s.pad().is_some() && s.mask().is_some());
    assert_eq!((s.cls(), s.sep(), s.unk()), (None, None, None));
    // A role whose string is not in the vocabulary is an error naming it.
    let opts = PrepareOptions {
        tokenizer: TokenizerSpec::File(bert),
        specials: Some("eos=</s>".into()),
        ..Default::default()
    };
    let e = prepare(&Input::TextFile(src), &dir.join("o2"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("</s>") && e.contains("eos"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
