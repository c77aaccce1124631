//! Forward tests of the tensor core against naive references (ndarray or plain loops):
//! pointwise ops with broadcasting, reductions, matmul, the fused NN ops, indexing, views,
//! dtypes and conversions, and the seeded constructors.

use half::{bf16, f16};
use ndarray::{ArrayD, Axis, IxDyn};
use pretext::autograd::Var;
use pretext::tensor::{AttentionMasks, Binary, DType, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut Rng::new(seed))
}

fn nd(t: &Tensor) -> ArrayD<f32> {
    t.to_ndarray().unwrap()
}

fn ids(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

/// |a − b| ≤ tol·(1 + |b|) elementwise, with equal shapes.
fn assert_close(got: &Tensor, want: &ArrayD<f32>, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "shape");
    let g = got.to_vec_f32().unwrap();
    for (i, (a, b)) in g.iter().zip(want.iter()).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "element {i}: got {a}, want {b} (shape {:?})",
            got.shape()
        );
    }
}

fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// erf by its Maclaurin series in f64 (converges quickly for |x| ≤ 4).
fn erf_ref(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

// ---------------------------------------------------------------- pointwise

#[test]
fn binary_broadcast_matches_ndarray() {
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 1, 4], &[3, 1]),
        (&[4], &[2, 3, 4]),
        (&[2, 3], &[]),
        (&[1, 3, 1], &[2, 1, 5]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let a = randn(sa, i as u64);
        let b = uniform(sb, 0.5, 2.0, 50 + i as u64);
        let (na, nb) = (nd(&a), nd(&b));
        assert_close(&a.add(&b).unwrap(), &(&na + &nb), 1e-6);
        assert_close(&a.sub(&b).unwrap(), &(&na - &nb), 1e-6);
        assert_close(&a.mul(&b).unwrap(), &(&na * &nb), 1e-6);
        assert_close(&a.div(&b).unwrap(), &(&na / &nb), 1e-6);
    }
}

/// Every binary op, same-shape and broadcast, on tensors large enough to be split across
/// two threads (each task writing its own freshly allocated rows), against ndarray exactly.
#[test]
fn binary_ops_on_large_tensors_split_across_threads() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let a = randn(&[300, 1001], 3);
        for b in [
            randn(&[300, 1001], 4),
            randn(&[1001], 5),
            randn(&[300, 1], 6),
        ] {
            let (na, nb) = (nd(&a), nd(&b));
            let bb = nb.broadcast(na.shape()).unwrap();
            let zip = |f: fn(f32, f32) -> f32| {
                let mut out = na.clone();
                out.zip_mut_with(&bb, |x, &y| *x = f(*x, y));
                out
            };
            assert_close(&a.add(&b).unwrap(), &zip(|x, y| x + y), 0.0);
            assert_close(&a.sub(&b).unwrap(), &zip(|x, y| x - y), 0.0);
            assert_close(&a.mul(&b).unwrap(), &zip(|x, y| x * y), 0.0);
            assert_close(&a.div(&b).unwrap(), &zip(|x, y| x / y), 0.0);
            assert_close(&a.binary(&b, Binary::Maximum).unwrap(), &zip(f32::max), 0.0);
            assert_close(&a.binary(&b, Binary::Minimum).unwrap(), &zip(f32::min), 0.0);
        }
        let x = randn(&[400, 500], 7);
        assert_close(&x.exp().unwrap(), &nd(&x).mapv(f32::exp), 0.0);
    });
}

/// The backward pass's accumulation of a narrow's gradient equals adding the zero-padded
/// gradient, leaves a tensor sharing the accumulator's storage unchanged, reads a strided
/// gradient, and names the op and shapes on a mismatch.
#[test]
fn narrow_backward_add_equals_adding_the_padded_gradient() {
    let acc = randn(&[2, 5, 3], 8);
    let keep = acc.clone();
    for (dim, start, g) in [
        (1, 1, randn(&[2, 3, 3], 9)),
        (2, 2, randn(&[2, 5, 1], 10)),
        (0, 0, randn(&[3, 5, 1], 11).permute(&[2, 1, 0]).unwrap()),
    ] {
        let full = acc.shape()[dim];
        let want = nd(&acc) + nd(&g.narrow_backward(dim, start, full).unwrap());
        let got = g
            .narrow_backward_add(Some(acc.clone()), dim, start, full)
            .unwrap();
        assert_close(&got, &want, 0.0);
        let alone = g.narrow_backward_add(None, dim, start, full).unwrap();
        assert_close(
            &alone,
            &nd(&g.narrow_backward(dim, start, full).unwrap()),
            0.0,
        );
    }
    assert_eq!(keep.to_vec::<f32>().unwrap(), acc.to_vec::<f32>().unwrap());
    let e = randn(&[2, 3, 3], 12)
        .narrow_backward_add(Some(acc.clone()), 1, 3, 5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("narrow_backward_add") && e.contains("[2, 3, 3]"),
        "{e}"
    );
    let e = randn(&[2, 3, 3], 12)
        .narrow_backward_add(Some(acc), 1, 0, 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 5, 3]"), "{e}");
}

/// GPT-2's q | k | v split, backward, at its training size on 2 threads (the parallel paths):
/// `narrow_backward` pads one third's gradient with zeros, `narrow_backward_add` adds the
/// other two (one of them a strided view) and one overlapping range, against ndarray.
#[test]
fn narrow_backward_pads_and_adds_on_two_threads() {
    use ndarray::s;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let g: Vec<Tensor> = (0..3).map(|i| randn(&[12, 64, 128], 30 + i)).collect();
        let strided = randn(&[12, 128, 64], 33).transpose(1, 2).unwrap();
        assert!(!strided.is_contiguous());
        let mut want = ArrayD::<f32>::zeros(IxDyn(&[12, 64, 384]));
        let acc = g[1].narrow_backward(2, 128, 384).unwrap();
        want.slice_mut(s![.., .., 128..256]).assign(&nd(&g[1]));
        assert_close(&acc, &want, 0.0);
        let acc = g[0].narrow_backward_add(Some(acc), 2, 0, 384).unwrap();
        want.slice_mut(s![.., .., 0..128])
            .zip_mut_with(&nd(&g[0]), |a, b| *a += b);
        let acc = strided.narrow_backward_add(Some(acc), 2, 256, 384).unwrap();
        want.slice_mut(s![.., .., 256..384])
            .zip_mut_with(&nd(&strided), |a, b| *a += b);
        let acc = g[2].narrow_backward_add(Some(acc), 2, 200, 384).unwrap();
        want.slice_mut(s![.., .., 200..328])
            .zip_mut_with(&nd(&g[2]), |a, b| *a += b);
        assert_close(&acc, &want, 0.0);
        // Along a middle dim: rows 10..74 of 100.
        let acc = g[0].narrow_backward(1, 10, 100).unwrap();
        let mut want = ArrayD::<f32>::zeros(IxDyn(&[12, 100, 128]));
        want.slice_mut(s![.., 10..74, ..]).assign(&nd(&g[0]));
        assert_close(&acc, &want, 0.0);
    });
}

