//! `shift_tokens_right` (Hugging Face, used by T5 and BART): the decoder input is the label
//! sequence moved one position right, starting with `decoder_start_token_id`, with the −100
//! of ignored labels replaced by the pad id:
//!   out[:, 0] = start;  out[:, 1:] = labels[:, :-1];  out[out == −100] = pad

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn shift_tokens_right(labels: &Tensor, pad: i64, start: i64) -> Result<Tensor> {
    let (b, t) = match labels.shape() {
        [b, t] => (*b, *t),
        s => {
            return Err(Error::shape(
                "shift_tokens_right",
                &[s],
                "labels must be (B, T)",
            ))
        }
    };
    let l = labels
        .to_dtype(crate::tensor::DType::I64)?
        .to_vec::<i64>()?;
    let mut out = vec![0i64; b * t];
    for r in 0..b {
        for j in 0..t {
            let v = if j == 0 { start } else { l[r * t + j - 1] };
            out[r * t + j] = if v == -100 { pad } else { v };
        }
    }
    Tensor::from_vec(out, &[b, t])
}
