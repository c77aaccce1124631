//! Tiled attention forward with an online softmax, parallel over batch × heads × query tiles.
//! Per task: the query tile's running max m, sum l and accumulator O (BR × Dv, padded to the
//! lane width), updated key tile by key tile (see the module doc of `attention`). The keys are
//! packed once per head, by the task that runs the head just before its query tiles, as
//! transposed, pre-scaled panels.

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::super::isa::{self, Isa};
use super::kernels::{self as kr, lanes};
use super::layout::{HeadMat, Heads, HeadsMut};
use super::tiles::{self, TilePos, BC, BR};
use super::{AttnDims, AttnStats, BiasView};

/// out (B, H, Tq, Dv) = softmax(scale·QKᵀ + bias, masked)·V, every row of `out` written;
/// `stats` (B·H·Tq rows each) get the per-row max and 1/sum the backward needs. q, k, v and
/// out may have any row layout (see `RowLayout`).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    dims: &AttnDims,
    q: Heads,
    k: Heads,
    v: Heads,
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: &HeadsMut,
    stats: &mut AttnStats,
) {
    let AttnDims {
        heads,
        tq,
        tk,
        d,
        scale,
        ..
    } = *dims;
    dims.check_inputs(q, k, v);
    assert!(
        out.shape() == (dims.query_rows(), dims.dv),
        "attention forward: output rows {:?}, expected (B, H, Tq) = {:?} of Dv = {}",
        out.shape(),
        dims.query_rows(),
        dims.dv
    );
    stats.check_rows(dims);
    let isa = isa::active();
    let direct = tq <= DIRECT_MAX_TQ;
    let nkt = tiles::count(tk, BC);
    let _region = crate::backend::cpu::threads::region();
    stats
        .row_max
        .par_chunks_mut(tq)
        .zip(stats.inv_sum.par_chunks_mut(tq))
        .enumerate()
        .for_each(|(bh, (mh, lh))| {
            let (b, h) = (bh / heads, bh % heads);
            let kh = k.head(b, h, tk, d);
            // The head's query tiles (in parallel when the heads alone do not fill the threads).
            let mut run = |keys: Keys| {
                mh.par_chunks_mut(BR)
                    .zip(lh.par_chunks_mut(BR))
                    .enumerate()
                    .for_each(|(qt, (m, l))| {
                        with_scratch(&SCORES, m.len() * BC, |s| {
                            query_tile(dims, isa, bh, qt, q, keys, v, bias, key_keep, out, m, l, s)
                        })
                    })
            };
            if direct {
                // A few queries (decoding) read K's rows in place.
                run(Keys::Rows(kh))
            } else {
                // scale·Kᵀ of this head as d × BC panels, one per key tile (⌈Tk/BC⌉·BC·d
                // floats), packed by the task that runs the head just before its query tiles
                // read them, so they are read from L2 rather than from a buffer of every
                // head's panels written beforehand. Every element is written here before it
                // is read.
                with_scratch(&KEY_PANELS, nkt * d * BC, |panels| {
                    for (t, panel) in panels.chunks_exact_mut(d * BC).enumerate() {
                        let (j0, cols) = tiles::span(t, BC, tk);
                        tiles::pack_transposed(kh, j0, cols, scale, panel);
                    }
                    run(Keys::Panels(panels))
                })
            }
        });
}

