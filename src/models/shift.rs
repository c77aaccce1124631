//! `shift_tokens_right`: the decoder inputs of an encoder-decoder model (T5, BART) derived from
//! its labels, as Hugging Face's `_shift_right` / `shift_tokens_right`:
//!   out[:, 0] = decoder_start;  out[:, 1:] = labels[:, :-1];  then −100 → pad.

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Shift integer `labels` (B, T) one position right, starting each row with `start` and
/// replacing the ignore index −100 by `pad`. Returns an i64 (B, T) tensor.
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
    if labels.dtype() != DType::I64 {
        return Err(Error::msg(format!(
            "shift_tokens_right: labels must be i64, found {:?}",
            labels.dtype()
        )));
    }
    let l = labels.to_vec::<i64>()?;
    let mut out = Vec::with_capacity(b * t);
    for row in l.chunks(t.max(1)).take(b) {
        if t == 0 {
            break;
        }
        out.push(start);
        out.extend(row[..t - 1].iter().copied());
    }
    for v in &mut out {
        if *v == -100 {
            *v = pad;
        }
    }
    Tensor::from_vec(out, &[b, t])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_right_and_replaces_ignore_index() {
        let labels = Tensor::from_vec(vec![5i64, 6, 7, 8, 9, -100], &[2, 3]).unwrap();
        let out = shift_tokens_right(&labels, 1, 2).unwrap();
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(out.to_vec::<i64>().unwrap(), vec![2, 5, 6, 2, 8, 9]);
        let labels = Tensor::from_vec(vec![-100i64, 4], &[1, 2]).unwrap();
        let out = shift_tokens_right(&labels, 0, -100).unwrap();
        assert_eq!(out.to_vec::<i64>().unwrap(), vec![0, 0]);
    }

    #[test]
    fn rejects_bad_shapes() {
        let labels = Tensor::from_vec(vec![1i64, 2, 3], &[3]).unwrap();
        assert!(shift_tokens_right(&labels, 0, 0).is_err());
    }
}
