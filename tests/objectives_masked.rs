//! CLM, MLM (token level and whole-word) and MLM+NSP: hand-worked rows, selection
//! statistics, special tokens, layout, truncation, reproducibility.

mod objectives_util;

use std::sync::Arc;

use objectives_util::*;
use pretext::data::tokenizer::SpecialTokens;
use pretext::objectives::{
    create_instances_from_document, truncate_seq_pair, Clm, Example, Loss, Mlm, MlmConfig, MlmNsp,
    Objective, ObjectiveTokens, WordTable, IGNORE,
};
use pretext::tensor::Rng;

fn mlm(cfg: MlmConfig) -> Mlm {
    Mlm::new(cfg, &tokens()).unwrap()
}

#[test]
fn clm_labels_are_inputs_and_padding_is_ignored() {
    let clm = Clm::new(6, &tokens()).unwrap();
    let ex = [
        Example::window(vec![10, 11, 12, 13, 14, 15]),
        Example::window(vec![20, 21, 22]),
    ];
    let b = clm.build(&ex, &mut Rng::new(0)).unwrap();
    b.validate().unwrap();
    assert_eq!(b.loss, Loss::CausalLm);
    assert_eq!(
        b.input_ids,
        vec![10, 11, 12, 13, 14, 15, 20, 21, 22, 0, 0, 0]
    );
    assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(
        b.labels,
        vec![10, 11, 12, 13, 14, 15, 20, 21, 22, IGNORE, IGNORE, IGNORE]
    );
    // Position t predicts token t+1: 5 targets in the full row, 2 in the short one.
    let pos = b.loss_positions();
    assert_eq!(pos.len(), 5 + 2);
    for p in &pos {
        assert_eq!(p.target, b.input_ids[p.row * 6 + p.pos + 1]);
    }
    assert_eq!(pos[5].target, 21);
    assert_eq!(pos[6].target, 22);
}

#[test]
fn clm_keeps_eos_labels_when_pad_is_eos() {
    // GPT-2: no [PAD], eos = <|endoftext|> pads; real eos tokens keep their labels.
    let st = SpecialTokens {
        eos: specials().eos,
        ..Default::default()
    };
    let t = ObjectiveTokens::new(&st, V).unwrap();
    let clm = Clm::new(4, &t).unwrap();
    let b = clm
        .build(&[Example::window(vec![9, EOS])], &mut Rng::new(0))
        .unwrap();
    assert_eq!(b.input_ids, vec![9, EOS as i64, EOS as i64, EOS as i64]);
    assert_eq!(b.labels, vec![9, EOS as i64, IGNORE, IGNORE]);
    let none = ObjectiveTokens::new(&SpecialTokens::default(), V).unwrap();
    let e = Clm::new(4, &none)
        .unwrap()
        .build(&[Example::window(vec![9])], &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a pad nor an eos"), "{e}");
    let e = clm
        .build(&[Example::window(vec![9; 5])], &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("example 0 has 5 tokens"), "{e}");
}

#[test]
fn mlm_hand_worked_rows() {
    // Everything selected, all → [MASK].
    let mut cfg = MlmConfig::new(6);
    cfg.probability = 1.0;
    cfg.mask_replace = 1.0;
    cfg.random_replace = 0.0;
    let b = mlm(cfg.clone())
        .build(&[Example::window(vec![10, 11, UNK])], &mut Rng::new(3))
        .unwrap();
    let m = MASK as i64;
    assert_eq!(
        b.input_ids,
        vec![CLS as i64, m, m, UNK as i64, SEP as i64, 0]
    );
    assert_eq!(b.labels, vec![IGNORE, 10, 11, IGNORE, IGNORE, IGNORE]);
    assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 1, 0]);
    assert!(b.token_type_ids.is_none());
    // Everything selected, nothing replaced: labels name the tokens, inputs unchanged.
    cfg.mask_replace = 0.0;
    let b = mlm(cfg.clone())
        .build(&[Example::window(vec![10, 11, 12, 13])], &mut Rng::new(3))
        .unwrap();
    assert_eq!(b.input_ids, vec![2, 10, 11, 12, 13, 3]);
    assert_eq!(b.labels, vec![IGNORE, 10, 11, 12, 13, IGNORE]);
    // Nothing selected.
    cfg.probability = 0.0;
    let b = mlm(cfg)
        .build(&[Example::window(vec![10, 11, 12, 13])], &mut Rng::new(3))
        .unwrap();
    assert!(b.labels.iter().all(|&l| l == IGNORE));
    assert_eq!(b.loss_count(), 0);
}

