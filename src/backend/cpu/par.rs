//! How finely row-wise kernels split their work across threads.
//!
//! One rule, `row_block`, used directly and through the `rows_mut*` drivers: tasks of at least
//! `GRAIN` elements and at most `TASKS_PER_THREAD` per thread, as many for each thread when
//! split at all, and (in the drivers) no rayon call at all when there is a single task, so
//! that small tensors run inline in the calling thread instead of paying for a pool hand-off.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

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
    // Whole tasks per thread when split at all: the rows then fall into `threads` equal
    // spans, each thread's share the one the thread that wrote those rows in the producing
    // op (a GEMM's or another row op's equal split) most likely still holds.
    let tasks = if tasks > 1 {
        tasks.next_multiple_of(threads)
    } else {
        tasks
    };
    rows.div_ceil(tasks).max(1)
}

/// Calls `f(first_row, block)` on blocks of whole rows of `out` (rows of `cols`), in
/// parallel when there is more than one block. `f` must fill its block: it returns the
/// block's [`Filled`] token, which only writing every element gives (see [`Fill`]).
/// `out` is an initialised buffer or a [`fresh`] one (whose storage the kernel writes
/// directly, with no zeroing first).
pub fn rows_mut<'a, F>(out: impl Into<Out<'a>>, cols: usize, work: usize, f: F)
where
    F: Fn(usize, Fill<'_>) -> Filled + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return;
    };
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    let run = |i: usize, o: Fill<'_>| o.check(|o| f(i * block, o));
    out.fill(|o| {
        if block >= rows {
            run(0, o);
        } else {
            let _region = crate::backend::cpu::threads::region();
            o.into_par_chunks(block * cols)
                .enumerate()
                .for_each(|(i, o)| run(i, o));
        }
    });
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

