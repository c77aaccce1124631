//! Packing of GEMM operands into the panel layouts the micro-kernels stream through.
//!
//! A block of A (rows × kc, any strides) becomes ⌈rows/MR⌉ panels; panel r holds rows
//! r·MR .. r·MR+MR, and within it the element (i, p) sits at
//!   (p / KU)·MR·KU + i·KU + p % KU,
//! i.e. for KU = 1 each k step is MR consecutive values (one broadcast per row), and for
//! KU = 2 (bf16 pair dot products) each pair step holds MR pairs (A[i,p], A[i,p+1]).
//! B (kc × cols) becomes ⌈cols/NR⌉ panels with (p, j) at (p / KU)·NR·KU + j·KU + p % KU.
//! Rows/columns past the edge and k past kc (up to a multiple of KU) are zero, so the
//! kernels always run full MR × NR tiles. Transposed or strided operands cost nothing extra:
//! they only change which source strides are read.

use half::bf16;

/// How a source element becomes a packed element (identity, widening or rounding to bf16).
pub(super) trait Convert: Sync {
    type Src: Copy + Sync;
    type Dst: Copy + Default + Send + Sync;
    fn cvt(x: Self::Src) -> Self::Dst;
}

/// f32 → f32.
pub(super) struct F32;
impl Convert for F32 {
    type Src = f32;
    type Dst = f32;
    #[inline(always)]
    fn cvt(x: f32) -> f32 {
        x
    }
}

/// bf16 → bf16.
pub(super) struct Bf16;
impl Convert for Bf16 {
    type Src = bf16;
    type Dst = bf16;
    #[inline(always)]
    fn cvt(x: bf16) -> bf16 {
        x
    }
}

/// f32 → bf16, round to nearest even (mixed precision with f32 master weights).
pub(super) struct F32ToBf16;
impl Convert for F32ToBf16 {
    type Src = f32;
    type Dst = bf16;
    #[inline(always)]
    fn cvt(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
}

/// bf16 → f32 (exact), for running bf16 inputs through an f32 kernel.
pub(super) struct Bf16ToF32;
impl Convert for Bf16ToF32 {
    type Src = bf16;
    type Dst = f32;
    #[inline(always)]
    fn cvt(x: bf16) -> f32 {
        x.to_f32()
    }
}

/// f32 → bf16 → f32: the f32 kernel then computes exactly the bf16-input products, so the
/// fallback path agrees with `vdpbf16ps` up to summation order.
pub(super) struct F32RoundBf16;
impl Convert for F32RoundBf16 {
    type Src = f32;
    type Dst = f32;
    #[inline(always)]
    fn cvt(x: f32) -> f32 {
        bf16::from_f32(x).to_f32()
    }
}

/// A strided view of one source matrix: element (r, c) at `off + r·rs + c·cs`.
#[derive(Clone, Copy)]
pub(super) struct View<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Number of packed elements for `rows` rows (or columns) in panels of `r` and `kc` k steps.
pub(super) fn packed_len(rows: usize, r: usize, kc: usize, ku: usize) -> usize {
    rows.div_ceil(r) * r * kc.next_multiple_of(ku)
}

/// Packs the `rows × kc` block of `src` starting at (r0, p0) into panels of `r` rows, where
/// the "row" index is the panel dimension: for A call it with A's (rs, cs); for B call it
/// with B's strides swapped (cs, rs) so columns of B become the panel rows. `ku` is 1 or 2.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack<C: Convert>(
    src: View<'_, C::Src>,
    r: usize,
    ku: usize,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) {
    match ku {
        1 => pack_ku::<C, 1>(src, r, r0, rows, p0, kc, dst),
        2 => pack_ku::<C, 2>(src, r, r0, rows, p0, kc, dst),
        _ => unreachable!("packing group {ku} is not 1 or 2"),
    }
}

fn pack_ku<C: Convert, const KU: usize>(
    src: View<'_, C::Src>,
    r: usize,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [C::Dst],
) {
    let kcp = kc.next_multiple_of(KU);
    let panel = r * kcp;
    for (pi, out) in dst[..rows.div_ceil(r) * panel]
        .chunks_exact_mut(panel)
        .enumerate()
    {
        let base_r = r0 + pi * r;
        let nr = (rows - pi * r).min(r);
        if nr < r || kcp != kc {
            out.fill(C::Dst::default());
        }
        let base = src.off + base_r * src.rs + p0 * src.cs;
        if src.cs == 1 {
            // Each panel row is contiguous along k.
            for i in 0..nr {
                let row = &src.data[base + i * src.rs..base + i * src.rs + kc];
                for (p, &x) in row.iter().enumerate() {
                    out[(p / KU) * r * KU + i * KU + p % KU] = C::cvt(x);
                }
            }
        } else if src.rs == 1 {
            // Each k step is contiguous across the panel rows.
            for p in 0..kc {
                let col = &src.data[base + p * src.cs..base + p * src.cs + nr];
                let o = (p / KU) * r * KU + p % KU;
                for (i, &x) in col.iter().enumerate() {
                    out[o + i * KU] = C::cvt(x);
                }
            }
        } else {
            for i in 0..nr {
                for p in 0..kc {
                    out[(p / KU) * r * KU + i * KU + p % KU] =
                        C::cvt(src.data[base + i * src.rs + p * src.cs]);
                }
            }
        }
    }
}
