//! The tiled (flash) CPU attention against a naive O(T²) reference that materialises P (plain
//! loops in f64, below), forward and backward, on every instruction-set path (forced through
//! `isa::force`), on sizes that are not multiples of the tile sizes, with causal masks over
//! Tq < Tk (KV-cache decoding), key padding, fully masked rows and a bias with its gradient.
//! Also: the kernels allocate O(B·H·T·D), never O(T²), without a bias gradient.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pretext::backend::cpu::attention::{BC, BR};
use pretext::backend::cpu::isa::{self, Isa};
use pretext::tensor::{AttentionMasks, Rng, Tensor};

/// Counts live heap bytes and their peak, so a test can bound what a call allocates.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The ISA level and the allocation counters are process-wide: tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

/// One attention problem.
#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    h: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    /// Pad the last `pad` keys of batch entry 1 (all of them when pad ≥ Tk).
    pad: usize,
    /// Bias shape: 0 none, 1 (1, H, Tq, Tk), 2 (B, 1, 1, Tk).
    bias: u8,
}

struct Grads {
    out: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
    dbias: Vec<f64>,
}

/// Plain-loop attention and its gradients in f64, materialising p (B, H, Tq, Tk). A row with
/// no visible key attends uniformly to all Tk keys and passes no score gradient.
#[allow(clippy::too_many_arguments)]
fn reference(
    c: &Case,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    keep: Option<&[bool]>,
    dout: &[f32],
    scale: f64,
) -> Grads {
    let Case {
        b: nb,
        h: nh,
        tq,
        tk,
        d,
        dv,
        ..
    } = *c;
    let mut g = Grads {
        out: vec![0.0; nb * nh * tq * dv],
        dq: vec![0.0; nb * nh * tq * d],
        dk: vec![0.0; nb * nh * tk * d],
        dv: vec![0.0; nb * nh * tk * dv],
        dbias: vec![0.0; nb * nh * tq * tk],
    };
    for b in 0..nb {
        for h in 0..nh {
            let bh = b * nh + h;
            let qi = |i: usize, c: usize| q[(bh * tq + i) * d + c] as f64;
            let kj = |j: usize, c: usize| k[(bh * tk + j) * d + c] as f64;
            let vj = |j: usize, c: usize| v[(bh * tk + j) * dv + c] as f64;
            let doi = |i: usize, c: usize| dout[(bh * tq + i) * dv + c] as f64;
            for i in 0..tq {
                let ok: Vec<bool> = (0..tk)
                    .map(|j| {
                        (!c.causal || j + tq <= i + tk) && keep.is_none_or(|kk| kk[b * tk + j])
                    })
                    .collect();
                let any = ok.iter().any(|&o| o);
                let s: Vec<f64> = (0..tk)
                    .map(|j| {
                        if !ok[j] {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d).map(|cc| qi(i, cc) * kj(j, cc)).sum();
                        scale * dot + bias.map_or(0.0, |bb| bb[(bh * tq + i) * tk + j] as f64)
                    })
                    .collect();
                let p: Vec<f64> = if any {
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    s.iter().map(|x| (x - m).exp() / z).collect()
                } else {
                    vec![1.0 / tk as f64; tk]
                };
                for cc in 0..dv {
                    g.out[(bh * tq + i) * dv + cc] = (0..tk).map(|j| p[j] * vj(j, cc)).sum();
                }
                let dp: Vec<f64> = (0..tk)
                    .map(|j| (0..dv).map(|cc| doi(i, cc) * vj(j, cc)).sum())
                    .collect();
                let delta: f64 = (0..tk).map(|j| p[j] * dp[j]).sum();
                for j in 0..tk {
                    for cc in 0..dv {
                        g.dv[(bh * tk + j) * dv + cc] += p[j] * doi(i, cc);
                    }
                    let ds = if ok[j] { p[j] * (dp[j] - delta) } else { 0.0 };
                    g.dbias[(bh * tq + i) * tk + j] = ds;
                    for cc in 0..d {
                        g.dq[(bh * tq + i) * d + cc] += scale * ds * kj(j, cc);
                        g.dk[(bh * tk + j) * d + cc] += scale * ds * qi(i, cc);
                    }
                }
            }
        }
    }
    g
}

