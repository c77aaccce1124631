//! Tiled attention backward (FlashAttention-2 order), parallel over (head, key-tile group).
//!
//! Each task owns whole key tiles of one head, so dK and dV rows are private to it: for each
//! of its key tiles it walks the query tiles that see the tile, recomputes P from the saved
//! row stats and accumulates dV, dK in tile buffers and dQ in the task's own dq partial
//! (Tq × D). The key tiles of a head are dealt round-robin to G groups (G = 1 when there are
//! at least twice as many heads as threads, as for every benchmark shape; otherwise up to
//! ⌈2·threads / (B·H)⌉ so both cores have work); the partials of a head are summed into dq at
//! the end. Memory of the partials: B·H·G·Tq·D ≤ (B·H + 2·threads)·Tq·D floats.

use std::borrow::Cow;

use rayon::prelude::*;

use super::super::isa::{self, Isa};
use super::super::math::dot;
use super::kernels::{self as kr, lanes};
use super::layout::{HeadMat, Heads, HeadsMut};
use super::tiles::{self, TilePos, BC, BR};
use super::{AttnDims, AttnStats, BiasView};

/// Gradients of the attention from the forward's output `out` and `stats`. Every row of
/// `dq`, `dk`, `dv` is written once; `dbias` (full (B, H, Tq, Tk), contiguous), when given, is
/// overwritten with ds. The operands may have any row layout (see `RowLayout`).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dims: &AttnDims,
    q: Heads,
    k: Heads,
    v: Heads,
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: Heads,
    stats: &AttnStats,
    dout: Heads,
    dq: &HeadsMut,
    dk: &HeadsMut,
    dvv: &HeadsMut,
    dbias: Option<&mut [f32]>,
) {
    let AttnDims {
        batch,
        heads,
        tq,
        tk,
        d,
        dv,
        scale,
        ..
    } = *dims;
    dims.check_inputs(q, k, v);
    let qrows = dims.query_rows();
    assert!(
        out.rows.fits(qrows, dv, out.data.len()) && dout.rows.fits(qrows, dv, dout.data.len()),
        "attention backward: out or dout shorter than their rows (B, H, Tq) = {qrows:?} of {dv}"
    );
    stats.check_rows(dims);
    assert!(
        dq.shape() == ([batch, heads, tq], d)
            && dk.shape() == ([batch, heads, tk], d)
            && dvv.shape() == ([batch, heads, tk], dv),
        "attention backward: gradient outputs {:?}, {:?}, {:?} do not match q, k, v",
        dq.shape(),
        dk.shape(),
        dvv.shape()
    );
    let isa = isa::active();
    let dp = d.next_multiple_of(lanes(isa));
    let bh_count = batch * heads;
    let nkt = tiles::count(tk, BC);
    let _region = crate::backend::cpu::threads::region();
    let groups = (2 * rayon::current_num_threads())
        .div_ceil(bh_count)
        .clamp(1, nkt);
    let mut partial = vec![0.0f32; bh_count * groups * tq * dp];
    let dbias = dbias.map(|db| {
        db.fill(0.0);
        HeadsMut::contiguous(db, [batch, heads, tq], tk).segments(BC)
    });
    let task = |(bh, g, dq_part): (usize, usize, &mut [f32])| {
        let ctx = HeadCtx::new(dims, isa, bh, q, k, v, out, stats, dout);
        for t in (g..nkt).step_by(groups) {
            key_tile(&ctx, t, bias, key_keep, dq_part, dk, dvv, dbias.as_ref());
        }
    };
    partial
        .par_chunks_mut(tq * dp)
        .enumerate()
        .map(|(i, p)| (i / groups, i % groups, p))
        .for_each(task);
    // dq_i = scale·Σ_groups partial_i (summed into group 0's rows, groups in order).
    partial
        .par_chunks_mut(groups * tq * dp)
        .enumerate()
        .for_each(|(bh, parts)| {
            let (first, rest) = parts.split_at_mut(tq * dp);
            for later in rest.chunks_exact(tq * dp) {
                first.iter_mut().zip(later).for_each(|(a, &x)| *a += x);
            }
            dq.write_rows(
                bh / heads,
                bh % heads,
                0,
                tq,
                first,
                dp,
                d,
                &vec![scale; tq],
            );
        });
}

