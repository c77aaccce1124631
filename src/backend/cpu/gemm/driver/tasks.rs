//! How one problem's work is cut over the threads: row and column tasks of a block, the
//! independent sub-problems of an A read in place, and the dispensers that hand out tiles.

use rayon::prelude::*;

use crate::backend::cpu::gemm::dispense::Dispenser;
use crate::backend::cpu::gemm::kernel::MicroKernel;
use crate::backend::cpu::gemm::pack::{pack, packed_len, Convert, View};
use crate::backend::cpu::gemm::GemmLayout;

use super::block::block;
use super::blocking::{depth_blocks, n_blocks, nc_max};
use super::operands::{b_block_in_place, b_columns_as_rows, APanels, BPanels};
use super::{with_scratch, Dest, SCRATCH_B};

/// Whether `threads` independent column parts, each packing all of a packed A and its own
/// columns of B, should replace the shared-B path's row tasks: when that path would split
/// rows and A has at most 1/`SMALL_A_SHARE` of a part's columns as rows (m ≤ n /
/// (SMALL_A_SHARE · threads)). Row tasks share each packed block of B: two barriers per
/// block (B packed in parallel, then the tasks), each task reading the half of B the other
/// thread packed, and the packing of B, from memory when B is large, overlapping no
/// products. Intel EMR, bf16
/// C, AMX, 2 threads, in process against row tasks: the tied LM head on 256 tokens (256 ×
/// 768 × 50257, W's rows along k) +30–52%, 128 rows +64–68%, 256 × 768 × 8192 +53–64%, 128
/// × 768 × 3072 +42–70%, 64 × 768 × 2304 +72–133%, A transposed 200 × 1024 × 4096 +77%;
/// f32 A transposed +22–27%, f32 with W's rows along k 0.98–1.03. Where each part packs a
/// large A it lost: 4096 × 768 × 3072 0.42×, 2048³ 0.50×.
pub(super) fn small_packed_a<K: MicroKernel>(l: &GemmLayout, threads: usize) -> bool {
    let first_nc = n_blocks::<K>(l.n, l.k).next().map_or(l.n, |(_, nc)| nc);
    l.m * SMALL_A_SHARE * threads <= l.n
        && split(l.m, first_nc, K::MR, K::NR, K::MC, threads)
            .iter()
            .all(|t| t.n0 == 0 && t.n1 == first_nc)
}

/// `small_packed_a`'s bound: A has at most this fraction of a column part's columns as rows.
pub(super) const SMALL_A_SHARE: usize = 8;

/// Whether a large f32 problem with A packed (k contiguous in A) runs as `partition`'s
/// independent parts, one per thread, each packing its own A and B panels, rather than as
/// row tasks sharing each packed block of B. Sharing saves one of the two packings (B's
/// with a row split, A's with a column split: a pass over k·n or m·k values), but costs two
/// barriers per block and each task reads the half of every B block that the other thread
/// packed, from that core's L2. Intel Xeon (family 6 model 167), f32, 2 threads: two
/// processes running 2048 × 2048 × 1024 side by side reach 155–156 GFLOP/s each, the rate
/// of one alone, while the shared path ran 2048³ at 286–300. As parts, in process against
/// the shared path, 2 threads (11 pairs): 1024³ +3.7%, 2048³ +4.0%, 4096 × 3072 × 768
/// +3.9%; (7 pairs) 512³ +2.9%, 1536³ +0.2%, 1000 × 2000 × 1000 −0.9%; in a faster
/// stretch later (9 pairs) 1024³ +0.9%, 2048³ +0.8%.
/// A stored transposed (packed by strided reads) is left to the shared path: 2048 × 768 ×
/// 2048 lost 2% as parts.
pub(super) fn own_packing<K: MicroKernel>(l: &GemmLayout, threads: usize) -> bool {
    threads > 1 && K::KU == 1 && l.a_cs == 1 && l.m * l.n * l.k >= OWN_PACKING_MIN_MACS
}

/// `own_packing`'s smallest problem (512³).
pub(super) const OWN_PACKING_MIN_MACS: usize = 1 << 27;

/// Whether the parts of a problem with A read in place are better run as row tiles handed
/// out by a `Dispenser` (`rows_dispensed`) than as fixed sub-problems: when `partition` split
/// it along m and the whole problem is one block of columns and one of depth (so any thread
/// may run any row tile once its own copy of B is packed, in any order).
pub(super) fn dispensed_rows<K: MicroKernel>(l: &GemmLayout, parts: &[Task]) -> bool {
    parts.len() > 1
        && parts.iter().all(|p| p.n0 == 0 && p.n1 == l.n)
        && n_blocks::<K>(l.n, l.k).nth(1).is_none()
        && depth_blocks::<K>(l.k, l.n, true).nth(1).is_none()
}