#[test]
fn binary_reads_strided_operands() {
    let x = randn(&[3, 4], 1);
    let xt = x.transpose(0, 1).unwrap();
    assert!(!xt.is_contiguous() && xt.shares_storage_with(&x));
    let y = randn(&[4, 3], 2);
    let want = &nd(&x).t() * &nd(&y);
    assert_close(&xt.mul(&y).unwrap(), &want.into_dyn(), 1e-6);
    // A narrowed view (non-zero offset) plus a broadcast (stride-0) view.
    let row = x.narrow(0, 2, 1).unwrap().broadcast_to(&[3, 4]).unwrap();
    assert_eq!(row.strides(), &[0, 1]);
    let nrow = nd(&x).slice(ndarray::s![2..3, ..]).to_owned().into_dyn();
    assert_close(&row.add(&x).unwrap(), &(&nrow + &nd(&x)), 1e-6);
}

#[test]
fn unary_and_scalar_ops_match_formulas() {
    let x = randn(&[4, 6], 3).mul_scalar(2.0).unwrap();
    let pos = uniform(&[4, 6], 0.1, 4.0, 4);
    let nx = nd(&x);
    let np = nd(&pos);
    let m = |a: &ArrayD<f32>, f: fn(f32) -> f32| a.mapv(f);
    assert_close(&x.neg().unwrap(), &m(&nx, |v| -v), 0.0);
    assert_close(&x.add_scalar(1.5).unwrap(), &m(&nx, |v| v + 1.5), 0.0);
    assert_close(&x.mul_scalar(-0.5).unwrap(), &m(&nx, |v| v * -0.5), 0.0);
    assert_close(&x.exp().unwrap(), &m(&nx, f32::exp), 1e-6);
    assert_close(&pos.log().unwrap(), &m(&np, f32::ln), 1e-6);
    assert_close(&pos.sqrt().unwrap(), &m(&np, f32::sqrt), 1e-6);
    assert_close(&pos.rsqrt().unwrap(), &m(&np, |v| 1.0 / v.sqrt()), 1e-6);
    assert_close(&pos.powf(1.7).unwrap(), &m(&np, |v| v.powf(1.7)), 1e-6);
    assert_close(&x.tanh().unwrap(), &m(&nx, f32::tanh), 1e-6);
    assert_close(
        &x.sigmoid().unwrap(),
        &m(&nx, |v| 1.0 / (1.0 + (-v).exp())),
        1e-6,
    );
    assert_close(&x.relu().unwrap(), &m(&nx, |v| v.max(0.0)), 0.0);
    let gelu = nx.mapv(|v| (0.5 * v as f64 * (1.0 + erf_ref(v as f64 / 2f64.sqrt()))) as f32);
    assert_close(&x.gelu().unwrap(), &gelu, 1e-6);
    let gelu_tanh = nx.mapv(|v| {
        let v = v as f64;
        let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3));
        (0.5 * v * (1.0 + u.tanh())) as f32
    });
    assert_close(&x.gelu_tanh().unwrap(), &gelu_tanh, 1e-6);
    // The two GELU forms are different functions (they agree only to ≈1e-3).
    let d = x
        .gelu()
        .unwrap()
        .sub(&x.gelu_tanh().unwrap())
        .unwrap()
        .abs()
        .unwrap();
    assert!(d.max_dims(&[0, 1], false).unwrap().scalar().unwrap() > 1e-5);
}

#[test]
fn pointwise_extremes_stay_finite() {
    let x = Tensor::from_vec(vec![-100.0f32, -20.0, 0.0, 20.0, 100.0], &[5]).unwrap();
    let s = x.sigmoid().unwrap().to_vec_f32().unwrap();
    assert!(s.iter().all(|v| v.is_finite()));
    assert_eq!(s[0], 0.0f32.max(s[0]));
    assert!(s[0] < 1e-40 && s[4] == 1.0 && s[2] == 0.5);
    let g = x.gelu().unwrap().to_vec_f32().unwrap();
    assert_eq!((g[0], g[4]), (0.0, 100.0));
    let gt = x.gelu_tanh().unwrap().to_vec_f32().unwrap();
    assert_eq!((gt[0], gt[4]), (0.0, 100.0));
}

// ---------------------------------------------------------------- reductions

/// Reduce `a` over `dims` with `f` (an axis reducer), keeping them as size 1 when asked.
fn reduce_ref(
    a: &ArrayD<f32>,
    dims: &[usize],
    keep: bool,
    f: fn(&ArrayD<f32>, Axis) -> ArrayD<f32>,
) -> ArrayD<f32> {
    let mut ds = dims.to_vec();
    ds.sort_unstable();
    let mut out = a.clone();
    for &d in ds.iter().rev() {
        out = f(&out, Axis(d));
    }
    if keep {
        for &d in &ds {
            out = out.insert_axis(Axis(d));
        }
    }
    out
}

#[test]
fn sum_mean_max_over_dims_match_ndarray() {
    let x = randn(&[2, 3, 4], 5);
    let nx = nd(&x);
    for keep in [false, true] {
        for dims in [&[0usize][..], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2]] {
            let id: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
            let sum = reduce_ref(&nx, dims, keep, |a, ax| a.sum_axis(ax));
            let mean = reduce_ref(&nx, dims, keep, |a, ax| a.mean_axis(ax).unwrap());
            let max = reduce_ref(&nx, dims, keep, |a, ax| {
                a.fold_axis(ax, f32::NEG_INFINITY, |m, &v| m.max(v))
            });
            assert_close(&x.sum_dims(&id, keep).unwrap(), &sum, 1e-6);
            assert_close(&x.mean_dims(&id, keep).unwrap(), &mean, 1e-6);
            assert_close(&x.max_dims(&id, keep).unwrap(), &max, 0.0);
        }
    }
    // Negative dims count from the end; a strided input reduces in logical order.
    assert_close(
        &x.sum_dims(&[-1], false).unwrap(),
        &nx.sum_axis(Axis(2)),
        1e-6,
    );
    let xt = x.permute(&[2, 0, 1]).unwrap();
    let want = nx.view().permuted_axes(vec![2, 0, 1]).sum_axis(Axis(2));
    assert_close(&xt.sum_dims(&[2], false).unwrap(), &want, 1e-6);
    assert_eq!(x.sum_all().unwrap().shape(), &[] as &[usize]);
    assert!((x.mean_all().unwrap().scalar().unwrap() - nx.mean().unwrap()).abs() < 1e-6);
}