/// The per-head operands of one task: the head's matrices, q, k and dO padded to the lane
/// width where the GEMMs read them as B, δ_i = ⟨do_i, o_i⟩, and which query tiles hold a fully
/// masked row (those see every key tile, causal or not).
struct HeadCtx<'a> {
    dims: AttnDims,
    isa: Isa,
    bh: usize,
    /// Padded head dims.
    dp: usize,
    dvp: usize,
    /// (Tq × d), (Tk × d), (Tk × dv), (Tq × dv) matrices of the head.
    q: HeadMat<'a>,
    k: HeadMat<'a>,
    v: HeadMat<'a>,
    dout: HeadMat<'a>,
    /// q (Tq × dp), k (Tk × dp), dO (Tq × dvp), each with its row stride.
    qp: (Cow<'a, [f32]>, usize),
    kp: (Cow<'a, [f32]>, usize),
    dop: (Cow<'a, [f32]>, usize),
    row_max: &'a [f32],
    inv_sum: &'a [f32],
    delta: Vec<f32>,
    degenerate: Vec<bool>,
}

impl<'a> HeadCtx<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        dims: &AttnDims,
        isa: Isa,
        bh: usize,
        q: Heads<'a>,
        k: Heads<'a>,
        v: Heads<'a>,
        out: Heads<'a>,
        stats: &'a AttnStats,
        dout: Heads<'a>,
    ) -> HeadCtx<'a> {
        let AttnDims { tq, tk, d, dv, .. } = *dims;
        let w = lanes(isa);
        let (dp, dvp) = (d.next_multiple_of(w), dv.next_multiple_of(w));
        let (b, h) = (bh / dims.heads, bh % dims.heads);
        let q = q.head(b, h, tq, d);
        let k = k.head(b, h, tk, d);
        let v = v.head(b, h, tk, dv);
        let o = out.head(b, h, tq, dv);
        let dout = dout.head(b, h, tq, dv);
        let row_max = &stats.row_max[bh * tq..][..tq];
        let delta = (0..tq).map(|i| dot(dout.row(i), o.row(i))).collect();
        let degenerate = row_max.chunks(BR).map(|m| m.contains(&f32::MIN)).collect();
        HeadCtx {
            dims: *dims,
            isa,
            bh,
            dp,
            dvp,
            q,
            k,
            v,
            dout,
            qp: tiles::padded_rows(q, tq, dp),
            kp: tiles::padded_rows(k, tk, dp),
            dop: tiles::padded_rows(dout, tq, dvp),
            row_max,
            inv_sum: &stats.inv_sum[bh * tq..][..tq],
            delta,
            degenerate,
        }
    }
}

