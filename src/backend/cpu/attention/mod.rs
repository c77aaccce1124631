//! Scaled dot-product attention on (B, H, T, D) operands whose rows may lie anywhere in their
//! buffers (`layout.rs`: head views of a fused projection need no copy), forward and backward, in
//! the FlashAttention-2 form: tiles of BR queries against tiles of BC keys with an online
//! softmax, so nothing of size T² is materialised. For one head, with s the score row of
//! query i:
//!   s_ij = scale·⟨q_i, k_j⟩ + bias_ij      (bias: optional, broadcast view of (B, H, Tq, Tk))
//!   s_ij = f32::MIN where key j is masked (causal: j > i + Tk − Tq; key padding: keep[b, j] = false)
//!   p_i = softmax(s_i),   o_i = Σ_j p_ij v_j
//! A row whose keys are all masked gets uniform weights (as Hugging Face's additive finfo.min
//! mask); its scores are constants, so it passes gradient to v only.
//!
//! Forward (`forward.rs`), per (b, h, query tile), over the key tiles not wholly above the
//! causal diagonal: S = Q·(scale·K)ᵀ (+ bias, masks), m' = max(m, rowmax S), P = e^{S − m'},
//! l ← e^{m − m'}·l + rowsum P, O ← e^{m − m'}·O + P·V; finally o = O/l. It saves per row the
//! max m and 1/l (`AttnStats`, (B, H, Tq) each): the backward recomputes p_ij = e^{s_ij − m_i}/l_i
//! exactly as the forward did. (m and 1/l rather than FlashAttention's lse = m + ln l: in a
//! fully masked row m = f32::MIN, where m + ln l rounds back to m.)
//!
//! Backward (`backward.rs`), with δ_i = ⟨do_i, o_i⟩, per key tile over the query tiles that
//! see it: dv_j += Σ_i p_ij do_i;  dp_ij = ⟨do_i, v_j⟩;  ds_ij = p_ij·(dp_ij − δ_i) (0 where
//! masked);  dk_j += scale·Σ_i ds_ij q_i;  dq_i += scale·Σ_j ds_ij k_j;  dbias_ij = ds_ij.
//!
//! Dropout of the probabilities (training, `AttnDims::dropout`): o_i = Σ_j p_ij·z_ij·v_j with
//! z_ij = 1/(1 − p) where `dropout::keep(seed, (bh·Tq + i)·Tk + j, p)`, else 0: the mask
//! `Tensor::dropout_seeded` draws for the (B, H, Tq, Tk) probability tensor, regenerated in
//! the backward rather than stored. l_i stays the sum of the undropped e^{s − m}. Backward:
//! dv_j += Σ_i p_ij z_ij do_i;  dp_ij = z_ij·⟨do_i, v_j⟩;  δ_i = Σ_j p_ij dp_ij = ⟨do_i, o_i⟩
//! still, so ds_ij = p_ij·(dp_ij − δ_i) as without dropout (FlashAttention-2's rule).
//!
//! Memory: the forward allocates the output, the stats (2·B·H·Tq) and per task a few tiles
//! (O(BR·BC + (BR + BC)·(D + Dv)) floats); the backward its gradients, one dq partial per
//! (head, key-tile group) (see `backward.rs`) and per task O(BR·BC + BC·(D + Dv)) floats:
//! O(B·H·T·D) in all. Only a requested dbias is (B, H, Tq, Tk).
//!
//! The tile GEMMs (`avx512.rs`, `avx2.rs`, `scalar.rs`) and the row operations (`rows.rs`,
//! one body over `Simd`) are micro-kernels behind `kernels.rs`, for AVX-512, AVX2+FMA or
//! scalar code, chosen by `isa::active()` once per call.

use super::dropout;
use super::isa::Isa;

mod avx2;
mod avx2_loop;
mod avx512;
mod avx512_loop;
mod backward;
mod forward;
pub mod kernels;
mod layout;
mod rows;
mod scalar;
mod tiles;

pub use backward::attention_backward;
pub use forward::attention_forward;
pub use layout::{FreshRows, Heads, HeadsMut, RowLayout, Written};
pub use tiles::{BC, BR};

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
    /// Dropout of the probabilities, or none.
    pub dropout: Option<AttnDropout>,
}

/// Dropout of the attention probabilities with the counter-based mask of stream `seed` (see
/// the module doc): p_ij·z_ij, z_ij = 1/(1 − p) or 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnDropout {
    /// Drop probability, in [0, 1).
    pub p: f32,
    pub seed: u64,
}

impl AttnDropout {
    /// z of element `counter` of the (B, H, Tq, Tk) probabilities.
    fn weight(&self, counter: usize) -> f32 {
        if dropout::keep(self.seed, counter as u64, self.p) {
            1.0 / (1.0 - self.p)
        } else {
            0.0
        }
    }

    /// row_j ← row_j·z for the elements `counter ..` of the probabilities.
    fn apply(&self, isa: Isa, row: &mut [f32], counter: usize) {
        dropout::dropout_in_place_isa(isa, row, self.p, self.seed, counter as u64)
    }
}

impl AttnDims {
    /// Rows of all heads: B·H·Tq.
    pub fn rows(&self) -> usize {
        self.batch * self.heads * self.tq
    }

    /// (B, H, Tq): the rows of q, the output and its gradient.
    pub fn query_rows(&self) -> [usize; 3] {
        [self.batch, self.heads, self.tq]
    }

    /// (B, H, Tk): the rows of k and v.
    pub fn key_rows(&self) -> [usize; 3] {
        [self.batch, self.heads, self.tk]
    }

    /// Panics unless q, k, v hold (B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, Dv) rows.
    fn check_inputs(&self, q: Heads, k: Heads, v: Heads) {
        assert!(
            q.rows.fits(self.query_rows(), self.d, q.data.len())
                && k.rows.fits(self.key_rows(), self.d, k.data.len())
                && v.rows.fits(self.key_rows(), self.dv, v.data.len()),
            "attention: q, k or v shorter than its rows {:?} at {:?}, {:?}, {:?}",
            self,
            q.rows,
            k.rows,
            v.rows
        );
    }
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

/// Per-row softmax statistics the forward saves for the backward, each (B, H, Tq):
/// the row max m_i of the scores and 1/l_i, l_i = Σ_j e^{s_ij − m_i}.
#[derive(Clone, Debug, Default)]
pub struct AttnStats {
    pub row_max: Vec<f32>,
    pub inv_sum: Vec<f32>,
}

impl AttnStats {
    /// Stats for `rows` rows, to be filled by `attention_forward`.
    pub fn new(rows: usize) -> AttnStats {
        AttnStats {
            row_max: vec![0.0; rows],
            inv_sum: vec![0.0; rows],
        }
    }

    /// Panics unless both hold one value per row of `dims` (B·H·Tq).
    fn check_rows(&self, dims: &AttnDims) {
        assert!(
            self.row_max.len() == dims.rows() && self.inv_sum.len() == dims.rows(),
            "attention: stats of {} and {} rows, expected B·H·Tq = {}",
            self.row_max.len(),
            self.inv_sum.len(),
            dims.rows()
        );
    }
}