fn assert_close(what: &str, got: &Tensor, want: &[f64], tol: f64, ctx: &str) {
    let got = got.to_vec_f32().unwrap();
    assert_eq!(got.len(), want.len(), "{what} length ({ctx})");
    let scale = 1.0 + want.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * scale && g.is_finite(),
            "{what}[{i}] = {g}, want {w} (tol {tol}·{scale:.3}; {ctx})"
        );
    }
}

/// Runs the case on the current ISA level and compares forward and backward with the reference.
fn check(c: Case, seed: u64) {
    let Case {
        b,
        h,
        tq,
        tk,
        d,
        dv,
        ..
    } = c;
    let q = randn(&[b, h, tq, d], seed);
    let k = randn(&[b, h, tk, d], seed + 1);
    let v = randn(&[b, h, tk, dv], seed + 2);
    let dout = randn(&[b, h, tq, dv], seed + 3);
    let keep: Option<Vec<bool>> = (c.pad > 0).then(|| {
        (0..b * tk)
            .map(|x| x / tk != 1 || x % tk + c.pad < tk)
            .collect()
    });
    let key_padding = keep.as_ref().map(|kk| {
        let f: Vec<f32> = kk.iter().map(|&x| x as u8 as f32).collect();
        Tensor::from_vec(f, &[b, tk]).unwrap()
    });
    let bias = match c.bias {
        0 => None,
        1 => Some(randn(&[1, h, tq, tk], seed + 4)),
        _ => Some(randn(&[b, 1, 1, tk], seed + 5)),
    };
    let full_bias = bias.as_ref().map(|bt| {
        bt.broadcast_to(&[b, h, tq, tk])
            .unwrap()
            .to_vec_f32()
            .unwrap()
    });
    let scale = 1.0 / (d as f32).sqrt();
    let masks = AttentionMasks {
        causal: c.causal,
        key_padding,
        scale: Some(scale),
        dropout: None,
    };
    let (out, stats) = Tensor::attention_with_stats(&q, &k, &v, bias.as_ref(), &masks).unwrap();
    let (dq, dk, dvv, dbias) = Tensor::attention_backward(
        &q,
        &k,
        &v,
        bias.as_ref(),
        &masks,
        &out,
        &stats,
        &dout,
        bias.is_some(),
    )
    .unwrap();
    let want = reference(
        &c,
        &q.to_vec_f32().unwrap(),
        &k.to_vec_f32().unwrap(),
        &v.to_vec_f32().unwrap(),
        full_bias.as_deref(),
        keep.as_deref(),
        &dout.to_vec_f32().unwrap(),
        scale as f64,
    );
    let ctx = format!("{c:?}, isa {:?}", isa::active());
    let tol = 2e-5 * (d.max(dv) as f64).sqrt() * (tk as f64).sqrt().max(1.0);
    assert_close("out", &out, &want.out, tol, &ctx);
    assert_close("dq", &dq, &want.dq, tol, &ctx);
    assert_close("dk", &dk, &want.dk, tol, &ctx);
    assert_close("dv", &dvv, &want.dv, tol, &ctx);
    match dbias {
        Some(db) => assert_close("dbias", &db, &want.dbias, tol, &ctx),
        None => assert!(bias.is_none(), "dbias requested but not returned ({ctx})"),
    }
}

/// Every level this CPU supports (a forced level above it is clamped, so duplicates are skipped).
fn levels() -> Vec<Isa> {
    let mut out = vec![];
    for l in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
        isa::force(Some(l));
        if !out.contains(&isa::active()) {
            out.push(isa::active());
        }
    }
    isa::force(None);
    out
}

fn on_every_level(cases: &[Case]) {
    let _guard = serial();
    for level in levels() {
        isa::force(Some(level));
        for (n, c) in cases.iter().enumerate() {
            check(*c, 1000 + 10 * n as u64);
        }
    }
    isa::force(None);
}

fn case(tq: usize, tk: usize, d: usize, dv: usize, causal: bool) -> Case {
    Case {
        b: 2,
        h: 2,
        tq,
        tk,
        d,
        dv,
        causal,
        pad: 0,
        bias: 0,
    }
}

#[test]
fn tile_sizes_are_what_the_cases_straddle() {
    // The sizes below (63, 65, 130) straddle one and two tiles only for these tile sizes.
    assert_eq!((BR, BC), (64, 64));
}

