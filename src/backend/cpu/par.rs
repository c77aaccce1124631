//! How finely row-wise kernels split their work across threads.
//!
//! One rule, `row_block`, used directly and through the `rows_mut*` drivers: tasks of at least
//! `GRAIN` elements and at most `TASKS_PER_THREAD` per thread, and (in the drivers) no rayon call
//! at all when there is a single task, so that small tensors (768 rows × 128 cols) run inline in the calling thread instead of
//! paying for a pool hand-off.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Minimum elements per task of the SIMD row kernels.
pub const GRAIN: usize = 32 * 1024;
/// Upper bound on tasks per thread (a little slack for uneven progress).
const TASKS_PER_THREAD: usize = 4;

/// Rows per task for `rows × cols` with `work` (≥ 1) element-passes per element.
pub fn row_block(rows: usize, cols: usize, work: usize) -> usize {
    let n = rows.saturating_mul(cols).saturating_mul(work.max(1));
    let threads = rayon::current_num_threads().max(1);
    let tasks = (n / GRAIN).clamp(1, TASKS_PER_THREAD * threads);
    rows.div_ceil(tasks).max(1)
}

/// Calls `f(first_row, out_rows)` on blocks of whole rows of `out` (rows of `cols`), in
/// parallel when there is more than one block.
/// `out` is an initialised buffer or a [`fresh`] one (each block zeroed in cache, in pieces of
/// whole rows, right before `f` overwrites it).
pub fn rows_mut<'a, F>(out: impl Into<Out<'a>>, cols: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return;
    };
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    match out {
        Dst::Init(out) if block >= rows => f(0, out),
        Dst::Init(out) => out
            .par_chunks_mut(block * cols)
            .enumerate()
            .for_each(|(i, o)| f(i * block, o)),
        Dst::Fresh(out, done) => {
            if block >= rows {
                in_pieces(out, cols, 0, &f);
            } else {
                out.par_chunks_mut(block * cols)
                    .enumerate()
                    .for_each(|(i, o)| in_pieces(o, cols, i * block, &f));
            }
            *done = true;
        }
    }
}

/// The destination and its row length, or `None` when there is nothing for the kernel to
/// do (an empty output, or zero columns, where a fresh output is zeroed and complete).
fn start(out: Out<'_>, cols: usize) -> Option<(Dst<'_>, usize)> {
    if cols == 0 || out.0.len() == 0 {
        if let Dst::Fresh(o, done) = out.0 {
            zeroed(o);
            *done = true;
        }
        return None;
    }
    Some((out.0, cols))
}

/// Zeroes and hands to `f` one cache-sized piece of whole rows at a time.
fn in_pieces<F>(out: &mut [MaybeUninit<f32>], cols: usize, r0: usize, f: &F)
where
    F: Fn(usize, &mut [f32]),
{
    let rows = piece_rows(cols);
    for (k, piece) in out.chunks_mut(rows * cols).enumerate() {
        f(r0 + k * rows, zeroed(piece));
    }
}

/// Rows per zero-then-write piece of a fresh buffer: about `PIECE` elements (L1-resident).
fn piece_rows(cols: usize) -> usize {
    (PIECE / cols.max(1)).max(1)
}

/// Elements zeroed at a time in a fresh output (4 KiB, about one row of the large shapes):
/// small beside the kernel's own L1 working set (its input rows), so the zeroed lines are still
/// in L1 when overwritten. (32 KiB pieces filled all of L1 and evicted the inputs: softmax
/// forward ran 1.9× slower than into a reused buffer.)
const PIECE: usize = 1024;

