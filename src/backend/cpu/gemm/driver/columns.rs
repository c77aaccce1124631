//! One problem's loops over column and depth blocks: B packed per block (or read in place)
//! and the tasks of each block run over it.

use rayon::prelude::*;

use crate::backend::cpu::gemm::kernel::MicroKernel;
use crate::backend::cpu::gemm::pack::{pack, packed_len, Convert, View};
use crate::backend::cpu::gemm::GemmLayout;

use super::block::block;
use super::blocking::{depth_blocks, k_blocks, n_blocks};
use super::operands::{
    b_block_in_place, b_columns_as_rows, fill_whole_a, pack_whole_a, transposed_a_in_place,
    APanels, BPanels, PanelsMut,
};
use super::tasks::{for_tasks, split, Task};
use super::{with_scratch, CPtr, Dest, SCRATCH_A_WHOLE, SCRATCH_B, SCRATCH_STAGE};

/// One problem; `c` points at C[0, 0]; `in_place`: A is read where it lies (`direct_a`).
#[allow(clippy::too_many_arguments)]
pub(super) fn single<K, CA, CB>(
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
    let whole_a_len: usize = k_blocks::<K>(k)
        .map(|(_, kc)| packed_len(m, K::MR, kc, K::KU))
        .sum();
    let mut columns_of_c = n_blocks::<K>(n, k);
    let first_nc = columns_of_c.next().map_or(n, |(_, nc)| nc);
    let several_column_blocks = columns_of_c.next().is_some();
    if several_column_blocks && !in_place && whole_a_len * size_of::<K::P>() <= WHOLE_A_MAX_BYTES {
        // A is needed by every NC block of columns: pack all of it once instead of once per
        // block (sq2048 f32: 4 passes over A become 1).
        with_scratch(&SCRATCH_A_WHOLE, whole_a_len, |ap: &mut [K::P]| {
            if a.cs == 1 && fill_whole_a(m, first_nc, K::MR, K::NR, K::MC, threads) {
                let whole = PanelsMut {
                    ptr: ap.as_mut_ptr(),
                    len: ap.len(),
                };
                columns::<K, CA, CB>(l, a, APanels::FillWhole(whole), b, c, accumulate, threads);
            } else {
                pack_whole_a::<K, CA>(a, m, k, threads, ap);
                columns::<K, CA, CB>(l, a, APanels::Whole(ap), b, c, accumulate, threads);
            }
        });
    } else {
        let panels = if in_place {
            APanels::InPlace
        } else if transposed_a_in_place::<K, CA>(l) {
            APanels::InPlaceTransposed
        } else {
            APanels::PerBlock
        };
        columns::<K, CA, CB>(l, a, panels, b, c, accumulate, threads);
    }
}

/// Largest A packed whole (`pack_whole_a`), in packed bytes: the buffer is kept by the calling
/// thread for the next call, like the per-block scratch.
pub(super) const WHOLE_A_MAX_BYTES: usize = 64 << 20;

/// The column and depth loops of one problem.
pub(super) fn columns<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
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
    let in_place = matches!(panels, APanels::InPlace);
    if matches!(c, Dest::Bf16(_)) && depth_blocks::<K>(k, n, in_place).nth(1).is_some() {
        // The partial sums of a bf16 C wait in f32 between k blocks: one column block of
        // them at a time, in this thread's stage.
        // Rows one line longer than the block, so that rows are not 4 KiB apart (all in one
        // L1 set) when the block is a multiple of 1024 columns.
        let rs = n_blocks::<K>(n, k).map(|(_, nc)| nc).max().unwrap_or(0) + 16;
        with_scratch(&SCRATCH_STAGE, m * rs, |st: &mut [f32]| {
            let stage = Some(Stage {
                ptr: CPtr(st.as_mut_ptr()),
                rs,
            });
            column_blocks::<K, CA, CB>(l, a, panels, b, c, stage, accumulate, threads)
        })
    } else {
        column_blocks::<K, CA, CB>(l, a, panels, b, c, None, accumulate, threads)
    }
}

