//! Flash attention launchers (forward, backward; f32 or bf16 q/k/v), their shape description and the kernel parameter struct.

use super::{cdiv, need, spaces, to_i32, writable, Ops};
use crate::backend::cuda::launch::{Arg, DSlice, Elem, KernelCall, KernelStruct};
use crate::error::{Error, Result};

/// Attention parameters (`AttnParams` in kernels/attention.cu); pointers are buffer addresses
/// (0 for an absent optional input).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AttnParams {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    pub lse: u64,
    pub bias: u64,
    pub key_mask: u64,
    pub dout: u64,
    pub delta: u64,
    pub dq: u64,
    pub dk: u64,
    pub dv: u64,
    pub dbias: u64,
    pub q_sb: i64,
    pub q_sh: i64,
    pub q_st: i64,
    pub k_sb: i64,
    pub k_sh: i64,
    pub k_st: i64,
    pub v_sb: i64,
    pub v_sh: i64,
    pub v_st: i64,
    pub o_sb: i64,
    pub o_sh: i64,
    pub o_st: i64,
    pub bias_sb: i64,
    pub bias_sh: i64,
    pub bias_sq: i64,
    pub b: i32,
    pub h: i32,
    pub tq: i32,
    pub tk: i32,
    pub d: i32,
    pub causal: i32,
    pub scale: f32,
    pub drop_p: f32,
    pub drop_seed: u64,
}

// SAFETY: repr(C), 13 u64 + 15 i64 + 8 four-byte fields + 1 u64 = 264 bytes with no padding
// (the last u64 at offset 256); matches `struct AttnParams`.
unsafe impl KernelStruct for AttnParams {}

/// Shape and strides of one attention call. Strides are (batch, head, time) in elements; the
/// head dimension is contiguous. `bias_strides` address the optional additive bias
/// `[B, H, Tq, Tk]` (0 broadcasts, key stride 1).
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    pub b: usize,
    pub h: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub causal: bool,
    pub scale: f32,
    /// Dropout of the probabilities: (p, seed), p = 0 for none (see kernels/attention.cu).
    pub dropout: (f32, u64),
    pub q_strides: [usize; 3],
    pub k_strides: [usize; 3],
    pub v_strides: [usize; 3],
    pub o_strides: [usize; 3],
    pub bias_strides: [usize; 3],
}

impl Attn {
    /// Contiguous `[B, H, T, D]` q, k, v, o with scale 1/sqrt(D).
    pub fn contiguous(b: usize, h: usize, tq: usize, tk: usize, d: usize, causal: bool) -> Attn {
        Attn {
            b,
            h,
            tq,
            tk,
            d,
            causal,
            scale: 1.0 / (d as f32).sqrt(),
            dropout: (0.0, 0),
            q_strides: [h * tq * d, tq * d, d],
            k_strides: [h * tk * d, tk * d, d],
            v_strides: [h * tk * d, tk * d, d],
            o_strides: [h * tq * d, tq * d, d],
            bias_strides: [h * tq * tk, tq * tk, tk],
        }
    }

    fn extent(&self, s: [usize; 3], t: usize) -> usize {
        (self.b - 1) * s[0] + (self.h - 1) * s[1] + (t - 1) * s[2] + self.d
    }

