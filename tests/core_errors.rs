//! Bad shapes, indices and dtypes in every op family return errors (never panics), and each
//! error message names the op and the offending shapes or values.

use pretext::autograd::Var;
use pretext::tensor::{AttentionMasks, DType, Rng, Tensor};
use pretext::{Error, Result};

fn z(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
}

fn ids(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

/// The call failed and its message contains every one of `parts`.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<T>, parts: &[&str]) -> Error {
    let e = r.expect_err("expected an error");
    let msg = format!("{e}");
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
    e
}

#[test]
fn binary_broadcast_mismatch() {
    let e = expect_err(z(&[2, 3]).add(&z(&[4])), &["add", "[2, 3]", "[4]"]);
    assert!(matches!(e, Error::Shape { op: "add", .. }));
    expect_err(z(&[2, 3]).sub(&z(&[3, 3])), &["sub", "[2, 3]", "[3, 3]"]);
    expect_err(
        z(&[5, 1, 3]).mul(&z(&[2, 2])),
        &["mul", "[5, 1, 3]", "[2, 2]"],
    );
    expect_err(z(&[2]).div(&z(&[3])), &["div", "[2]", "[3]"]);
    // Through autograd the same error comes back and nothing is recorded.
    let a = Var::param(z(&[2, 3]));
    expect_err(a.add(&Var::constant(z(&[4]))), &["add", "[2, 3]", "[4]"]);
    expect_err(
        Tensor::where_cond(&z(&[2]), &z(&[3]), &z(&[3])),
        &["where", "[2]", "[3]"],
    );
    expect_err(
        z(&[2, 3]).masked_fill(&z(&[2]), 0.0),
        &["masked_fill", "[2]", "[2, 3]"],
    );
    expect_err(
        z(&[2, 3]).broadcast_to(&[3, 3]),
        &["broadcast_to", "[2, 3]", "[3, 3]"],
    );
    expect_err(
        z(&[2, 3]).broadcast_to(&[3]),
        &["broadcast_to", "[2, 3]", "[3]"],
    );
}

#[test]
fn matmul_shape_errors() {
    let e = expect_err(
        z(&[2, 3]).matmul(&z(&[4, 5])),
        &["matmul", "[2, 3]", "[4, 5]", "3 vs 4"],
    );
    assert!(matches!(e, Error::Shape { op: "matmul", .. }));
    expect_err(z(&[3]).matmul(&z(&[3, 2])), &["matmul", "[3]", "[3, 2]"]);
    expect_err(
        z(&[2, 3, 4]).matmul(&z(&[3, 4, 5])),
        &["matmul", "[2]", "[3]"],
    );
    let a = Var::param(z(&[2, 3]));
    expect_err(a.matmul(&Var::param(z(&[2, 3]))), &["matmul", "[2, 3]"]);
}

#[test]
fn view_errors() {
    let x = z(&[2, 3, 4]);
    expect_err(
        x.reshape(&[5, 5]),
        &["reshape", "[2, 3, 4]", "[5, 5]", "24"],
    );
    expect_err(x.permute(&[0, 1]), &["permute", "[2, 3, 4]", "[0, 1]"]);
    expect_err(x.permute(&[0, 1, 1]), &["permute", "[0, 1, 1]"]);
    expect_err(x.permute(&[0, 1, 3]), &["permute", "[0, 1, 3]"]);
    expect_err(x.transpose(0, 3), &["transpose", "[2, 3, 4]", "dim 3"]);
    expect_err(
        x.narrow(2, 3, 2),
        &["narrow", "[2, 3, 4]", "3..3+2", "size 4"],
    );
    expect_err(x.narrow(0, usize::MAX, 2), &["narrow", "[2, 3, 4]"]);
    expect_err(x.narrow(3, 0, 1), &["narrow", "dim 3"]);
    expect_err(x.squeeze(1), &["squeeze", "[2, 3, 4]", "size 3"]);
    expect_err(x.unsqueeze(5), &["unsqueeze", "[2, 3, 4]", "dim 5"]);
    expect_err(x.unsqueeze(-5), &["unsqueeze", "dim -5"]);
    expect_err(x.split(&[1, 1], 1), &["split", "[2, 3, 4]", "[1, 1]"]);
    expect_err(x.split(&[usize::MAX, 4], 1), &["split", "[2, 3, 4]"]);
    expect_err(
        Var::param(x.clone()).split(&[usize::MAX, 4], 1),
        &["split", "[2, 3, 4]"],
    );
    let v = Var::param(x.clone());
    expect_err(v.reshape(&[7]), &["reshape", "[2, 3, 4]"]);
    expect_err(v.narrow(-1, 4, 1), &["narrow", "[2, 3, 4]"]);
    expect_err(v.split(&[5], 0), &["split", "[2, 3, 4]"]);
    expect_err(
        Tensor::from_vec(vec![1.0f32; 5], &[2, 3]),
        &["from_vec", "[2, 3]", "5"],
    );
    expect_err(x.scalar(), &["scalar", "[2, 3, 4]"]);
    let huge = [usize::MAX, 3];
    expect_err(
        Tensor::from_vec(vec![0u32; 3], &huge),
        &["from_vec", "usize::MAX"],
    );
}

