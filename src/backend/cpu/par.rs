//! How finely row-wise kernels split their work across threads: each task gets at least
//! this many rows, so small tensors run in one task instead of paying for many.

/// Rows per parallel task for rows of `cols` elements: about 16 K elements a task.
pub fn rows_per_task(cols: usize) -> usize {
    (16 * 1024 / cols.max(1)).max(1)
}
