//! Scaled dot-product attention on contiguous (B, H, T, D) buffers, forward and backward,
//! parallel over batch × heads. For one head, with s the score row of query i:
//!   s_ij = scale·⟨q_i, k_j⟩ + bias_ij      (bias: optional, broadcast view of (B, H, Tq, Tk))
//!   s_ij = f32::MIN where key j is masked (causal: j > i + Tk − Tq; key padding: keep[b, j] = false)
//!   p_i = softmax(s_i),   o_i = Σ_j p_ij v_j
//! A row whose keys are all masked gets uniform weights (as Hugging Face's additive finfo.min mask);
//! its scores are constants, so it passes gradient to v only.
//! Backward (recomputing p row by row, so nothing of size T² is kept):
//!   dv_j += p_ij·do_i;  dp_ij = ⟨do_i, v_j⟩;  ds_ij = p_ij·(dp_ij − ⟨do_i, o_i⟩)
//!   dq_i = scale·Σ_j ds_ij k_j;  dk_j += scale·ds_ij q_i;  dbias_ij = ds_ij

use rayon::prelude::*;

use super::math::dot;

#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub batch: usize,
    pub heads: usize,
    pub tq: usize,
    pub tk: usize,
    /// Head dim of q and k.
    pub d: usize,
    /// Head dim of v (and of the output).
    pub dv: usize,
    pub scale: f32,
    pub causal: bool,
}

/// A read-only strided view of an additive bias broadcast to (B, H, Tq, Tk).
#[derive(Clone, Copy)]
pub struct BiasView<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub strides: [usize; 4],
}

impl BiasView<'_> {
    #[inline]
    fn at(&self, b: usize, h: usize, i: usize, j: usize) -> f32 {
        let s = self.strides;
        self.data[self.offset + b * s[0] + h * s[1] + i * s[2] + j * s[3]]
    }
}

/// Whether query i of batch entry b may attend to key j (causal and key-padding masks).
#[inline]
fn allowed(dims: &AttnDims, b: usize, i: usize, j: usize, key_keep: Option<&[bool]>) -> bool {
    (!dims.causal || j + dims.tq <= i + dims.tk) && key_keep.is_none_or(|kk| kk[b * dims.tk + j])
}

/// Probabilities of query row i of head (b, h) into `p` (length Tk).
#[allow(clippy::too_many_arguments)]
fn probs_row(
    dims: &AttnDims,
    b: usize,
    h: usize,
    i: usize,
    q: &[f32],
    k: &[f32],
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    p: &mut [f32],
) {
    let AttnDims { tk, d, .. } = *dims;
    let qi = &q[i * d..][..d];
    let mut m = f32::MIN;
    for j in 0..tk {
        p[j] = if allowed(dims, b, i, j, key_keep) {
            let kj = &k[j * d..][..d];
            dims.scale * dot(qi, kj) + bias.map_or(0.0, |bv| bv.at(b, h, i, j))
        } else {
            f32::MIN
        };
        m = m.max(p[j]);
    }
    let mut s = 0.0f32;
    for pj in p.iter_mut() {
        *pj = (*pj - m).exp();
        s += *pj;
    }
    let inv = 1.0 / s;
    p.iter_mut().for_each(|pj| *pj *= inv);
}

/// out (B, H, Tq, Dv) = softmax(scale·QKᵀ + bias, masked) · V.
pub fn attention_forward(
    dims: &AttnDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: &mut [f32],
) {
    let AttnDims {
        heads,
        tq,
        tk,
        d,
        dv,
        ..
    } = *dims;
    out.par_chunks_mut(tq * dv)
        .enumerate()
        .for_each(|(bh, out)| {
            let (b, h) = (bh / heads, bh % heads);
            let q = &q[bh * tq * d..][..tq * d];
            let k = &k[bh * tk * d..][..tk * d];
            let v = &v[bh * tk * dv..][..tk * dv];
            let mut p = vec![0.0f32; tk];
            for i in 0..tq {
                probs_row(dims, b, h, i, q, k, bias, key_keep, &mut p);
                let oi = &mut out[i * dv..][..dv];
                oi.iter_mut().for_each(|o| *o = 0.0);
                for j in 0..tk {
                    let pj = p[j];
                    if pj != 0.0 {
                        oi.iter_mut()
                            .zip(&v[j * dv..][..dv])
                            .for_each(|(o, &vv)| *o += pj * vv);
                    }
                }
            }
        });
}

/// Gradients of the attention. `dq`, `dk`, `dv` are overwritten; `dbias` (full (B, H, Tq, Tk)),
/// when given, is overwritten with ds.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dims: &AttnDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<BiasView>,
    key_keep: Option<&[bool]>,
    out: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dvv: &mut [f32],
    dbias: Option<&mut [f32]>,
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
    let per_head = |bh: usize,
                    dq: &mut [f32],
                    dk: &mut [f32],
                    dvh: &mut [f32],
                    mut dbias: Option<&mut [f32]>| {
        let (b, h) = (bh / heads, bh % heads);
        let q = &q[bh * tq * d..][..tq * d];
        let k = &k[bh * tk * d..][..tk * d];
        let v = &v[bh * tk * dv..][..tk * dv];
        let o = &out[bh * tq * dv..][..tq * dv];
        let dout = &dout[bh * tq * dv..][..tq * dv];
        dq.iter_mut().for_each(|x| *x = 0.0);
        dk.iter_mut().for_each(|x| *x = 0.0);
        dvh.iter_mut().for_each(|x| *x = 0.0);
        let mut p = vec![0.0f32; tk];
        for i in 0..tq {
            probs_row(dims, b, h, i, q, k, bias, key_keep, &mut p);
            let doi = &dout[i * dv..][..dv];
            let oi = &o[i * dv..][..dv];
            let delta = dot(doi, oi);
            let qi = &q[i * d..][..d];
            for j in 0..tk {
                let pj = p[j];
                let vj = &v[j * dv..][..dv];
                // dv_j += p_ij · do_i
                dvh[j * dv..][..dv]
                    .iter_mut()
                    .zip(doi)
                    .for_each(|(x, &g)| *x += pj * g);
                let dp = dot(doi, vj);
                // A masked score is the constant f32::MIN: no gradient flows to q, k or the bias
                // (this matters in a fully masked row, where p is uniform, not 0).
                let ds = if allowed(dims, b, i, j, key_keep) {
                    pj * (dp - delta)
                } else {
                    0.0
                };
                if let Some(db) = dbias.as_deref_mut() {
                    db[i * tk + j] = ds;
                }
                if ds != 0.0 {
                    let kj = &k[j * d..][..d];
                    dq[i * d..][..d]
                        .iter_mut()
                        .zip(kj)
                        .for_each(|(x, &kk)| *x += scale * ds * kk);
                    dk[j * d..][..d]
                        .iter_mut()
                        .zip(qi)
                        .for_each(|(x, &qq)| *x += scale * ds * qq);
                }
            }
        }
    };
    let heads_iter = dq
        .par_chunks_mut(tq * d)
        .zip(dk.par_chunks_mut(tk * d))
        .zip(dvv.par_chunks_mut(tk * dv))
        .enumerate();
    match dbias {
        Some(db) => heads_iter
            .zip(db.par_chunks_mut(tq * tk))
            .for_each(|((bh, ((dq, dk), dvh)), db)| per_head(bh, dq, dk, dvh, Some(db))),
        None => heads_iter.for_each(|(bh, ((dq, dk), dvh))| per_head(bh, dq, dk, dvh, None)),
    }
}