/// Key tile t of the head: accumulates dK, dV of its keys over the query tiles that see it
/// (writing them out), dq_part (Tq × dp, unscaled) and its columns of dbias.
#[allow(clippy::too_many_arguments)]
fn key_tile(
    c: &HeadCtx,
    t: usize,
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    dq_part: &mut [f32],
    dk_out: &HeadsMut,
    dv_out: &HeadsMut,
    dbias: Option<&HeadsMut>,
) {
    let AttnDims {
        heads,
        tq,
        tk,
        d,
        dv,
        scale,
        ..
    } = c.dims;
    let (isa, dp, dvp) = (c.isa, c.dp, c.dvp);
    let (b, h) = (c.bh / heads, c.bh % heads);
    let (j0, cols) = tiles::span(t, BC, tk);

    let mut kt = vec![0.0f32; d * BC];
    let mut vt = vec![0.0f32; dv * BC];
    tiles::pack_transposed(c.k, j0, cols, scale, &mut kt);
    tiles::pack_transposed(c.v, j0, cols, 1.0, &mut vt);
    let mut s = vec![0.0f32; BR * BC];
    let mut dpt = vec![0.0f32; BR * BC];
    // With dropout: the tile's mask Z (its weights 1/(1 − p) or 0; 0 past the tile's keys)
    // and P∘Z.
    let (mut z, mut pz) = match c.dims.dropout {
        Some(_) => (vec![0.0f32; BR * BC], vec![0.0f32; BR * BC]),
        None => (Vec::new(), Vec::new()),
    };
    let mut dk_acc = vec![0.0f32; cols * dp];
    let mut dv_acc = vec![0.0f32; cols * dvp];

    for qt in 0..tiles::count(tq, BR) {
        if t >= tiles::kt_end(&c.dims, qt) && !c.degenerate[qt] {
            continue;
        }
        let (i0, rows) = tiles::span(qt, BR, tq);
        let pos = TilePos {
            b,
            h,
            i0,
            rows,
            j0,
            cols,
        };
        let (s, dpt) = (&mut s[..rows * BC], &mut dpt[..rows * BC]);
        // P = e^{S − m}/l, S recomputed as in the forward.
        let qrows = c.q.rows(i0, rows);
        kr::gemm(isa, rows, BC, d, qrows, (c.q.ld, 1), &kt, BC, s, BC, false);
        tiles::finish_scores(&c.dims, pos, bias, key_keep, s);
        for r in 0..rows {
            let (m, il) = (c.row_max[i0 + r], c.inv_sum[i0 + r]);
            kr::exp_sub_mul(isa, &mut s[r * BC..][..BC], m, il);
        }
        // dV += (P∘Z)ᵀ·dO. (Z is hashed once per tile, for this product and dP's.)
        let z = &mut z[..];
        let pdrop: &[f32] = match c.dims.dropout {
            None => s,
            Some(dr) => {
                for (r, zr) in z.chunks_exact_mut(BC).take(rows).enumerate() {
                    zr[..cols].fill(1.0);
                    dr.apply(isa, &mut zr[..cols], (c.bh * tq + i0 + r) * tk + j0);
                }
                let pz = &mut pz[..rows * BC];
                pz.iter_mut()
                    .zip(s.iter().zip(&*z))
                    .for_each(|(o, (p, z))| *o = p * z);
                pz
            }
        };
        let (dop, lddo) = (&c.dop.0[i0 * c.dop.1..], c.dop.1);
        kr::gemm(
            isa,
            cols,
            dvp,
            rows,
            pdrop,
            (1, BC),
            dop,
            lddo,
            &mut dv_acc,
            dvp,
            true,
        );
        // dP = Z∘(dO·Vᵀ);  dS = P∘(dP − δ), 0 where masked.
        kr::gemm(
            isa,
            rows,
            BC,
            dv,
            c.dout.rows(i0, rows),
            (c.dout.ld, 1),
            &vt,
            BC,
            dpt,
            BC,
            false,
        );
        if c.dims.dropout.is_some() {
            dpt.iter_mut().zip(&*z).for_each(|(d, z)| *d *= z);
        }
        for r in 0..rows {
            let row = r * BC..(r + 1) * BC;
            kr::dsoftmax(isa, &mut s[row.clone()], &dpt[row], c.delta[i0 + r]);
        }
        tiles::fill_masked(&c.dims, pos, key_keep, s, 0.0);
        if let Some(db) = dbias {
            for r in 0..rows {
                db.write(b, h, i0 + r, j0, &s[r * BC..][..cols], 1.0);
            }
        }
        // dK += dSᵀ·Q (scale applied on output);  dQ += dS·K (scale applied in the reduction).
        let (qp, ldq) = (&c.qp.0[i0 * c.qp.1..], c.qp.1);
        kr::gemm(
            isa,
            cols,
            dp,
            rows,
            s,
            (1, BC),
            qp,
            ldq,
            &mut dk_acc,
            dp,
            true,
        );
        let (kp, ldk) = (&c.kp.0[j0 * c.kp.1..], c.kp.1);
        let dqrows = &mut dq_part[i0 * dp..][..rows * dp];
        kr::gemm(isa, rows, dp, cols, s, (BC, 1), kp, ldk, dqrows, dp, true);
    }

    let rows = dk_acc.len() / dp;
    dk_out.write_rows(b, h, j0, rows, &dk_acc, dp, d, &[scale; BC][..rows]);
    dv_out.write_rows(b, h, j0, rows, &dv_acc, dvp, dv, &[1.0; BC][..rows]);
}
