//! Where the rows of a (B, H, T, n) attention operand lie in its buffer. The kernels read and
//! write whole rows of n floats, so any layout whose last dim is contiguous works without a
//! copy: the contiguous (B, H, T, n), the head views of a fused (B, T, 3·H·n) QKV projection
//! (strides (T·3Hn, n, 3Hn)), or a (B, T, H, n) buffer seen as (B, H, T, n), which is what
//! `merge_heads` wants to read.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::par::next_id;

/// Row (b, h, t) is the n contiguous floats from `offset + b·strides[0] + h·strides[1] +
/// t·strides[2]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLayout {
    pub offset: usize,
    pub strides: [usize; 3],
}

impl RowLayout {
    /// The contiguous (B, H, T, n) layout: strides (H·T·n, T·n, n).
    pub fn contiguous(heads: usize, t: usize, n: usize) -> RowLayout {
        RowLayout {
            offset: 0,
            strides: [heads * t * n, t * n, n],
        }
    }

    /// A dense layout of (B, H, T) rows of n floats whose dims are nested in the order of
    /// `like`'s strides (the largest outermost; ties keep B, H, T order), so a gradient or
    /// output matches its operand's memory order: the head views of a (B, T, H·n) tensor give
    /// a (B, T, H, n) buffer, a contiguous operand the contiguous layout.
    pub fn dense_like(like: &RowLayout, dims: [usize; 3], n: usize) -> RowLayout {
        let mut order = [0usize, 1, 2];
        order.sort_by_key(|&i| std::cmp::Reverse(like.strides[i]));
        let mut strides = [0; 3];
        let mut s = n;
        for &i in order.iter().rev() {
            strides[i] = s;
            s *= dims[i];
        }
        RowLayout { offset: 0, strides }
    }

    /// Start of row (b, h, t).
    #[inline]
    pub fn row(&self, b: usize, h: usize, t: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2]
    }

    /// Whether every row of (B, H, T) = `dims`, n floats each, lies inside `len` floats.
    pub fn fits(&self, dims: [usize; 3], n: usize, len: usize) -> bool {
        if dims.contains(&0) || n == 0 {
            return true;
        }
        let last = self.row(dims[0] - 1, dims[1] - 1, dims[2] - 1);
        last.checked_add(n).is_some_and(|end| end <= len)
    }

    /// Whether the rows are pairwise disjoint: sorted by stride, each dim of size > 1 steps
    /// past everything the dims inside it span (n floats for the innermost).
    pub fn disjoint(&self, dims: [usize; 3], n: usize) -> bool {
        let mut order = [0usize, 1, 2];
        order.sort_by_key(|&i| self.strides[i]);
        let mut span = n;
        for &i in &order {
            if dims[i] > 1 {
                if self.strides[i] < span {
                    return false;
                }
                span += self.strides[i] * (dims[i] - 1);
            }
        }
        true
    }
}

/// A read-only (B, H, T, n) operand.
#[derive(Clone, Copy)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub rows: RowLayout,
}

impl<'a> Heads<'a> {
    /// A contiguous (B, H, T, n) buffer.
    pub fn contiguous(data: &'a [f32], heads: usize, t: usize, n: usize) -> Heads<'a> {
        Heads {
            data,
            rows: RowLayout::contiguous(heads, t, n),
        }
    }

    /// The T × n matrix of head (b, h), rows `ld` apart.
    pub(super) fn head(&self, b: usize, h: usize, t: usize, n: usize) -> HeadMat<'a> {
        let ld = self.rows.strides[2];
        let len = if t == 0 { 0 } else { (t - 1) * ld + n };
        HeadMat {
            data: &self.data[self.rows.row(b, h, 0)..][..len],
            ld,
            n,
        }
    }
}

/// One head's T × n matrix: row i is `data[i·ld ..][.. n]`.
#[derive(Clone, Copy)]
pub(super) struct HeadMat<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub n: usize,
}

impl<'a> HeadMat<'a> {
    /// Rows i0 .. i0 + rows (with the gaps between them), for a GEMM operand of stride `ld`.
    pub fn rows(&self, i0: usize, rows: usize) -> &'a [f32] {
        &self.data[i0 * self.ld..][..(rows - 1) * self.ld + self.n]
    }

    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.ld..][..self.n]
    }
}

