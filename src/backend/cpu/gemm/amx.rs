//! AMX micro-kernel: bf16 inputs, f32 accumulation, a 32 × 32 tile of C held in four
//! 16 × 16 f32 tile registers (tmm0–3). Per 32-long k block it loads two A tiles (rows
//! 0–15 / 16–31, 16 rows × 32 bf16) and two B tiles (columns 0–15 / 16–31, 16 k-pair rows ×
//! 16 column pairs) and issues four `tdpbf16ps`:
//!   C[i, j] += Σ_q A[i, 2q]·B[2q, j] + A[i, 2q+1]·B[2q+1, j].
//! Packing: A with whole 32-long k rows (KU_A = 32: a 16-row slab is one tile, stride 64
//! bytes), B in k pairs (KU_B = 2: a 32-column panel row is 128 bytes, each tile takes half),
//! k zero-padded to 32. Tile instructions are not exposed as stable intrinsics, so the loop
//! is inline assembly. Only used when `isa::amx_bf16_usable()` (CPU, XCR0 and the Linux
//! permission grant).

use half::bf16;

use super::kernel::{store_tile_generic, MicroKernel};

pub(super) struct Amx;

const MR: usize = 32;
const NR: usize = 32;

/// LDTILECFG operand: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1; // palette 1
    let mut t = 0;
    while t < 8 {
        // colsb[t] (u16 little-endian at 16 + 2t) = 64 bytes; rows[t] (u8 at 48 + t) = 16.
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
}

static CONFIG: TileConfig = tile_config();

impl MicroKernel for Amx {
    type P = bf16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 32;
    const KU_A: usize = 32;
    const KU_B: usize = 2;
    const KC: usize = 512;
    const MC: usize = 128;
    const NC: usize = 1024;

    unsafe fn run(
        kc: usize,
        a: *const bf16,
        b: *const bf16,
        c: *mut f32,
        rs: isize,
        cs: isize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        let mut tile = [0.0f32; MR * NR];
        let blocks = kc.div_ceil(32);
        // SAFETY: the dispatcher selects this kernel only when `amx_bf16_usable()` (so the
        // tile state is permitted); each k block of the packed A panel is 32 rows × 64
        // bytes (two 1024-byte tiles) and of the B panel 16 pair rows × 128 bytes (two
        // tiles at +0 / +64 with stride 128), `blocks` ≥ 1 of each; `tile` holds 32 × 32
        // f32 (row stride 128 bytes) for the four 16 × 16 results.
        unsafe {
            std::arch::asm!(
                "ldtilecfg [{cfg}]",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a} + {s64}*1]",
                "tileloadd tmm5, [{a} + {s64}*1 + 1024]",
                "tileloadd tmm6, [{b} + {s128}*1]",
                "tileloadd tmm7, [{b} + {s128}*1 + 64]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a}, 2048",
                "add {b}, 2048",
                "dec {n}",
                "jnz 2b",
                "tilestored [{t} + {s128}*1], tmm0",
                "tilestored [{t} + {s128}*1 + 64], tmm1",
                "tilestored [{t} + {s128}*1 + 2048], tmm2",
                "tilestored [{t} + {s128}*1 + 2112], tmm3",
                "tilerelease",
                cfg = in(reg) CONFIG.0.as_ptr(),
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                n = inout(reg) blocks => _,
                t = in(reg) tile.as_mut_ptr(),
                s64 = in(reg) 64usize,
                s128 = in(reg) 128usize,
                options(nostack),
            );
            store_tile_generic(&tile, NR, c, rs, cs, mr, nr, accumulate);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The tile instructions cannot run without AMX hardware, so this checks the part that
    //! can go wrong silently everywhere: that the packed panels, read with exactly the
    //! addresses and strides the assembly uses, give A·B. It models `tileloadd` (16 rows of
    //! 64 bytes at base + row·stride) and `tdpbf16ps` (C[m][n] += Σ_q A[m][2q]·B[q][2n] +
    //! A[m][2q+1]·B[q][2n+1]) in scalar code.
    use super::*;
    use crate::backend::cpu::gemm::pack::{pack, packed_len, Bf16, View};

    /// 16 × 32 bf16 tile loaded from `base` (in bf16 elements) with a byte stride.
    fn tileload(buf: &[bf16], base: usize, stride_bytes: usize) -> Vec<[f32; 32]> {
        (0..16)
            .map(|r| {
                let o = base + r * stride_bytes / 2;
                std::array::from_fn(|e| buf[o + e].to_f32())
            })
            .collect()
    }

    fn dp(c: &mut [[f32; 16]; 16], a: &[[f32; 32]], b: &[[f32; 32]]) {
        for (m, crow) in c.iter_mut().enumerate() {
            for (n, cv) in crow.iter_mut().enumerate() {
                for q in 0..16 {
                    *cv += a[m][2 * q] * b[q][2 * n] + a[m][2 * q + 1] * b[q][2 * n + 1];
                }
            }
        }
    }

    #[test]
    fn packed_layout_matches_the_tile_addressing() {
        let (m, n, k) = (29, 27, 45); // edges in every dimension; k padded to 64
        let val = |i: usize| bf16::from_f32(((i * 37 % 101) as f32 - 50.0) / 16.0);
        let a: Vec<bf16> = (0..m * k).map(val).collect();
        let b: Vec<bf16> = (0..k * n).map(|i| val(i + 7)).collect();
        let mut ap = vec![bf16::ZERO; packed_len(m, MR, k, Amx::KU)];
        let mut bp = vec![bf16::ZERO; packed_len(n, NR, k, Amx::KU)];
        let av = View {
            data: &a,
            off: 0,
            rs: k,
            cs: 1,
        };
        let bt = View {
            data: &b,
            off: 0,
            rs: 1,
            cs: n,
        };
        pack::<Bf16>(av, MR, Amx::KU_A, Amx::KU, 0, m, 0, k, &mut ap);
        pack::<Bf16>(bt, NR, Amx::KU_B, Amx::KU, 0, n, 0, k, &mut bp);
        let mut c = [[[0.0f32; 16]; 16]; 4];
        for kb in 0..k.div_ceil(32) {
            // Byte offsets of the assembly: A +0 / +1024 stride 64; B +0 / +64 stride 128.
            let (a0, b0) = (kb * 1024, kb * 1024);
            let ta = [tileload(&ap, a0, 64), tileload(&ap, a0 + 512, 64)];
            let tb = [tileload(&bp, b0, 128), tileload(&bp, b0 + 32, 128)];
            dp(&mut c[0], &ta[0], &tb[0]);
            dp(&mut c[1], &ta[0], &tb[1]);
            dp(&mut c[2], &ta[1], &tb[0]);
            dp(&mut c[3], &ta[1], &tb[1]);
        }
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k)
                    .map(|p| a[i * k + p].to_f32() * b[p * n + j].to_f32())
                    .sum();
                let got = c[(i / 16) * 2 + j / 16][i % 16][j % 16];
                assert!(
                    (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                    "C[{i},{j}] {got} vs {want}"
                );
            }
        }
    }
}
