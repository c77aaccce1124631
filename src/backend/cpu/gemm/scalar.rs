//! Portable micro-kernel (no SIMD intrinsics): a 4 × 8 register tile in plain arrays,
//! C[i, j] += Σ_p A[i, p]·B[p, j]. The compiler may vectorise it with baseline SSE2.

use super::kernel::{store_tile_generic, CTile, MicroKernel};

pub(super) struct Scalar;

const MR: usize = 4;
const NR: usize = 8;

impl MicroKernel for Scalar {
    type P = f32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 1;
    const KC: usize = 256;
    const MC: usize = 64;
    const NC: usize = 512;

    unsafe fn run(kc: usize, a: *const f32, b: *const f32, ct: CTile, accumulate: bool) {
        // SAFETY: the caller guarantees MR·kc values at `a` and NR·kc at `b`.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, MR * kc),
                std::slice::from_raw_parts(b, NR * kc),
            )
        };
        let mut acc = [0.0f32; MR * NR];
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i * NR + j] += ap[i] * bp[j];
                }
            }
        }
        // SAFETY: C requirements are forwarded from the caller.
        unsafe { store_tile_generic(&acc, NR, ct, accumulate) };
    }
}