    fn params(&self) -> AttnParams {
        let i = |v: usize| v as i64;
        AttnParams {
            q_sb: i(self.q_strides[0]),
            q_sh: i(self.q_strides[1]),
            q_st: i(self.q_strides[2]),
            k_sb: i(self.k_strides[0]),
            k_sh: i(self.k_strides[1]),
            k_st: i(self.k_strides[2]),
            v_sb: i(self.v_strides[0]),
            v_sh: i(self.v_strides[1]),
            v_st: i(self.v_strides[2]),
            o_sb: i(self.o_strides[0]),
            o_sh: i(self.o_strides[1]),
            o_st: i(self.o_strides[2]),
            bias_sb: i(self.bias_strides[0]),
            bias_sh: i(self.bias_strides[1]),
            bias_sq: i(self.bias_strides[2]),
            b: self.b as i32,
            h: self.h as i32,
            tq: self.tq as i32,
            tk: self.tk as i32,
            d: self.d as i32,
            causal: self.causal as i32,
            scale: self.scale,
            drop_p: self.dropout.0,
            drop_seed: self.dropout.1,
            ..Default::default()
        }
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let dims = [self.b, self.h, self.tq, self.tk, self.d];
        if dims.contains(&0) || self.d > 128 {
            return Err(Error::shape(
                op,
                &[&dims],
                "need B, H, Tq, Tk >= 1 and 1 <= D <= 128",
            ));
        }
        if self.causal && self.tq != self.tk {
            return Err(Error::shape(
                op,
                &[&[self.tq], &[self.tk]],
                "causal attention needs Tq == Tk",
            ));
        }
        to_i32(
            op,
            "B*H*T*D",
            self.b * self.h * self.tq.max(self.tk) * self.d,
        )?;
        Ok(())
    }
}

/// Dynamic shared memory of the attention kernels, in bytes.
pub fn attn_fwd_smem(d: usize) -> u32 {
    ((16 * d + 32 * (d + 1) + 32 * d) * 4) as u32
}

pub fn attn_bwd_smem(d: usize) -> u32 {
    ((4 * 32 * (d + 1) + 2 * d) * 4) as u32
}