#[test]
fn dim_out_of_range() {
    let x = z(&[2, 3]);
    expect_err(x.sum_dims(&[2], false), &["sum", "[2, 3]", "dim 2"]);
    expect_err(x.sum_dims(&[0, 0], false), &["sum", "listed twice"]);
    expect_err(x.mean_dims(&[-3], true), &["[2, 3]", "dim -3"]);
    expect_err(x.max_dims(&[5], false), &["max", "[2, 3]", "dim 5"]);
    expect_err(x.dim(2), &["[2, 3]", "dim 2"]);
    expect_err(
        x.index_select(2, &ids(&[0], &[1])),
        &["index_select", "[2, 3]", "dim 2"],
    );
    expect_err(x.gather(-3, &ids(&[0, 0], &[1, 2])), &["gather", "[2, 3]"]);
    expect_err(Tensor::cat(&[&x, &x], 2), &["cat", "[2, 3]", "dim 2"]);
    let v = Var::param(x);
    expect_err(v.sum_dims(&[3], true), &["sum", "[2, 3]"]);
    expect_err(v.transpose(-3, 0), &["transpose", "[2, 3]"]);
    expect_err(z(&[2, 0]).max_dims(&[1], false), &["max", "[2, 0]"]);
}

#[test]
fn cat_and_stack_errors() {
    let (a, b) = (z(&[2, 3]), z(&[3, 3]));
    expect_err(Tensor::cat(&[&a, &b], 1), &["cat", "[2, 3]", "[3, 3]"]);
    expect_err(
        Tensor::cat(&[&a, &z(&[2, 3, 1])], 0),
        &["cat", "[2, 3]", "[2, 3, 1]"],
    );
    expect_err(Tensor::cat(&[], 0), &["cat", "no tensors"]);
    expect_err(
        Tensor::stack(&[&a, &b], 0),
        &["cat", "[1, 2, 3]", "[1, 3, 3]"],
    );
    let (va, vb) = (Var::param(a), Var::param(b));
    expect_err(Var::cat(&[&va, &vb], 1), &["cat", "[2, 3]", "[3, 3]"]);
    expect_err(Var::cat(&[], 0), &["cat"]);
    expect_err(Var::stack(&[], 0), &["cat"]);
}

#[test]
fn indexing_errors() {
    let table = z(&[5, 3]);
    let e = expect_err(
        table.embedding(&ids(&[1, 5], &[2])),
        &["embedding", "5", "[5, 3]"],
    );
    assert!(matches!(e, Error::Index { .. }));
    expect_err(table.embedding(&ids(&[-1], &[1])), &["embedding", "-1"]);
    expect_err(z(&[5]).embedding(&ids(&[0], &[1])), &["embedding", "[5]"]);
    expect_err(
        table.embedding(&z(&[2])),
        &["embedding", "i64 or u32", "f32"],
    );
    expect_err(
        Var::param(table.clone()).embedding(&ids(&[9], &[1])),
        &["embedding", "9"],
    );
    expect_err(
        table.index_select(0, &ids(&[0, 1], &[1, 2])),
        &["index_select", "[5, 3]", "[1, 2]"],
    );
    expect_err(
        table.index_select(1, &ids(&[3], &[1])),
        &["index_select", "3", "[5, 3]"],
    );
    // gather: the index must have the input's rank and no larger size outside `dim`.
    expect_err(
        table.gather(1, &ids(&[0, 1], &[2])),
        &["gather", "[5, 3]", "[2]", "rank 2"],
    );
    expect_err(
        table.gather(1, &ids(&[0; 6], &[6, 1])),
        &["gather", "[5, 3]", "[6, 1]"],
    );
    expect_err(
        table.gather(1, &ids(&[0, 3], &[2, 1])),
        &["gather", "3", "[5, 3]"],
    );
    expect_err(
        Tensor::from_vec(vec![-1i64], &[1])
            .unwrap()
            .to_dtype(DType::U32),
        &["to_dtype", "-1"],
    );
}