/// As `rows_mut`, with two per-row outputs (`a`, `b`: one value per row) split alongside.
pub fn rows_mut_stats<'o, F>(
    out: impl Into<Out<'o>>,
    a: &mut [f32],
    b: &mut [f32],
    cols: usize,
    work: usize,
    f: F,
) where
    F: Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return;
    };
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    // A fresh block goes in zeroed pieces of `pr` rows, its statistics alongside.
    let pieces = |r0: usize, o: &mut [MaybeUninit<f32>], a: &mut [f32], b: &mut [f32]| {
        let pr = piece_rows(cols);
        for (k, ((o, a), b)) in o
            .chunks_mut(pr * cols)
            .zip(a.chunks_mut(pr))
            .zip(b.chunks_mut(pr))
            .enumerate()
        {
            f(r0 + k * pr, zeroed(o), a, b);
        }
    };
    match out {
        Dst::Init(out) if block >= rows => f(0, out, a, b),
        Dst::Init(out) => out
            .par_chunks_mut(block * cols)
            .zip(a.par_chunks_mut(block).zip(b.par_chunks_mut(block)))
            .enumerate()
            .for_each(|(i, (o, (a, b)))| f(i * block, o, a, b)),
        Dst::Fresh(out, done) => {
            if block >= rows {
                pieces(0, out, a, b);
            } else {
                out.par_chunks_mut(block * cols)
                    .zip(a.par_chunks_mut(block).zip(b.par_chunks_mut(block)))
                    .enumerate()
                    .for_each(|(i, (o, (a, b)))| pieces(i * block, o, a, b));
            }
            *done = true;
        }
    }
}

/// Per-block partial sums over fixed blocks of `block` rows: `f(first_row, out_rows, part)`
/// per block, where `part` is that block's own zeroed `width` floats to accumulate into.
/// Returns all partials, block after block (`blocks × width`), for the caller to reduce in
/// block order ([`sum_partials`]). The blocks do not depend on the thread count, so the
/// reduction (the norms' dγ, dβ, the bias-GELU's db) is the same on any pool. The partials
/// are one allocation (a pooled block when large): per-block vectors kept alive until the
/// reduction would take fresh heap pages, and page faults, on every call.
pub fn rows_mut_partials<'o, F>(
    out: impl Into<Out<'o>>,
    cols: usize,
    block: usize,
    width: usize,
    f: F,
) -> Vec<f32>
where
    F: Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return Vec::new();
    };
    let rows = out.len() / cols;
    let block = block.max(1);
    // (A zero `width` still gets one float per block, unused, so the blocks can be zipped.)
    let w = width.max(1);
    let mut parts = vec![0.0f32; rows.div_ceil(block) * w];
    // Fresh blocks are zeroed whole (the callers' blocks are cache-sized already) so that
    // `f` still sees exactly the fixed blocks.
    match out {
        Dst::Init(out) if block >= rows => f(0, out, &mut parts[..width]),
        Dst::Init(out) => out
            .par_chunks_mut(block * cols)
            .zip(parts.par_chunks_mut(w))
            .enumerate()
            .for_each(|(i, (o, p))| f(i * block, o, &mut p[..width])),
        Dst::Fresh(out, done) => {
            if block >= rows {
                f(0, zeroed(out), &mut parts[..width]);
            } else {
                out.par_chunks_mut(block * cols)
                    .zip(parts.par_chunks_mut(w))
                    .enumerate()
                    .for_each(|(i, (o, p))| f(i * block, zeroed(o), &mut p[..width]));
            }
            *done = true;
        }
    }
    if width == 0 {
        parts.clear();
    }
    parts
}

/// Adds the partials of [`rows_mut_partials`] into `dst` (`width` floats), block by block
/// in block order.
pub fn sum_partials(parts: &[f32], dst: &mut [f32]) {
    if dst.is_empty() {
        return;
    }
    for p in parts.chunks(dst.len()) {
        dst.iter_mut().zip(p).for_each(|(d, v)| *d += v);
    }
}

/// Where a row kernel writes: a buffer that is already initialised (from `&mut [f32]` or
/// `&mut Vec<f32>`), or the uninitialised storage of a new one, which only [`fresh`] makes.
pub struct Out<'a>(Dst<'a>);

enum Dst<'a> {
    Init(&'a mut [f32]),
    /// Storage to initialise, and the flag a driver sets once it has written all of it.
    Fresh(&'a mut [MaybeUninit<f32>], &'a mut bool),
}

impl Dst<'_> {
    fn len(&self) -> usize {
        match self {
            Dst::Init(o) => o.len(),
            Dst::Fresh(o, _) => o.len(),
        }
    }
}

impl<'a> From<&'a mut [f32]> for Out<'a> {
    fn from(o: &'a mut [f32]) -> Self {
        Out(Dst::Init(o))
    }
}