/// Part `me` of a problem split along m (`dispensed_rows`; A read in place): packs its own
/// copy of B (or reads B in place) once it has a row tile to run, then runs the tiles the
/// dispenser hands it, its own share first. With equal cores this is the static row split;
/// when one core runs slower (a busy sibling hyperthread), the other takes over the end of
/// its share instead of waiting for it.
pub(super) fn rows_dispensed<K, CA, CB>(
    l: &GemmLayout,
    a: View<'_, CA::Src>,
    b: View<'_, CB::Src>,
    c: Dest,
    accumulate: bool,
    disp: &Dispenser,
    me: usize,
) where
    K: MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let (m, n, k) = (l.m, l.n, l.k);
    let Some(first) = disp.next(me) else {
        return;
    };
    let run = |bp: BPanels<'_, K::P>| {
        let mut tile = Some(first);
        while let Some(t) = tile {
            let rows = Task {
                m0: t * K::MR,
                m1: ((t + 1) * K::MR).min(m),
                n0: 0,
                n1: n,
            };
            block::<K, CA>(
                l,
                a,
                APanels::InPlace,
                bp,
                c,
                None,
                rows,
                0,
                0,
                k,
                accumulate,
            );
            tile = disp.next(me);
        }
    };
    if let Some(bp) = b_block_in_place::<K, CB>(b, true, m, 0, n, 0, k) {
        return run(bp);
    }
    let bt = b_columns_as_rows(b);
    with_scratch(
        &SCRATCH_B,
        packed_len(n, K::NR, k, K::KU),
        |bp: &mut [K::P]| {
            pack::<CB>(bt, K::NR, K::KU_B, K::KU, 0, n, 0, k, bp);
            run(BPanels::Packed(&*bp));
        },
    );
}

/// The column blocks to hand out by a dispenser, as tasks over every row, when `partition`
/// split a problem with A read in place (`in_place`) along n into parts and the columns
/// make at least two blocks of at most `nc_max` per part: blocks of one width (whole NR
/// panels, the last narrower), as many as a multiple of the parts, so that with the cores
/// alike each part runs its own half as the static split did, and a slower core's last
/// blocks go to the faster one. Each block is a sub-problem of its own (its B packed by the
/// part that runs it); the sums of each element are those of any other split. Intel EMR, 2
/// threads, in process against the static halves (three rounds): 2048 × 512 × 2048 +12%,
/// +5%, +8%; 4096 × 768 × 2304 +1.4%, +3.3%, −1.1%; 4096 × 768 × 3072 +1.3%, +0.1%, +0.6%;
/// 1536 × 768 × 3072 +1.1%, +0.7%; 1024 × 768 × 3072 0%.
pub(super) fn dispensed_columns<K: MicroKernel>(
    l: &GemmLayout,
    in_place: bool,
    parts: &[Task],
) -> Option<Vec<Task>> {
    let by_columns = parts.len() > 1 && parts.iter().all(|p| p.m0 == 0 && p.m1 == l.m);
    if !in_place || !by_columns {
        return None;
    }
    let units = l.n.div_ceil(nc_max::<K>(l.k)).next_multiple_of(parts.len());
    if units < 2 * parts.len() {
        return None;
    }
    let width = l.n.div_ceil(units).next_multiple_of(K::NR);
    Some(
        (0..l.n)
            .step_by(width)
            .map(|j0| Task {
                m0: 0,
                m1: l.m,
                n0: j0,
                n1: (j0 + width).min(l.n),
            })
            .collect(),
    )
}

/// `threads` balanced ranges of whole NR-column panels of an m × n C, each a sub-problem over
/// every row (at most one per panel).
pub(super) fn column_parts(m: usize, n: usize, nr: usize, threads: usize) -> Vec<Task> {
    let panels = n.div_ceil(nr);
    let parts = threads.min(panels).max(1);
    (0..parts)
        .map(|t| Task {
            m0: 0,
            m1: m,
            n0: (t * panels / parts) * nr,
            n1: ((t + 1) * panels / parts * nr).min(n),
        })
        .collect()
}

/// Row segments of C shorter than this many columns per thread make a column split costly.
pub(super) const SHARED_ROW_COLS: usize = 1024;