#[test]
fn dtype_errors() {
    let i = ids(&[1, 2], &[2]);
    let e = expect_err(i.add(&i), &["add", "f32", "i64"]);
    assert!(matches!(e, Error::DType { .. }));
    expect_err(i.exp(), &["f32", "i64"]);
    expect_err(i.matmul(&ids(&[1, 2], &[2, 1])), &["matmul"]);
    expect_err(z(&[2]).to_vec::<u32>(), &["to_vec", "u32", "f32"]);
    expect_err(
        z(&[2, 2]).cross_entropy(&z(&[2]), -100, 0.0),
        &["cross_entropy", "f32"],
    );
}

#[test]
fn cross_entropy_errors() {
    let logits = z(&[4, 5]);
    expect_err(
        logits.cross_entropy(&ids(&[0, 1, 2], &[3]), -100, 0.0),
        &["cross_entropy", "[4, 5]", "[3]"],
    );
    expect_err(
        logits.cross_entropy(&ids(&[0, 1, 2, 3], &[2, 2]), -100, 0.0),
        &["cross_entropy", "[4, 5]", "[2, 2]"],
    );
    let e = expect_err(
        logits.cross_entropy(&ids(&[0, 5, 2, 3], &[4]), -100, 0.0),
        &["cross_entropy", "target 5", "0..5"],
    );
    assert!(matches!(e, Error::Index { .. }));
    expect_err(
        logits.cross_entropy(&ids(&[0, -1, 2, 3], &[4]), -100, 0.0),
        &["cross_entropy", "target -1"],
    );
    expect_err(
        logits.cross_entropy(&ids(&[0, 1, 2, 3], &[4]), -100, 1.5),
        &["cross_entropy", "1.5"],
    );
    expect_err(
        z(&[3, 0]).cross_entropy(&ids(&[-100; 3], &[3]), -100, 0.0),
        &["cross_entropy", "[3, 0]"],
    );
    let v = Var::param(logits);
    expect_err(
        v.cross_entropy(&ids(&[7, 0, 0, 0], &[4]), -100, 0.0),
        &["cross_entropy", "target 7"],
    );
}

#[test]
fn norm_errors() {
    let x = z(&[2, 4]);
    expect_err(
        x.layer_norm(Some(&z(&[3])), None, 1e-5),
        &["layer_norm", "[2, 4]", "[3]"],
    );
    expect_err(
        x.layer_norm(Some(&z(&[4])), Some(&z(&[4, 1])), 1e-5),
        &["layer_norm", "[4, 1]"],
    );
    expect_err(x.rms_norm(Some(&z(&[2, 4])), 1e-6), &["rms_norm", "[2, 4]"]);
    expect_err(
        z(&[2, 0]).layer_norm(None, None, 1e-5),
        &["layer_norm", "[2, 0]"],
    );
    expect_err(z(&[2, 0]).rms_norm(None, 1e-5), &["rms_norm", "[2, 0]"]);
    let v = Var::param(x);
    expect_err(
        v.layer_norm(Some(&Var::param(z(&[5]))), None, 1e-5),
        &["layer_norm", "[5]"],
    );
    expect_err(
        v.layer_norm(None, Some(&Var::param(z(&[4]))), 1e-5),
        &["layer_norm"],
    );
    expect_err(
        v.rms_norm(Some(&Var::param(z(&[1]))), 1e-6),
        &["rms_norm", "[1]"],
    );
}