thread_local! {
    /// The key panels of the head this thread runs (kept for the next head and call: a
    /// fresh zeroed buffer per call cost a memset of the whole of K).
    static KEY_PANELS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// This thread's score tile (BR × BC), reused by every query tile it runs.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's `buf`, grown when short and otherwise holding
/// whatever the last user left (callers write every element before reading it); a fresh
/// buffer when `buf` is already in use on this thread (a rayon task that ran inside another).
fn with_scratch<R>(
    buf: &'static LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    buf.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Queries per call at most for which the scores are dot products with K's rows in place
/// (`Keys::Rows`): packing K's panels costs B·H·Tk·d per call, which a decoding step's one
/// query per sequence does not amortise (it was 6.6% of GPT-2 124M greedy decoding).
const DIRECT_MAX_TQ: usize = 4;

/// Where a query tile reads a head's keys from.
#[derive(Clone, Copy)]
enum Keys<'a> {
    /// The head's packed scale·Kᵀ panels, d × BC per key tile.
    Panels(&'a [f32]),
    /// The head's K rows as they lie.
    Rows(HeadMat<'a>),
}

/// One (head bh, query tile qt): writes its rows of out, row max and 1/sum. `s` is the score
/// tile (rows × BC), scratch whose every element is written before it is read.
#[allow(clippy::too_many_arguments)]
fn query_tile(
    dims: &AttnDims,
    isa: Isa,
    bh: usize,
    qt: usize,
    q: Heads,
    keys: Keys,
    v: Heads,
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: &HeadsMut,
    row_max: &mut [f32],
    inv_sum: &mut [f32],
    s: &mut [f32],
) {
    let AttnDims {
        heads,
        tq,
        tk,
        d,
        dv,
        scale,
        ..
    } = *dims;
    let w = lanes(isa);
    let dvp = dv.next_multiple_of(w);
    let (b, h) = (bh / heads, bh % heads);
    let (i0, rows) = tiles::span(qt, BR, tq);
    let qh = q.head(b, h, tq, d);
    let qrows = qh.rows(i0, rows);
    let vh = v.head(b, h, tk, dv);
    let mut o = vec![0.0f32; rows * dvp];
    let mut vpad = if dv == dvp {
        Vec::new()
    } else {
        vec![0.0f32; BC * dvp]
    };
    let (m, l) = (&mut row_max[..rows], &mut inv_sum[..rows]);
    m.fill(f32::MIN);
    l.fill(0.0);

    let kt_end = tiles::kt_end(dims, qt);
    for t in 0..kt_end {
        let (j0, cols) = tiles::span(t, BC, tk);
        // S = Q·(scale·K)ᵀ, then bias and masks.
        match keys {
            Keys::Panels(kt) => kr::gemm(
                isa,
                rows,
                BC,
                d,
                qrows,
                (qh.ld, 1),
                &kt[t * d * BC..][..d * BC],
                BC,
                s,
                BC,
                false,
            ),
            Keys::Rows(kh) => {
                for r in 0..rows {
                    let srow = &mut s[r * BC..][..cols];
                    kr::dot_rows(isa, qh.row(i0 + r), kh.rows(j0, cols), kh.ld, scale, srow);
                }
            }
        }
        let pos = TilePos {
            b,
            h,
            i0,
            rows,
            j0,
            cols,
        };
        tiles::finish_scores(dims, pos, bias, key_keep, s);
        // Online softmax: P = e^{S − m'}, l ← e^{m − m'}·l + Σ P, O ← e^{m − m'}·O (e^{m − m'}
        // flushed to 0 below −87 as the row kernels do: the first tile, where m = f32::MIN,
        // then skips libm's slow underflow path).
        kr::online_softmax_tile(isa, s, BC, m, l, &mut o, dvp);
        // P∘Z for the product with V (l keeps the undropped sum).
        if let Some(dr) = dims.dropout {
            for r in 0..rows {
                let srow = &mut s[r * BC..][..cols];
                dr.apply(isa, srow, (bh * tq + i0 + r) * tk + j0);
            }
        }
        // O += P·V over the tile's keys.
        let (vsrc, ldv) = if dv == dvp {
            (vh.rows(j0, cols), vh.ld)
        } else {
            for (jj, dst) in vpad.chunks_exact_mut(dvp).take(cols).enumerate() {
                dst[..dv].copy_from_slice(vh.row(j0 + jj));
            }
            (&vpad[..cols * dvp], dvp)
        };
        kr::gemm(
            isa,
            rows,
            dvp,
            cols,
            s,
            (BC, 1),
            vsrc,
            ldv,
            &mut o,
            dvp,
            true,
        );
    }

    // A row whose every score is f32::MIN (all its keys masked) weights the keys of the
    // skipped causal tiles, also at f32::MIN, by e^{MIN − MIN} = 1 like every other key.
    // (Dropped, with dropout: their z_ij as weights.)
    let skipped = kt_end * BC;
    for r in 0..rows {
        if m[r] == f32::MIN && skipped < tk {
            l[r] += (tk - skipped) as f32;
            let orow = &mut o[r * dvp..][..dv];
            let row0 = (bh * tq + i0 + r) * tk;
            for j in skipped..tk {
                let (vj, z) = (
                    vh.row(j),
                    dims.dropout.map_or(1.0, |dr| dr.weight(row0 + j)),
                );
                orow.iter_mut().zip(vj).for_each(|(x, &y)| *x += z * y);
            }
        }
    }

    // l becomes 1/l, the scale of each output row and the statistic the backward keeps.
    l.iter_mut().for_each(|x| *x = 1.0 / *x);
    out.write_rows(b, h, i0, rows, &o, dvp, dv, l);
}
