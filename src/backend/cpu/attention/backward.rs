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
use super::tiles::{self, TilePos, BC, BR};
use super::{AttnDims, AttnStats, BiasView};

/// A buffer that parallel tasks write in disjoint ranges.
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks only take disjoint ranges (see `Shared::range`), so sharing the pointer across
// threads creates no aliasing mutable access.
unsafe impl Sync for Shared {}

impl Shared {
    fn new(buf: &mut [f32]) -> Shared {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// The range [off, off + len) as a mutable slice.
    ///
    /// # Safety
    /// No other live slice from this buffer overlaps the range.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, off: usize, len: usize) -> &mut [f32] {
        assert!(
            off + len <= self.len,
            "attention backward: range out of bounds"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(off), len)
    }
}

/// Gradients of the attention from the forward's output `out` and `stats`. `dq`, `dk`, `dv`
/// are overwritten; `dbias` (full (B, H, Tq, Tk)), when given, is overwritten with ds.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dims: &AttnDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: &[f32],
    stats: &AttnStats,
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dvv: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    let AttnDims {
        batch,
        heads,
        tq,
        tk,
        d,
        scale,
        ..
    } = *dims;
    let isa = isa::active();
    let dp = d.next_multiple_of(lanes(isa));
    let bh_count = batch * heads;
    let nkt = tiles::count(tk, BC);
    let groups = (2 * rayon::current_num_threads())
        .div_ceil(bh_count)
        .clamp(1, nkt);
    let mut partial = vec![0.0f32; bh_count * groups * tq * dp];
    let dbias = dbias.map(|db| {
        db.fill(0.0);
        Shared::new(db)
    });
    {
        let (dk_sh, dv_sh) = (Shared::new(dk), Shared::new(dvv));
        let task = |(bh, g, dq_part): (usize, usize, &mut [f32])| {
            let ctx = HeadCtx::new(dims, isa, bh, q, k, v, out, stats, dout);
            for t in (g..nkt).step_by(groups) {
                key_tile(
                    &ctx,
                    t,
                    bias,
                    key_keep,
                    dq_part,
                    &dk_sh,
                    &dv_sh,
                    dbias.as_ref(),
                );
            }
        };
        partial
            .par_chunks_mut(tq * dp)
            .enumerate()
            .map(|(i, p)| (i / groups, i % groups, p))
            .for_each(task);
    }
    // dq_i = scale·Σ_groups partial_i.
    dq.par_chunks_mut(tq * d)
        .zip(partial.par_chunks(groups * tq * dp))
        .for_each(|(dqh, parts)| {
            for (i, row) in dqh.chunks_exact_mut(d).enumerate() {
                for (c, x) in row.iter_mut().enumerate() {
                    *x = scale
                        * (0..groups)
                            .map(|g| parts[(g * tq + i) * dp + c])
                            .sum::<f32>();
                }
            }
        });
}

/// The per-head operands of one task: slices of the head, q, k and dO padded to the lane
/// width where the GEMMs read them as B, δ_i = ⟨do_i, o_i⟩, and which query tiles hold a fully
/// masked row (those see every key tile, causal or not).
struct HeadCtx<'a> {
    dims: AttnDims,
    isa: Isa,
    bh: usize,
    /// Padded head dims.
    dp: usize,
    dvp: usize,
    /// (Tq × d), (Tk × d), (Tk × dv), (Tq × dv) slices of the head.
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    dout: &'a [f32],
    /// q (Tq × dp), k (Tk × dp), dO (Tq × dvp).
    qp: Cow<'a, [f32]>,
    kp: Cow<'a, [f32]>,
    dop: Cow<'a, [f32]>,
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
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        out: &'a [f32],
        stats: &'a AttnStats,
        dout: &'a [f32],
    ) -> HeadCtx<'a> {
        let AttnDims { tq, tk, d, dv, .. } = *dims;
        let w = lanes(isa);
        let (dp, dvp) = (d.next_multiple_of(w), dv.next_multiple_of(w));
        let q = &q[bh * tq * d..][..tq * d];
        let k = &k[bh * tk * d..][..tk * d];
        let v = &v[bh * tk * dv..][..tk * dv];
        let o = &out[bh * tq * dv..][..tq * dv];
        let dout = &dout[bh * tq * dv..][..tq * dv];
        let row_max = &stats.row_max[bh * tq..][..tq];
        let delta = dout
            .chunks_exact(dv)
            .zip(o.chunks_exact(dv))
            .map(|(g, y)| dot(g, y))
            .collect();
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
            qp: tiles::padded_rows(q, tq, d, dp),
            kp: tiles::padded_rows(k, tk, d, dp),
            dop: tiles::padded_rows(dout, tq, dv, dvp),
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
    dk_out: &Shared,
    dv_out: &Shared,
    dbias: Option<&Shared>,
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
    tiles::pack_transposed(c.k, d, j0, cols, scale, &mut kt);
    tiles::pack_transposed(c.v, dv, j0, cols, 1.0, &mut vt);
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
        let qrows = &c.q[i0 * d..][..rows * d];
        kr::gemm(isa, rows, BC, d, qrows, (d, 1), &kt, BC, s, BC, false);
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
        let dorows = &c.dop[i0 * dvp..][..rows * dvp];
        kr::gemm(
            isa,
            cols,
            dvp,
            rows,
            pdrop,
            (1, BC),
            dorows,
            dvp,
            &mut dv_acc,
            dvp,
            true,
        );
        // dP = Z∘(dO·Vᵀ);  dS = P∘(dP − δ), 0 where masked.
        let dorows_raw = &c.dout[i0 * dv..][..rows * dv];
        kr::gemm(
            isa,
            rows,
            BC,
            dv,
            dorows_raw,
            (dv, 1),
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
                // SAFETY: this task is the only one working on key tile t of head bh, so the
                // columns [j0, j0 + cols) of its rows are written by no other task.
                let dst = unsafe { db.range((c.bh * tq + i0 + r) * tk + j0, cols) };
                dst.copy_from_slice(&s[r * BC..][..cols]);
            }
        }
        // dK += dSᵀ·Q (scale applied on output);  dQ += dS·K (scale applied in the reduction).
        let qprows = &c.qp[i0 * dp..][..rows * dp];
        kr::gemm(
            isa,
            cols,
            dp,
            rows,
            s,
            (1, BC),
            qprows,
            dp,
            &mut dk_acc,
            dp,
            true,
        );
        let kprows = &c.kp[j0 * dp..][..cols * dp];
        let dqrows = &mut dq_part[i0 * dp..][..rows * dp];
        kr::gemm(
            isa,
            rows,
            dp,
            cols,
            s,
            (BC, 1),
            kprows,
            dp,
            dqrows,
            dp,
            true,
        );
    }

    // SAFETY: rows [j0, j0 + cols) of head bh's dK and dV belong to this task's key tile only.
    let (dk_rows, dv_rows) = unsafe {
        (
            dk_out.range((c.bh * tk + j0) * d, cols * d),
            dv_out.range((c.bh * tk + j0) * dv, cols * dv),
        )
    };
    for (dst, src) in dk_rows.chunks_exact_mut(d).zip(dk_acc.chunks_exact(dp)) {
        dst.iter_mut().zip(src).for_each(|(x, &y)| *x = scale * y);
    }
    for (dst, src) in dv_rows.chunks_exact_mut(dv).zip(dv_acc.chunks_exact(dvp)) {
        dst.copy_from_slice(&src[..dv]);
    }
}