#[test]
fn sizes_off_the_tile_grid() {
    let mut cases = vec![];
    for &t in &[1, 5, 17, 63, 65, 130] {
        for causal in [false, true] {
            cases.push(case(t, t, 8, 8, causal));
        }
    }
    for &(t, d, dv) in &[
        (17, 32, 32),
        (65, 64, 64),
        (63, 32, 48),
        (130, 64, 24),
        (5, 8, 40),
    ] {
        cases.push(case(t, t, d, dv, true));
        cases.push(case(t, t, d, dv, false));
    }
    on_every_level(&cases);
}

#[test]
fn causal_with_fewer_queries_than_keys() {
    // KV-cache decoding (Tq = 1) and a chunk of new queries over a longer cache.
    on_every_level(&[
        case(1, 1, 32, 32, true),
        case(1, 65, 32, 32, true),
        case(1, 130, 64, 64, true),
        case(17, 130, 32, 32, true),
        case(64, 129, 8, 16, true),
        case(3, 70, 8, 8, false),
    ]);
}

#[test]
fn key_padding_and_fully_masked_rows() {
    let mut cases = vec![];
    for &(t, pad) in &[(5, 2), (65, 3), (130, 70), (17, 17), (130, 200)] {
        for causal in [false, true] {
            cases.push(Case {
                pad,
                ..case(t, t, 32, 16, causal)
            });
        }
    }
    // Decoding step over a cache whose batch entry 1 is all padding.
    cases.push(Case {
        pad: 99,
        ..case(1, 70, 8, 8, true)
    });
    on_every_level(&cases);
}

#[test]
fn bias_with_gradient() {
    let mut cases = vec![];
    for bias in [1u8, 2] {
        for &(tq, tk) in &[(5, 5), (65, 65), (17, 130), (130, 130)] {
            cases.push(Case {
                bias,
                ..case(tq, tk, 32, 32, tq != tk || bias == 2)
            });
        }
        cases.push(Case {
            bias,
            pad: 130,
            ..case(65, 130, 8, 16, true)
        });
    }
    on_every_level(&cases);
}

#[test]
fn left_padding_with_causal_mask_attends_uniformly() {
    // Query 0 of batch entry 1 sees no key (its only causal key is padding): its output is the
    // mean of all of v, including the keys of the causal tiles the kernel skips.
    let _guard = serial();
    let (b, h, t, d) = (2, 1, 130, 8);
    let (q, k, v) = (
        randn(&[b, h, t, d], 7),
        randn(&[b, h, t, d], 8),
        randn(&[b, h, t, d], 9),
    );
    let keep: Vec<f32> = (0..b * t).map(|x| (x != t) as u8 as f32).collect();
    let masks = AttentionMasks {
        causal: true,
        key_padding: Some(Tensor::from_vec(keep, &[b, t]).unwrap()),
        scale: None,
        dropout: None,
    };
    for level in levels() {
        isa::force(Some(level));
        let out = Tensor::attention(&q, &k, &v, None, &masks).unwrap();
        let o = out.to_vec_f32().unwrap();
        let vs = v.to_vec_f32().unwrap();
        for c in 0..d {
            let mean: f32 = (0..t).map(|j| vs[(t + j) * d + c]).sum::<f32>() / t as f32;
            let got = o[t * d + c];
            assert!(
                (got - mean).abs() < 1e-5,
                "{level:?} col {c}: {got} vs {mean}"
            );
        }
    }
    isa::force(None);
}

/// (B, H, T, n) head views of columns `c0 .. c0 + H·n` of a (B, T, W) tensor, as
/// `nn::attention::split_heads` makes them of a fused QKV projection: no copy, row stride W.
fn head_view(x: &Tensor, c0: usize, h: usize, n: usize) -> Tensor {
    let s = x.shape().to_vec();
    x.narrow(2, c0, h * n)
        .unwrap()
        .reshape(&[s[0], s[1], h, n])
        .unwrap()
        .permute(&[0, 2, 1, 3])
        .unwrap()
}

