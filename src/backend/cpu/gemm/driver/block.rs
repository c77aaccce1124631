//! The sweep of one block: for each A panel, the micro-kernel over every B panel, with the
//! next panel's source and destination prefetched under the kernel calls.

use std::mem::MaybeUninit;

use crate::backend::cpu::gemm::kernel::{CTile, MicroKernel};
use crate::backend::cpu::gemm::pack::{pack, packed_len, Convert, View};
use crate::backend::cpu::gemm::round_bf16::{round_tile, widen_tile, Rounding, Tile};
use crate::backend::cpu::gemm::GemmLayout;
use crate::backend::cpu::isa;

use super::blocking::blocks;
use super::columns::Stage;
use super::operands::{APanels, ATile, BPanels};
use super::tasks::Task;
use super::{with_scratch, Dest, TileBuf, SCRATCH_A};

/// One task: sweeps its B panels with the kernel for each of its A panels (read in place,
/// packed whole beforehand, packed here into the whole buffer one panel at a time, or packed
/// here in MC chunks). While the kernel sweeps a panel packed into the whole buffer, the next
/// panel's source lines (into L2) and destination lines are prefetched, a share after each
/// kernel call, so that packing it does not wait on memory.
#[allow(clippy::too_many_arguments)]
pub(super) fn block<K, CA>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    panels: APanels<'_, K::P>,
    bp: BPanels<'_, K::P>,
    c: Dest,
    stage: Option<Stage>,
    t: Task,
    jc: usize,
    pc: usize,
    kc: usize,
    acc: bool,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
{
    let kcp = kc.next_multiple_of(K::KU);
    let panel = K::MR * kcp;
    // No prefetch of the next C tile beyond the kernel's own: with short k and C in memory
    // (512 × 64 × 512 ×12 Q·Kᵀ, 768 × 128 × 512) it made the GEMM 1–7% slower on Zen 4, with
    // and without huge pages, since the assembly k loops and inlined tile stores.
    let calls = (t.n1 - t.n0).div_ceil(K::NR);
    // A bf16 C's tile of f32 sums with a single k block, rounded from here (uninitialised:
    // the kernel stores every element it covers before the rounding reads it, or, with
    // beta = 1, the widened C does).
    let mut buf_space = MaybeUninit::<TileBuf>::uninit();
    let buf: Option<*mut f32> =
        (matches!(c, Dest::Bf16(_)) && stage.is_none()).then(|| buf_space.as_mut_ptr().cast());
    let last = pc + kc == l.k;
    let rounding = Rounding::at(isa::active());
    // Depth sub-blocks of a packed A panel against packed B panels (`K::KC_INNER`): one
    // sweep of the B panels per sub-block, the tiles' sums carried between sweeps in C, the
    // stage, or, for a bf16 C otherwise summed in the tile buffer, in `row_tiles`: one
    // MR × NR f32 tile per B panel of the task, each contiguous (tile-major: rows of a
    // row-major buffer 3 KiB apart crowded a few L1 sets and lost 11%), uninitialised (the
    // first sweep stores every tile before a later one reads it). From three sub-blocks on:
    // at k = 512 (two), 512³ with a bf16 C lost 6–7% (AMX, 1 / 2 threads).
    let whole = [(0, kc)];
    let sub_blocks: Vec<(usize, usize)> = if K::KC_INNER > 0 && kc > 2 * K::KC_INNER {
        blocks(kc, K::KC_INNER, K::KU_A.max(K::KU), true).collect()
    } else {
        Vec::new()
    };
    let tile_len = K::MR * K::NR;
    let mut row_tiles: Vec<MaybeUninit<f32>> = if sub_blocks.is_empty() || buf.is_none() {
        Vec::new()
    } else {
        vec![MaybeUninit::uninit(); (t.n1 - t.n0).div_ceil(K::NR) * tile_len]
    };
    let row_tiles = row_tiles.as_mut_ptr().cast::<f32>();
    // The kernel over one A panel and every B panel of the task; `next`: the panel swept
    // after this one, prefetched a share after each kernel call.
    let tile = |i0: usize, apanel: *const K::P, src: ATile, next: Option<NextPanel<K::P>>| {
        let mr = (t.m1 - i0).min(K::MR);
        let bytes = panel * std::mem::size_of::<K::P>();
        // After kernel call `call` of `calls`: a share of the next panel's prefetches.
        let prefetch_next = |call: usize| match next {
            Some(NextPanel::Pack { row, dst }) => {
                prefetch_rows(a, row, (t.m1 - row).min(K::MR), pc, kc, call, calls);
                if let Some(dst) = dst {
                    prefetch_share_for_write(dst as *const u8, bytes, call, calls);
                }
            }
            // The kernel's first call over this panel prefetches it (`run_prefetch_next`).
            Some(NextPanel::Packed(_)) | None => {}
        };
        // Sub-blocks only where both panels are packed (k steps at MR / NR values each).
        let subs: &[(usize, usize)] = match (src, bp) {
            (ATile::Packed, BPanels::Packed(_)) if !sub_blocks.is_empty() => &sub_blocks,
            _ => &whole,
        };
        // A bf16 C from a single k block (beta = 0): the kernel may compute and round the
        // full tiles in one pipeline (AMX, AVX-512 BF16); the rest, if any, go tile by tile
        // below.
        let mut piped = 0;
        let rows_at = match src {
            ATile::Packed => Some(0),
            ATile::Rows(rs) => Some(rs),
            ATile::Cols(_) => None,
        };
        if let (Dest::Bf16(out), Some(_), BPanels::Packed(bp), Some(a_rs)) = (c, buf, bp, rows_at) {
            let tiles = (t.n1 - t.n0) / K::NR;
            if !acc && mr == K::MR && l.c_cs == 1 && tiles > 0 && subs.len() == 1 {
                let out = out.0.wrapping_add(i0 * l.c_rs + jc + t.n0);
                let b0 = bp[(t.n0 / K::NR) * K::NR * kcp..].as_ptr();
                // SAFETY: as the kernel calls below, for the `tiles` full tiles of rows
                // i0 .. i0 + MR from column jc + t.n0 of C (inside its checked bounds, this
                // task's alone, columns contiguous), B panels t.n0 / NR on.
                let done = unsafe {
                    K::run_rounded_row(kc, apanel, a_rs, b0, tiles, out, l.c_rs, &mut |call| {
                        prefetch_next(call)
                    })
                };
                if done {
                    piped = tiles;
                }
            }
        }
        // Each sub-block's sweep (one, at depth kc, without sub-blocks): sub-block `sub` of
        // `kcs` k steps from step p0, kernel call `call` of the sweep at column j0.
        let sweeps = subs.iter().enumerate().flat_map(|(sub, &(p0, kcs))| {
            let calls = (t.n0..t.n1).step_by(K::NR).enumerate().skip(piped);
            calls.map(move |(call, j0)| (sub, p0, kcs, call, j0))
        });
        for (sub, p0, kcs, call, j0) in sweeps {
            let nr = (t.n1 - j0).min(K::NR);
            // Sub-blocks only for full tiles with columns contiguous (C's or the stage's),
            // which the kernel accumulates in its registers, so that their sums are one
            // sweep's bit for bit; an edge or strided tile, whose fresh sums the kernel adds
            // to C (another order of the additions), takes the whole depth in the first sweep.
            let whole_tile =
                mr == K::MR && nr == K::NR && (l.c_cs == 1 || matches!(c, Dest::Bf16(_)));
            let (p0, kcs, first, final_sub) = match (subs.len() > 1 && !whole_tile, sub) {
                (false, _) => (p0, kcs, sub == 0, sub + 1 == subs.len()),
                (true, 0) => (0, kc, true, true),
                (true, _) => continue,
            };
            // The kernel accumulates after the first sub-block (as for beta = 1 or a later
            // depth block).
            let kacc = acc || !first;
            // B's row stride when its rows are read in place (which may be 0: one row for
            // every k step).
            let (bpanel, b_rows) = match bp {
                BPanels::Packed(bp) => (&bp[(j0 / K::NR) * K::NR * kcp..][..K::NR * kcp], None),
                BPanels::Rows { from, rs } => (&from[j0..][..(kc - 1) * rs + K::NR], Some(rs)),
            };
            let off = i0 * l.c_rs + (jc + j0) * l.c_cs;
            // Where the kernel's f32 sums go: C itself, or, for a bf16 C, the stage (several k
            // blocks; the previous blocks' sums are there when pc > 0) or the tile buffer,
            // rounded into C after the last block. One kernel call site, so that the
            // dispatch below stays inline in this loop.
            let (sums, bf16_out) = match c {
                Dest::F32(cp) => (Tile::new(cp.at(off), l.c_rs, l.c_cs, mr, nr), None),
                Dest::Bf16(out) => {
                    let out = Tile::new(out.0.wrapping_add(off), l.c_rs, l.c_cs, mr, nr);
                    let staged =
                        stage.map(|s| Tile::new(s.ptr.at(i0 * s.rs + j0), s.rs, 1, mr, nr));
                    let sums = match (staged, buf) {
                        (Some(s), _) => s,
                        (None, Some(_)) if subs.len() > 1 && whole_tile => {
                            let at = (j0 - t.n0) / K::NR * tile_len;
                            Tile::new(row_tiles.wrapping_add(at), K::NR, 1, mr, nr)
                        }
                        (None, Some(b)) => Tile::new(b, K::NR, 1, mr, nr),
                        (None, None) => unreachable!("a bf16 C has a tile buffer"),
                    };
                    if acc && pc == 0 && first {
                        // beta = 1: the sums start from C.
                        // SAFETY: `out` is this task's tile of the bf16 C (inside its checked
                        // bounds), `sums` its f32 sums (the stage's or the buffer's), distinct
                        // memory.
                        unsafe { widen_tile(out.as_const(), sums) };
                    }
                    (sums, Some(out))
                }
            };
            let ct = CTile::new(sums.ptr, sums.rs as isize, sums.cs as isize, mr, nr);
            // The sub-block's first k step in either packed panel (p0 = 0 without them).
            let (apanel, b) = (
                apanel.wrapping_add(p0 * K::MR),
                bpanel.as_ptr().wrapping_add(p0 * K::NR),
            );
            // SAFETY: the A panel holds MR·kcp packed values, the sub-block's from step p0
            // (p0 + kcs ≤ kc, both whole KU_A and KU steps), or, read in place, rows
            // i0 .. i0+mr of A hold kc values from column pc, inside A's checked bounds); the
            // B panel NR·kcp (or, read in place, kc rows of NR values `b_rs` apart, inside
            // the slice `bpanel`); `ct` is the tile of f32 sums (mr × nr): C's own (at row i0,
            // column jc+j0, inside C's checked bounds), the stage's or the tile buffer's,
            // which belongs to this task alone; the dispatcher chose K for this CPU.
            unsafe {
                match (src, b_rows) {
                    (ATile::Rows(a_rs), Some(b_rs)) => {
                        K::run_direct_ab(kcs, apanel, a_rs, b, b_rs, ct, kacc)
                    }
                    (_, Some(_)) => unreachable!("B in place only beside A's rows in place"),
                    (ATile::Packed, None) => match next {
                        Some(NextPanel::Packed(p)) if call == 0 && first => {
                            K::run_prefetch_next(kcs, apanel, b, ct, kacc, p)
                        }
                        _ => K::run(kcs, apanel, b, ct, kacc),
                    },
                    (ATile::Rows(a_rs), None) => K::run_direct_a(kcs, apanel, a_rs, b, ct, kacc),
                    (ATile::Cols(a_cs), None) => {
                        K::run_transposed_a(kcs, apanel, a_cs, b, ct, kacc)
                    }
                }
            }
            if let (Some(out), true) = (bf16_out, last && final_sub) {
                // SAFETY: as for the widening above.
                unsafe { round_tile(rounding, sums.as_const(), out) };
            }
            if first {
                prefetch_next(call);
            }
        }
    };
    match panels {
        APanels::Whole(ap) => {
            // Task rows start on a panel boundary.
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                let at = (i0 / K::MR) * panel;
                // The next panel into L2 during this one's first kernel call, where the kernel
                // can: the whole packed A of a large problem lies past L2 (sq2048: 3 MiB per
                // depth block), so each new panel would otherwise start its first tile waiting
                // on L3. From inside the k loop rather than in bursts between calls, whose
                // prefetches waited on the fill buffers (sq2048, 1 thread: this closure then
                // held 4% of the GEMM's samples, 2.4% since).
                let next = (K::PREFETCHES_NEXT_PANEL && i0 + K::MR < t.m1)
                    .then(|| NextPanel::Packed(ap[at + panel..].as_ptr()));
                tile(i0, ap[at..].as_ptr(), ATile::Packed, next);
            }
        }
        APanels::FillWhole(ap) => {
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                // Task rows start on a panel boundary.
                let at = (i0 / K::MR) * panel;
                assert!(at + panel <= ap.len, "whole A buffer too short");
                // SAFETY: panel i0 / MR of this KC block lies in the buffer (asserted); this
                // task alone owns rows i0 .. i0 + MR (`fill_whole_a`), so no other task
                // touches these values while this one packs and reads them.
                let out = unsafe { std::slice::from_raw_parts_mut(ap.ptr.add(at), panel) };
                pack::<CA>(
                    a,
                    K::MR,
                    K::KU_A,
                    K::KU,
                    i0,
                    (t.m1 - i0).min(K::MR),
                    pc,
                    kc,
                    out,
                );
                let next = i0 + K::MR;
                let next = (next < t.m1).then_some(NextPanel::Pack {
                    row: next,
                    dst: Some(out.as_ptr().wrapping_add(panel)),
                });
                tile(i0, out.as_ptr(), ATile::Packed, next);
            }
        }
        APanels::InPlace => {
            debug_assert_eq!(std::mem::size_of::<CA::Src>(), std::mem::size_of::<K::P>());
            let base = a.data.as_ptr() as *const K::P;
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                tile(
                    i0,
                    base.wrapping_add(a.off + i0 * a.rs + pc),
                    ATile::Rows(a.rs),
                    None,
                );
            }
        }
        APanels::InPlaceTransposed => {
            debug_assert_eq!(std::mem::size_of::<CA::Src>(), std::mem::size_of::<K::P>());
            let base = a.data.as_ptr() as *const K::P;
            for i0 in (t.m0..t.m1).step_by(K::MR) {
                let first = a.off + i0 + pc * a.cs;
                if first + (kc - 1) * a.cs + K::MR <= a.data.len() {
                    tile(i0, base.wrapping_add(first), ATile::Cols(a.cs), None);
                } else {
                    // The kernel reads MR values per k step: past the end of A's storage for
                    // the last rows of its last k step, so this panel is packed.
                    with_scratch(&SCRATCH_A, panel, |ap: &mut [K::P]| {
                        let rows = (t.m1 - i0).min(K::MR);
                        pack::<CA>(a, K::MR, K::KU_A, K::KU, i0, rows, pc, kc, ap);
                        tile(i0, ap.as_ptr(), ATile::Packed, None);
                    });
                }
            }
        }
        APanels::PerBlock if a.cs == 1 => {
            // One panel at a time into one buffer (L1), the next panel's rows prefetched
            // under the kernel calls of this one, so that packing does not wait on memory.
            with_scratch(&SCRATCH_A, panel, |ap: &mut [K::P]| {
                for i0 in (t.m0..t.m1).step_by(K::MR) {
                    let rows = (t.m1 - i0).min(K::MR);
                    pack::<CA>(a, K::MR, K::KU_A, K::KU, i0, rows, pc, kc, ap);
                    let next = i0 + K::MR;
                    tile(
                        i0,
                        ap.as_ptr(),
                        ATile::Packed,
                        (next < t.m1).then_some(NextPanel::Pack {
                            row: next,
                            dst: None,
                        }),
                    );
                }
            });
        }
        APanels::PerBlock => {
            let mc_max = (t.m1 - t.m0).min(K::MC);
            with_scratch(
                &SCRATCH_A,
                packed_len(mc_max, K::MR, kc, K::KU),
                |ap: &mut [K::P]| {
                    for ic in (t.m0..t.m1).step_by(K::MC) {
                        let mc = (t.m1 - ic).min(K::MC);
                        pack::<CA>(a, K::MR, K::KU_A, K::KU, ic, mc, pc, kc, ap);
                        for (ir, apanel) in
                            ap.chunks_exact(panel).take(mc.div_ceil(K::MR)).enumerate()
                        {
                            tile(ic + ir * K::MR, apanel.as_ptr(), ATile::Packed, None);
                        }
                    }
                },
            );
        }
    }
}

