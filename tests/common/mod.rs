//! Shared helpers for the Hugging Face parity tests: reading a fixture directory made by
//! `tools/hf_fixtures.py` and comparing pretext's numbers with it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use pretext::autograd::ParamStore;
use pretext::models::checkpoint::{self, RawTensor};
use pretext::tensor::Tensor;

pub struct Fixture {
    pub dir: PathBuf,
    pub inputs: serde_json::Value,
    pub outputs: BTreeMap<String, RawTensor>,
}

pub fn fixture(case: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(case);
    let inputs =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    let outputs = checkpoint::load(dir.join("outputs.safetensors")).unwrap();
    Fixture {
        dir,
        inputs,
        outputs,
    }
}

impl Fixture {
    /// An integer input as an i64 tensor with its nested-array shape.
    pub fn ids(&self, key: &str) -> Tensor {
        ids_from_json(&self.inputs[key])
    }
    pub fn out(&self, key: &str) -> &RawTensor {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("fixture has no output `{key}`"))
    }
}

pub fn ids_from_json(v: &serde_json::Value) -> Tensor {
    fn walk(v: &serde_json::Value, shape: &mut Vec<usize>, depth: usize, out: &mut Vec<i64>) {
        match v {
            serde_json::Value::Array(a) => {
                if shape.len() <= depth {
                    shape.push(a.len());
                }
                for x in a {
                    walk(x, shape, depth + 1, out);
                }
            }
            x => out.push(x.as_i64().expect("integer")),
        }
    }
    let (mut shape, mut data) = (Vec::new(), Vec::new());
    walk(v, &mut shape, 0, &mut data);
    Tensor::from_vec(data, &shape).unwrap()
}

/// max |a − b| after checking shapes agree.
pub fn max_abs_diff(what: &str, got: &Tensor, want: &RawTensor) -> f32 {
    assert_eq!(got.shape(), &want.shape[..], "{what}: shape");
    let g = got.to_vec_f32().unwrap();
    g.iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(what: &str, got: &Tensor, want: &RawTensor, atol: f32) {
    let d = max_abs_diff(what, got, want);
    assert!(d <= atol, "{what}: max |Δ| = {d:e} > {atol:e}");
}

/// Every parameter's gradient within `rel` of the largest gradient magnitude of that tensor.
/// An absolute floor of 1e-7 covers tensors whose exact gradient is zero, where both frameworks
/// see only rounding noise (~1e-8): attention key biases, which softmax's shift invariance cancels.
pub fn assert_grads(store: &ParamStore, fx: &Fixture, rel: f32, transposed: &dyn Fn(&str) -> bool) {
    let mut checked = 0;
    for (name, var) in store.iter() {
        let want = fx.out(&format!("grad.{name}"));
        let want = if transposed(name) {
            want.transpose2().unwrap()
        } else {
            want.clone()
        };
        let got = var
            .grad()
            .unwrap_or_else(|| panic!("no gradient for `{name}`"));
        let scale = want
            .data
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-30);
        let d = max_abs_diff(name, &got, &want);
        assert!(
            d <= rel * scale + 1e-7,
            "grad.{name}: max |Δ| = {d:e} > {rel} × {scale:e}"
        );
        checked += 1;
    }
    let expected = fx.outputs.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(checked, expected, "every fixture gradient must be checked");
}
