//! Tokenizers: char and trained byte-level BPE round trips, special-token layout
//! (sentinels descending from the end), save/load with fingerprints.

use std::collections::BTreeSet;

use pretext::data::tokenizer::{hf, CharTokenizer, Role, SpecialSpec, SpecialTokens, Tokenizer};

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n  Tabs\tand  spaces, café, naïve — 中文 😀!\n";

fn char_tok(spec: &str, sentinels: usize) -> Tokenizer {
    let chars: BTreeSet<char> = TEXT.chars().collect();
    let spec = SpecialSpec::parse(spec, sentinels).unwrap();
    let (c, s) = CharTokenizer::new(&chars, &spec).unwrap();
    Tokenizer::from_char(c, s).unwrap()
}

#[test]
fn char_round_trip_and_sorted_vocabulary() {
    let t = char_tok("", 0);
    let chars: BTreeSet<char> = TEXT.chars().collect();
    assert_eq!(t.vocab_size(), chars.len());
    // id = rank in the sorted character set (nanoGPT's stoi).
    for (i, c) in chars.iter().enumerate() {
        assert_eq!(t.token_to_id(&c.to_string()), Some(i as u32));
    }
    let ids = t.encode(TEXT).unwrap();
    assert_eq!(ids.len(), TEXT.chars().count());
    assert_eq!(t.decode(&ids).unwrap(), TEXT);
    // A character outside the vocabulary is an error naming it (no unk declared).
    let err = t.encode("xyzQ").unwrap_err().to_string();
    assert!(err.contains("'Q'") || err.contains("'x'"), "{err}");
    // An id outside the vocabulary is an error.
    assert!(t.decode(&[t.vocab_size() as u32]).is_err());
}

#[test]
fn char_specials_and_sentinels_layout() {
    let t = char_tok("pad,unk,mask,bos=<s>,eos=</s>", 3);
    let n = TEXT.chars().collect::<BTreeSet<_>>().len();
    let s = t.specials();
    assert_eq!(s.pad(), Some(n as u32));
    assert_eq!(s.unk(), Some(n as u32 + 1));
    assert_eq!(s.mask(), Some(n as u32 + 2));
    assert_eq!(s.bos(), Some(n as u32 + 3));
    assert_eq!(s.eos(), Some(n as u32 + 4));
    let v = t.vocab_size() as u32;
    assert_eq!(v as usize, n + 5 + 3);
    assert_eq!(s.sentinel_count(), 3);
    assert_eq!(s.sentinel_id(0), Some(v - 1));
    assert_eq!(s.sentinel_id(1), Some(v - 2));
    assert_eq!(s.sentinel_id(2), Some(v - 3));
    assert_eq!(s.sentinel_id(3), None);
    assert_eq!(t.id_to_token(v - 1).as_deref(), Some("<extra_id_0>"));
    assert_eq!(
        t.decode(&[s.mask().unwrap(), v - 2]).unwrap(),
        "[MASK]<extra_id_1>"
    );
    // unk now catches unknown characters.
    let ids = t.encode("aQ").unwrap();
    assert_eq!(ids[1], s.unk().unwrap());
    assert_eq!(s.all_ids().len(), 8);
}

#[test]
fn special_spec_errors() {
    assert!(SpecialSpec::parse("pad,foo", 0).is_err());
    assert!(SpecialSpec::parse("pad,pad", 0).is_err());
    let s = SpecialSpec::parse("bos=<|endoftext|>,eos=<|endoftext|>", 2).unwrap();
    assert_eq!(s.distinct_tokens(), vec!["<|endoftext|>".to_string()]);
    assert_eq!(s.roles[0].0, Role::Bos);
}

#[test]
fn save_load_keeps_fingerprint() {
    let dir = std::env::temp_dir().join(format!("pretext-tok-{}", std::process::id()));
    let t = char_tok("pad,mask", 2);
    t.save(&dir).unwrap();
    let u = Tokenizer::load(&dir).unwrap();
    assert_eq!(u.fingerprint(), t.fingerprint());
    assert_eq!(u.specials(), t.specials());
    assert_eq!(u.encode(TEXT).unwrap(), t.encode(TEXT).unwrap());
    // A different vocabulary gives a different fingerprint.
    assert_ne!(char_tok("pad", 2).fingerprint(), t.fingerprint());
    // A special_tokens.json that disagrees with the vocabulary is a clear error.
    std::fs::write(
        dir.join("special_tokens.json"),
        r#"{"pad": {"id": 0, "token": "[PAD]"}, "sentinels": []}"#,
    )
    .unwrap();
    let err = Tokenizer::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("special_tokens.json") && err.contains("pad"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn byte_level_bpe_trains_and_round_trips() {
    let corpus: Vec<String> = (0..200)
        .map(|i| format!("{TEXT} line {i} of the corpus, again and again.\n"))
        .collect();
    let spec =
        SpecialSpec::parse("pad,bos=<|endoftext|>,eos=<|endoftext|>,mask=<mask>", 4).unwrap();
    let hf_tok = hf::train_byte_level_bpe(corpus.clone().into_iter(), 400, &spec).unwrap();
    let specials = SpecialTokens::resolve(&spec, |s| hf_tok.token_to_id(s)).unwrap();
    let t = Tokenizer::from_hf(hf_tok, specials).unwrap();
    assert!(t.vocab_size() <= 400, "{}", t.vocab_size());
    assert!(t.vocab_size() > 256 + 3 + 4);
    let v = t.vocab_size() as u32;
    // Sentinels take the last ids, <extra_id_0> highest.
    for i in 0..4 {
        assert_eq!(t.specials().sentinel_id(i), Some(v - 1 - i as u32));
    }
    assert_eq!(t.specials().bos(), t.specials().eos());
    // Merges compress the training text.
    let ids = t.encode(&corpus[0]).unwrap();
    assert!(
        ids.len() < corpus[0].len() / 2,
        "{} ids for {} bytes",
        ids.len(),
        corpus[0].len()
    );
    // Exact round trip, including text never seen in training and every byte value class.
    for s in [
        corpus[0].as_str(),
        TEXT,
        "unseen: Ωμέγα ¿qué? \u{0}\u{7f} \r\n\r\n   trailing   ",
        "",
        " leading space",
    ] {
        let ids = t.encode(s).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), s);
    }
    // Save / load.
    let dir = std::env::temp_dir().join(format!("pretext-bpe-{}", std::process::id()));
    t.save(&dir).unwrap();
    let u = Tokenizer::load(&dir).unwrap();
    assert_eq!(u.fingerprint(), t.fingerprint());
    assert_eq!(u.encode(TEXT).unwrap(), t.encode(TEXT).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bpe_too_small_vocabulary_is_an_error() {
    let spec = SpecialSpec::parse("eos", 10).unwrap();
    let err =
        hf::train_byte_level_bpe(vec!["abc".to_string()].into_iter(), 260, &spec).unwrap_err();
    assert!(err.to_string().contains("at least 267"), "{err}");
}