impl Ops<'_> {
    /// Flash attention forward: writes o and lse (`[B, H, Tq]`). `bias` (additive, addressed by
    /// `a.bias_strides`) and `key_mask` (`[B, Tk]`, 1 = attend) may be null. q, k, v are f32,
    /// or bf16 (`u16`, mixed precision: read as bf16, computed and written in f32).
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: Elem>(
        &self,
        a: &Attn,
        q: &DSlice<T>,
        k: &DSlice<T>,
        v: &DSlice<T>,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
        o: &DSlice<f32>,
        lse: &DSlice<f32>,
    ) -> Result<()> {
        let name = attn_kernel::<T>("attn_fwd_f32", "attn_fwd_bf16")?;
        a.check(name)?;
        writable(name, &[("o", o.writable), ("lse", lse.writable)])?;
        need(name, "q", q, a.extent(a.q_strides, a.tq))?;
        need(name, "k", k, a.extent(a.k_strides, a.tk))?;
        need(name, "v", v, a.extent(a.v_strides, a.tk))?;
        need(name, "o", o, a.extent(a.o_strides, a.tq))?;
        need(name, "lse", lse, a.b * a.h * a.tq)?;
        self.check_bias_mask(name, a, bias, key_mask)?;
        let mut p = a.params();
        (p.q, p.k, p.v, p.o, p.lse, p.bias, p.key_mask) =
            (q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, bias.ptr, key_mask.ptr);
        let mut call = KernelCall::new(
            name,
            (cdiv(a.tq, 16), (a.b * a.h) as u32, 1),
            (128, 1, 1),
            attn_fwd_smem(a.d),
        )
        .arg(Arg::by_value(&p));
        call.spaces = spaces(
            &[q.space, k.space, v.space, o.space, lse.space],
            &[(bias.ptr, bias.space), (key_mask.ptr, key_mask.space)],
        );
        self.run(call)
    }

    /// Flash attention backward: needs o and lse from the forward and dout (o's strides);
    /// `delta` is `[B, H, Tq]` scratch. Writes dk, dv (contiguous `[B, H, Tk, D]`), overwrites
    /// dq (contiguous `[B, H, Tq, D]`) and accumulates into dbias if given.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_bwd<T: Elem>(
        &self,
        a: &Attn,
        q: &DSlice<T>,
        k: &DSlice<T>,
        v: &DSlice<T>,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
        o: &DSlice<f32>,
        lse: &DSlice<f32>,
        dout: &DSlice<f32>,
        delta: &DSlice<f32>,
        dq: &DSlice<f32>,
        dk: &DSlice<f32>,
        dv: &DSlice<f32>,
        dbias: &DSlice<f32>,
    ) -> Result<()> {
        let name = attn_kernel::<T>("attn_bwd_f32", "attn_bwd_bf16")?;
        a.check(name)?;
        let dbias_w = dbias.writable || dbias.is_null();
        writable(
            name,
            &[
                ("delta", delta.writable),
                ("dq", dq.writable),
                ("dk", dk.writable),
                ("dv", dv.writable),
                ("dbias", dbias_w),
            ],
        )?;
        need(name, "q", q, a.extent(a.q_strides, a.tq))?;
        need(name, "k", k, a.extent(a.k_strides, a.tk))?;
        need(name, "v", v, a.extent(a.v_strides, a.tk))?;
        need(name, "o", o, a.extent(a.o_strides, a.tq))?;
        need(name, "dout", dout, a.extent(a.o_strides, a.tq))?;
        for (w, s) in [("lse", lse), ("delta", delta)] {
            need(name, w, s, a.b * a.h * a.tq)?;
        }
        need(name, "dq", dq, a.b * a.h * a.tq * a.d)?;
        need(name, "dk", dk, a.b * a.h * a.tk * a.d)?;
        need(name, "dv", dv, a.b * a.h * a.tk * a.d)?;
        self.check_bias_mask(name, a, bias, key_mask)?;
        if !dbias.is_null() {
            need(name, "dbias", dbias, bias_extent(a))?;
        }
        self.fill(a.b * a.h * a.tq * a.d, dq, 0.0)?;
        let mut p = a.params();
        (p.q, p.k, p.v, p.o, p.lse, p.bias, p.key_mask) =
            (q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, bias.ptr, key_mask.ptr);
        (p.dout, p.delta, p.dq, p.dk, p.dv, p.dbias) =
            (dout.ptr, delta.ptr, dq.ptr, dk.ptr, dv.ptr, dbias.ptr);
        let sp = spaces(
            &[
                q.space,
                k.space,
                v.space,
                o.space,
                lse.space,
                dout.space,
                delta.space,
                dq.space,
                dk.space,
                dv.space,
            ],
            &[
                (bias.ptr, bias.space),
                (key_mask.ptr, key_mask.space),
                (dbias.ptr, dbias.space),
            ],
        );
        let mut pre = KernelCall::new(
            "attn_bwd_delta_f32",
            (cdiv(a.tq, 4), (a.b * a.h) as u32, 1),
            (128, 1, 1),
            0,
        )
        .arg(Arg::by_value(&p));
        pre.spaces = sp.clone();
        self.run(pre)?;
        let mut call = KernelCall::new(
            name,
            (cdiv(a.tk, 32), (a.b * a.h) as u32, 1),
            (32, 1, 1),
            attn_bwd_smem(a.d),
        )
        .arg(Arg::by_value(&p));
        call.spaces = sp;
        self.run(call)
    }

    fn check_bias_mask(
        &self,
        name: &'static str,
        a: &Attn,
        bias: &DSlice<f32>,
        key_mask: &DSlice<u8>,
    ) -> Result<()> {
        if !bias.is_null() {
            need(name, "bias", bias, bias_extent(a))?;
        }
        if !key_mask.is_null() {
            need(name, "key_mask", key_mask, a.b * a.tk)?;
        }
        Ok(())
    }
}

/// The attention kernel for q/k/v element type T: f32 or bf16.
fn attn_kernel<T: Elem>(f32_name: &'static str, bf16_name: &'static str) -> Result<&'static str> {
    match T::NAME {
        "f32" => Ok(f32_name),
        "bf16" => Ok(bf16_name),
        other => Err(Error::DType {
            op: "attention",
            expected: "f32 or bf16".into(),
            got: other.into(),
        }),
    }
}

fn bias_extent(a: &Attn) -> usize {
    (a.b - 1) * a.bias_strides[0]
        + (a.h - 1) * a.bias_strides[1]
        + (a.tq - 1) * a.bias_strides[2]
        + a.tk
}