#[test]
fn strided_operands_are_read_in_place_and_results_keep_their_order() {
    // q, k, v as head views of one (B, T, H·(2d + dv)) projection and dO as the head view of
    // a (B, T, H·dv) gradient give bit for bit what their contiguous copies give, with key
    // padding, a fully masked row, dropout and a causal mask; the output and dq, dk, dv come
    // back in (B, T, H, ·) order, so merging the heads is a view. d = 24 takes the padded-copy
    // path of the backward, d = 64 reads every operand in place.
    let _guard = serial();
    let (b, h, t) = (2, 3, 70);
    for &(d, dv) in &[(64, 64), (24, 40)] {
        let w = h * (2 * d + dv);
        let qkv = randn(&[b, t, w], 21);
        let (q, k, v) = (
            head_view(&qkv, 0, h, d),
            head_view(&qkv, h * d, h, d),
            head_view(&qkv, 2 * h * d, h, dv),
        );
        assert!(q.shares_storage_with(&qkv) && !q.is_contiguous());
        let dout = head_view(&randn(&[b, t, h * dv], 22), 0, h, dv);
        let keep: Vec<f32> = (0..b * t)
            .map(|x| (x % t >= 3 || x < t) as u8 as f32)
            .collect();
        let masks = AttentionMasks {
            causal: true,
            key_padding: Some(Tensor::from_vec(keep, &[b, t]).unwrap()),
            scale: None,
            dropout: Some(pretext::tensor::AttnDropout { p: 0.2, seed: 5 }),
        };
        let contiguous = |x: &Tensor| x.contiguous().unwrap();
        let (qc, kc, vc, dc) = (
            contiguous(&q),
            contiguous(&k),
            contiguous(&v),
            contiguous(&dout),
        );
        for level in levels() {
            isa::force(Some(level));
            let ctx = format!("d {d}, dv {dv}, {level:?}");
            let (o, st) = Tensor::attention_with_stats(&q, &k, &v, None, &masks).unwrap();
            let (oc, stc) = Tensor::attention_with_stats(&qc, &kc, &vc, None, &masks).unwrap();
            let grads = Tensor::attention_backward(&q, &k, &v, None, &masks, &o, &st, &dout, false)
                .unwrap();
            let gc = Tensor::attention_backward(&qc, &kc, &vc, None, &masks, &oc, &stc, &dc, false)
                .unwrap();
            let bits = |x: &Tensor| -> Vec<u32> {
                x.to_vec_f32()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            for (what, x, y) in [
                ("out", &o, &oc),
                ("dq", &grads.0, &gc.0),
                ("dk", &grads.1, &gc.1),
                ("dv", &grads.2, &gc.2),
            ] {
                assert_eq!(bits(x), bits(y), "{what} ({ctx})");
                assert!(y.is_contiguous(), "{what} of contiguous operands ({ctx})");
                let n = x.shape()[3];
                assert_eq!(
                    x.strides(),
                    &[t * h * n, n, h * n, 1],
                    "{what} in (B, T, H, n) order ({ctx})"
                );
            }
            let merged = o
                .permute(&[0, 2, 1, 3])
                .unwrap()
                .reshape(&[b, t, h * dv])
                .unwrap();
            assert!(
                merged.shares_storage_with(&o),
                "merging heads copies ({ctx})"
            );
        }
        isa::force(None);
    }
}

/// Peak heap bytes allocated while `f` runs, above what was live before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed) - before)
}

#[test]
fn memory_is_linear_in_sequence_length() {
    // Without a bias gradient the kernels allocate O(B·H·T·D): for B·H = 2, T = 2048, D = 64
    // one (B, H, T, D) tensor is 1 MiB, one (B, H, T, T) score tensor 32 MiB.
    let _guard = serial();
    let (b, h, t, d) = (1, 2, 2048, 64);
    let (q, k, v, dout) = (
        randn(&[b, h, t, d], 1),
        randn(&[b, h, t, d], 2),
        randn(&[b, h, t, d], 3),
        randn(&[b, h, t, d], 4),
    );
    let masks = AttentionMasks {
        causal: true,
        ..Default::default()
    };
    let one = b * h * t * d * 4;
    let threads = rayon::current_num_threads();
    // Per running task: a few 64 × 64 tiles and the head's padded operands.
    let per_task = 64 * 1024 + 3 * t * d * 4;
    let ((out, stats), fwd) =
        peak_during(|| Tensor::attention_with_stats(&q, &k, &v, None, &masks).unwrap());
    assert!(
        fwd <= 2 * one + threads * per_task,
        "forward peaked at {fwd} bytes; one (B, H, T, D) tensor is {one}"
    );
    let (_, bwd) = peak_during(|| {
        Tensor::attention_backward(&q, &k, &v, None, &masks, &out, &stats, &dout, false).unwrap()
    });
    assert!(
        bwd <= (4 + 2 * threads) * one + threads * per_task,
        "backward peaked at {bwd} bytes; one (B, H, T, D) tensor is {one}"
    );
}