#[test]
fn mlm_selects_15_percent_and_splits_80_10_10() {
    let seq = 128;
    let m = mlm(MlmConfig::new(seq));
    let mut rng = Rng::new(11);
    let mut data = Rng::new(12);
    let (mut cand, mut sel, mut masked, mut random, mut kept) = (0usize, 0, 0, 0, 0);
    for _ in 0..25 {
        let ex: Vec<Example> = (0..32)
            .map(|_| {
                let mut ids = random_ids(&mut data, seq - 2);
                // Specials inside the text: [UNK], sentinels, [MASK] are never selected.
                ids[5] = UNK;
                ids[9] = 150;
                ids[17] = MASK;
                Example::window(ids)
            })
            .collect();
        let b = m.build(&ex, &mut rng).unwrap();
        for (r, e) in ex.iter().enumerate() {
            let (x, y) = (b.input_row(r), b.label_row(r));
            let orig = match e {
                Example::Window(w) => &w.ids,
                _ => unreachable!(),
            };
            for t in 0..seq {
                let o = if t == 0 {
                    CLS
                } else if t == seq - 1 {
                    SEP
                } else {
                    orig[t - 1]
                };
                let special = tokens().is_special(o);
                cand += !special as usize;
                if y[t] == IGNORE {
                    assert_eq!(x[t], o as i64, "unselected position changed");
                    continue;
                }
                assert!(!special, "special token {o} selected");
                assert_eq!(y[t], o as i64);
                sel += 1;
                if x[t] == MASK as i64 {
                    masked += 1;
                } else if x[t] == o as i64 {
                    kept += 1;
                } else {
                    random += 1;
                }
            }
        }
    }
    let rate = sel as f64 / cand as f64;
    let (fm, fr, fk) = (
        masked as f64 / sel as f64,
        random as f64 / sel as f64,
        kept as f64 / sel as f64,
    );
    eprintln!(
        "mlm: {sel} of {cand} selected ({rate:.4}); mask {fm:.4} random {fr:.4} kept {fk:.4}"
    );
    // ~15 000 selections: standard errors 0.0013 (rate), 0.0033 (mask), 0.0025 (random).
    assert!((rate - 0.15).abs() < 0.006, "selection rate {rate}");
    assert!((fm - 0.8).abs() < 0.015, "mask share {fm}");
    // A random draw equals the original with probability 1/V.
    assert!(
        (fr - 0.1 * (1.0 - 1.0 / V as f64)).abs() < 0.012,
        "random share {fr}"
    );
    assert!((fk - 0.1).abs() < 0.012, "kept share {fk}");
}

/// Char-like vocabulary: id 7 is a space, 8.. letters.
fn char_words() -> Arc<WordTable> {
    Arc::new(WordTable::from_fn(V, |id| match id {
        7 => Some(" ".into()),
        8..=99 => Some(char::from(b'a' + (id % 26) as u8).to_string()),
        _ => Some(format!("[S{id}]")),
    }))
}

#[test]
fn whole_word_masking_selects_whole_words_within_budget() {
    let seq = 64;
    let mut cfg = MlmConfig::new(seq);
    cfg.whole_word = Some(char_words());
    let m = mlm(cfg);
    let mut rng = Rng::new(21);
    let mut data = Rng::new(22);
    let mut total_sel = 0;
    for _ in 0..200 {
        // Words of 1–5 letters separated by single spaces.
        let mut ids = Vec::new();
        while ids.len() < seq - 2 {
            let len = 1 + data.below(5) as usize;
            ids.extend((0..len).map(|_| 8 + data.below(90) as u32));
            ids.push(7);
        }
        ids.truncate(seq - 2);
        let b = m.build(&[Example::window(ids.clone())], &mut rng).unwrap();
        let y = b.label_row(0);
        // Words of the row (offset 1 for [CLS]); each is labelled entirely or not at all.
        let mut t = 0;
        let mut sel = 0;
        while t < ids.len() {
            let end = if ids[t] == 7 {
                t + 1
            } else {
                (t..ids.len()).find(|&u| ids[u] == 7).unwrap_or(ids.len())
            };
            let labelled: Vec<bool> = (t..end).map(|u| y[u + 1] != IGNORE).collect();
            assert!(
                labelled.iter().all(|&l| l) || labelled.iter().all(|&l| !l),
                "word {t}..{end} partly selected: {labelled:?}"
            );
            sel += labelled.iter().filter(|&&l| l).count();
            t = end;
        }
        // k = round(64 · 0.15) = 10 (len counts [CLS] and [SEP]); words that would
        // overflow k are skipped, so |S| ≤ k and rarely much below.
        assert!((6..=10).contains(&sel), "selected {sel}");
        assert_eq!(y[0], IGNORE);
        assert_eq!(y[seq - 1], IGNORE);
        total_sel += sel;
    }
    assert!(
        total_sel as f64 / 200.0 > 9.5,
        "mean selected {}",
        total_sel as f64 / 200.0
    );
}