/// The f32 partial sums of a bf16 C's current column block (rows of the problem, columns
/// from jc): element (i, j) at `ptr + i·rs + j`.
#[derive(Clone, Copy)]
pub(super) struct Stage {
    pub(super) ptr: CPtr,
    pub(super) rs: usize,
}

/// The loops of `columns` over column and depth blocks.
#[allow(clippy::too_many_arguments)]
pub(super) fn column_blocks<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
    b: View<'_, CB::Src>,
    cp: Dest,
    stage: Option<Stage>,
    accumulate: bool,
    threads: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let bt = b_columns_as_rows(b);
    let in_place = matches!(panels, APanels::InPlace);
    for (jc, nc) in n_blocks::<K>(n, k) {
        let mut whole = panels;
        for (pc, kc) in depth_blocks::<K>(k, n, in_place) {
            let kcp = kc.next_multiple_of(K::KU);
            let acc = accumulate || pc > 0;
            let a_block = match whole {
                APanels::Whole(ap) => {
                    let (blk, rest) = ap.split_at(packed_len(m, K::MR, kc, K::KU));
                    whole = APanels::Whole(rest);
                    APanels::Whole(blk)
                }
                APanels::FillWhole(ap) => {
                    let len = packed_len(m, K::MR, kc, K::KU);
                    assert!(len <= ap.len, "whole A buffer too short");
                    whole = APanels::FillWhole(PanelsMut {
                        ptr: ap.ptr.wrapping_add(len),
                        len: ap.len - len,
                    });
                    if jc == 0 {
                        APanels::FillWhole(PanelsMut { ptr: ap.ptr, len })
                    } else {
                        // SAFETY: the first column block packed these `len` values (every
                        // panel of this KC block); no task writes them any more.
                        APanels::Whole(unsafe { std::slice::from_raw_parts(ap.ptr, len) })
                    }
                }
                other => other,
            };
            if let Some(bp) = b_block_in_place::<K, CB>(b, in_place, m, jc, nc, pc, kc) {
                let tasks = split(m, nc, K::MR, K::NR, K::MC, threads);
                let run =
                    |t: &Task| block::<K, CA>(l, a, a_block, bp, cp, stage, *t, jc, pc, kc, acc);
                if tasks.len() > 1 {
                    for_tasks::<K>(&tasks, m, nc, threads, run);
                } else {
                    run(&tasks[0]);
                }
                continue;
            }
            with_scratch(
                &SCRATCH_B,
                packed_len(nc, K::NR, kc, K::KU),
                |bp: &mut [K::P]| {
                    let tasks = split(m, nc, K::MR, K::NR, K::MC, threads);
                    if tasks.len() > 1 {
                        // Pack B in parallel, a run of whole panels per chunk.
                        let per = nc.div_ceil(K::NR).div_ceil(threads) * K::NR;
                        bp.par_chunks_mut(per * kcp)
                            .enumerate()
                            .for_each(|(ci, chunk)| {
                                let c0 = ci * per;
                                let cols = (nc - c0).min(per);
                                pack::<CB>(bt, K::NR, K::KU_B, K::KU, jc + c0, cols, pc, kc, chunk);
                            });
                        let bp = BPanels::Packed(&*bp);
                        for_tasks::<K>(&tasks, m, nc, threads, |t: &Task| {
                            block::<K, CA>(l, a, a_block, bp, cp, stage, *t, jc, pc, kc, acc);
                        });
                    } else {
                        pack::<CB>(bt, K::NR, K::KU_B, K::KU, jc, nc, pc, kc, bp);
                        let bp = BPanels::Packed(&*bp);
                        block::<K, CA>(l, a, a_block, bp, cp, stage, tasks[0], jc, pc, kc, acc);
                    }
                },
            );
        }
    }
}