impl<'a> From<&'a mut Vec<f32>> for Out<'a> {
    fn from(o: &'a mut Vec<f32>) -> Self {
        Out(Dst::Init(o.as_mut_slice()))
    }
}

/// Zeroes `o` and views it as initialised floats.
fn zeroed(o: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for e in o.iter_mut() {
        e.write(0.0);
    }
    // SAFETY: every element was just written; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(o as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A new vector of `n` floats filled by `fill`, which hands its `Out` to one of the row
/// drivers above (they overwrite every element). This replaces `vec![0.0; n]` + kernel:
/// instead of one serial memset of the whole output (the allocation is usually a reused pool
/// block, so the zeroing is real work) each task zeroes its rows piece by piece, in cache,
/// right before the kernel overwrites them. Should `fill` not pass its `Out` to a driver, the
/// buffer is zeroed here, so the result is always initialised.
pub fn fresh(n: usize, fill: impl FnOnce(Out<'_>)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let mut done = false;
    fill(Out(Dst::Fresh(&mut v.spare_capacity_mut()[..n], &mut done)));
    if !done {
        zeroed(&mut v.spare_capacity_mut()[..n]);
    }
    // SAFETY: the first n elements are initialised: a driver wrote all of them (it sets
    // `done` only after covering its whole output), or they were zeroed just above.
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each driver, on a fresh output, calls `f` on every row exactly once (with zeroed
    /// storage) and leaves nothing unwritten, on shapes with and without partial blocks.
    #[test]
    fn fresh_outputs_are_fully_written_by_every_driver() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for &(rows, cols) in &[(1, 1), (3, 5), (700, 129), (4096, 64), (5, 100_000)] {
                let n = rows * cols;
                let mark = |r0: usize, o: &mut [f32]| {
                    for (k, v) in o.iter_mut().enumerate() {
                        assert_eq!(*v, 0.0, "fresh storage is zeroed before f sees it");
                        *v = (r0 * cols + k) as f32 + 1.0;
                    }
                };
                let want: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                assert_eq!(fresh(n, |o| rows_mut(o, cols, 3, mark)), want);
                let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
                let y = fresh(n, |o| {
                    rows_mut_stats(o, &mut a, &mut b, cols, 3, |r0, o, a, b| {
                        assert_eq!(o.len(), a.len() * cols);
                        a.iter_mut()
                            .enumerate()
                            .for_each(|(i, v)| *v = (r0 + i) as f32);
                        b.fill(1.0);
                        mark(r0, o)
                    })
                });
                assert_eq!(y, want);
                assert_eq!(a, (0..rows).map(|i| i as f32).collect::<Vec<_>>());
                assert!(b.iter().all(|&v| v == 1.0));
                // Each block sees its own partial slice; mark it with the block's first row.
                let mut parts = Vec::new();
                let y = fresh(n, |o| {
                    parts = rows_mut_partials(o, cols, 7, 2, |r0, o, p| {
                        assert_eq!(p, &[0.0, 0.0], "partials start at zero");
                        mark(r0, o);
                        p[0] = r0 as f32;
                        p[1] = 1.0;
                    })
                });
                assert_eq!(y, want);
                let firsts: Vec<f32> = parts.chunks(2).map(|p| p[0]).collect();
                assert_eq!(
                    firsts,
                    (0..rows).step_by(7).map(|r| r as f32).collect::<Vec<_>>()
                );
                let mut total = [0.0f32, 0.0];
                sum_partials(&parts, &mut total);
                assert_eq!(total[1], rows.div_ceil(7) as f32);
                // The flat use: a length that is not a multiple of the row.
                let y = fresh(n + 3, |o| rows_mut(o, cols, 3, |r0, o| mark(r0, o)));
                assert_eq!(y, (0..n + 3).map(|i| i as f32 + 1.0).collect::<Vec<_>>());
            }
        });
        // A fill that never runs a driver, or has nothing to do, still yields zeros.
        assert_eq!(fresh(4, |_| {}), vec![0.0; 4]);
        assert_eq!(
            fresh(4, |o| rows_mut(o, 0, 1, |_, _| unreachable!())),
            vec![0.0; 4]
        );
        assert!(fresh(0, |o| rows_mut(o, 3, 1, |_, _| unreachable!())).is_empty());
    }
}
