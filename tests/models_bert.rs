//! BERT parity with Hugging Face transformers: pre-training (MLM + NSP), sequence and token
//! classification — logits, hidden states, losses and every parameter gradient.

mod common;

use common::{assert_close, assert_grads, fixture};
use pretext::models::{Bert, BertHead};

#[test]
fn bert_pretraining_mlm_and_nsp_match_transformers() {
    let fx = fixture("bert_pretraining");
    let model = Bert::from_pretrained(&fx.dir).unwrap();
    assert_eq!(model.head, BertHead::PreTraining);
    let (ids, tt, mask) = (
        fx.ids("input_ids"),
        fx.ids("token_type_ids"),
        fx.ids("attention_mask"),
    );
    let out = model.forward(&ids, Some(&tt), Some(&mask), None).unwrap();
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            &format!("hidden_states.{i}"),
            &h.value(),
            fx.out(&format!("hidden_states.{i}")),
            1e-4,
        );
    }
    let (mlm_logits, nsp_logits, mlm_loss, nsp_loss, total) = model
        .pretraining_loss(
            &ids,
            Some(&tt),
            Some(&mask),
            &fx.ids("labels"),
            &fx.ids("next_sentence_label"),
            None,
        )
        .unwrap();
    assert_close("logits", &mlm_logits.value(), fx.out("logits"), 1e-4);
    assert_close(
        "seq_relationship_logits",
        &nsp_logits.value(),
        fx.out("seq_relationship_logits"),
        1e-4,
    );
    assert_close("mlm_loss", &mlm_loss.value(), fx.out("mlm_loss"), 1e-5);
    assert_close("nsp_loss", &nsp_loss.value(), fx.out("nsp_loss"), 1e-5);
    assert_close("loss", &total.value(), fx.out("loss"), 1e-5);
    total.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &|_| false);
}

fn classification_case(case: &str, head: fn(usize) -> BertHead) {
    let fx = fixture(case);
    let model = Bert::from_pretrained(&fx.dir).unwrap();
    let n = model.config.num_labels();
    assert_eq!(model.head, head(n));
    let (ids, tt, mask) = (
        fx.ids("input_ids"),
        fx.ids("token_type_ids"),
        fx.ids("attention_mask"),
    );
    let out = model.forward(&ids, Some(&tt), Some(&mask), None).unwrap();
    assert_close(
        "last_hidden_state",
        &out.hidden.value(),
        fx.out("last_hidden_state"),
        1e-4,
    );
    let logits = model.classifier_logits(&out, None).unwrap();
    assert_close("logits", &logits.value(), fx.out("logits"), 1e-4);
    let loss = logits.cross_entropy(&fx.ids("labels"), -100, 0.0).unwrap();
    assert_close("loss", &loss.value(), fx.out("loss"), 1e-5);
    loss.backward().unwrap();
    assert_grads(&model.store, &fx, 1e-4, &|_| false);
}

#[test]
fn bert_sequence_classification_matches_transformers() {
    classification_case("bert_seqcls", BertHead::SequenceClassification);
}

#[test]
fn bert_token_classification_matches_transformers() {
    classification_case("bert_tokcls", BertHead::TokenClassification);
}
