//! A scalar model of the AMX tile unit, for running the AMX micro-kernel (its packing, edge
//! and tail handling, in-place A and the driver around it) on CPUs without AMX. Only the
//! assembly of `amx::Hardware::tile_product` is left to AMX hardware.
//!
//! It reads and writes exactly the bytes the assembly does, with the palette the kernel
//! configures (eight tiles of 16 rows × 64 bytes):
//!   `tileloadd tmm, [base + stride]`: row r (r < 16) is the 64 bytes at base + r·stride;
//!   A tiles tmm4 / tmm5 at a / a + second_half, B tiles tmm6 / tmm7 at b / b + 64 (stride
//!   128), C tiles tmm0..3 at c, c + 64, c + 16·c_stride, c + 16·c_stride + 64;
//!   `tdpbf16ps C, A, B`, per the SDM's pseudo-code, for m, n < 16 and q < 16:
//!     C[m][n] += A[m][2q]·B[q][2n];  C[m][n] += A[m][2q+1]·B[q][2n+1]
//!   each `+=` rounded to nearest even, with bf16 inputs that are denormal read as zero and
//!   denormal results flushed to zero (the instruction ignores MXCSR).

use half::bf16;

use super::amx::{PipelinedProduct, TileProduct, Tiles};
use super::pack::f32_to_bf16_bits;

/// The scalar model of the tile unit.
pub(crate) struct Emulated;

/// 16 rows × 64 bytes.
type Tile<T, const W: usize> = [[T; W]; 16];

/// `tileloadd` of a bf16 tile (16 rows of 32 values), widened to f32 with denormals as zero.
///
/// # Safety
/// The 16 rows of 64 bytes at `base + r·stride` must be readable.
unsafe fn load_bf16(base: *const u8, stride: isize) -> Tile<f32, 32> {
    std::array::from_fn(|r| {
        let row = base.wrapping_offset(r as isize * stride) as *const bf16;
        std::array::from_fn(|e| {
            // SAFETY: the row's 64 bytes are readable (the caller's contract); unaligned reads.
            let x = unsafe { row.add(e).read_unaligned() }.to_f32();
            if x.is_subnormal() {
                0.0f32.copysign(x)
            } else {
                x
            }
        })
    })
}

/// `tileloadd` of an f32 tile (16 rows of 16 values).
///
/// # Safety
/// The 16 rows of 64 bytes at `base + r·stride` must be readable.
unsafe fn load_f32(base: *const u8, stride: isize) -> Tile<f32, 16> {
    std::array::from_fn(|r| {
        let row = base.wrapping_offset(r as isize * stride) as *const f32;
        // SAFETY: as above.
        std::array::from_fn(|e| unsafe { row.add(e).read_unaligned() })
    })
}

/// `tilestored` of an f32 tile.
///
/// # Safety
/// The 16 rows of 64 bytes at `base + r·stride` must be writable.
unsafe fn store_f32(base: *mut u8, stride: isize, t: &Tile<f32, 16>) {
    for (r, row) in t.iter().enumerate() {
        let dst = base.wrapping_offset(r as isize * stride) as *mut f32;
        for (e, &x) in row.iter().enumerate() {
            // SAFETY: the row's 64 bytes are writable (the caller's contract).
            unsafe { dst.add(e).write_unaligned(x) };
        }
    }
}

/// `tdpbf16ps c, a, b`.
fn dpbf16(c: &mut Tile<f32, 16>, a: &Tile<f32, 32>, b: &Tile<f32, 32>) {
    let ftz = |x: f32| {
        if x.is_subnormal() {
            0.0f32.copysign(x)
        } else {
            x
        }
    };
    for (crow, arow) in c.iter_mut().zip(a) {
        for q in 0..16 {
            let (a0, a1) = (arow[2 * q], arow[2 * q + 1]);
            for (n, cv) in crow.iter_mut().enumerate() {
                // A product of two bf16 values is exact in f32: one rounding per `+=`.
                *cv = ftz(*cv + a0 * b[q][2 * n]);
                *cv = ftz(*cv + a1 * b[q][2 * n + 1]);
            }
        }
    }
}