/// Prefetches into L2 share `part` of `parts` of the source lines that packing the A panel
/// of `rows` rows from row `r0`, k steps `p0 .. p0 + kc` (k contiguous in A), reads. Rows a
/// page or more apart are where the hardware prefetchers stop.
#[allow(clippy::too_many_arguments)]
pub(super) fn prefetch_rows<T>(
    a: View<'_, T>,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    part: usize,
    parts: usize,
) {
    debug_assert_eq!(a.cs, 1);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        const LINE: usize = 64;
        let size = std::mem::size_of::<T>();
        let first = a.data.as_ptr().wrapping_add(a.off + r0 * a.rs + p0) as *const i8;
        for row in part * rows / parts..(part + 1) * rows / parts {
            let start = first.wrapping_add(row * a.rs * size);
            // From the line holding the row's first byte to the one holding its last.
            let skew = start as usize % LINE;
            let line0 = start.wrapping_sub(skew);
            for off in (0..kc * size + skew).step_by(LINE) {
                // SAFETY: prefetching is a hint and never faults.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(line0.wrapping_add(off)) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, r0, rows, p0, kc, part, parts);
}

/// The A panel that `block` sweeps after the current one, prefetched under the current
/// one's kernel calls.
#[derive(Clone, Copy)]
pub(super) enum NextPanel<P> {
    /// Rows from `row`, packed next (their source lines into L2), into `dst` when that is
    /// not the buffer just used (its lines prefetched for writing).
    Pack { row: usize, dst: Option<*const P> },
    /// Already packed, at this address: brought into L2 by the kernel
    /// (`MicroKernel::run_prefetch_next`).
    Packed(*const P),
}

/// Prefetches share `part` of `parts` of the `bytes` bytes at `dst` (line aligned) for
/// writing: the packed panel written next, whose lines would otherwise be fetched one store
/// miss at a time.
pub(super) fn prefetch_share_for_write(dst: *const u8, bytes: usize, part: usize, parts: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let lines = bytes.div_ceil(64);
        for line in part * lines / parts..(part + 1) * lines / parts {
            // SAFETY: prefetching is a hint and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(dst.wrapping_add(line * 64) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, bytes, part, parts);
}
