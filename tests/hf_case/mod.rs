//! Shared helpers for tests that read the HF fixtures in tests/fixtures/hf (see NOTES.md there).
//! Include with `mod common;` from a test file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pretext::models::{Checkpoint, ModelConfig, RawTensor};
use serde_json::{Map, Value};

/// The fixture root, `tests/fixtures/hf`.
pub fn hf_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

/// One fixture case: its config, weights, inputs and reference outputs.
pub struct HfCase {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub weights: Checkpoint,
    pub outputs: Checkpoint,
    pub inputs: Map<String, Value>,
}

impl HfCase {
    pub fn open(case: &str) -> Self {
        let dir = hf_root().join(case);
        let inputs =
            match serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap())
                .unwrap()
            {
                Value::Object(m) => m,
                _ => panic!("{case}/inputs.json is not an object"),
            };
        Self {
            config: ModelConfig::from_file(&dir).unwrap(),
            weights: Checkpoint::open(&dir).unwrap(),
            outputs: Checkpoint::open(dir.join("outputs.safetensors")).unwrap(),
            inputs,
            dir,
        }
    }

    /// An integer input (`input_ids`, `attention_mask`, `labels`, ...) as (shape, row-major values).
    pub fn ints(&self, key: &str) -> Option<(Vec<usize>, Vec<i64>)> {
        self.inputs.get(key).map(|v| int_array(v, key))
    }

    /// A reference output (`logits`, `loss`, `grad.<param>`, `hidden_states.1`, ...).
    pub fn output(&self, key: &str) -> RawTensor {
        self.outputs.get(key).unwrap()
    }
}

/// A rectangular JSON array of integers (any depth) as (shape, row-major values).
pub fn int_array(v: &Value, what: &str) -> (Vec<usize>, Vec<i64>) {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(a) = cur {
        shape.push(a.len());
        match a.first() {
            Some(x) => cur = x,
            None => break,
        }
    }
    let mut out = Vec::new();
    fn walk(v: &Value, depth: usize, shape: &[usize], out: &mut Vec<i64>, what: &str) {
        match v {
            Value::Array(a) => {
                assert!(
                    depth < shape.len() && a.len() == shape[depth],
                    "{what}: ragged array"
                );
                a.iter().for_each(|x| walk(x, depth + 1, shape, out, what));
            }
            Value::Number(n) => {
                assert_eq!(depth, shape.len(), "{what}: ragged array");
                out.push(
                    n.as_i64()
                        .unwrap_or_else(|| panic!("{what}: {n} is not an integer")),
                );
            }
            other => panic!("{what}: {other} is not an integer"),
        }
    }
    walk(v, 0, &shape, &mut out, what);
    (shape, out)
}

/// Assert `|got - want| <= atol + rtol * |want|` elementwise, reporting the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &RawTensor, atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.data.len(),
        "{what}: {} values for shape {:?}",
        got.len(),
        want.shape
    );
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        // NaN (a NaN output) is kept as the worst and fails the final check.
        if excess > worst.1 || excess.is_nan() {
            worst = (i, excess);
        }
    }
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} is {} where HF has {} (shape {:?}, atol {atol}, rtol {rtol})",
        got[i],
        want.data[i],
        want.shape
    );
}