impl Tiles for Emulated {
    unsafe fn tile_product(job: TileProduct) {
        let (rows, stride) = (job.rows, job.c_stride);
        let c = job.c as *mut u8;
        // tmm0..3: rows 0–15 / 16–31 (h) at columns 0–15 / 16–31 (v), index 2h + v.
        let c_tile =
            |t: usize| c.wrapping_offset((t / 2) as isize * 16 * stride + (t % 2) as isize * 64);
        let mut acc: [Tile<f32, 16>; 4] = if job.load {
            // SAFETY: the 32 × 32 f32 at `c` are readable when `load` (the caller's contract).
            std::array::from_fn(|t| unsafe { load_f32(c_tile(t), stride) })
        } else {
            [[[0.0; 16]; 16]; 4]
        };
        let (mut a0, mut b0) = (job.a as *const u8, job.b as *const u8);
        for _ in 0..job.blocks {
            // SAFETY: A's k block lies where `rows` says and B's block is 16 pair rows of 128
            // bytes (the caller's contract).
            let (ta, tb) = unsafe {
                (
                    [
                        load_bf16(a0, rows.stride),
                        load_bf16(a0.wrapping_offset(rows.second_half), rows.stride),
                    ],
                    [load_bf16(b0, 128), load_bf16(b0.wrapping_add(64), 128)],
                )
            };
            for (t, c) in acc.iter_mut().enumerate() {
                dpbf16(c, &ta[t / 2], &tb[t % 2]);
            }
            a0 = a0.wrapping_offset(rows.step);
            b0 = b0.wrapping_add(2048);
        }
        for (t, tile) in acc.iter().enumerate() {
            // SAFETY: the 32 × 32 f32 at `c` are writable (the caller's contract).
            unsafe { store_f32(c_tile(t), stride, tile) };
        }
        // tmm2 / tmm3 keep rows 16–31 after the stores.
        PENDING.set(std::array::from_fn(|r| {
            std::array::from_fn(|j| {
                if j < 16 {
                    acc[2][r][j]
                } else {
                    acc[3][r][j - 16]
                }
            })
        }));
    }

    fn pipeline_usable() -> bool {
        true
    }

    /// The unit's work in program order: the previous tile's pending rows stored, this
    /// tile's sums (its rows 0–15 stored, rows 16–31 kept pending by `tile_product`), the
    /// previous tile rounded to nearest even (`vcvtne2ps2bf16`; the sums are never
    /// subnormal, as `dpbf16` flushes them).
    unsafe fn pipelined_product(t: PipelinedProduct) {
        // SAFETY: `prev` is a 32 × 32 f32 tile; rows 16–31 start 512 values in.
        unsafe {
            std::ptr::copy_nonoverlapping(
                PENDING.get().as_ptr().cast::<f32>(),
                t.prev.add(512),
                512,
            )
        };
        let mut sums = [[0.0f32; 32]; 32];
        // SAFETY: the current tile's operands (the caller's contract); `sums` is 32 rows of 128
        // bytes.
        unsafe {
            Self::tile_product(TileProduct {
                blocks: t.blocks,
                rows: t.rows,
                a: t.a,
                b: t.b,
                c: sums.as_mut_ptr().cast(),
                c_stride: 128,
                load: false,
            })
        };
        // SAFETY: `cur` is a 32 × 32 f32 tile (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr().cast::<f32>(), t.cur, 512) };
        for i in 0..32 {
            let row = t.prev_out.wrapping_byte_offset(i as isize * t.out_stride);
            for j in 0..32 {
                // SAFETY: `prev`'s 1024 values are initialised (the caller's contract and the
                // store above); `prev_out`'s rows are writable.
                unsafe { *row.add(j) = bf16::from_bits(f32_to_bf16_bits(*t.prev.add(32 * i + j))) };
            }
        }
    }

    unsafe fn store_pending(cur: *mut f32) {
        // SAFETY: `cur` is a 32 × 32 f32 tile; rows 16–31 start 512 values in.
        unsafe {
            std::ptr::copy_nonoverlapping(PENDING.get().as_ptr().cast::<f32>(), cur.add(512), 512)
        };
    }
}

thread_local! {
    /// tmm2 / tmm3 between pipeline steps: rows 16–31 (32 f32 each) of the last step's tile.
    static PENDING: std::cell::Cell<[[f32; 32]; 16]> = const { std::cell::Cell::new([[0.0; 32]; 16]) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Denormal inputs count as zero and denormal sums are flushed, as `tdpbf16ps` does.
    #[test]
    fn denormals_are_zero_in_and_out() {
        let tiny = f32::from_bits(0x0040_0000); // subnormal, and exactly a bf16
        let mut a = [[0.0f32; 32]; 16];
        let mut b = [[0.0f32; 32]; 16];
        a[0][0] = tiny;
        b[0][0] = 1.0;
        let mut c = [[0.0f32; 16]; 16];
        dpbf16(&mut c, &a, &b);
        assert_eq!(c[0][0], 0.0, "a denormal product is flushed");
        a[0][0] = 2.0f32.powi(-70);
        b[0][0] = 2.0f32.powi(-70); // 2^-140: below f32's normal range
        dpbf16(&mut c, &a, &b);
        assert_eq!(c[0][0], 0.0, "a denormal result is flushed");
        let raw = [bf16::from_bits(0x0001), bf16::from_f32(1.5)];
        let mut row = [bf16::ZERO; 32];
        row[..2].copy_from_slice(&raw);
        let rows = [row; 16];
        // SAFETY: 16 rows of 64 bytes, 64 bytes apart.
        let t = unsafe { load_bf16(rows.as_ptr() as *const u8, 64) };
        assert_eq!((t[3][0], t[3][1]), (0.0, 1.5));
    }
}
