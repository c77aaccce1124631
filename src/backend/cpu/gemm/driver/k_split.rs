//! Splitting one problem's depth over the threads: each thread sums a range of k blocks into
//! its own part, and the parts are added into C (a small C over a long k).

use rayon::prelude::*;

use crate::backend::cpu::gemm::kernel::MicroKernel;
use crate::backend::cpu::gemm::pack::{Convert, View};
use crate::backend::cpu::gemm::round_bf16::{round_tile, widen_tile, Rounding, Tile};
use crate::backend::cpu::gemm::GemmLayout;
use crate::backend::cpu::isa;

use super::columns::single;
use super::{CPtr, Dest};

/// Whether one problem's threads take parts of k rather than of C: a small C (at most
/// `K_SPLIT_MAX_C` values) over a long k (at least `MicroKernel::K_SPLIT_MIN_BLOCKS` depth
/// blocks), where splitting C gives each depth block's fork and joins (B packed in parallel,
/// then the tiles) too little work per thread.
pub(super) fn k_split<K: MicroKernel>(l: &GemmLayout) -> bool {
    l.m * l.n <= K_SPLIT_MAX_C && l.k >= K::K_SPLIT_MIN_BLOCKS * K::KC
}

/// In-process alternation, 2 threads, Intel EMR, k split against C split: f32 64 × 65536 ×
/// 64 2.0×, 32 × 32768 × 32 1.8×, 128 × 16384 × 128 1.5×, 256 × 8192 × 256 1.3×, 128 ×
/// 4096 × 512 1.35×, 64 × 2048 × 64 2.4×; bf16 (AMX) 64 × 65536 × 64 1.27×, 128 × 16384 ×
/// 128 1.66×, 256 × 4096 × 256 1.24×; but bf16 512 × 4096 × 512 0.68× (C of 256 Ki values).
pub(super) const K_SPLIT_MAX_C: usize = 256 * 256;

/// C (+)= A·B with each of `threads` threads taking a contiguous part of k: the first
/// accumulates into C itself (an f32 C) or into f32 sums starting from C widened (a bf16 C),
/// the others into their own m × n f32 sums, added after in order of the parts (and a bf16
/// C rounded once, from the same f32 sums as an f32 C holds). The sums so depend on the
/// thread count (as MKL's do), not on the timing: a thread count gives the same bits every
/// run.
#[allow(clippy::too_many_arguments)]
pub(super) fn split_along_k<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    in_place: bool,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let part = k.div_ceil(threads).next_multiple_of(K::KU);
    let parts: Vec<(usize, usize)> = (0..k)
        .step_by(part)
        .map(|p0| (p0, (p0 + part).min(k)))
        .collect();
    // Row-major m × n sums of every part but an f32 C's first, uninitialised: each part's
    // kernels store all of its own (beta 0), or, for a bf16 C with beta 1, the first are C
    // widened (zeroing them was a serial pass over m·n values per call).
    let own_first = matches!(c, Dest::Bf16(_));
    let len = (parts.len() - usize::from(!own_first)) * m * n;
    let mut sums: Vec<f32> = Vec::with_capacity(len);
    let sp = CPtr(sums.as_mut_ptr());
    if let (Dest::Bf16(out), true) = (c, accumulate) {
        // SAFETY: C's m × n elements lie inside its checked bounds; the sums hold m × n.
        unsafe {
            widen_tile(
                Tile::new(out.0.cast_const(), l.c_rs, l.c_cs, m, n),
                Tile::new(sp.0, n, 1, m, n),
            )
        };
    }
    parts.par_iter().enumerate().for_each(|(t, &(p0, p1))| {
        let a = View {
            off: a.off + p0 * a.cs,
            ..a
        };
        let b = View {
            off: b.off + p0 * b.rs,
            ..b
        };
        let sub = GemmLayout { k: p1 - p0, ..*l };
        match (t, c) {
            (0, Dest::F32(_)) => single::<K, CA, CB>(&sub, a, in_place, b, c, accumulate, 1),
            _ => {
                let own = GemmLayout {
                    c_rs: n,
                    c_cs: 1,
                    ..sub
                };
                let slot = t - usize::from(!own_first);
                let acc = t == 0 && accumulate;
                let dst = Dest::F32(CPtr(sp.at(slot * m * n)));
                single::<K, CA, CB>(&own, a, in_place, b, dst, acc, 1);
            }
        }
    });
    // SAFETY: every one of the `len` values was stored above (see the allocation).
    unsafe { sums.set_len(len) };
    let (first, rest): (Tile<*mut f32>, &[f32]) = match c {
        Dest::F32(cp) => (Tile::new(cp.0, l.c_rs, l.c_cs, m, n), &sums),
        Dest::Bf16(_) => {
            let (head, tail) = sums.split_at_mut(m * n);
            (Tile::new(head.as_mut_ptr(), n, 1, m, n), tail)
        }
    };
    add_parts(first, rest, threads);
    if let Dest::Bf16(out) = c {
        // SAFETY: the m × n sums and C's m × n elements (inside its checked bounds) are
        // distinct memory; the rounding suits this CPU.
        unsafe {
            round_tile(
                Rounding::at(isa::active()),
                first.as_const(),
                Tile::new(out.0, l.c_rs, l.c_cs, m, n),
            )
        };
    }
}

/// first += Σ parts, the parts row-major m × n sums (first.rows × first.cols) added in their
/// order, so that each value's sum is the same whatever the thread count: rows spread over
/// `threads` threads, a row at a time over contiguous slices where C's columns are. It
/// replaced one thread's scalar loop over (i, j) after a zeroing of the sums: Intel EMR, 2
/// threads, in process against it, the weight gradients of the Shakespeare recipe (A
/// transposed, k = 768) 128 × 768 × 512 +1–11%, 512 × 768 × 128 +9%, 384 × 768 × 128 +7%,
/// 128 × 768 × 128 −1 to +9%; long k (256 × 4096 × 256, 64 × 65536 × 64) within ±1% in
/// quiet rounds; bf16 C 128 × 768 × 512 +3–10%. Timed inside 60-step training runs (three
/// alternating pairs, against the rest of the GEMMs for drift): those products' time ×0.93–1.01.
pub(super) fn add_parts(first: Tile<*mut f32>, parts: &[f32], threads: usize) {
    let (m, n) = (first.rows, first.cols);
    let dst = CPtr(first.ptr);
    let rows = |r0: usize, r1: usize| {
        for i in r0..r1 {
            let row = dst.at(i * first.rs);
            for part in parts.chunks_exact(m * n) {
                let src = &part[i * n..][..n];
                if first.cs == 1 {
                    // SAFETY: row i of the tile is n contiguous values (unit column stride)
                    // inside C's checked bounds or the first sums, which `parts` does not
                    // overlap; no other task writes row i.
                    let row = unsafe { std::slice::from_raw_parts_mut(row, n) };
                    row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    for (j, s) in src.iter().enumerate() {
                        // SAFETY: (i, j) lies in C's checked bounds; no other task writes
                        // row i.
                        unsafe { *row.add(j * first.cs) += s };
                    }
                }
            }
        }
    };
    let tasks = threads.min(m).max(1);
    if tasks == 1 || m * n < ADD_PARTS_PAR_MIN {
        return rows(0, m);
    }
    (0..tasks)
        .into_par_iter()
        .for_each(|t| rows(t * m / tasks, (t + 1) * m / tasks));
}

/// Values of C from which `add_parts` spreads its rows over the threads.
pub(super) const ADD_PARTS_PAR_MIN: usize = 1 << 14;