/// A (B, H, T, n) output, possibly uninitialised, that parallel tasks write by segments: a
/// segment is `seg` columns of one row (seg = n, whole rows, unless set by `segments`). Each
/// segment is claimed atomically when written, so a second write of a segment panics instead
/// of racing, and `all_written` proves every element initialised (the rows are disjoint and,
/// for a dense layout, cover the buffer).
pub struct HeadsMut<'a> {
    ptr: *mut MaybeUninit<f32>,
    len: usize,
    dims: [usize; 3],
    n: usize,
    seg: usize,
    rows: RowLayout,
    /// One bit per segment, rows in (b, h, t) order.
    claimed: Vec<AtomicU64>,
    /// Names this output in its `Written` proof.
    id: u64,
    _buf: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: a segment is written only after its bit was claimed by a `fetch_or` that found it
// clear, so no two threads ever write one segment, and segments are pairwise disjoint (rows
// checked disjoint in `new`, segments split a row): sharing the pointer creates no data race.
unsafe impl Sync for HeadsMut<'_> {}

impl<'a> HeadsMut<'a> {
    /// Rows (B, H, T) = `dims` of n floats at `rows` in `buf`. Panics when a row leaves the
    /// buffer or two rows overlap (the layouts pretext allocates never do).
    pub fn new(
        buf: &'a mut [MaybeUninit<f32>],
        rows: RowLayout,
        dims: [usize; 3],
        n: usize,
    ) -> HeadsMut<'a> {
        assert!(
            rows.fits(dims, n, buf.len()) && rows.disjoint(dims, n),
            "attention output: rows {rows:?} of {dims:?} × {n} overlap or leave a buffer of {}",
            buf.len()
        );
        HeadsMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            dims,
            n,
            seg: n.max(1),
            rows,
            claimed: claims(dims, n, n.max(1)),
            id: next_id(),
            _buf: PhantomData,
        }
    }

    /// As `new`, over an initialised buffer (which only f32 values are written into, so it
    /// stays initialised).
    pub fn init(buf: &'a mut [f32], rows: RowLayout, dims: [usize; 3], n: usize) -> HeadsMut<'a> {
        // SAFETY: MaybeUninit<f32> has f32's layout, and `HeadsMut` only writes f32 values.
        let buf = unsafe { &mut *(buf as *mut [f32] as *mut [MaybeUninit<f32>]) };
        HeadsMut::new(buf, rows, dims, n)
    }

    /// A contiguous, initialised (B, H, T, n) buffer.
    pub fn contiguous(buf: &'a mut [f32], dims: [usize; 3], n: usize) -> HeadsMut<'a> {
        HeadsMut::init(buf, RowLayout::contiguous(dims[1], dims[2], n), dims, n)
    }

    /// Split each row into segments of `seg` columns (the last may be shorter), written
    /// separately (the key tiles of a dbias row).
    pub fn segments(mut self, seg: usize) -> HeadsMut<'a> {
        assert!(seg > 0, "attention output: empty segments");
        self.seg = seg;
        self.claimed = claims(self.dims, self.n, seg);
        self
    }

    /// ((B, H, T), n): the rows and their length.
    pub fn shape(&self) -> ([usize; 3], usize) {
        (self.dims, self.n)
    }

    /// Writes the segment of row (b, h, t) that starts at column c0 (a multiple of the
    /// segment width) with scale·src (one f32 product per element; scale 1 copies), zeros
    /// past a short `src`. Panics when the segment is outside the output, was written before,
    /// or is shorter than `src`.
    pub(super) fn write(&self, b: usize, h: usize, t: usize, c0: usize, src: &[f32], scale: f32) {
        let [nb, nh, nt] = self.dims;
        assert!(
            b < nb && h < nh && t < nt && c0 < self.n && c0.is_multiple_of(self.seg),
            "attention output: segment at column {c0} of row ({b}, {h}, {t}) outside {:?} × {} \
             (segments of {})",
            self.dims,
            self.n,
            self.seg
        );
        let segs_per_row = self.n.div_ceil(self.seg);
        let bit = ((b * nh + h) * nt + t) * segs_per_row + c0 / self.seg;
        let mask = 1u64 << (bit % 64);
        let before = self.claimed[bit / 64].fetch_or(mask, Ordering::Relaxed);
        assert!(
            before & mask == 0,
            "attention output: columns {c0}.. of row ({b}, {h}, {t}) written twice"
        );
        // SAFETY: the claim above makes this the only writer of these columns.
        unsafe { self.store(b, h, t, c0, src, scale) }
    }

    /// Writes rows t0 .. t0 + rows of head (b, h) whole (one segment per row): row i gets
    /// scales[i]·src[i·src_ld ..][.. width] (width ≤ n; zeros past it), claiming the rows a
    /// 64-bit word of claims at a time, not one atomic operation per row (a query tile's 64
    /// rows: one). Panics as `write` does, and when the rows are split into segments.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_rows(
        &self,
        b: usize,
        h: usize,
        t0: usize,
        rows: usize,
        src: &[f32],
        src_ld: usize,
        width: usize,
        scales: &[f32],
    ) {
        let [nb, nh, nt] = self.dims;
        assert!(
            self.seg >= self.n
                && b < nb
                && h < nh
                && t0 + rows <= nt
                && scales.len() >= rows
                && (rows == 0 || src.len() >= (rows - 1) * src_ld + width),
            "attention output: rows {t0}..{} of head ({b}, {h}) outside {:?}, or {} scales, \
             or a source of {} floats (stride {src_ld}, width {width}), or rows in segments \
             of {}",
            t0 + rows,
            self.dims,
            scales.len(),
            src.len(),
            self.seg
        );
        // Bits (b·H + h)·T + t0 .. + rows, one per row: claimed run by run within each word.
        let first = (b * nh + h) * nt + t0;
        let mut bit = first;
        while bit < first + rows {
            let run = (64 - bit % 64).min(first + rows - bit);
            let mask = (u64::MAX >> (64 - run)) << (bit % 64);
            let before = self.claimed[bit / 64].fetch_or(mask, Ordering::Relaxed);
            assert!(
                before & mask == 0,
                "attention output: a row among {t0}..{} of head ({b}, {h}) written twice",
                t0 + rows
            );
            bit += run;
        }
        for (i, &scale) in scales[..rows].iter().enumerate() {
            // SAFETY: this call claimed row t0 + i above, so it is its only writer.
            unsafe { self.store(b, h, t0 + i, 0, &src[i * src_ld..][..width], scale) }
        }
    }

    /// Stores scale·src into the segment of row (b, h, t) at column c0, zeros past src.
    ///
    /// # Safety
    /// The caller claimed that segment (so no other thread writes it); (b, h, t) is inside the
    /// dims and src no longer than the segment (both checked by the callers).
    unsafe fn store(&self, b: usize, h: usize, t: usize, c0: usize, src: &[f32], scale: f32) {
        let len = self.seg.min(self.n - c0);
        assert!(
            src.len() <= len,
            "attention output: {} values for a segment of {len} (row ({b}, {h}, {t}), column {c0})",
            src.len()
        );
        let off = self.rows.row(b, h, t) + c0;
        debug_assert!(off + len <= self.len);
        // SAFETY: `new` checked that every row lies inside the buffer, and the caller's claim
        // makes this the only writer of these columns.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) };
        let (head, tail) = dst.split_at_mut(src.len());
        for (x, &v) in head.iter_mut().zip(src) {
            x.write(scale * v);
        }
        for x in tail {
            x.write(0.0);
        }
    }

    /// The proof that every segment was written, or None.
    pub fn finish(self) -> Option<Written> {
        self.all_written().then_some(Written { id: self.id })
    }

    /// Whether every segment has been written: then every element of the rows is.
    pub fn all_written(&self) -> bool {
        let segs = segments(self.dims, self.n, self.seg);
        self.claimed.iter().enumerate().all(|(i, w)| {
            let bits = (segs - 64 * i).min(64);
            let want = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            w.load(Ordering::Relaxed) == want
        })
    }
}

