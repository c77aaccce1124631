//! The tokenizer.json path tokenizes exactly as Hugging Face `tokenizers` (Python) does,
//! for a BERT WordPiece and a GPT-2 byte-level BPE file. Fixtures and expected ids are
//! made by tools/tokenizer_fixtures.py.

use std::path::PathBuf;

use pretext::data::tokenizer::Tokenizer;
use serde_json::Value;

fn fixture(name: &str) -> (Tokenizer, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(name);
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (tok, exp)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check(name: &str) -> Tokenizer {
    let (tok, exp) = fixture(name);
    assert_eq!(tok.vocab_size() as u64, exp["vocab_size"].as_u64().unwrap());
    let cases = exp["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text).unwrap(),
            ids(&c["ids"]),
            "{name}: encode {text:?}"
        );
        assert_eq!(
            tok.encode_with_special(text).unwrap(),
            ids(&c["ids_with_special"]),
            "{name}: encode with specials {text:?}"
        );
        assert_eq!(
            tok.decode(&ids(&c["ids"])).unwrap(),
            c["decoded"].as_str().unwrap(),
            "{name}: decode {text:?}"
        );
    }
    tok
}

#[test]
fn bert_wordpiece_matches_hugging_face() {
    let tok = check("bert-wordpiece");
    let s = tok.specials();
    assert_eq!(s.pad(), tok.token_to_id("[PAD]"));
    assert_eq!(s.unk(), tok.token_to_id("[UNK]"));
    assert_eq!(s.cls(), tok.token_to_id("[CLS]"));
    assert_eq!(s.sep(), tok.token_to_id("[SEP]"));
    assert_eq!(s.mask(), tok.token_to_id("[MASK]"));
    assert!(s.pad().is_some() && s.mask().is_some());
    assert_eq!(s.bos(), None);
    assert_eq!(s.sentinel_count(), 0);
}

#[test]
fn gpt2_byte_level_bpe_matches_hugging_face() {
    let tok = check("gpt2-bpe");
    let eot = tok.token_to_id("<|endoftext|>");
    assert!(eot.is_some());
    assert_eq!(tok.specials().eos(), eot);
    assert_eq!(tok.specials().bos(), eot);
    // Byte-level BPE decodes back exactly.
    for s in ["any text at all 😀\n\t", "  x  "] {
        assert_eq!(tok.decode(&tok.encode(s).unwrap()).unwrap(), s);
    }
}
