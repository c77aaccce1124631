//! Tensor ops on the emulated CUDA device against the same ops on the CPU: each op that
//! dispatches to the device (pointwise, broadcast, matmul with strided operands, reductions,
//! strided copies, cat, LayerNorm / RMSNorm, softmax, embedding, cross-entropy, attention,
//! dropout masks, AdamW, the decoding cache's in-place appends) on small shapes, plus the
//! errors of ops with no device implementation.
//! Tolerance: f32 with different summation orders, |Δ| ≤ 1e-5 + 1e-4·max|cpu| per tensor
//! (exact for copies).

#![cfg(feature = "emu")]

use pretext::autograd::{ParamStore, Var};
use pretext::backend::cuda::emu::Schedule;
use pretext::backend::cuda::CudaContext;
use pretext::error::Error;
use pretext::nn::attention::KvCache;
use pretext::optim::{AdamW, AdamWConfig};
use pretext::tensor::{AttentionMasks, AttnDropout, Binary, Rng, Tensor, Unary};

fn ctx() -> CudaContext {
    CudaContext::emulated(Schedule::WarpOrdered)
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

/// Device result `d` against host result `h`: same shape, values within tolerance.
fn close(what: &str, d: &Tensor, h: &Tensor, rel: f32) {
    assert!(d.is_cuda(), "{what}: result is not on the device");
    assert_eq!(d.shape(), h.shape(), "{what}: shape");
    let (dv, hv) = (
        d.to_cpu().unwrap().to_vec_f32().unwrap(),
        h.to_vec_f32().unwrap(),
    );
    let m = hv.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    for (i, (a, b)) in dv.iter().zip(&hv).enumerate() {
        let ok = (a - b).abs() <= 1e-5 + rel * m || (a.is_nan() && b.is_nan());
        assert!(ok, "{what}: element {i}: device {a}, cpu {b}");
    }
}

const TOL: f32 = 1e-4;

#[test]
fn pointwise_and_broadcast() {
    let c = ctx();
    let x = randn(&[3, 5], 1);
    let pos = x.abs().unwrap().add_scalar(0.1).unwrap();
    let (xd, pd) = (x.to_cuda(&c).unwrap(), pos.to_cuda(&c).unwrap());
    use Unary::*;
    for op in [
        Neg,
        Exp,
        Tanh,
        Sigmoid,
        Relu,
        GeluErf,
        GeluTanh,
        Step,
        GeluErfGrad,
        GeluTanhGrad,
        Abs,
        AddScalar(0.5),
        MulScalar(-2.0),
        Powf(2.0),
        Powf(3.0),
        Powf(1.0),
    ] {
        close(
            &format!("{op:?}"),
            &xd.unary(op).unwrap(),
            &x.unary(op).unwrap(),
            TOL,
        );
    }
    for op in [Log, Sqrt, Rsqrt, Powf(0.5), Powf(-1.0), Powf(-0.5)] {
        close(
            &format!("{op:?}"),
            &pd.unary(op).unwrap(),
            &pos.unary(op).unwrap(),
            TOL,
        );
    }
    // A transposed (strided) input.
    let xt = x.transpose(0, 1).unwrap();
    close(
        "exp of a view",
        &xd.transpose(0, 1).unwrap().exp().unwrap(),
        &xt.exp().unwrap(),
        TOL,
    );
    let a = randn(&[2, 3, 4], 2);
    let b = pos.narrow(1, 0, 4).unwrap().narrow(0, 0, 3).unwrap(); // (3, 4) view
    let row = randn(&[4], 3).abs().unwrap().add_scalar(0.5).unwrap();
    let col = randn(&[3, 1], 4);
    let (ad, bd, rd, cd) = (
        a.to_cuda(&c).unwrap(),
        b.to_cuda(&c).unwrap(),
        row.to_cuda(&c).unwrap(),
        col.to_cuda(&c).unwrap(),
    );
    for op in [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Maximum,
        Binary::Minimum,
    ] {
        close(
            &format!("{op:?} (3,4)"),
            &ad.binary(&bd, op).unwrap(),
            &a.binary(&b, op).unwrap(),
            TOL,
        );
        close(
            &format!("{op:?} (4,)"),
            &ad.binary(&rd, op).unwrap(),
            &a.binary(&row, op).unwrap(),
            TOL,
        );
        close(
            &format!("{op:?} (3,1)"),
            &cd.binary(&ad, op).unwrap(),
            &col.binary(&a, op).unwrap(),
            TOL,
        );
    }
}

#[test]
fn matmul_with_strided_and_batched_operands() {
    let c = ctx();
    let d = |t: &Tensor| t.to_cuda(&c).unwrap();
    let a = randn(&[5, 7], 1);
    let w = randn(&[3, 7], 2); // (out, in) as a Linear weight
    let cases: Vec<(&str, Tensor, Tensor)> = vec![
        ("x·Wᵀ", a.clone(), w.transpose(0, 1).unwrap()),
        (
            "Aᵀ·B",
            randn(&[7, 5], 3).transpose(0, 1).unwrap(),
            randn(&[7, 4], 4),
        ),
        ("batched", randn(&[2, 3, 4], 5), randn(&[2, 4, 6], 6)),
        (
            "broadcast batch",
            randn(&[2, 1, 3, 4], 7),
            randn(&[3, 4, 5], 8),
        ),
        // Heads view (B, T, H, D) → (B, H, T, D): batch dims that do not collapse to one stride.
        (
            "permuted batch",
            randn(&[2, 3, 2, 4], 9).permute(&[0, 2, 1, 3]).unwrap(),
            randn(&[2, 2, 4, 3], 10),
        ),
        (
            "column block",
            randn(&[4, 9], 11).narrow(1, 3, 5).unwrap(),
            randn(&[5, 2], 12),
        ),
    ];
    for (what, x, y) in cases {
        close(
            what,
            &d(&x).matmul(&d(&y)).unwrap(),
            &x.matmul(&y).unwrap(),
            TOL,
        );
    }
}

#[test]
fn reductions_copies_and_cat() {
    let c = ctx();
    let x = randn(&[3, 4, 5], 1);
    let xd = x.to_cuda(&c).unwrap();
    for (dims, keep) in [
        (vec![0], false),
        (vec![1], true),
        (vec![0, 2], false),
        (vec![-1], false),
        (vec![0, 1, 2], false),
    ] {
        close(
            &format!("sum {dims:?}"),
            &xd.sum_dims(&dims, keep).unwrap(),
            &x.sum_dims(&dims, keep).unwrap(),
            TOL,
        );
    }
    close(
        "mean_all",
        &xd.mean_all().unwrap(),
        &x.mean_all().unwrap(),
        TOL,
    );
    close(
        "sum_to_shape",
        &xd.sum_to_shape(&[4, 1]).unwrap(),
        &x.sum_to_shape(&[4, 1]).unwrap(),
        TOL,
    );
    let p = x.permute(&[2, 0, 1]).unwrap();
    close(
        "permute",
        &xd.permute(&[2, 0, 1]).unwrap().contiguous().unwrap(),
        &p.contiguous().unwrap(),
        0.0,
    );
    let n = x.narrow(2, 1, 3).unwrap().reshape(&[12, 3]).unwrap();
    close(
        "narrow+reshape",
        &xd.narrow(2, 1, 3).unwrap().reshape(&[12, 3]).unwrap(),
        &n,
        0.0,
    );
    let y = randn(&[3, 2, 5], 2);
    let yd = y.to_cuda(&c).unwrap();
    close(
        "cat",
        &Tensor::cat(&[&xd, &yd], 1).unwrap(),
        &Tensor::cat(&[&x, &y], 1).unwrap(),
        0.0,
    );
    close(
        "narrow_backward",
        &yd.narrow_backward(1, 1, 6).unwrap(),
        &y.narrow_backward(1, 1, 6).unwrap(),
        0.0,
    );
    // Index tensors: strided copies keep integers exact, and they come back with their dtype.
    let ids = Tensor::from_vec((0..24i64).map(|i| i * 1000 - 7).collect(), &[4, 6]).unwrap();
    let back = ids
        .to_cuda(&c)
        .unwrap()
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .to_cpu()
        .unwrap();
    assert_eq!(
        back.to_vec::<i64>().unwrap(),
        ids.transpose(0, 1).unwrap().to_vec::<i64>().unwrap()
    );
    let full = Tensor::full_cuda(&[2, 3], 1.5, &c).unwrap();
    assert_eq!(
        full.to_cpu().unwrap().to_vec::<f32>().unwrap(),
        vec![1.5; 6]
    );
}

#[test]
fn norms_softmax_embedding_and_cross_entropy() {
    let c = ctx();
    let d = |t: &Tensor| t.to_cuda(&c).unwrap();
    let x = randn(&[2, 3, 8], 1);
    let (g, b) = (randn(&[8], 2), randn(&[8], 3));
    let dy = randn(&[2, 3, 8], 4);
    let h = x.layer_norm(Some(&g), Some(&b), 1e-5).unwrap();
    let dv = d(&x).layer_norm(Some(&d(&g)), Some(&d(&b)), 1e-5).unwrap();
    close("layer_norm", &dv.y, &h.y, TOL);
    close("layer_norm rstd", &dv.rstd, &h.rstd, TOL);
    let hb = Tensor::norm_backward(&x, Some(&g), h.mean.as_ref(), &h.rstd, &dy).unwrap();
    let db =
        Tensor::norm_backward(&d(&x), Some(&d(&g)), dv.mean.as_ref(), &dv.rstd, &d(&dy)).unwrap();
    for (w, a, e) in [
        ("dx", &db.0, &hb.0),
        ("dgamma", &db.1, &hb.1),
        ("dbeta", &db.2, &hb.2),
    ] {
        close(&format!("layer_norm {w}"), a, e, TOL);
    }
    let hr = x.rms_norm(Some(&g), 1e-6).unwrap();
    let dr = d(&x).rms_norm(Some(&d(&g)), 1e-6).unwrap();
    close("rms_norm", &dr.y, &hr.y, TOL);
    let hb = Tensor::norm_backward(&x, Some(&g), None, &hr.rstd, &dy).unwrap();
    let db = Tensor::norm_backward(&d(&x), Some(&d(&g)), None, &dr.rstd, &d(&dy)).unwrap();
    close("rms_norm dx", &db.0, &hb.0, TOL);
    close("rms_norm dgamma", &db.1, &hb.1, TOL);
    let s = x.softmax_last().unwrap();
    let sd = d(&x).softmax_last().unwrap();
    close("softmax", &sd, &s, TOL);
    let sb = Tensor::softmax_last_backward(&s, &dy).unwrap();
    close(
        "softmax backward",
        &Tensor::softmax_last_backward(&sd, &d(&dy)).unwrap(),
        &sb,
        TOL,
    );
    // Embedding: ids from the host and from the device; the scatter-add adjoint.
    let table = randn(&[7, 4], 5);
    let ids = Tensor::from_vec(vec![3i64, 0, 6, 3, 3, 1], &[2, 3]).unwrap();
    let e = table.embedding(&ids).unwrap();
    close(
        "embedding (host ids)",
        &d(&table).embedding(&ids).unwrap(),
        &e,
        0.0,
    );
    close(
        "embedding (device ids)",
        &d(&table).embedding(&d(&ids)).unwrap(),
        &e,
        0.0,
    );
    let flat = ids.reshape(&[6]).unwrap();
    let gr = randn(&[6, 4], 6);
    close(
        "index_add",
        &d(&gr).index_add_into(0, &d(&flat), 7).unwrap(),
        &gr.index_add_into(0, &flat, 7).unwrap(),
        TOL,
    );
    let bad = Tensor::from_vec(vec![7i64], &[1]).unwrap();
    let err = d(&table).embedding(&bad).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    // Cross-entropy over a strided view of the logits, one target ignored, upstream gradient 2.
    let logits = randn(&[2, 4, 5], 7).narrow(1, 0, 3).unwrap();
    let t = Tensor::from_vec(vec![1i64, -100, 4, 0, 2, 2], &[2, 3]).unwrap();
    let ho = logits.cross_entropy(&t, -100, 0.0).unwrap();
    let dlog = d(&randn(&[2, 4, 5], 7)).narrow(1, 0, 3).unwrap();
    let dout = dlog.cross_entropy(&t, -100, 0.0).unwrap();
    close("cross_entropy", &dout.loss, &ho.loss, 1e-5);
    let two = Tensor::scalar_f32(2.0);
    let hg = Tensor::cross_entropy_backward(&logits, &ho, -100, 0.0, &two).unwrap();
    let dg = Tensor::cross_entropy_backward(&dlog, &dout, -100, 0.0, &d(&two)).unwrap();
    close("cross_entropy backward", &dg, &hg, TOL);
}

#[test]
fn attention_forward_and_backward() {
    let c = ctx();
    let d = |t: &Tensor| t.to_cuda(&c).unwrap();
    let (b, h, t, hd) = (2, 2, 9, 8);
    // q, k, v as head views of one fused (B, T, 3·H·D) projection, as GPT-2 makes them.
    let fused = randn(&[b, t, 3 * h * hd], 1);
    let heads = |f: &Tensor, i: usize| {
        f.narrow(2, i * h * hd, h * hd)
            .unwrap()
            .reshape(&[b, t, h, hd])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let fd = d(&fused);
    let (q, k, v) = (heads(&fused, 0), heads(&fused, 1), heads(&fused, 2));
    let (qd, kd, vd) = (heads(&fd, 0), heads(&fd, 1), heads(&fd, 2));
    let dout = randn(&[b, h, t, hd], 2);
    // dO as merge_heads' backward hands it over: the head view of a (B, T, H·D) gradient,
    // which the device reads in place (the output's order); the contiguous dout above is
    // copied into that order first.
    let dout_rows = randn(&[b, t, h * hd], 3);
    let dout_view = dout_rows
        .reshape(&[b, t, h, hd])
        .unwrap()
        .permute(&[0, 2, 1, 3])
        .unwrap();
    let pad = Tensor::from_vec(
        vec![
            1.0f32, 1., 1., 1., 1., 1., 1., 0., 0., 1., 1., 1., 1., 1., 1., 1., 1., 1.,
        ],
        &[b, t],
    )
    .unwrap();
    // The third: probability dropout, where the device kernels must drop what the host
    // kernels drop (the same counter-based mask), forward and backward.
    let causal = AttentionMasks {
        causal: true,
        ..Default::default()
    };
    for masks in [
        causal.clone(),
        AttentionMasks {
            causal: false,
            key_padding: Some(pad.clone()),
            scale: Some(0.3),
            dropout: None,
        },
        AttentionMasks {
            dropout: Some(AttnDropout { p: 0.3, seed: 77 }),
            ..causal.clone()
        },
    ] {
        let (o, stats) = Tensor::attention_with_stats(&q, &k, &v, None, &masks).unwrap();
        let (od, dstats) = Tensor::attention_with_stats(&qd, &kd, &vd, None, &masks).unwrap();
        close("attention", &od, &o, TOL);
        // Both sides return the output in q's (B, T, H, D) order.
        let bthd = [t * h * hd, hd, h * hd, 1];
        assert_eq!((od.strides(), o.strides()), (&bthd[..], &bthd[..]));
        if masks.dropout.is_some() {
            let plain = Tensor::attention(&q, &k, &v, None, &causal).unwrap();
            let moved = o.sub(&plain).unwrap().abs().unwrap().to_vec_f32().unwrap();
            assert!(moved.iter().any(|&x| x > 1e-3), "dropout changed nothing");
        }
        let hb =
            Tensor::attention_backward(&q, &k, &v, None, &masks, &o, &stats, &dout, false).unwrap();
        let db =
            Tensor::attention_backward(&qd, &kd, &vd, None, &masks, &od, &dstats, &d(&dout), false)
                .unwrap();
        close("attention dq", &db.0, &hb.0, TOL);
        close("attention dk", &db.1, &hb.1, TOL);
        close("attention dv", &db.2, &hb.2, TOL);
        let dv_view = d(&dout_rows)
            .reshape(&[b, t, h, hd])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap();
        let hb =
            Tensor::attention_backward(&q, &k, &v, None, &masks, &o, &stats, &dout_view, false)
                .unwrap();
        let db =
            Tensor::attention_backward(&qd, &kd, &vd, None, &masks, &od, &dstats, &dv_view, false)
                .unwrap();
        close("attention dq (dO a head view)", &db.0, &hb.0, TOL);
        close("attention dk (dO a head view)", &db.1, &hb.1, TOL);
        close("attention dv (dO a head view)", &db.2, &hb.2, TOL);
    }
}

#[test]
fn autograd_graph_and_adamw_on_the_device() {
    // y = Σ gelu(x·Wᵀ + b)·w2 through Var ops, then one AdamW step, on both backends.
    let c = ctx();
    let run = |dev: bool| -> (f32, Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut store = ParamStore::new();
        let w = store.add("w", randn(&[6, 4], 1)).unwrap();
        let b = store.add("b", randn(&[6], 2)).unwrap();
        let w2 = store.add("w2", randn(&[6], 3)).unwrap();
        let mut x = randn(&[5, 4], 4);
        if dev {
            store.to_cuda(&c).unwrap();
            x = x.to_cuda(&c).unwrap();
        }
        let x = Var::constant(x);
        let y = x
            .matmul(&w.transpose(0, 1).unwrap())
            .unwrap()
            .add(&b)
            .unwrap()
            .gelu_tanh()
            .unwrap();
        let loss = y
            .mul(&w2)
            .unwrap()
            .sum_all()
            .unwrap()
            .mul_scalar(0.5)
            .unwrap();
        loss.backward().unwrap();
        let host = |t: Tensor| t.to_cpu().unwrap().to_vec::<f32>().unwrap();
        let grads = store.iter().map(|(_, p)| host(p.grad().unwrap())).collect();
        let mut opt = AdamW::new(
            AdamWConfig {
                lr: 0.1,
                ..Default::default()
            },
            &store,
        );
        opt.step(&store, 0.1).unwrap();
        let params = store.iter().map(|(_, p)| host(p.value().clone())).collect();
        let l = host(loss.value().clone())[0];
        (l, grads, params)
    };
    let (lh, gh, ph) = run(false);
    let (ld, gd, pd) = run(true);
    assert!(
        (lh - ld).abs() <= 1e-5 * lh.abs().max(1.0),
        "loss {lh} vs {ld}"
    );
    for (what, a, b) in [("grad", &gd, &gh), ("param", &pd, &ph)] {
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            let m = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (u, v) in x.iter().zip(y) {
                assert!(
                    (u - v).abs() <= 1e-5 + TOL * m,
                    "{what} {i}: device {u}, cpu {v}"
                );
            }
        }
    }
}

/// Dropout on the device is the counter-based kernel on x: the same mask as the host's for
/// the same seed (so a run's dropout does not depend on the device), a strided x read in
/// logical order, and the drop rate.
#[test]
fn dropout_on_the_device_matches_the_host() {
    let c = ctx();
    let x = randn(&[64, 16], 3);
    let xd = x.to_cuda(&c).unwrap();
    let y = xd.dropout_seeded(0.25, 99).unwrap();
    assert!(y.is_cuda());
    let v = y.to_cpu().unwrap().to_vec::<f32>().unwrap();
    assert_eq!(
        v,
        x.dropout_seeded(0.25, 99).unwrap().to_vec::<f32>().unwrap()
    );
    let zeros = v.iter().filter(|&&x| x == 0.0).count();
    assert!(
        (150..350).contains(&zeros),
        "{zeros} of 1024 dropped at p = 0.25"
    );
    let t = xd.transpose(0, 1).unwrap();
    assert_eq!(
        t.dropout_seeded(0.5, 7)
            .unwrap()
            .to_cpu()
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        x.transpose(0, 1)
            .unwrap()
            .dropout_seeded(0.5, 7)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    );
}

fn device_error(e: Error, op: &str) {
    let s = e.to_string();
    assert!(matches!(e, Error::Device { .. }), "not a device error: {s}");
    assert!(
        s.contains(op) && s.contains("cuda:0"),
        "error should name {op} and cuda:0: {s}"
    );
}

#[test]
fn ops_without_a_device_implementation_fail_clearly() {
    let c = ctx();
    let x = randn(&[3, 4], 1);
    let xd = x.to_cuda(&c).unwrap();
    device_error(xd.max_dims(&[1], false).unwrap_err(), "max");
    device_error(xd.log_softmax_last().unwrap_err(), "log_softmax");
    device_error(xd.to_vec_f32().unwrap_err(), "to_vec_f32");
    device_error(xd.sum_all().unwrap().scalar().unwrap_err(), "to_vec_f32");
    device_error(
        xd.to_dtype(pretext::tensor::DType::BF16).unwrap_err(),
        "to_dtype",
    );
    device_error(xd.powf(1.7).unwrap_err(), "powf");
    device_error(
        xd.masked_fill(&Tensor::zeros(&[3, 4]), 0.0).unwrap_err(),
        "masked_fill",
    );
    // Mixed devices are refused, never silently copied.
    let e = xd.add(&x).unwrap_err();
    assert!(e.to_string().contains("cpu and cuda:0"), "{e}");
    let other = CudaContext::emulated(Schedule::RoundRobin);
    let e = xd.mul(&x.to_cuda(&other).unwrap()).unwrap_err();
    assert!(e.to_string().contains("different CUDA contexts"), "{e}");
    // Label smoothing has no device kernel.
    let t = Tensor::from_vec(vec![0i64, 1, 2], &[3]).unwrap();
    device_error(
        xd.cross_entropy(&t, -100, 0.1).unwrap_err(),
        "label smoothing",
    );
    // bf16 tensors cannot be moved to the device.
    let e = x
        .to_dtype(pretext::tensor::DType::BF16)
        .unwrap()
        .to_cuda(&c)
        .unwrap_err();
    assert!(e.to_string().contains("bf16"), "{e}");
}

#[test]
fn the_real_device_path_errors_cleanly_without_a_driver() {
    match CudaContext::open(0) {
        Ok(ctx) => {
            // A GPU is present (a lent machine): the same ops run on it.
            let x = randn(&[4, 4], 1);
            close(
                "gpu matmul",
                &x.to_cuda(&ctx)
                    .unwrap()
                    .matmul(&x.to_cuda(&ctx).unwrap())
                    .unwrap(),
                &x.matmul(&x).unwrap(),
                TOL,
            );
        }
        Err(e) => {
            let s = e.to_string();
            assert!(matches!(e, Error::Device { .. }), "{s}");
            println!("no GPU here: {s}");
        }
    }
}

/// The decoding cache appends in place on the device as on the host: after appends of 3, 1,
/// 2, 1, 5, 1 positions (the buffer doubling on the way) its (k, v) equal the concatenation of
/// the steps, bit for bit, and a view handed out before later appends keeps its values.
#[test]
fn kv_cache_appends_in_place_on_the_device() {
    let ctx = ctx();
    let (b, h, d) = (2, 3, 5);
    let mut cache = KvCache::new(1);
    let mut all: Option<(Tensor, Tensor)> = None;
    let mut held: Option<(Tensor, Vec<f32>)> = None;
    let host = |t: &Tensor| t.to_cpu().unwrap().to_vec_f32().unwrap();
    for (step, &t) in [3, 1, 2, 1, 5, 1].iter().enumerate() {
        let (k, v) = (
            randn(&[b, h, t, d], 10 + step as u64),
            randn(&[b, h, t, d], 20 + step as u64),
        );
        let (kk, vv) = cache
            .extend(
                0,
                &Var::constant(k.to_cuda(&ctx).unwrap()),
                &Var::constant(v.to_cuda(&ctx).unwrap()),
            )
            .unwrap();
        let (ak, av) = match all.take() {
            Some((ak, av)) => (
                Tensor::cat(&[&ak, &k], 2).unwrap(),
                Tensor::cat(&[&av, &v], 2).unwrap(),
            ),
            None => (k, v),
        };
        assert!(kk.value().is_cuda() && vv.value().is_cuda(), "step {step}");
        assert_eq!(
            host(&kk.value()),
            ak.to_vec_f32().unwrap(),
            "k at step {step}"
        );
        assert_eq!(
            host(&vv.value()),
            av.to_vec_f32().unwrap(),
            "v at step {step}"
        );
        assert_eq!(cache.past_len(), ak.shape()[2]);
        all = Some((ak, av));
        if let Some((view, values)) = &held {
            assert_eq!(&host(view), values, "a held view changed at step {step}");
        }
        if step == 2 {
            held = Some((kk.value().clone(), host(&kk.value())));
        }
    }
}
