//! Fine-tuning label masks: prompt–completion, the legacy response-template collator
//! (last match wins, missing template masks the row), and token-classification
//! alignment (first sub-word labelled).

use pretext::objectives::finetune::{
    align_token_labels, collate, completion_only_labels, prompt_completion,
};
use pretext::objectives::{Loss, IGNORE};

const I: i64 = IGNORE;

#[test]
fn prompt_tokens_are_masked_and_eos_appended() {
    let (ids, labels) = prompt_completion(&[1, 2, 3], &[7, 8], Some(9));
    assert_eq!(ids, vec![1, 2, 3, 7, 8, 9]);
    assert_eq!(labels, vec![I, I, I, 7, 8, 9]);
    // Already ends with eos: not doubled.
    let (ids, labels) = prompt_completion(&[1], &[7, 9], Some(9));
    assert_eq!(ids, vec![1, 7, 9]);
    assert_eq!(labels, vec![I, 7, 9]);
    let (ids, labels) = prompt_completion(&[], &[4], None);
    assert_eq!((ids, labels), (vec![4], vec![4]));
}

#[test]
fn response_template_last_match_wins() {
    // "### Answer:" = [50, 51]; it occurs twice, the labels start after the second.
    let ids = [10, 50, 51, 11, 12, 50, 51, 13, 14];
    let c = completion_only_labels(&ids, &[50, 51]);
    assert!(c.found);
    assert_eq!(c.labels, vec![I, I, I, I, I, I, I, 13, 14]);
    // Template at the very end: nothing left to learn, all −100 but found.
    let c = completion_only_labels(&[1, 2, 50, 51], &[50, 51]);
    assert!(c.found);
    assert!(c.labels.iter().all(|&l| l == I));
    // Partial matches do not count.
    let c = completion_only_labels(&[50, 1, 51, 50], &[50, 51]);
    assert!(!c.found);
    assert_eq!(c.labels, vec![I; 4]);
    // Missing template (or longer than the row): whole row −100.
    assert_eq!(completion_only_labels(&[1], &[1, 2]).labels, vec![I]);
    assert!(!completion_only_labels(&[1, 2], &[]).found);
}

#[test]
fn collate_pads_inputs_and_labels() {
    let rows = vec![
        prompt_completion(&[1, 2], &[3], None),
        prompt_completion(&[4], &[5, 6, 7], None),
    ];
    let b = collate(&rows, 5, 0, Loss::CausalLm).unwrap();
    b.validate().unwrap();
    assert_eq!(b.input_ids, vec![1, 2, 3, 0, 0, 4, 5, 6, 7, 0]);
    assert_eq!(b.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 0]);
    assert_eq!(b.labels, vec![I, I, 3, I, I, I, 5, 6, 7, I]);
    // Causal: position t predicts labels[t+1]; the prompt's last token predicts the
    // first completion token.
    let targets: Vec<(usize, usize, i64)> = b
        .loss_positions()
        .iter()
        .map(|p| (p.row, p.pos, p.target))
        .collect();
    assert_eq!(targets, vec![(0, 1, 3), (1, 0, 5), (1, 1, 6), (1, 2, 7)]);
    let e = collate(&rows, 3, 0, Loss::CausalLm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1 has 4 tokens"), "{e}");
    let e = collate(&[(vec![1, 2], vec![1])], 3, 0, Loss::CausalLm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 ids but 1 labels"), "{e}");
}

#[test]
fn token_labels_go_to_first_subwords() {
    // [CLS] Hug ##ging Face is [SEP] → words 0 (Hugging), 1 (Face), 2 (is).
    let word_ids = [None, Some(0), Some(0), Some(1), Some(2), None];
    let labels = [3, 1, 0]; // B-ORG, B-PER?, O
    assert_eq!(
        align_token_labels(&word_ids, &labels, None).unwrap(),
        vec![I, 3, I, 1, 0, I]
    );
    // label_all_tokens: later sub-words get the I- label of their word's label.
    let b_to_i = [0, 2, 2, 4, 4];
    assert_eq!(
        align_token_labels(&word_ids, &labels, Some(&b_to_i)).unwrap(),
        vec![I, 3, 4, 1, 0, I]
    );
    let e = align_token_labels(&[Some(3)], &labels, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("token 0 belongs to word 3") && e.contains("3 word labels"),
        "{e}"
    );
    let b = collate(
        &[(
            vec![101, 7, 8, 102],
            align_token_labels(&word_ids[..4], &labels, None).unwrap(),
        )],
        6,
        0,
        Loss::TokenClassification,
    )
    .unwrap();
    assert_eq!(b.labels, vec![I, 3, I, 1, I, I]);
    assert_eq!(b.loss_count(), 2);
}