/// Sums over leading dims of a contiguous tensor (bias gradients) take a column path: its
/// result is bit for bit the row path's (a strided view of the same values, same order) and
/// the f64 sum in row order; also for column blocks split over threads, empty dims and keepdim.
#[test]
fn sums_over_leading_dims_equal_the_row_path_bit_for_bit() {
    let bits = |t: &Tensor| {
        t.to_vec_f32()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    for (shape, dims) in [
        (vec![7, 5, 130], vec![0isize, 1]),
        (vec![80, 1000], vec![0]), // 80 000 elements: column blocks on several threads
        (vec![9, 3], vec![0, 1]),
        (vec![0, 6], vec![0]),
        (vec![300, 17, 3], vec![0]),
    ] {
        let mut wide = shape.clone();
        *wide.last_mut().unwrap() += 1;
        let big = randn(&wide, 17);
        let last = shape.len() - 1;
        // The same values as a strided view (row path) and as a contiguous tensor (column path).
        let view = big.narrow(last as isize, 0, shape[last]).unwrap();
        let x = view.contiguous().unwrap();
        assert!(!view.is_contiguous() || shape[0] == 0);
        for keep in [false, true] {
            let got = x.sum_dims(&dims, keep).unwrap();
            let want = view.sum_dims(&dims, keep).unwrap();
            assert_eq!(got.shape(), want.shape(), "{shape:?} {dims:?}");
            assert_eq!(bits(&got), bits(&want), "{shape:?} {dims:?} keepdim {keep}");
        }
        // Against the f64 column sums in row order.
        let lead = dims.len();
        let inner: usize = shape[lead..].iter().product();
        let v = x.to_vec_f32().unwrap();
        // Rust's f64 sum starts from −0 (so −0 terms stay −0); an empty sum is +0.
        let mut acc = vec![if v.is_empty() { 0.0 } else { -0.0f64 }; inner];
        for row in v.chunks_exact(inner.max(1)) {
            acc.iter_mut().zip(row).for_each(|(a, &y)| *a += y as f64);
        }
        let want: Vec<u32> = acc.iter().map(|&a| (a as f32).to_bits()).collect();
        assert_eq!(bits(&x.sum_dims(&dims, false).unwrap()), want, "{shape:?}");
    }
}

#[test]
fn max_backward_picks_the_first_maximum() {
    // Ties: the gradient goes to the first maximal element only.
    let x = Var::param(Tensor::from_vec(vec![1.0f32, 3.0, 3.0, 2.0, 0.0, 2.0], &[2, 3]).unwrap());
    x.max_dims(&[1], false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f32().unwrap(),
        vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    );
}

// ---------------------------------------------------------------- matmul

/// Naive batched matmul over already broadcast (batch, m, k) and (batch, k, n) arrays.
fn matmul_ref(a: &ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let rank = ra.max(rb);
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(&s[..s.len() - 2]);
        v
    };
    let (ba, bb) = (pad(a.shape()), pad(b.shape()));
    let batch: Vec<usize> = ba.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
    let mut sa = batch.clone();
    sa.extend([m, k]);
    let mut sb = batch.clone();
    sb.extend([k, n]);
    let a = a.broadcast(IxDyn(&sa)).unwrap();
    let b = b.broadcast(IxDyn(&sb)).unwrap();
    let nb: usize = batch.iter().product();
    let a3 = a.to_owned().into_shape_with_order((nb, m, k)).unwrap();
    let b3 = b.to_owned().into_shape_with_order((nb, k, n)).unwrap();
    let mut out = vec![0.0f32; nb * m * n];
    for t in 0..nb {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a3[[t, i, p]] as f64 * b3[[t, p, j]] as f64;
                }
                out[(t * m + i) * n + j] = s as f32;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    arr(&shape, out)
}

#[test]
fn matmul_plain_batched_and_broadcast() {
    let cases: [(&[usize], &[usize]); 5] = [
        (&[3, 4], &[4, 5]),
        (&[1, 7], &[7, 1]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 1, 3, 4], &[5, 4, 6]),
        (&[3, 4], &[2, 4, 2]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let (a, b) = (randn(sa, 10 + i as u64), randn(sb, 20 + i as u64));
        let c = a.matmul(&b).unwrap();
        assert_close(&c, &matmul_ref(&nd(&a), &nd(&b)), 1e-5);
    }
    let c = randn(&[2, 1, 3, 4], 1)
        .matmul(&randn(&[5, 4, 6], 2))
        .unwrap();
    assert_eq!(c.shape(), &[2, 5, 3, 6]);
}

#[test]
fn matmul_reads_transposed_views_without_copy() {
    let a = randn(&[2, 4, 3], 30);
    let b = randn(&[2, 5, 4], 31);
    let at = a.transpose(-1, -2).unwrap(); // (2, 3, 4), strides (12, 1, 3)
    let bt = b.transpose(-1, -2).unwrap(); // (2, 4, 5)
    assert!(!at.is_contiguous() && !bt.is_contiguous());
    assert!(at.shares_storage_with(&a) && bt.shares_storage_with(&b));
    let want = matmul_ref(&nd(&at), &nd(&bt));
    assert_close(&at.matmul(&bt).unwrap(), &want, 1e-5);
    assert_close(
        &at.contiguous()
            .unwrap()
            .matmul(&bt.contiguous().unwrap())
            .unwrap(),
        &want,
        1e-5,
    );
    // A broadcast (stride-0) batch dim and an offset (narrowed) operand.
    let w = randn(&[6, 4], 32);
    let wn = w.narrow(0, 2, 4).unwrap().transpose(0, 1).unwrap(); // (4, 4) at offset 8
    let x = randn(&[3, 1, 2, 4], 33)
        .broadcast_to(&[3, 2, 2, 4])
        .unwrap();
    assert_close(
        &x.matmul(&wn).unwrap(),
        &matmul_ref(&nd(&x), &nd(&wn)),
        1e-5,
    );
    // One row broadcast to every row of A (row stride 0): 100 × 64 against 64 × 64 read A
    // in place on AVX-512, where a row stride of 0 stood for a packed panel (wrong sums).
    let row = randn(&[1, 64], 34).broadcast_to(&[100, 64]).unwrap();
    let w = randn(&[64, 64], 35);
    assert_close(
        &row.matmul(&w).unwrap(),
        &matmul_ref(&nd(&row), &nd(&w)),
        1e-4,
    );
}

// ---------------------------------------------------------------- softmax, norms

fn softmax_ref(x: &ArrayD<f32>, log: bool) -> ArrayD<f32> {
    let cols = *x.shape().last().unwrap();
    let v: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(cols) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|&r| (r - m).exp()).sum();
        for &r in row {
            out.push(if log {
                (r - m - s.ln()) as f32
            } else {
                ((r - m).exp() / s) as f32
            });
        }
    }
    arr(x.shape(), out)
}

