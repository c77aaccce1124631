//! The micro-kernel contract shared by every ISA.
//!
//! A micro-kernel computes one MR × NR tile of C from an A panel (MR rows × kc) and a B
//! panel (kc × NR columns), both packed by `pack::pack`:
//!   C[i, j] = Σ_p A[i, p] · B[p, j]  (+ C[i, j] when `accumulate`),  i < mr, j < nr,
//! where mr ≤ MR and nr ≤ NR are the valid rows/columns of an edge tile (the packed
//! panels are zero there). C is written at `c + i·rs + j·cs`.

/// One micro-kernel and the cache blocking that suits it.
pub(super) trait MicroKernel: Sync {
    /// Packed element type (f32, or bf16 for the pair-dot-product kernels).
    type P: Copy + Default + Send + Sync;
    /// Tile rows (broadcast side) and columns (vector side).
    const MR: usize;
    const NR: usize;
    /// k is zero-padded to a multiple of KU in both packed panels (2 for bf16 pair dot
    /// products, 32 for AMX tiles).
    const KU: usize;
    /// k interleave of the A panel: (i, p) at (p / KU_A)·MR·KU_A + i·KU_A + p % KU_A.
    const KU_A: usize = Self::KU;
    /// k interleave of the B panel: (p, j) at (p / KU_B)·NR·KU_B + j·KU_B + p % KU_B.
    const KU_B: usize = Self::KU;
    /// Depth of one packed block: an A panel MR × KC stays in L1 while B panels stream.
    const KC: usize;
    /// Rows of A packed per task (a multiple of MR).
    const MC: usize;
    /// Columns of B packed per block: KC × NC packed values should sit in L2.
    const NC: usize;

    /// # Safety
    /// `a` must hold MR·kc' packed values and `b` NR·kc' (kc' = kc rounded up to KU);
    /// every C element (i < mr, j < nr) must be valid for reads and writes, and no other
    /// thread may access them during the call. The CPU must support the kernel's ISA.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        kc: usize,
        a: *const Self::P,
        b: *const Self::P,
        c: *mut f32,
        rs: isize,
        cs: isize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    );
}

/// Writes an MR × NR tile held in `acc` (row-major, stride `nr_full`) to C: the generic
/// edge/strided path every kernel falls back to.
///
/// # Safety
/// Same C requirements as `MicroKernel::run`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn store_tile_generic(
    acc: &[f32],
    nr_full: usize,
    c: *mut f32,
    rs: isize,
    cs: isize,
    mr: usize,
    nr: usize,
    accumulate: bool,
) {
    for i in 0..mr {
        for j in 0..nr {
            // SAFETY: (i, j) is inside the valid tile, which the caller guarantees.
            let p = unsafe { c.offset(i as isize * rs + j as isize * cs) };
            let v = acc[i * nr_full + j];
            // SAFETY: as above.
            unsafe { *p = if accumulate { *p + v } else { v } };
        }
    }
}