#[test]
fn mlm_errors_name_the_missing_token() {
    let st = SpecialTokens {
        pad: specials().pad,
        ..Default::default()
    };
    let t = ObjectiveTokens::new(&st, V).unwrap();
    let e = Mlm::new(MlmConfig::new(16), &t).unwrap_err().to_string();
    assert!(
        e.contains("mlm needs a mask token; the tokenizer declares none"),
        "{e}"
    );
    let st = SpecialTokens {
        mask: specials().mask,
        ..Default::default()
    };
    let t = ObjectiveTokens::new(&st, V).unwrap();
    let e = Mlm::new(MlmConfig::new(16), &t).unwrap_err().to_string();
    assert!(e.contains("needs a cls token"), "{e}");
    let mut cfg = MlmConfig::new(4);
    cfg.wrap = false;
    let m = Mlm::new(cfg, &t).unwrap();
    let e = m
        .build(&[Example::window(vec![9, 9])], &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a pad token"), "{e}");
    let e = m
        .build(&[Example::pair(vec![9], vec![9], false)], &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("example 0 is a sentence pair"), "{e}");
}

#[test]
fn nsp_layout_segments_and_labels() {
    let mut cfg = MlmConfig::new(12);
    cfg.probability = 0.0;
    let o = MlmNsp::new(cfg, &tokens()).unwrap();
    let ex = [
        Example::pair(vec![10, 11, 12], vec![20, 21], false),
        Example::pair(vec![30], vec![40, 41, 42, 43], true),
    ];
    let b = o.build(&ex, &mut Rng::new(1)).unwrap();
    b.validate().unwrap();
    assert_eq!(b.loss, Loss::MaskedLmNsp);
    assert_eq!(b.input_row(0), &[2, 10, 11, 12, 3, 20, 21, 3, 0, 0, 0, 0]);
    assert_eq!(
        &b.token_type_ids.as_ref().unwrap()[..12],
        &[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    );
    assert_eq!(b.mask_row(0), &[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(b.input_row(1), &[2, 30, 3, 40, 41, 42, 43, 3, 0, 0, 0, 0]);
    assert_eq!(
        &b.token_type_ids.as_ref().unwrap()[12..],
        &[0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    );
    assert_eq!(b.nsp_labels, Some(vec![0, 1]));
}

#[test]
fn truncation_trims_the_longer_side() {
    let mut rng = Rng::new(4);
    let a0: Vec<u32> = (10..20).collect();
    let b0: Vec<u32> = (50..53).collect();
    let (mut a, mut b) = (a0.clone(), b0.clone());
    truncate_seq_pair(&mut a, &mut b, 8, &mut rng);
    assert_eq!((a.len(), b.len()), (5, 3));
    assert_eq!(b, b0);
    assert!(
        a0.windows(5).any(|w| w == a.as_slice()),
        "{a:?} is not a run of A"
    );
    // Both long: trimmed to equal lengths, ties trim B first.
    let (mut a, mut b) = (
        (0..9).collect::<Vec<u32>>(),
        (100..110).collect::<Vec<u32>>(),
    );
    truncate_seq_pair(&mut a, &mut b, 7, &mut rng);
    assert_eq!((a.len(), b.len()), (4, 3));
    // Front and back trims are both used.
    let (mut front, mut back) = (0, 0);
    for s in 0..200 {
        let (mut a, mut b) = ((0..10).collect::<Vec<u32>>(), vec![1u32]);
        truncate_seq_pair(&mut a, &mut b, 10, &mut Rng::new(s));
        front += (a[0] == 1) as usize;
        back += (a[8] == 8) as usize;
    }
    assert!(front > 70 && back > 70, "front {front}, back {back}");
    // Through build: a row of 12 holds |A| + |B| ≤ 9.
    let mut cfg = MlmConfig::new(12);
    cfg.probability = 0.0;
    let o = MlmNsp::new(cfg, &tokens()).unwrap();
    let b = o
        .build(
            &[Example::pair((10..30).collect(), vec![60, 61], false)],
            &mut rng,
        )
        .unwrap();
    let row = b.input_row(0);
    assert_eq!(row[0], CLS as i64);
    assert_eq!(&row[8..], &[SEP as i64, 60, 61, SEP as i64]);
    assert!(b.mask_row(0).iter().all(|&m| m == 1));
}

/// Documents whose tokens encode (document, sentence): every token of sentence `j` of
/// document `d` is `1000·d + j`.
fn docs(n_docs: usize, n_sent: usize, sent_len: usize) -> Vec<Vec<Vec<u32>>> {
    (0..n_docs)
        .map(|d| {
            (0..n_sent)
                .map(|j| vec![(d * 1000 + j) as u32; sent_len])
                .collect()
        })
        .collect()
}

#[test]
fn nsp_instances_are_half_random_and_true_next_continues() {
    // Long documents and full-length targets: only a document's last chunk can hold one
    // sentence (always a random next), so the share stays within ~1/70 of 1/2. (With
    // short_seq_prob, a document whose target is ≤ one sentence gives only random
    // nexts, as in google-research.)
    let docs = docs(5, 400, 6);
    let mut rng = Rng::new(8);
    let (mut random, mut total) = (0, 0);
    let mut src = docs.clone();
    for rep in 0..10 {
        for d in 0..docs.len() as u64 {
            let inst =
                create_instances_from_document(src.as_mut_slice(), d, 64, 0.0, &mut rng).unwrap();
            for p in inst {
                total += 1;
                let doc_of = |t: u32| t / 1000;
                assert!(p.a.iter().all(|&t| doc_of(t) == d as u32));
                if p.is_random_next {
                    random += 1;
                    assert!(
                        p.b.iter().all(|&t| doc_of(t) != d as u32),
                        "rep {rep}: random B from the same document"
                    );
                } else {
                    // B starts with the sentence right after A's last one.
                    assert!(p.b.iter().all(|&t| doc_of(t) == d as u32));
                    assert_eq!(p.b[0], p.a[p.a.len() - 1] + 1);
                }
                // Whole sentences, in order, within the target of 61 tokens for A.
                assert_eq!(p.a.len() % 6, 0);
                assert!(p.a.len() < 61 + 6);
            }
        }
    }
    let share = random as f64 / total as f64;
    eprintln!("nsp: {random} random of {total} ({share:.3})");
    assert!(total > 1000);
    // Standard error √(1/4n) ≈ 0.012.
    assert!((share - 0.5).abs() < 0.04, "random share {share}");
}

#[test]
fn mlm_nsp_masks_only_text_and_keeps_nsp_labels() {
    let o = MlmNsp::new(MlmConfig::new(40), &tokens()).unwrap();
    let mut data = Rng::new(5);
    let ex: Vec<Example> = (0..64)
        .map(|i| {
            Example::pair(
                random_ids(&mut data, 20),
                random_ids(&mut data, 25),
                i % 2 == 0,
            )
        })
        .collect();
    let b = o.build(&ex, &mut Rng::new(6)).unwrap();
    let mut sel = 0;
    for r in 0..b.batch {
        let (x, y) = (b.input_row(r), b.label_row(r));
        assert_eq!(x[0], CLS as i64);
        assert_eq!(y[0], IGNORE);
        let seps: Vec<usize> = (0..40)
            .filter(|&t| x[t] == SEP as i64 && y[t] == IGNORE)
            .collect();
        assert!(seps.len() >= 2, "row {r}: {x:?}");
        sel += y.iter().filter(|&&l| l != IGNORE).count();
    }
    let rate = sel as f64 / (64.0 * 37.0);
    assert!((rate - 0.15).abs() < 0.03, "rate {rate}");
    assert_eq!(
        b.nsp_labels.unwrap(),
        (0..64).map(|i| (i % 2 == 0) as i64).collect::<Vec<_>>()
    );
}

#[test]
fn same_seed_same_batch() {
    let t = tokens();
    let mut data = Rng::new(1);
    let windows: Vec<Example> = (0..8)
        .map(|_| Example::window(random_ids(&mut data, 30)))
        .collect();
    let pairs: Vec<Example> = (0..8)
        .map(|_| Example::pair(random_ids(&mut data, 20), random_ids(&mut data, 20), false))
        .collect();
    for name in ["clm", "mlm", "mlm_nsp"] {
        let o = Objective::from_name(name, 32, &t).unwrap();
        let ex = if name == "mlm_nsp" { &pairs } else { &windows };
        let a = o.build(ex, &mut Rng::new(42)).unwrap();
        let b = o.build(ex, &mut Rng::new(42)).unwrap();
        assert_eq!(a, b, "{name}");
        if name != "clm" {
            let c = o.build(ex, &mut Rng::new(43)).unwrap();
            assert_ne!(a.labels, c.labels, "{name}: seed ignored");
        }
    }
    let e = Objective::from_name("xlnet", 32, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown objective `xlnet`"), "{e}");
}