#[test]
fn softmax_and_log_softmax_are_stable() {
    let x = randn(&[3, 7], 40).mul_scalar(3.0).unwrap();
    assert_close(
        &x.softmax_last().unwrap(),
        &softmax_ref(&nd(&x), false),
        1e-6,
    );
    assert_close(
        &x.log_softmax_last().unwrap(),
        &softmax_ref(&nd(&x), true),
        1e-5,
    );
    // Logits of ±1e4: a naive exp would overflow to inf / NaN.
    let big = Tensor::from_vec(vec![1e4f32, 1e4 - 1.0, -1e4, 0.0, 1e4, -1e4], &[2, 3]).unwrap();
    let s = big.softmax_last().unwrap();
    let ls = big.log_softmax_last().unwrap();
    assert!(s.to_vec_f32().unwrap().iter().all(|v| v.is_finite()));
    assert!(ls.to_vec_f32().unwrap().iter().all(|v| v.is_finite()));
    assert_close(&s, &softmax_ref(&nd(&big), false), 1e-6);
    assert_close(&ls, &softmax_ref(&nd(&big), true), 1e-6);
    // Rows sum to one; a strided input is read in logical order.
    let xt = x.transpose(0, 1).unwrap();
    let st = xt.softmax_last().unwrap();
    assert_close(
        &st.sum_dims(&[-1], false).unwrap(),
        &ArrayD::ones(IxDyn(&[7])),
        1e-6,
    );
    assert_close(&st, &softmax_ref(&nd(&xt), false), 1e-6);
}

fn norm_ref(
    x: &ArrayD<f32>,
    g: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f64,
    centre: bool,
) -> ArrayD<f32> {
    let cols = *x.shape().last().unwrap();
    let v: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut out = Vec::new();
    for row in v.chunks(cols) {
        let mu = if centre {
            row.iter().sum::<f64>() / cols as f64
        } else {
            0.0
        };
        let var = row.iter().map(|r| (r - mu).powi(2)).sum::<f64>() / cols as f64;
        for (c, r) in row.iter().enumerate() {
            let y = (r - mu) / (var + eps).sqrt() * g.map_or(1.0, |g| g[c] as f64)
                + b.map_or(0.0, |b| b[c] as f64);
            out.push(y as f32);
        }
    }
    arr(x.shape(), out)
}

#[test]
fn layer_norm_and_rms_norm_match_reference() {
    let x = randn(&[2, 3, 8], 41).add_scalar(3.0).unwrap();
    let g = uniform(&[8], 0.5, 1.5, 42);
    let b = randn(&[8], 43);
    let (gv, bv) = (g.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
    let nx = nd(&x);
    let ln = x.layer_norm(None, None, 1e-5).unwrap();
    assert_close(&ln.y, &norm_ref(&nx, None, None, 1e-5, true), 1e-5);
    assert_eq!(ln.rstd.shape(), &[2, 3]);
    let ln = x.layer_norm(Some(&g), Some(&b), 1e-5).unwrap();
    assert_close(
        &ln.y,
        &norm_ref(&nx, Some(&gv), Some(&bv), 1e-5, true),
        1e-5,
    );
    // Each normalised row has mean 0 and (biased) variance ≈ 1.
    let y = x.layer_norm(None, None, 1e-5).unwrap().y;
    assert_close(
        &y.mean_dims(&[-1], false).unwrap(),
        &ArrayD::zeros(IxDyn(&[2, 3])),
        1e-5,
    );
    let rn = x.rms_norm(None, 1e-6).unwrap();
    assert!(rn.mean.is_none());
    assert_close(&rn.y, &norm_ref(&nx, None, None, 1e-6, false), 1e-5);
    let rn = x.rms_norm(Some(&g), 1e-6).unwrap();
    assert_close(&rn.y, &norm_ref(&nx, Some(&gv), None, 1e-6, false), 1e-5);
    // A permuted input normalises its logical last dim.
    let xp = randn(&[8, 3], 44).transpose(0, 1).unwrap();
    assert_close(
        &xp.layer_norm(Some(&g), Some(&b), 1e-5).unwrap().y,
        &norm_ref(&nd(&xp), Some(&gv), Some(&bv), 1e-5, true),
        1e-5,
    );
}

// ---------------------------------------------------------------- indexing

#[test]
fn embedding_index_select_gather() {
    let table = randn(&[5, 3], 50);
    let tv = table.to_vec_f32().unwrap();
    let i = ids(&[4, 0, 4, 2], &[2, 2]);
    let e = table.embedding(&i).unwrap();
    assert_eq!(e.shape(), &[2, 2, 3]);
    let want: Vec<f32> = [4usize, 0, 4, 2]
        .iter()
        .flat_map(|&r| tv[r * 3..r * 3 + 3].to_vec())
        .collect();
    assert_eq!(e.to_vec_f32().unwrap(), want);
    let u = Tensor::from_vec(vec![1u32, 1], &[2]).unwrap();
    assert_eq!(
        table.embedding(&u).unwrap().to_vec_f32().unwrap(),
        [&tv[3..6], &tv[3..6]].concat()
    );
    // Scatter-add backward: a repeated id accumulates one gradient row per use.
    let w = Var::param(table.clone());
    w.embedding(&i)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let counts = [1.0f32, 0.0, 1.0, 0.0, 2.0];
    let want: Vec<f32> = counts.iter().flat_map(|&c| [c; 3]).collect();
    assert_eq!(w.grad().unwrap().to_vec_f32().unwrap(), want);

    let x = randn(&[3, 4], 51);
    let xv = x.to_vec_f32().unwrap();
    let s = x.index_select(1, &ids(&[3, 3, 0], &[3])).unwrap();
    let want: Vec<f32> = (0..3)
        .flat_map(|r| [xv[r * 4 + 3], xv[r * 4 + 3], xv[r * 4]])
        .collect();
    assert_eq!(s.to_vec_f32().unwrap(), want);
    let g = x.gather(1, &ids(&[2, 0, 1, 1, 3, 3], &[3, 2])).unwrap();
    assert_eq!(
        g.to_vec_f32().unwrap(),
        vec![xv[2], xv[0], xv[5], xv[5], xv[11], xv[11]]
    );
    let g0 = x.gather(0, &ids(&[2, 0, 1, 2], &[1, 4])).unwrap();
    assert_eq!(g0.to_vec_f32().unwrap(), vec![xv[8], xv[1], xv[6], xv[11]]);
    // Gather on a transposed view follows the logical layout.
    let gt = x
        .transpose(0, 1)
        .unwrap()
        .gather(1, &ids(&[2, 1, 0, 2], &[4, 1]))
        .unwrap();
    assert_eq!(gt.to_vec_f32().unwrap(), vec![xv[8], xv[5], xv[2], xv[11]]);
}

#[test]
fn cat_stack_split() {
    let a = randn(&[2, 3], 60);
    let b = randn(&[2, 1], 61);
    let c = Tensor::cat(&[&a, &b], 1).unwrap();
    let want = ndarray::concatenate(Axis(1), &[nd(&a).view(), nd(&b).view()]).unwrap();
    assert_close(&c, &want, 0.0);
    let d = randn(&[1, 3], 62);
    let want = ndarray::concatenate(Axis(0), &[nd(&a).view(), nd(&d).view()]).unwrap();
    assert_close(&Tensor::cat(&[&a, &d], 0).unwrap(), &want, 0.0);
    // Cat of a transposed view.
    let at = randn(&[3, 2], 63).transpose(0, 1).unwrap();
    let want = ndarray::concatenate(Axis(1), &[nd(&at).view(), nd(&b).view()]).unwrap();
    assert_close(&Tensor::cat(&[&at, &b], -1).unwrap(), &want, 0.0);

    let e = randn(&[2, 3], 64);
    let s = Tensor::stack(&[&a, &e], 1).unwrap();
    let want = ndarray::stack(Axis(1), &[nd(&a).view(), nd(&e).view()]).unwrap();
    assert_close(&s, &want, 0.0);
    let want = ndarray::stack(Axis(2), &[nd(&a).view(), nd(&e).view()]).unwrap();
    assert_close(&Tensor::stack(&[&a, &e], -1).unwrap(), &want, 0.0);

    let x = randn(&[2, 6], 65);
    let parts = x.split(&[1, 3, 2], 1).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.shape()[1]).collect::<Vec<_>>(),
        vec![1, 3, 2]
    );
    assert!(
        parts.iter().all(|p| p.shares_storage_with(&x)),
        "split returns views"
    );
    let back: Vec<&Tensor> = parts.iter().collect();
    assert_close(&Tensor::cat(&back, 1).unwrap(), &nd(&x), 0.0);
    assert_close(
        &parts[1],
        &nd(&x).slice(ndarray::s![.., 1..4]).to_owned().into_dyn(),
        0.0,
    );
}