/// Number of segments of `seg` columns in (B, H, T) = `dims` rows of n.
fn segments(dims: [usize; 3], n: usize, seg: usize) -> usize {
    dims.iter().product::<usize>() * n.div_ceil(seg)
}

/// One clear claim bit per segment.
fn claims(dims: [usize; 3], n: usize, seg: usize) -> Vec<AtomicU64> {
    (0..segments(dims, n, seg).div_ceil(64))
        .map(|_| AtomicU64::new(0))
        .collect()
}

/// Proof that every segment of one `HeadsMut` was written (`HeadsMut::finish`).
pub struct Written {
    id: u64,
}

/// A new vector of (B, H, T) rows of n floats at a dense layout, which a kernel writes whole
/// through `out` before `into_vec` hands it over: no zeroing pass before the kernel's own
/// stores (the allocation is usually a reused pool block, where zeroing is real work).
pub struct FreshRows {
    v: Vec<f32>,
    dims: [usize; 3],
    n: usize,
    rows: RowLayout,
    /// The id of the last output `out` made.
    id: Option<u64>,
}

impl FreshRows {
    /// Panics unless `rows` places the rows disjointly inside exactly B·H·T·n floats (so they
    /// cover them).
    pub fn new(dims: [usize; 3], n: usize, rows: RowLayout) -> FreshRows {
        let len = segments(dims, n, 1);
        assert!(
            rows.fits(dims, n, len) && rows.disjoint(dims, n),
            "attention output: rows {rows:?} of {dims:?} × {n} are not a dense layout"
        );
        FreshRows {
            v: Vec::with_capacity(len),
            dims,
            n,
            rows,
            id: None,
        }
    }

