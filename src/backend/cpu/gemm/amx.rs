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
