//! Embedding backward: the scatter-add dW[ids[j], :] += dy[j, :] into a (V, C) table, rows
//! looked up at `padding` skipped (torch's nn.Embedding(padding_idx)).
//!
//! Parallel over vocabulary ranges: each task owns a contiguous block of table rows and
//! scans all ids, adding the rows whose id falls in its block. Every table row receives
//! its additions in the order of j on any thread count, so the result is deterministic
//! (and equal to the serial loop).

use rayon::prelude::*;

/// Minimum (ids × C) work before splitting across threads.
const PAR_MIN: usize = 1 << 16;

/// `table` (V × cols) += scatter of `dy` (ids.len() × cols) by `ids` (each < V).
pub fn embedding_backward(
    dy: &[f32],
    ids: &[usize],
    padding: Option<usize>,
    cols: usize,
    table: &mut [f32],
) {
    if cols == 0 || table.is_empty() {
        return;
    }
    let vocab = table.len() / cols;
    let add = |v0: usize, block: &mut [f32]| {
        let v1 = v0 + block.len() / cols;
        for (j, &id) in ids.iter().enumerate() {
            if id < v0 || id >= v1 || Some(id) == padding {
                continue;
            }
            let dst = &mut block[(id - v0) * cols..][..cols];
            let src = &dy[j * cols..][..cols];
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        }
    };
    let threads = rayon::current_num_threads();
    if threads == 1 || ids.len() * cols < PAR_MIN {
        add(0, table);
    } else {
        let block = vocab.div_ceil(4 * threads).max(1);
        let _region = crate::backend::cpu::threads::region();
        table
            .par_chunks_mut(block * cols)
            .enumerate()
            .for_each(|(i, t)| add(i * block, t));
    }
}
