//! How finely row-wise kernels split their work across threads.
//!
//! One rule, `row_block`, used directly and through the `rows_mut*` drivers: tasks of at least
//! `GRAIN` elements and at most `TASKS_PER_THREAD` per thread, and (in the drivers) no rayon call
//! at all when there is a single task, so that small tensors (768 rows × 128 cols) run inline in the calling thread instead of
//! paying for a pool hand-off.

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
pub fn rows_mut<F>(out: &mut [f32], cols: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if cols == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    if block >= rows {
        f(0, out);
    } else {
        out.par_chunks_mut(block * cols)
            .enumerate()
            .for_each(|(i, o)| f(i * block, o));
    }
}

/// As `rows_mut`, with two per-row outputs (`a`, `b`: one value per row) split alongside.
pub fn rows_mut_stats<F>(
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
    cols: usize,
    work: usize,
    f: F,
) where
    F: Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync + Send,
{
    if cols == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    if block >= rows {
        f(0, out, a, b);
    } else {
        out.par_chunks_mut(block * cols)
            .zip(a.par_chunks_mut(block).zip(b.par_chunks_mut(block)))
            .enumerate()
            .for_each(|(i, (o, (a, b)))| f(i * block, o, a, b));
    }
}

/// Map-reduce over fixed blocks of `block` rows: `f(first_row, out_rows) -> T` per block,
/// results in block order. The blocks do not depend on the thread count, so a reduction of
/// the results in order (the norms' dγ, dβ partial sums) is the same on any pool.
pub fn rows_mut_collect<T, F>(out: &mut [f32], cols: usize, block: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &mut [f32]) -> T + Sync + Send,
{
    if cols == 0 || out.is_empty() {
        return Vec::new();
    }
    let rows = out.len() / cols;
    let block = block.max(1);
    if block >= rows {
        vec![f(0, out)]
    } else {
        out.par_chunks_mut(block * cols)
            .enumerate()
            .map(|(i, o)| f(i * block, o))
            .collect()
    }
}
