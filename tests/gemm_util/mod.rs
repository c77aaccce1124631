//! Shared helpers for the GEMM tests: seeded inputs, layouts, and the error bound.
#![allow(dead_code)]

use pretext::backend::cpu::gemm::{sgemm_batched_reference, Bf16Path, GemmLayout};

/// splitmix64 stream mapped to [-1, 1).
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A C of `len` values from `fill(len, seed)`, for a product with `beta`: with beta 0 the
/// values above 0.9 are NaN, so a path that read C (rather than overwrite it) would carry a
/// NaN into its result.
pub fn initial_c(len: usize, seed: u64, beta: f32) -> Vec<f32> {
    fill(len, seed)
        .into_iter()
        .map(|x| if beta == 0.0 && x > 0.9 { f32::NAN } else { x })
        .collect()
}

/// How each operand is laid out in its buffer.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A stored as the transpose (column-major m × k).
    pub ta: bool,
    /// B stored as the transpose (column-major k × n).
    pub tb: bool,
    /// Extra elements between rows of A/B/C (row-major case) — strided views.
    pub pad: usize,
    /// C column-major (exercises the generic store path).
    pub tc: bool,
}

impl Shape {
    pub fn plain(m: usize, n: usize, k: usize) -> Shape {
        Shape {
            m,
            n,
            k,
            ta: false,
            tb: false,
            pad: 0,
            tc: false,
        }
    }

    pub fn layout(&self) -> GemmLayout {
        let (m, n, k, p) = (self.m, self.n, self.k, self.pad);
        let (a_rs, a_cs) = if self.ta { (1, m + p) } else { (k + p, 1) };
        let (b_rs, b_cs) = if self.tb { (1, k + p) } else { (n + p, 1) };
        let (c_rs, c_cs) = if self.tc { (1, m + p) } else { (n + p, 1) };
        GemmLayout {
            m,
            n,
            k,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
            c_rs,
            c_cs,
        }
    }
}

/// Buffer length for `batch` blocks of a matrix spanning `extent` elements, each block
/// starting `stride` after the previous.
pub fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs + 1
}

/// Elementwise bound on |fast − reference|: both are f32 sums of k products, each within
/// γ_k·Σ|a||b| of the exact value (γ_k ≈ k·ε), so they differ by at most 2·k·ε·Σ|a||b|.
/// `abs_ref` holds Σ_p |A[i,p]|·|B[p,j]| at the same positions as C.
pub fn assert_close(
    what: &str,
    got: &[f32],
    want: &[f32],
    abs_ref: &[f32],
    k: usize,
    c_idx: &[usize],
) {
    let eps = f32::EPSILON;
    for &i in c_idx {
        let tol = 2.0 * (k as f32 + 2.0) * eps * abs_ref[i] + 1e-30;
        let d = (got[i] - want[i]).abs();
        assert!(
            d <= tol,
            "{what}: C[{i}] = {} but reference {} (|diff| {d:e} > tol {tol:e})",
            got[i],
            want[i]
        );
    }
}

/// C = A·B in f64 (A m×k, B k×n row-major): the exact product of f32 operands, for checks
/// of how far a reduced-precision product lies from it.
pub fn exact_product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
        }
    }
    c
}

/// The reference on |A|, |B| into a C of the same layout (no accumulation): Σ|a||b|.
pub fn abs_reference(
    l: &GemmLayout,
    a: &[f32],
    ao: &[usize],
    b: &[f32],
    bo: &[usize],
    c_len: usize,
    co: &[usize],
) -> Vec<f32> {
    let aa: Vec<f32> = a.iter().map(|x| x.abs()).collect();
    let ba: Vec<f32> = b.iter().map(|x| x.abs()).collect();
    let mut out = vec![0.0f32; c_len];
    sgemm_batched_reference(l, &aa, ao, &ba, bo, 0.0, &mut out, co).unwrap();
    out
}

/// Positions of every C element of every batch block.
pub fn c_positions(l: &GemmLayout, co: &[usize]) -> Vec<usize> {
    let mut v = Vec::new();
    for &o in co {
        for i in 0..l.m {
            for j in 0..l.n {
                v.push(o + i * l.c_rs + j * l.c_cs);
            }
        }
    }
    v
}

/// Odd shapes (not multiples of any tile or block) and ones crossing the cache blocks.
pub const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (7, 13, 5),
    (17, 33, 65),
    (100, 3, 257),
    (3, 100, 2),
    (13, 47, 300),
    (64, 64, 32),
    (200, 1040, 530),
];

/// One or two rows against at least 1 MiB of W's rows along k through a test file's
/// `check(shape, batch, share, beta)`: the dot form reads W's rows one after another
/// (`gemv::stream_rows`), U accumulators per row; k with whole groups of U vectors, single
/// vectors after them and a short tail; 1 and 2 threads, beta 0 and 1.
pub fn check_streamed_rows(check: impl Fn(Shape, usize, bool, f32) + Send + Sync) {
    for threads in [1, 2] {
        on_threads(threads, || {
            for m in [1, 2] {
                for k in [333, 768, 1000] {
                    let s = Shape {
                        tb: true,
                        ..Shape::plain(m, 2000, k)
                    };
                    check(s, 1, false, 0.0);
                    check(s, 1, false, 1.0);
                }
            }
        });
    }
}

/// One shape in each layout (ta, tb, pad, tc) of `layouts` through a test file's
/// `check(shape, batch, share, beta)`: overwriting, accumulating into a batch sharing an
/// operand, and scaling C.
pub fn check_layouts(
    check: impl Fn(Shape, usize, bool, f32),
    m: usize,
    n: usize,
    k: usize,
    layouts: &[(bool, bool, usize, bool)],
) {
    for &(ta, tb, pad, tc) in layouts {
        let s = Shape {
            m,
            n,
            k,
            ta,
            tb,
            pad,
            tc,
        };
        check(s, 1, false, 0.0);
        check(s, 3, true, 1.0);
        check(s, 2, false, 0.5);
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

/// Every bf16 path this CPU runs, and with feature `emu` the AMX kernel on the tile unit's
/// model.
pub fn bf16_paths() -> Vec<Bf16Path> {
    #[allow(unused_mut)]
    let mut v = Bf16Path::available();
    #[cfg(feature = "emu")]
    v.push(Bf16Path::AmxEmulated);
    v
}

/// `batch` problems of shape `s` back to back in their buffers (all sharing B's first block
/// when `share_b`): each buffer's length and each problem's offsets.
pub struct Batched {
    pub a_len: usize,
    pub b_len: usize,
    pub c_len: usize,
    pub ao: Vec<usize>,
    pub bo: Vec<usize>,
    pub co: Vec<usize>,
}

pub fn batched(s: &Shape, batch: usize, share_b: bool) -> Batched {
    let l = s.layout();
    let ea = extent(s.m, s.k, l.a_rs, l.a_cs);
    let eb = extent(s.k, s.n, l.b_rs, l.b_cs);
    let ec = extent(s.m, s.n, l.c_rs, l.c_cs);
    let at = |e: usize| (0..batch).map(|i| i * e).collect::<Vec<usize>>();
    Batched {
        a_len: batch * ea,
        b_len: batch * eb,
        c_len: batch * ec,
        ao: at(ea),
        bo: if share_b { vec![0; batch] } else { at(eb) },
        co: at(ec),
    }
}