#[test]
fn attention_errors() {
    let m = AttentionMasks::default();
    let (q, k, v) = (z(&[2, 2, 3, 4]), z(&[2, 2, 5, 4]), z(&[2, 2, 5, 6]));
    assert!(Tensor::attention(&q, &k, &v, None, &m).is_ok());
    expect_err(
        Tensor::attention(&z(&[2, 3, 4]), &k, &v, None, &m),
        &["attention", "[2, 3, 4]"],
    );
    expect_err(
        Tensor::attention(&q, &z(&[2, 2, 5, 3]), &v, None, &m),
        &["attention", "[2, 2, 3, 4]", "[2, 2, 5, 3]"],
    );
    expect_err(
        Tensor::attention(&q, &k, &z(&[2, 2, 4, 6]), None, &m),
        &["attention", "[2, 2, 4, 6]"],
    );
    expect_err(
        Tensor::attention(&q, &z(&[1, 2, 5, 4]), &v, None, &m),
        &["attention", "[1, 2, 5, 4]"],
    );
    // Bias not broadcastable to (B, H, Tq, Tk) = (2, 2, 3, 5).
    expect_err(
        Tensor::attention(&q, &k, &v, Some(&z(&[1, 2, 3, 3])), &m),
        &["attention", "[1, 2, 3, 3]", "[2, 2, 3, 5]"],
    );
    let pad = AttentionMasks {
        key_padding: Some(z(&[2, 3])),
        ..Default::default()
    };
    expect_err(
        Tensor::attention(&q, &k, &v, None, &pad),
        &["attention", "[2, 3]", "(B, Tk)"],
    );
    let causal = AttentionMasks {
        causal: true,
        ..Default::default()
    };
    expect_err(
        Tensor::attention(&z(&[2, 2, 6, 4]), &k, &v, None, &causal),
        &["attention", "[2, 2, 6, 4]", "Tq ≤ Tk"],
    );
    // Empty sequences or head dims are rejected rather than panicking in the kernel.
    expect_err(
        Tensor::attention(&z(&[2, 2, 0, 4]), &k, &v, None, &m),
        &["attention", "[2, 2, 0, 4]"],
    );
    expect_err(
        Tensor::attention(&z(&[2, 2, 3, 0]), &z(&[2, 2, 5, 0]), &v, None, &m),
        &["attention", "[2, 2, 3, 0]"],
    );
    let (vq, vk, vv) = (Var::param(q), Var::param(k), Var::param(v));
    expect_err(
        Var::attention(&vq, &vk, &vv, Some(&Var::param(z(&[3, 5]))), &pad),
        &["attention"],
    );
}

#[test]
fn dropout_and_creation_errors() {
    let x = Var::param(z(&[2, 2]));
    let mut rng = Rng::new(0);
    expect_err(x.dropout(1.0, true, &mut rng), &["dropout", "1"]);
    expect_err(x.dropout(-0.1, true, &mut rng), &["dropout", "-0.1"]);
    expect_err(Tensor::arange(0.0, 1.0, 0.0), &["arange"]);
    expect_err(Tensor::arange(0.0, 1.0, f32::NAN), &["arange"]);
}

#[test]
fn degenerate_shapes_do_not_panic() {
    // Empty tensors and size-1 dims flow through the ops without panicking.
    let e = z(&[0, 3]);
    assert_eq!(e.add(&z(&[3])).unwrap().shape(), &[0, 3]);
    assert_eq!(
        e.sum_dims(&[0], false).unwrap().to_vec_f32().unwrap(),
        vec![0.0; 3]
    );
    assert_eq!(e.softmax_last().unwrap().shape(), &[0, 3]);
    assert_eq!(e.matmul(&z(&[3, 2])).unwrap().shape(), &[0, 2]);
    assert_eq!(
        z(&[2, 0])
            .matmul(&z(&[0, 3]))
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        vec![0.0; 6]
    );
    assert_eq!(e.layer_norm(None, None, 1e-5).unwrap().y.shape(), &[0, 3]);
    assert_eq!(
        e.transpose(0, 1).unwrap().contiguous().unwrap().shape(),
        &[3, 0]
    );
    assert_eq!(Tensor::cat(&[&e, &z(&[1, 3])], 0).unwrap().shape(), &[1, 3]);
    let table = z(&[4, 2]);
    assert_eq!(table.embedding(&ids(&[], &[0])).unwrap().shape(), &[0, 2]);
    let ce = z(&[0, 4])
        .cross_entropy(&ids(&[], &[0]), -100, 0.0)
        .unwrap();
    assert!(ce.loss.scalar().unwrap().is_nan());
    let m = AttentionMasks::default();
    let out = Tensor::attention(
        &z(&[0, 2, 3, 4]),
        &z(&[0, 2, 3, 4]),
        &z(&[0, 2, 3, 4]),
        None,
        &m,
    )
    .unwrap();
    assert_eq!(out.shape(), &[0, 2, 3, 4]);
    // Backward through a graph with an empty tensor gives empty gradients.
    let p = Var::param(z(&[0, 3]));
    p.sum_all().unwrap().backward().unwrap();
    assert_eq!(p.grad().unwrap().shape(), &[0, 3]);
}