    /// (B, H, T) of the rows.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Length of a row.
    pub fn n(&self) -> usize {
        self.n
    }

    pub fn layout(&self) -> RowLayout {
        self.rows
    }

    /// The output to write.
    pub fn out(&mut self) -> HeadsMut<'_> {
        let len = segments(self.dims, self.n, 1);
        let o = HeadsMut::new(
            &mut self.v.spare_capacity_mut()[..len],
            self.rows,
            self.dims,
            self.n,
        );
        self.id = Some(o.id);
        o
    }

    /// The vector, once the proof that the last `out` was written whole is shown. Panics on
    /// the proof of another output.
    pub fn into_vec(mut self, written: Written) -> Vec<f32> {
        assert!(
            self.id == Some(written.id),
            "attention output: the proof of another output ({}, expected {:?})",
            written.id,
            self.id
        );
        let len = segments(self.dims, self.n, 1);
        // SAFETY: the last output made from this vector wrote every segment of its rows, which
        // are disjoint and lie inside these `len` floats (checked in `new`), so they cover them.
        unsafe { self.v.set_len(len) };
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_and_fits_see_overlap_and_overrun() {
        let dims = [2, 3, 5];
        // (B, T, H, n) seen as (B, H, T, n): dense, disjoint, exactly 2·5·3·4 floats.
        let bthn = RowLayout {
            offset: 0,
            strides: [5 * 3 * 4, 4, 3 * 4],
        };
        assert!(bthn.disjoint(dims, 4) && bthn.fits(dims, 4, 120) && !bthn.fits(dims, 4, 119));
        // Rows 3 apart but 4 long overlap; a zero stride repeats rows.
        let short = RowLayout {
            offset: 0,
            strides: [45, 15, 3],
        };
        assert!(!short.disjoint(dims, 4) && short.disjoint(dims, 3));
        let repeated = RowLayout {
            offset: 0,
            strides: [60, 0, 4],
        };
        assert!(!repeated.disjoint(dims, 4));
        // A size-1 dim may have any stride.
        let one = RowLayout {
            offset: 0,
            strides: [0, 20, 4],
        };
        assert!(one.disjoint([1, 3, 5], 4));
    }

    #[test]
    fn dense_like_follows_the_operand_order() {
        // Head views of a fused (B, T, 3·H·n) projection: T outside H.
        let view = RowLayout {
            offset: 8,
            strides: [7 * 3 * 2 * 8, 8, 3 * 2 * 8],
        };
        let d = RowLayout::dense_like(&view, [3, 2, 7], 8);
        assert_eq!(d.strides, [7 * 2 * 8, 8, 2 * 8]);
        assert_eq!(d.offset, 0);
        let c = RowLayout::contiguous(2, 7, 8);
        assert_eq!(RowLayout::dense_like(&c, [3, 2, 7], 8), c);
    }

    #[test]
    fn every_row_written_once_is_the_proof() {
        let dims = [2, 2, 3];
        let mut fresh = FreshRows::new(dims, 4, RowLayout::contiguous(2, 3, 4));
        let o = fresh.out();
        for r in 0..11 {
            o.write(r / 6, r / 3 % 2, r % 3, 0, &[r as f32; 4], 1.0);
        }
        assert!(!o.all_written(), "row (1, 1, 2) is missing");
        o.write(1, 1, 2, 0, &[5.5; 2], 2.0);
        let w = o.finish().expect("every row written");
        let v = fresh.into_vec(w);
        assert_eq!(&v[40..], &[10.0, 10.0, 10.0, 10.0, 11.0, 11.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "written twice")]
    fn a_second_write_of_a_row_panics() {
        let mut buf = vec![0.0; 24];
        let o = HeadsMut::contiguous(&mut buf, [1, 2, 3], 4);
        o.write(0, 1, 2, 0, &[1.0; 4], 1.0);
        o.write(0, 1, 2, 0, &[2.0; 4], 1.0);
    }

    /// Rows written a tile at a time: scaled, zero past the source width, claims that cross
    /// a 64-bit word (head 0 rows 60..70 of 100 hold bits 60..70), and every row once.
    #[test]
    fn tiles_of_rows_are_claimed_and_written_whole() {
        let (t, n) = (100, 3);
        let mut buf = vec![f32::NAN; 2 * t * n];
        let o = HeadsMut::contiguous(&mut buf, [1, 2, t], n);
        let src: Vec<f32> = (0..t * 4).map(|x| x as f32).collect();
        let scales: Vec<f32> = (0..t).map(|i| 1.0 + i as f32).collect();
        for h in 0..2 {
            for (t0, rows) in [(0, 60), (60, 10), (70, 30)] {
                o.write_rows(0, h, t0, rows, &src[t0 * 4..], 4, 2, &scales[t0..]);
            }
        }
        assert!(o.all_written());
        drop(o);
        for h in 0..2 {
            for r in 0..t {
                let row = &buf[(h * t + r) * n..][..n];
                let want = [scales[r] * src[r * 4], scales[r] * src[r * 4 + 1], 0.0];
                assert_eq!(row, want, "head {h} row {r}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "written twice")]
    fn a_tile_over_a_written_row_panics() {
        let mut buf = vec![0.0; 2 * 70 * 2];
        let o = HeadsMut::contiguous(&mut buf, [1, 2, 70], 2);
        // Head 1 rows 50..70 hold bits 120..140, across a word; row 65 is already claimed.
        o.write(0, 1, 65, 0, &[1.0; 2], 1.0);
        o.write_rows(0, 1, 50, 20, &[0.0; 40], 2, 2, &[1.0; 20]);
    }

    #[test]
    #[should_panic(expected = "5 values for a segment of 4")]
    fn a_longer_source_than_the_segment_panics() {
        let mut buf = vec![0.0; 8];
        let o = HeadsMut::contiguous(&mut buf, [1, 1, 2], 4);
        o.write(0, 0, 1, 0, &[1.0; 5], 1.0);
    }

    #[test]
    fn segments_are_claimed_separately() {
        let mut buf = vec![0.0; 2 * 10];
        let o = HeadsMut::contiguous(&mut buf, [1, 1, 2], 10).segments(4);
        for t in 0..2 {
            for c0 in [0, 4, 8] {
                let vals: Vec<f32> = (c0..10.min(c0 + 4)).map(|c| (10 * t + c) as f32).collect();
                o.write(0, 0, t, c0, &vals, 1.0);
            }
        }
        assert!(o.finish().is_some());
        assert_eq!(buf, (0..20).map(|x| x as f32).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "proof of another output")]
    fn the_proof_of_another_output_is_refused() {
        let dims = [1, 1, 1];
        let (mut a, mut b) = (
            FreshRows::new(dims, 2, RowLayout::contiguous(1, 1, 2)),
            FreshRows::new(dims, 2, RowLayout::contiguous(1, 1, 2)),
        );
        let oa = a.out();
        oa.write(0, 0, 0, 0, &[1.0, 2.0], 1.0);
        let wa = oa.finish().unwrap();
        drop(b.out());
        b.into_vec(wa);
    }
}