/// Splits an m × k · k × n problem (A read in place) into `threads` balanced ranges of whole
/// MR-row or NR-column panels.
///
/// - Along n, each part packs only its own columns of B, but every row of C is shared: with
///   short row segments (n/threads < 1024 columns) and a small k (C written after few FMAs)
///   the parts' stores contend for each other's lines (768×128×512 on 2 threads: 10–25%
///   slower than along m).
/// - Along m, each part packs all of B: k·n moves per part against (m/threads)·k·n FMAs,
///   costly when the parts have few rows (96×256×512: 15% slower than along n).
///
/// So rows when each part has at least k/2 of them and short row segments (measured on Zen 4,
/// 2 threads: the crossover lies between rows = k/4 and rows = 3k/4); otherwise columns when
/// there are enough for each part to sweep several B panels per A panel, else rows.
pub(super) fn partition(
    m: usize,
    k: usize,
    n: usize,
    mr: usize,
    nr: usize,
    threads: usize,
) -> Vec<Task> {
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    let rows_first = mp >= threads && n / threads < SHARED_ROW_COLS && 2 * (m / threads) >= k;
    let by_n = !rows_first && (np >= 8 * threads || mp < threads);
    let (panels, size) = if by_n { (np, nr) } else { (mp, mr) };
    let parts = threads.min(panels);
    (0..parts)
        .map(|t| {
            let (p0, p1) = (t * panels / parts, (t + 1) * panels / parts);
            let (lo, hi) = (p0 * size, (p1 * size).min(if by_n { n } else { m }));
            if by_n {
                Task {
                    m0: 0,
                    m1: m,
                    n0: lo,
                    n1: hi,
                }
            } else {
                Task {
                    m0: lo,
                    m1: hi,
                    n0: 0,
                    n1: n,
                }
            }
        })
        .collect()
}

/// A rectangle of one packed block handled by one task: rows [m0, m1) of C and packed B
/// columns [n0, n1) relative to the block (n0 a multiple of NR).
#[derive(Clone, Copy, Debug)]
pub(super) struct Task {
    pub(super) m0: usize,
    pub(super) m1: usize,
    pub(super) n0: usize,
    pub(super) n1: usize,
}

/// Splits an m × nc block into tasks for `threads` threads: whole MR panels of rows first
/// (each task packs its own A rows), then NR panels of columns when rows run short, and
/// columns alone when fewer than two row panels per thread would split unevenly.
pub(super) fn split(
    m: usize,
    nc: usize,
    mr: usize,
    nr: usize,
    mc: usize,
    threads: usize,
) -> Vec<Task> {
    if threads <= 1 {
        return vec![Task {
            m0: 0,
            m1: m,
            n0: 0,
            n1: nc,
        }];
    }
    let mp = m.div_ceil(mr);
    let np = nc.div_ceil(nr);
    let blocks = m.div_ceil(mc);
    // Fewer than two row panels per thread that do not split evenly (16 rows: 12 and 4; 36
    // rows: 3 panels): row tasks would be unequal, so columns instead. Intel EMR, 2 threads,
    // in process: 16 × 4096 × 4096 +54%, 20 × 4096 × 4096 +51%, 36 × 1024 × 4096 +72%.
    let uneven = !mp.is_multiple_of(threads) || !m.is_multiple_of(mr);
    let nm = if mp < 2 * threads && np >= threads && uneven {
        1
    } else if blocks >= threads {
        blocks.next_multiple_of(threads)
    } else {
        threads
    }
    .min(mp);
    let nn = if nm < threads {
        threads.div_ceil(nm).min(np)
    } else {
        1
    };
    // Balanced ranges of whole panels: task t gets panels [t·P/T, (t+1)·P/T).
    let mut tasks = Vec::with_capacity(nm * nn);
    for mi in 0..nm {
        let (pm0, pm1) = (mi * mp / nm, (mi + 1) * mp / nm);
        for ni in 0..nn {
            let (pn0, pn1) = (ni * np / nn, (ni + 1) * np / nn);
            tasks.push(Task {
                m0: pm0 * mr,
                m1: (pm1 * mr).min(m),
                n0: pn0 * nr,
                n1: (pn1 * nr).min(nc),
            });
        }
    }
    tasks
}

/// Runs `run` over the tasks of one block of an m × nc C in parallel: when they are all
/// rows of the block's full width, as row tiles handed out by a `Dispenser` (one share per
/// thread, in row order), so that a slower core's last tiles go to the faster one; else
/// task by task.
pub(super) fn for_tasks<K: MicroKernel>(
    tasks: &[Task],
    m: usize,
    nc: usize,
    threads: usize,
    run: impl Fn(&Task) + Sync + Send,
) {
    if !tasks.iter().all(|t| t.n0 == 0 && t.n1 == nc) {
        tasks.par_iter().for_each(run);
        return;
    }
    let parts = threads.min(tasks.len());
    let disp = Dispenser::new(m.div_ceil(K::MR), parts);
    (0..parts).into_par_iter().for_each(|me| {
        while let Some(t) = disp.next(me) {
            run(&Task {
                m0: t * K::MR,
                m1: ((t + 1) * K::MR).min(m),
                n0: 0,
                n1: nc,
            });
        }
    });
}