#[test]
fn masked_fill_and_where() {
    let x = randn(&[2, 3], 70);
    let xv = x.to_vec_f32().unwrap();
    let mask = Tensor::from_vec(vec![0i64, 1, 0], &[3]).unwrap();
    let y = x
        .masked_fill(&mask, f32::NEG_INFINITY)
        .unwrap()
        .to_vec_f32()
        .unwrap();
    for (i, (&a, &b)) in y.iter().zip(&xv).enumerate() {
        assert_eq!(a, if i % 3 == 1 { f32::NEG_INFINITY } else { b });
    }
    let cond = Tensor::from_vec(vec![1.0f32, 0.0], &[2, 1]).unwrap();
    let b = Tensor::full(&[3], 9.0);
    let w = Tensor::where_cond(&cond, &x, &b)
        .unwrap()
        .to_vec_f32()
        .unwrap();
    assert_eq!(w, [&xv[..3], &[9.0, 9.0, 9.0][..]].concat());
}

// ---------------------------------------------------------------- dropout

#[test]
fn dropout_seeded_scaled_and_identity() {
    let x = Var::constant(Tensor::ones(&[200, 100]));
    let p = 0.25;
    let a = x
        .dropout(p, true, &mut Rng::new(7))
        .unwrap()
        .value()
        .to_vec_f32()
        .unwrap();
    let b = x
        .dropout(p, true, &mut Rng::new(7))
        .unwrap()
        .value()
        .to_vec_f32()
        .unwrap();
    let c = x
        .dropout(p, true, &mut Rng::new(8))
        .unwrap()
        .value()
        .to_vec_f32()
        .unwrap();
    assert_eq!(a, b, "same seed, same mask");
    assert_ne!(a, c, "another seed, another mask");
    // Kept elements are scaled by 1/(1 − p); the drop rate and the mean match p and 1.
    let scale = 1.0 / (1.0 - p);
    assert!(a.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
    let n = a.len() as f64;
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / n;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    // 20 000 Bernoulli draws: the s.d. of the drop rate is √(p(1−p)/n) ≈ 0.003.
    assert!((dropped - p as f64).abs() < 0.015, "drop rate {dropped}");
    assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    // p = 0 and evaluation mode are the identity (no op recorded, no draw made).
    let v = Var::param(randn(&[3, 4], 71));
    let mut rng = Rng::new(9);
    let before = rng.clone();
    let same = v.dropout(0.0, true, &mut rng).unwrap();
    assert_eq!(
        same.value().to_vec_f32().unwrap(),
        v.value().to_vec_f32().unwrap()
    );
    let eval = v.dropout(0.5, false, &mut rng).unwrap();
    assert_eq!(
        eval.value().to_vec_f32().unwrap(),
        v.value().to_vec_f32().unwrap()
    );
    assert_eq!(rng, before);
    // The gradient is the mask itself: 0 where dropped, 1/(1 − p) where kept.
    let y = v.dropout(0.5, true, &mut Rng::new(10)).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    let mask: Vec<f32> = y
        .value()
        .to_vec_f32()
        .unwrap()
        .iter()
        .zip(v.value().to_vec_f32().unwrap())
        .map(|(o, i)| o / i)
        .collect();
    let g = v.grad().unwrap().to_vec_f32().unwrap();
    for (gi, mi) in g.iter().zip(&mask) {
        assert!((gi - mi).abs() < 1e-5 && (*gi == 0.0 || (gi - 2.0).abs() < 1e-6));
    }
}

// ---------------------------------------------------------------- cross-entropy

/// ℓ = (1−ε)(lse − x_y) + ε/C·Σ_c (lse − x_c), mean over rows whose target is not ignored.
fn cross_entropy_ref(x: &[f32], t: &[i64], cols: usize, ignore: i64, eps: f64) -> f64 {
    let (mut total, mut count) = (0.0f64, 0usize);
    for (row, &y) in x.chunks(cols).zip(t) {
        if y == ignore {
            continue;
        }
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        let smooth: f64 = row.iter().map(|&v| lse - v as f64).sum::<f64>() / cols as f64;
        total += (1.0 - eps) * (lse - row[y as usize] as f64) + eps * smooth;
        count += 1;
    }
    total / count as f64
}

#[test]
fn cross_entropy_matches_plain_loop() {
    let x = randn(&[6, 5], 80).mul_scalar(2.0).unwrap();
    let xv = x.to_vec_f32().unwrap();
    let t = vec![1i64, -100, 4, 0, -100, 2];
    let tt = ids(&t, &[6]);
    for eps in [0.0f32, 0.1, 0.3] {
        let got = x.cross_entropy(&tt, -100, eps).unwrap();
        let want = cross_entropy_ref(&xv, &t, 5, -100, eps as f64);
        assert!(
            (got.loss.scalar().unwrap() as f64 - want).abs() < 1e-5,
            "ε {eps}"
        );
        assert_eq!(got.count, 4, "ignored rows do not count in the mean");
    }
    // (B, T, C) logits with (B, T) u32 targets and another ignore index.
    let x3 = randn(&[2, 3, 4], 81);
    let t3 = Tensor::from_vec(vec![0u32, 3, 7, 1, 2, 7], &[2, 3]).unwrap();
    let got = x3
        .cross_entropy(&t3, 7, 0.0)
        .unwrap()
        .loss
        .scalar()
        .unwrap();
    let want = cross_entropy_ref(&x3.to_vec_f32().unwrap(), &[0, 3, 7, 1, 2, 7], 4, 7, 0.0);
    assert!((got as f64 - want).abs() < 1e-5);
    // Large logits stay finite; every row ignored gives NaN (0/0, as PyTorch).
    let big = Tensor::from_vec(vec![1e4f32, -1e4, 0.0, 5e3], &[2, 2]).unwrap();
    let l = big
        .cross_entropy(&ids(&[1, 0], &[2]), -100, 0.1)
        .unwrap()
        .loss
        .scalar()
        .unwrap();
    let want = cross_entropy_ref(&[1e4, -1e4, 0.0, 5e3], &[1, 0], 2, -100, 0.1);
    assert!(
        l.is_finite() && (l as f64 - want).abs() < 1e-2,
        "{l} vs {want}"
    );
    let all = x.cross_entropy(&ids(&[-100; 6], &[6]), -100, 0.0).unwrap();
    assert!(all.loss.scalar().unwrap().is_nan());
}

#[test]
fn cross_entropy_gradient_formula() {
    // ∂ℓ/∂x_c = (softmax(x)_c − (1−ε)[c = y] − ε/C) / N', zero on ignored rows.
    let x = randn(&[3, 4], 82);
    let t = ids(&[2, -100, 1], &[3]);
    let v = Var::param(x.clone());
    v.cross_entropy(&t, -100, 0.2).unwrap().backward().unwrap();
    let g = v.grad().unwrap().to_vec_f32().unwrap();
    let p = x.softmax_last().unwrap().to_vec_f32().unwrap();
    for r in 0..3 {
        for c in 0..4 {
            let want = match r {
                1 => 0.0,
                _ => {
                    let y = if r == 0 { 2 } else { 1 };
                    (p[r * 4 + c] - if c == y { 0.8 } else { 0.0 } - 0.05) / 2.0
                }
            };
            assert!((g[r * 4 + c] - want).abs() < 1e-6, "row {r} col {c}");
        }
    }
}

// ---------------------------------------------------------------- attention

/// Plain-loop attention: s_ij = scale·q_i·k_j + bias_ij, masked keys at −∞ (a fully masked
/// row attends uniformly), p = softmax(s), o_i = Σ_j p_ij v_j. `bias` is full (B, H, Tq, Tk).
#[allow(clippy::too_many_arguments)]
fn attention_ref(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    bias: Option<&ArrayD<f32>>,
    causal: bool,
    keep: Option<&[f32]>,
    scale: f64,
) -> ArrayD<f32> {
    let (b, h, tq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (tk, dv) = (k.shape()[2], v.shape()[3]);
    let mut out = ArrayD::zeros(IxDyn(&[b, h, tq, dv]));
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..tq {
                let ok: Vec<bool> = (0..tk)
                    .map(|j| {
                        (!causal || j <= i + tk - tq) && keep.is_none_or(|m| m[bi * tk + j] != 0.0)
                    })
                    .collect();
                let any = ok.iter().any(|&o| o);
                let s: Vec<f64> = (0..tk)
                    .map(|j| {
                        if !any {
                            return 0.0;
                        }
                        if !ok[j] {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|c| q[[bi, hi, i, c]] as f64 * k[[bi, hi, j, c]] as f64)
                            .sum();
                        scale * dot + bias.map_or(0.0, |bb| bb[[bi, hi, i, j]] as f64)
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for c in 0..dv {
                    let o: f64 = (0..tk)
                        .map(|j| (s[j] - m).exp() / z * v[[bi, hi, j, c]] as f64)
                        .sum();
                    out[[bi, hi, i, c]] = o as f32;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_plain_loops() {
    let (q, k, v) = (
        randn(&[2, 3, 4, 5], 90),
        randn(&[2, 3, 4, 5], 91),
        randn(&[2, 3, 4, 2], 92),
    );
    let (nq, nk, nv) = (nd(&q), nd(&k), nd(&v));
    let scale = 1.0 / 5f64.sqrt();
    for causal in [false, true] {
        let m = AttentionMasks {
            causal,
            ..Default::default()
        };
        let got = Tensor::attention(&q, &k, &v, None, &m).unwrap();
        assert_close(
            &got,
            &attention_ref(&nq, &nk, &nv, None, causal, None, scale),
            1e-5,
        );
    }
    // Key padding, explicit scale and a bias broadcast from (1, H, Tq, Tk).
    let keep = vec![1.0f32, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    let bias = randn(&[1, 3, 4, 4], 93);
    let full_bias = nd(&bias)
        .broadcast(IxDyn(&[2, 3, 4, 4]))
        .unwrap()
        .to_owned();
    let m = AttentionMasks {
        causal: false,
        key_padding: Some(Tensor::from_vec(keep.clone(), &[2, 4]).unwrap()),
        scale: Some(1.0),
        dropout: None,
    };
    let got = Tensor::attention(&q, &k, &v, Some(&bias), &m).unwrap();
    assert_close(
        &got,
        &attention_ref(&nq, &nk, &nv, Some(&full_bias), false, Some(&keep), 1.0),
        1e-5,
    );
}

#[test]
fn attention_causal_kv_cache_alignment() {
    // Tq = 2 new queries over Tk = 5 cached keys: query i sees keys j ≤ i + 3.
    let (q, k, v) = (
        randn(&[1, 2, 2, 4], 94),
        randn(&[1, 2, 5, 4], 95),
        randn(&[1, 2, 5, 3], 96),
    );
    let m = AttentionMasks {
        causal: true,
        ..Default::default()
    };
    let got = Tensor::attention(&q, &k, &v, None, &m).unwrap();
    let want = attention_ref(&nd(&q), &nd(&k), &nd(&v), None, true, None, 0.5);
    assert_close(&got, &want, 1e-5);
    // The last query row of a full causal pass equals a single-query pass over all keys.
    let full_q = randn(&[1, 2, 5, 4], 97);
    let full = Tensor::attention(&full_q, &k, &v, None, &m).unwrap();
    let last = Tensor::attention(&full_q.narrow(2, 4, 1).unwrap(), &k, &v, None, &m).unwrap();
    assert_close(&last, &nd(&full.narrow(2, 4, 1).unwrap()), 1e-6);
    // Changing a key the query may not see leaves its output unchanged.
    let k2 = Tensor::cat(&[&k.narrow(2, 0, 4).unwrap(), &randn(&[1, 2, 1, 4], 98)], 2).unwrap();
    let first = |kk: &Tensor| {
        Tensor::attention(&q, kk, &v, None, &m)
            .unwrap()
            .narrow(2, 0, 1)
            .unwrap()
    };
    assert_close(&first(&k2), &nd(&first(&k)), 0.0);
}

#[test]
fn attention_fully_masked_row_is_uniform() {
    // Batch 1 pads every key: each of its queries averages v (Hugging Face's finfo.min mask).
    let (q, k, v) = (
        randn(&[2, 1, 2, 3], 99),
        randn(&[2, 1, 3, 3], 100),
        randn(&[2, 1, 3, 2], 101),
    );
    let m = AttentionMasks {
        key_padding: Some(Tensor::from_vec(vec![1i64, 0, 1, 0, 0, 0], &[2, 3]).unwrap()),
        ..Default::default()
    };
    let got = Tensor::attention(&q, &k, &v, None, &m).unwrap();
    let mean_v = v.narrow(0, 1, 1).unwrap().mean_dims(&[2], true).unwrap();
    assert_close(
        &got.narrow(0, 1, 1).unwrap(),
        &nd(&mean_v.broadcast_to(&[1, 1, 2, 2]).unwrap()),
        1e-6,
    );
}

// ---------------------------------------------------------------- views

#[test]
fn reshape_is_a_view_whenever_strides_allow() {
    let base = Tensor::arange(0.0, 72.0, 1.0)
        .unwrap()
        .reshape(&[2, 3, 12])
        .unwrap();
    // (view, new shape, whether PyTorch's `view` accepts it)
    let cols = base.narrow(2, 4, 4).unwrap(); // (2, 3, 4), strides (36, 12, 1), offset 4
    let perm = base.permute(&[2, 0, 1]).unwrap(); // (12, 2, 3), strides (1, 36, 12)
    let tr = base.transpose(0, 1).unwrap(); // (3, 2, 12), strides (12, 36, 1)
    let step = base.narrow(1, 0, 2).unwrap(); // (2, 2, 12), strides (36, 12, 1)
    let cases: Vec<(&Tensor, Vec<usize>, bool)> = vec![
        (&cols, vec![2, 3, 2, 2], true), // split the contiguous last dim into heads
        (&cols, vec![6, 4], true),       // (B, T) rows stay 12 apart
        (&cols, vec![3, 8], false),      // a new row would straddle the gap between rows
        (&cols, vec![2, 1, 3, 1, 4], true),
        (&perm, vec![3, 4, 2, 3], true), // split the stride-1 dim
        (&perm, vec![12, 6], true),      // dims 1, 2 nest (36 = 3·12)
        (&perm, vec![6, 12], false),     // dim 0 (stride 1) does not nest with them
        (&perm, vec![12, 2, 3, 1], true),
        (&tr, vec![3, 24], false),
        (&tr, vec![3, 2, 3, 4], true),
        (&step, vec![2, 24], true), // rows 12 apart, two of them: one chunk of 24
        (&step, vec![4, 12], false),
        (&step, vec![48], false),
    ];
    for (x, shape, view) in cases {
        let r = x.reshape(&shape).unwrap();
        let want = x.contiguous().unwrap().reshape(&shape).unwrap();
        assert_eq!(r.shape(), shape.as_slice());
        assert_eq!(
            r.to_vec_f32().unwrap(),
            want.to_vec_f32().unwrap(),
            "{:?} {:?} -> {shape:?}",
            x.shape(),
            x.strides()
        );
        assert_eq!(
            r.shares_storage_with(&base),
            view,
            "{:?} {:?} -> {shape:?}: view expected {view}",
            x.shape(),
            x.strides()
        );
    }
}

#[test]
fn views_share_storage_and_index_correctly() {
    let x = Tensor::arange(0.0, 24.0, 1.0)
        .unwrap()
        .reshape(&[2, 3, 4])
        .unwrap();
    let nx = nd(&x);
    // reshape of a contiguous tensor is a view; of a strided one a correct copy.
    let r = x.reshape(&[6, 4]).unwrap();
    assert!(r.shares_storage_with(&x));
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert!(p.shares_storage_with(&x) && !p.is_contiguous());
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(p.strides(), &[1, 12, 4]);
    let want_p = nx.view().permuted_axes(vec![2, 0, 1]).to_owned();
    assert_close(&p, &want_p, 0.0);
    let pr = p.reshape(&[4, 6]).unwrap();
    assert_close(
        &pr,
        &want_p
            .as_standard_layout()
            .into_shape_with_order(vec![4, 6])
            .unwrap()
            .to_owned(),
        0.0,
    );
    let t = x.transpose(-1, 0).unwrap();
    assert_close(&t, &nx.view().permuted_axes(vec![2, 1, 0]).to_owned(), 0.0);
    // narrow: an offset view.
    let n = x.narrow(1, 1, 2).unwrap().narrow(2, 3, 1).unwrap();
    assert!(n.shares_storage_with(&x));
    assert_eq!(n.to_vec_f32().unwrap(), vec![7.0, 11.0, 19.0, 23.0]);
    // broadcast_to: stride 0 on new and stretched dims.
    let b = x
        .narrow(1, 0, 1)
        .unwrap()
        .broadcast_to(&[5, 2, 3, 4])
        .unwrap();
    assert_eq!(b.strides(), &[0, 12, 0, 1]);
    let want_b = nx
        .slice(ndarray::s![.., 0..1, ..])
        .broadcast(IxDyn(&[5, 2, 3, 4]))
        .unwrap()
        .to_owned();
    assert_close(&b, &want_b, 0.0);
    // squeeze / unsqueeze.
    let u = x.unsqueeze(1).unwrap();
    assert_eq!(u.shape(), &[2, 1, 3, 4]);
    assert_eq!(x.unsqueeze(-1).unwrap().shape(), &[2, 3, 4, 1]);
    assert_eq!(u.squeeze(1).unwrap().shape(), x.shape());
    assert_eq!(
        p.unsqueeze(3)
            .unwrap()
            .squeeze(-1)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        p.to_vec_f32().unwrap()
    );
    // contiguous: a copy in logical order for a view, the same storage otherwise.
    let c = p.contiguous().unwrap();
    assert!(c.is_contiguous() && !c.shares_storage_with(&x));
    assert_eq!(c.strides(), &[6, 3, 1]);
    assert_close(&c, &want_p, 0.0);
    assert!(x.contiguous().unwrap().shares_storage_with(&x));
    assert_eq!(x.flatten_all().unwrap().shape(), &[24]);
    assert_eq!(x.dim(-1).unwrap(), 4);
}

// ---------------------------------------------------------------- dtypes and creation

#[test]
fn from_vec_to_vec_every_dtype() {
    let f = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 1e-3, 7.0], &[2, 3]).unwrap();
    assert_eq!((f.dtype(), f.shape()), (DType::F32, &[2usize, 3][..]));
    assert_eq!(
        f.to_vec::<f32>().unwrap(),
        vec![1.5, -2.0, 3.25, 0.0, 1e-3, 7.0]
    );
    let bv: Vec<bf16> = [1.0f32, -0.5, 3.0]
        .iter()
        .map(|&v| bf16::from_f32(v))
        .collect();
    let b = Tensor::from_vec(bv.clone(), &[3]).unwrap();
    assert_eq!((b.dtype(), b.to_vec::<bf16>().unwrap()), (DType::BF16, bv));
    let hv: Vec<f16> = [1.0f32, -0.5, 65504.0]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let h = Tensor::from_vec(hv.clone(), &[3, 1]).unwrap();
    assert_eq!((h.dtype(), h.to_vec::<f16>().unwrap()), (DType::F16, hv));
    let i = Tensor::from_vec(vec![i64::MIN, -1, 0, i64::MAX], &[4]).unwrap();
    assert_eq!(
        (i.dtype(), i.to_vec::<i64>().unwrap()),
        (DType::I64, vec![i64::MIN, -1, 0, i64::MAX])
    );
    let u = Tensor::from_vec(vec![0u32, 7, u32::MAX], &[3]).unwrap();
    assert_eq!(
        (u.dtype(), u.to_vec::<u32>().unwrap()),
        (DType::U32, vec![0, 7, u32::MAX])
    );
    // Asking for the wrong element type is an error, not a reinterpretation.
    assert!(u.to_vec::<f32>().is_err() && f.to_vec::<i64>().is_err());
    assert_eq!(h.to_vec_f32().unwrap(), vec![1.0, -0.5, 65504.0]);
    // to_vec of a strided view copies out in logical order, for any dtype.
    let it = Tensor::from_vec(vec![0i64, 1, 2, 3, 4, 5], &[2, 3])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert_eq!(it.to_vec::<i64>().unwrap(), vec![0, 3, 1, 4, 2, 5]);
    assert_eq!(DType::BF16.size_in_bytes(), 2);
    assert!(DType::F16.is_float() && DType::U32.is_int());
}

#[test]
fn to_dtype_conversions_and_bf16_rounding() {
    let one = 1.0f32;
    let half_ulp = one + 2f32.powi(-8); // exactly between 1 and the next bf16 1 + 2⁻⁷
    let above = one + 3.0 * 2f32.powi(-9);
    let x = Tensor::from_vec(vec![one, half_ulp, above, -2.5, 1e-3], &[5]).unwrap();
    let b = x.to_dtype(DType::BF16).unwrap();
    assert_eq!(b.dtype(), DType::BF16);
    let back = b.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
    // Round to nearest, ties to even.
    assert_eq!(back[0], 1.0);
    assert_eq!(back[1], 1.0);
    assert_eq!(back[2], 1.0 + 2f32.powi(-7));
    assert_eq!(back[3], -2.5);
    assert!((back[4] - 1e-3).abs() < 1e-3 * 2f32.powi(-8));
    let h = x.to_dtype(DType::F16).unwrap().to_vec_f32().unwrap();
    assert_eq!(h[1], half_ulp, "f16 has 10 mantissa bits and keeps 1 + 2⁻⁸");
    // Float → int truncates toward zero; i64 ↔ u32 checks the range.
    let f = Tensor::from_vec(vec![2.7f32, -1.9, 0.2], &[3]).unwrap();
    assert_eq!(
        f.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(),
        vec![2, -1, 0]
    );
    let i = Tensor::from_vec(vec![3i64, 0, 40000], &[3]).unwrap();
    assert_eq!(
        i.to_dtype(DType::U32).unwrap().to_vec::<u32>().unwrap(),
        vec![3, 0, 40000]
    );
    assert_eq!(
        i.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, 0.0, 40000.0]
    );
    let u = Tensor::from_vec(vec![5u32, u32::MAX], &[2]).unwrap();
    assert_eq!(
        u.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(),
        vec![5, u32::MAX as i64]
    );
    // A strided bf16 view converts in logical order.
    let bt = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!(
        bt.transpose(0, 1).unwrap().to_vec_f32().unwrap(),
        vec![1.0, 3.0, 2.0, 4.0]
    );
}

#[test]
fn ndarray_round_trip() {
    let x = randn(&[2, 3, 4], 110);
    let a = x.to_ndarray().unwrap();
    assert_eq!(a.shape(), &[2, 3, 4]);
    assert_eq!(
        Tensor::from_ndarray(&a).to_vec_f32().unwrap(),
        x.to_vec_f32().unwrap()
    );
    // A non-standard (transposed) ndarray is copied in logical order; so is a strided tensor.
    let at = a.view().permuted_axes(vec![2, 0, 1]).to_owned();
    let t = Tensor::from_ndarray(&at);
    assert_eq!(t.shape(), &[4, 2, 3]);
    assert_eq!(
        t.to_vec_f32().unwrap(),
        at.iter().copied().collect::<Vec<_>>()
    );
    let xt = x.permute(&[2, 0, 1]).unwrap();
    assert_eq!(xt.to_ndarray().unwrap(), at);
    // bf16 tensors convert through f32.
    let b = x.to_dtype(DType::BF16).unwrap().to_ndarray().unwrap();
    assert!(b
        .iter()
        .zip(a.iter())
        .all(|(p, q)| (p - q).abs() <= q.abs() * 2f32.powi(-8)));
}

#[test]
fn constructors_and_seeded_random() {
    assert_eq!(Tensor::zeros(&[2, 3]).to_vec_f32().unwrap(), vec![0.0; 6]);
    assert_eq!(Tensor::ones(&[4]).to_vec_f32().unwrap(), vec![1.0; 4]);
    assert_eq!(
        Tensor::full(&[2, 2], -3.5).to_vec_f32().unwrap(),
        vec![-3.5; 4]
    );
    let s = Tensor::scalar_f32(2.5);
    assert_eq!((s.rank(), s.scalar().unwrap()), (0, 2.5));
    assert_eq!(
        Tensor::arange(0.0, 5.0, 1.0).unwrap().to_vec_f32().unwrap(),
        vec![0.0, 1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        Tensor::arange(1.0, 2.0, 0.25)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        vec![1.0, 1.25, 1.5, 1.75]
    );
    assert_eq!(
        Tensor::arange(3.0, 0.0, -1.0)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        vec![3.0, 2.0, 1.0]
    );
    assert_eq!(
        Tensor::arange_i64(2, 6).to_vec::<i64>().unwrap(),
        vec![2, 3, 4, 5]
    );
    assert!(Tensor::arange(0.0, 1.0, 0.0).is_err() && Tensor::arange(0.0, 1.0, -1.0).is_err());

    let a = Tensor::randn(&[10000], 1.5, 2.0, &mut Rng::new(42));
    let b = Tensor::randn(&[10000], 1.5, 2.0, &mut Rng::new(42));
    let c = Tensor::randn(&[10000], 1.5, 2.0, &mut Rng::new(43));
    let av = a.to_vec_f32().unwrap();
    assert_eq!(av, b.to_vec_f32().unwrap(), "same seed, same values");
    assert_ne!(av, c.to_vec_f32().unwrap());
    let n = av.len() as f64;
    let mean = av.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (av.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    // Standard errors: 2/√n = 0.02 for the mean, ≈ 2/√(2n) = 0.014 for the s.d.
    assert!((mean - 1.5).abs() < 0.08, "mean {mean}");
    assert!((std - 2.0).abs() < 0.06, "std {std}");
    let u = Tensor::rand_uniform(&[10000], -1.0, 3.0, &mut Rng::new(5))
        .to_vec_f32()
        .unwrap();
    assert!(u.iter().all(|&v| (-1.0..3.0).contains(&v)));
    let um = u.iter().map(|&v| v as f64).sum::<f64>() / u.len() as f64;
    assert!((um - 1.0).abs() < 0.05, "uniform mean {um}");
    // The generator's state can be saved and restored mid-stream.
    let mut r = Rng::new(1);
    r.next_u64();
    let saved = r.state();
    let x = Tensor::randn(&[5], 0.0, 1.0, &mut r);
    let y = Tensor::randn(&[5], 0.0, 1.0, &mut Rng::from_state(saved));
    assert_eq!(x.to_vec_f32().unwrap(), y.to_vec_f32().unwrap());
}
