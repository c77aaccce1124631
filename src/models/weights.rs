//! Moving parameters between a `ParamStore` and a safetensors checkpoint with Hugging Face
//! names. Some families store a weight transposed relative to pretext's (out, in) Linear
//! layout (GPT-2's Conv1D); `transposed(name)` says which. Tied weights are registered in
//! the store once, so they are loaded and saved once.

use std::collections::BTreeMap;
use std::path::Path;

use super::checkpoint::{self, Checkpoint, RawTensor};
use crate::autograd::ParamStore;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// Whether a parameter is one of the model's matrices: a rank-2 `….weight` (Linear weights
/// and embedding tables, tied LM heads included), the parameters weight-only bf16 holds in
/// bf16. Norm weights and biases are rank 1; BART's `final_logits_bias` is no weight.
pub fn is_matrix(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with("weight")
}

/// Load every parameter of `store` from `ckpt`: each must be present under its name with the
/// expected shape (after the optional transpose), else the error names the tensor and shapes.
/// The matrices (`is_matrix`) are read as `matrices` (F32, or BF16 rounded as they are
/// decoded), the rest as f32.
pub fn load_store(
    store: &ParamStore,
    ckpt: &Checkpoint,
    transposed: &dyn Fn(&str) -> bool,
    matrices: DType,
) -> Result<()> {
    for (name, var) in store.iter() {
        let want = var.shape();
        let dtype = if is_matrix(name, &want) {
            matrices
        } else {
            DType::F32
        };
        let t = ckpt.get_tensor(name, &want, transposed(name), dtype)?;
        var.update_value(|v| *v = t)?;
    }
    Ok(())
}

/// The store's parameters as raw tensors under their names (transposed back where needed).
pub fn store_tensors(
    store: &ParamStore,
    transposed: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, RawTensor>> {
    let mut out = BTreeMap::new();
    for (name, var) in store.iter() {
        let v = var.value();
        let raw = RawTensor::new(v.shape().to_vec(), v.to_vec_f32()?)?;
        let raw = if transposed(name) {
            raw.transpose2()?
        } else {
            raw
        };
        out.insert(name.to_string(), raw);
    }
    Ok(out)
}

/// Save the store (plus `extra` tensors such as buffers) as `model.safetensors` at `path`.
pub fn save_store(
    path: impl AsRef<Path>,
    store: &ParamStore,
    transposed: &dyn Fn(&str) -> bool,
    extra: BTreeMap<String, RawTensor>,
) -> Result<()> {
    let mut tensors = store_tensors(store, transposed)?;
    for (k, v) in extra {
        if tensors.insert(k.clone(), v).is_some() {
            return Err(Error::msg(format!("save: tensor `{k}` given twice")));
        }
    }
    checkpoint::save(path, &tensors, &[])
}