/// As `rows_mut`, with two per-row outputs (`a`, `b`: one value per row) split alongside.
pub fn rows_mut_stats<'o, F>(
    out: impl Into<Out<'o>>,
    a: &mut [f32],
    b: &mut [f32],
    cols: usize,
    work: usize,
    f: F,
) where
    F: Fn(usize, Fill<'_>, &mut [f32], &mut [f32]) -> Filled + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return;
    };
    let rows = out.len() / cols;
    let block = row_block(rows, cols, work);
    let run =
        |i: usize, o: Fill<'_>, a: &mut [f32], b: &mut [f32]| o.check(|o| f(i * block, o, a, b));
    out.fill(|o| {
        if block >= rows {
            run(0, o, a, b);
        } else {
            let _region = crate::backend::cpu::threads::region();
            o.into_par_chunks(block * cols)
                .zip(a.par_chunks_mut(block).zip(b.par_chunks_mut(block)))
                .enumerate()
                .for_each(|(i, (o, (a, b)))| run(i, o, a, b));
        }
    });
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
    F: Fn(usize, Fill<'_>, &mut [f32]) -> Filled + Sync + Send,
{
    let Some((out, cols)) = start(out.into(), cols) else {
        return Vec::new();
    };
    let rows = out.len() / cols;
    let block = block.max(1);
    // (A zero `width` still gets one float per block, unused, so the blocks can be zipped.)
    let w = width.max(1);
    let mut parts = vec![0.0f32; rows.div_ceil(block) * w];
    let run = |i: usize, o: Fill<'_>, p: &mut [f32]| o.check(|o| f(i * block, o, &mut p[..width]));
    out.fill(|o| {
        if block >= rows {
            run(0, o, &mut parts);
        } else {
            let _region = crate::backend::cpu::threads::region();
            o.into_par_chunks(block * cols)
                .zip(parts.par_chunks_mut(w))
                .enumerate()
                .for_each(|(i, (o, p))| run(i, o, p));
        }
    });
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

impl<'a> Dst<'a> {
    fn len(&self) -> usize {
        match self {
            Dst::Init(o) => o.len(),
            Dst::Fresh(o, _) => o.len(),
        }
    }

    /// Runs `f` on the whole destination as one `Fill`, then marks a fresh one complete.
    /// `f` is a driver's block loop, which checks each block's `Filled` token (panicking,
    /// so never returning, on a block left unfilled).
    fn fill(self, f: impl FnOnce(Fill<'_>)) {
        match self {
            Dst::Init(o) => f(Fill::from(o)),
            Dst::Fresh(o, done) => {
                f(Fill {
                    buf: o,
                    init: false,
                    id: next_id(),
                });
                *done = true;
            }
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

/// The storage of one block of a kernel's output, possibly uninitialised, which the kernel
/// must overwrite whole. Its methods never write anything but an `f32` value (so an
/// initialised buffer stays initialised), and it proves the block complete with a
/// [`Filled`] token, which comes only from:
/// - [`Fill::write_iter`] / [`Fill::write_rows`]: safe, every element written;
/// - [`Fill::init`]: safe, the block zeroed (when fresh) and handed out as `&mut [f32]`,
///   for the scalar references and other code that indexes it;
/// - [`Fill::assume_filled`]: unsafe, for SIMD kernels that store through [`Fill::as_mut_ptr`].
///
/// This is what lets a [`fresh`] output skip zeroing: the kernels' own stores initialise it.
pub struct Fill<'a> {
    buf: &'a mut [MaybeUninit<f32>],
    /// Whether every element is already an initialised f32 (then `init` needs no zeroing).
    init: bool,
    /// Which block handed out by a driver (or `Fill::from`) this storage belongs to: a token
    /// kept from an earlier call, for storage since freed and reused at the same address,
    /// does not pass for this one.
    id: u64,
}

/// Proof that the `len` elements at `addr`, storage of block `id`, hold initialised floats.
#[must_use = "a driver checks the token against the block it handed out"]
pub struct Filled {
    id: u64,
    addr: usize,
    len: usize,
}

/// A new block id.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<'a> From<&'a mut [f32]> for Fill<'a> {
    fn from(o: &'a mut [f32]) -> Self {
        let len = o.len();
        // SAFETY: MaybeUninit<f32> has f32's layout; `Fill` only ever writes f32 values, so
        // the borrowed floats stay initialised.
        let buf = unsafe { std::slice::from_raw_parts_mut(o.as_mut_ptr().cast(), len) };
        Fill {
            buf,
            init: true,
            id: next_id(),
        }
    }
}

impl<'a> Fill<'a> {
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The first element, for SIMD stores. An element may be read through it only after
    /// it was written.
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.buf.as_mut_ptr().cast()
    }

    /// The same storage, borrowed for a shorter while (its token is this block's).
    pub fn reborrow(&mut self) -> Fill<'_> {
        Fill {
            buf: self.buf,
            init: self.init,
            id: self.id,
        }
    }

    /// Writes element `i`.
    pub fn set(&mut self, i: usize, v: f32) {
        self.buf[i].write(v);
    }

    /// Writes the values in order (zeros past the end of a short iterator).
    pub fn write_iter(self, values: impl IntoIterator<Item = f32>) -> Filled {
        let mut k = 0;
        for (o, v) in self.buf.iter_mut().zip(values) {
            o.write(v);
            k += 1;
        }
        self.buf[k..].iter_mut().for_each(|o| {
            o.write(0.0);
        });
        self.token()
    }

    /// The block as initialised floats (zeroed first when fresh), for `f` to overwrite.
    pub fn init(self, f: impl FnOnce(&mut [f32])) -> Filled {
        let token = self.token();
        let o = if self.init {
            // SAFETY: `init` holds only for storage borrowed from initialised floats.
            unsafe { &mut *(self.buf as *mut [MaybeUninit<f32>] as *mut [f32]) }
        } else {
            zeroed(self.buf)
        };
        f(o);
        token
    }

    /// Fills rows of `cols` one at a time: `f(row, storage)` must return that row's token.
    pub fn write_rows(
        mut self,
        cols: usize,
        mut f: impl FnMut(usize, Fill<'_>) -> Filled,
    ) -> Filled {
        let (init, id) = (self.init, self.id);
        for (r, row) in self.buf.chunks_mut(cols.max(1)).enumerate() {
            Fill { buf: row, init, id }.check(|row| f(r, row));
        }
        self.reborrow().token()
    }

    /// The token, trusting that every element was written.
    ///
    /// # Safety
    /// Every element of the block has been written (through `as_mut_ptr`, or `set`).
    pub unsafe fn assume_filled(self) -> Filled {
        self.token()
    }

    fn token(&self) -> Filled {
        Filled {
            id: self.id,
            addr: self.buf.as_ptr() as usize,
            len: self.buf.len(),
        }
    }

    /// Runs `f` on this block and checks that it returned the block's own token.
    fn check(self, f: impl FnOnce(Fill<'_>) -> Filled) {
        let want = self.token();
        let got = f(self);
        assert!(
            (got.id, got.addr, got.len) == (want.id, want.addr, want.len),
            "a row kernel returned the token of another block ({} floats at {:#x} of block \
             {}, expected {} at {:#x} of block {})",
            got.len,
            got.addr,
            got.id,
            want.len,
            want.addr,
            want.id
        );
    }

    /// Splits into blocks of `n` elements (the last may be shorter), for rayon.
    fn into_par_chunks(self, n: usize) -> impl IndexedParallelIterator<Item = Fill<'a>> {
        let init = self.init;
        self.buf.par_chunks_mut(n).map(move |buf| Fill {
            buf,
            init,
            id: next_id(),
        })
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
/// drivers above. This replaces `vec![0.0; n]` + kernel: the kernel's own stores initialise
/// the output (the allocation is usually a reused pool block, so a zeroing pass would be
/// real work: 18% of a LayerNorm forward + backward). Should `fill` not pass its `Out` to a
/// driver, the buffer is zeroed here, so the result is always initialised.
pub fn fresh(n: usize, fill: impl FnOnce(Out<'_>)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let mut done = false;
    fill(Out(Dst::Fresh(&mut v.spare_capacity_mut()[..n], &mut done)));
    if !done {
        zeroed(&mut v.spare_capacity_mut()[..n]);
    }
    // SAFETY: the first n elements are initialised: a driver filled every block (it sets
    // `done` only after checking each block's `Filled` token), or they were zeroed above.
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills block `o`, which starts at row `r0` of rows of `cols`, with 1 + its flat index.
    fn mark(cols: usize, r0: usize, o: Fill<'_>) -> Filled {
        let n = o.len();
        o.write_iter((0..n).map(|k| (r0 * cols + k) as f32 + 1.0))
    }

    /// Split at all, the rows fall into whole tasks per thread: a residual stream of 768 × 128
    /// (three grains) into 4 blocks of 192 on 2 threads, two per thread, so that each
    /// thread's blocks are the half of the rows an equal split of the producing op gave it;
    /// 3 blocks on 3 threads; on 1 thread the grains' 3 (run in turn).
    #[test]
    fn row_blocks_come_in_whole_tasks_per_thread() {
        let on = |threads: usize, rows: usize, cols: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| row_block(rows, cols, 1))
        };
        assert_eq!(on(2, 768, 128), 192);
        assert_eq!(on(3, 768, 128), 256);
        assert_eq!(on(1, 768, 128), 256);
        assert_eq!(on(2, 100, 128), 100);
        // Capped at TASKS_PER_THREAD per thread.
        assert_eq!(on(2, 8192, 1024), 1024);
    }

    /// Each driver, on a fresh output, calls `f` on every row exactly once and leaves
    /// nothing unwritten, on shapes with and without partial blocks.
    #[test]
    fn fresh_outputs_are_fully_written_by_every_driver() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for &(rows, cols) in &[(1, 1), (3, 5), (700, 129), (4096, 64), (5, 100_000)] {
                let n = rows * cols;
                let want: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                assert_eq!(
                    fresh(n, |o| rows_mut(o, cols, 3, |r0, o| mark(cols, r0, o))),
                    want
                );
                // The same through an initialised buffer.
                let mut y = vec![f32::NAN; n];
                rows_mut(&mut y, cols, 3, |r0, o| mark(cols, r0, o));
                assert_eq!(y, want);
                let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
                let y = fresh(n, |o| {
                    rows_mut_stats(o, &mut a, &mut b, cols, 3, |r0, o, a, b| {
                        assert_eq!(o.len(), a.len() * cols);
                        a.iter_mut()
                            .enumerate()
                            .for_each(|(i, v)| *v = (r0 + i) as f32);
                        b.fill(1.0);
                        mark(cols, r0, o)
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
                        p[0] = r0 as f32;
                        p[1] = 1.0;
                        mark(cols, r0, o)
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
                let y = fresh(n + 3, |o| rows_mut(o, cols, 3, |r0, o| mark(cols, r0, o)));
                assert_eq!(y, (0..n + 3).map(|i| i as f32 + 1.0).collect::<Vec<_>>());
                // Row by row, and through `init`.
                let y = fresh(n, |o| {
                    rows_mut(o, cols, 3, |r0, o| {
                        o.write_rows(cols, |r, row| {
                            row.init(|row| {
                                assert!(row.iter().all(|&v| v == 0.0), "fresh rows are zeroed");
                                for (k, v) in row.iter_mut().enumerate() {
                                    *v = ((r0 + r) * cols + k) as f32 + 1.0;
                                }
                            })
                        })
                    })
                });
                assert_eq!(y, want);
            }
        });
        // A fill that never runs a driver, or has nothing to do, still yields zeros.
        assert_eq!(fresh(4, |_| {}), vec![0.0; 4]);
        assert_eq!(
            fresh(4, |o| rows_mut(o, 0, 1, |_, _| unreachable!())),
            vec![0.0; 4]
        );
        assert!(fresh(0, |o| rows_mut(o, 3, 1, |_, _| unreachable!())).is_empty());
        // A short iterator leaves zeros, not uninitialised storage.
        assert_eq!(
            fresh(5, |o| rows_mut(o, 5, 1, |_, o| o.write_iter([7.0, 8.0]))),
            vec![7.0, 8.0, 0.0, 0.0, 0.0]
        );
        // `init` keeps an initialised buffer's contents (no zeroing needed there).
        let mut y = vec![3.0f32; 4];
        rows_mut(&mut y, 4, 1, |_, o| o.init(|o| o[0] = 1.0));
        assert_eq!(y, [1.0, 3.0, 3.0, 3.0]);
    }

    /// Nor one kept from an earlier call on the same storage (same address and length).
    #[test]
    #[should_panic(expected = "token of another block")]
    fn a_token_kept_from_an_earlier_call_is_refused() {
        let kept = std::sync::Mutex::new(None);
        let mut y = vec![0.0f32; 8];
        rows_mut(&mut y, 8, 1, |_, mut o| {
            *kept.lock().unwrap() = Some(o.reborrow().write_iter([1.0; 8]));
            o.write_iter([1.0; 8])
        });
        rows_mut(&mut y, 8, 1, |_, _| kept.lock().unwrap().take().unwrap());
    }

    /// A kernel cannot pass off another block's token as its own: the driver stops.
    #[test]
    #[should_panic(expected = "token of another block")]
    fn a_token_of_another_block_is_refused() {
        fresh(8, |o| {
            rows_mut(o, 8, 1, |_, _| {
                let mut other = [0.0f32; 8];
                Fill::from(&mut other[..]).write_iter([0.0; 8])
            })
        });
    }
}
