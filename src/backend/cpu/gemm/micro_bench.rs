//! The f32 micro-kernel alone (`pretext bench microkernel`): the GEMM's inner loop timed
//! apart from packing, blocking and memory beyond L2, so that its share of the FMA peak can
//! be set beside the whole GEMM's. Where the two differ, the difference is the driver's and
//! the memory's, not the loop's.
//!
//! One packed A panel (MR × kc) against `panels` packed B panels (kc × NR each), one kernel
//! call per B panel, every call accumulating into the same C tile:
//!   C[i, j] += Σ_p A[i, p] · B_q[p, j],   q = 0 .. panels,   per sweep.
//! At kc = 128 and one panel both panels stay in L1; 16 panels at kc = 384 (the AVX-512
//! GEMM's depth block: 768 KiB of B) stream B from L2 past the A panel, as the GEMM does.
//!
//! The values are multiples of 1/8 in [−3/4, 3/4], so every product and partial sum is exact
//! in f32 while kc · panels ≤ 2^14: `check` compares with the naive sum exactly.

use super::avx2::Avx2;
use super::avx512::Avx512;
use super::kernel::{CTile, MicroKernel};
use super::scalar::Scalar;
use crate::backend::cpu::isa::{self, Isa};
use crate::error::{Error, Result};

/// Floats per 64-byte line.
const LINE: usize = 16;

/// `len` floats starting on a 64-byte boundary inside `buf`.
struct Aligned {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0f32; len + LINE];
        let start = (LINE - (buf.as_ptr() as usize / 4) % LINE) % LINE;
        Aligned { buf, start, len }
    }
    fn get(&self) -> &[f32] {
        &self.buf[self.start..][..self.len]
    }
    fn get_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..][..self.len]
    }
}

/// The micro-kernel of one instruction-set level over one A panel and its B panels.
pub struct MicroKernelBench {
    level: Isa,
    mr: usize,
    nr: usize,
    kc: usize,
    panels: usize,
    /// A[i, p] at p·MR + i (the packed layout, KU = 1).
    a: Aligned,
    /// B_q[p, j] at q·kc·NR + p·NR + j.
    b: Aligned,
    /// The MR × NR tile, row-major.
    c: Aligned,
}

/// Exact small values (see the module doc): the pattern of element `i` of operand `salt`.
fn value(i: usize, salt: usize) -> f32 {
    ((i * 7 + salt * 5) % 13) as f32 / 8.0 - 0.75
}

impl MicroKernelBench {
    /// The f32 micro-kernel of `level` (clamped to this CPU's) with depth `kc` and `panels`
    /// B panels.
    pub fn new(level: Isa, kc: usize, panels: usize) -> Result<MicroKernelBench> {
        if kc == 0 || panels == 0 {
            return Err(Error::msg(format!(
                "micro-kernel bench: depth {kc} and panels {panels} must be positive"
            )));
        }
        if kc * panels > 1 << 14 {
            return Err(Error::msg(format!(
                "micro-kernel bench: depth {kc} × {panels} panels exceeds 16384 steps per \
                 sweep (the exactness bound of its check)"
            )));
        }
        let level = level.min(isa::detected());
        let (mr, nr) = match level {
            Isa::Avx512 => (Avx512::MR, Avx512::NR),
            Isa::Avx2 => (Avx2::MR, Avx2::NR),
            Isa::Scalar => (Scalar::MR, Scalar::NR),
        };
        let mut a = Aligned::new(mr * kc);
        let mut b = Aligned::new(panels * kc * nr);
        for (i, v) in a.get_mut().iter_mut().enumerate() {
            *v = value(i, 1);
        }
        for (i, v) in b.get_mut().iter_mut().enumerate() {
            *v = value(i, 2);
        }
        let c = Aligned::new(mr * nr);
        Ok(MicroKernelBench {
            level,
            mr,
            nr,
            kc,
            panels,
            a,
            b,
            c,
        })
    }

    /// The level the kernel runs at and its tile (MR, NR).
    pub fn kernel(&self) -> (Isa, usize, usize) {
        (self.level, self.mr, self.nr)
    }

    /// Multiply-adds × 2 of one sweep.
    pub fn flops_per_sweep(&self) -> f64 {
        2.0 * (self.mr * self.nr * self.kc * self.panels) as f64
    }

    /// One kernel call per B panel, accumulating into the tile.
    pub fn sweep(&mut self) {
        match self.level {
            Isa::Avx512 => self.sweep_with::<Avx512>(),
            Isa::Avx2 => self.sweep_with::<Avx2>(),
            Isa::Scalar => self.sweep_with::<Scalar>(),
        }
    }

    fn sweep_with<K: MicroKernel<P = f32>>(&mut self) {
        debug_assert_eq!((K::MR, K::NR, K::KU), (self.mr, self.nr, 1));
        let (kc, nr) = (self.kc, self.nr);
        let a = self.a.get().as_ptr();
        let b = self.b.get();
        let c = self.c.get_mut().as_mut_ptr();
        for q in 0..self.panels {
            let bq = b[q * kc * nr..][..kc * nr].as_ptr();
            // SAFETY: the A panel holds MR·kc packed values and the B panel NR·kc (KU = 1);
            // the tile holds MR × NR floats, row stride NR, owned by this value; `new`
            // clamped the level to the CPU's.
            unsafe { K::run(kc, a, bq, CTile::new(c, nr as isize, 1, self.mr, nr), true) };
        }
    }

    /// Zeroes the tile, runs one sweep and compares it with the naive sums: exact equality
    /// (every value involved is exact in f32). Names the first element that differs.
    pub fn check(&mut self) -> Result<()> {
        self.c.get_mut().fill(0.0);
        self.sweep();
        let (mr, nr, kc) = (self.mr, self.nr, self.kc);
        let (a, b) = (self.a.get(), self.b.get());
        for i in 0..mr {
            for j in 0..nr {
                let want: f64 = (0..self.panels)
                    .flat_map(|q| (0..kc).map(move |p| (q, p)))
                    .map(|(q, p)| a[p * mr + i] as f64 * b[q * kc * nr + p * nr + j] as f64)
                    .sum();
                let got = self.c.get()[i * nr + j];
                if got as f64 != want {
                    return Err(Error::msg(format!(
                        "micro-kernel bench ({}, depth {kc}, {} panels): C[{i}, {j}] = {got}, \
                         the naive sum is {want}",
                        self.level.name(),
                        self.panels
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_matches_the_naive_sums_exactly() {
        for level in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if level > isa::detected() {
                println!(
                    "micro-kernel bench: {} not on this CPU, skipped",
                    level.name()
                );
                continue;
            }
            for (kc, panels) in [(1, 1), (7, 3), (128, 1), (384, 16)] {
                let mut m = MicroKernelBench::new(level, kc, panels).unwrap();
                assert_eq!(m.kernel().0, level);
                m.check().unwrap();
                // A second sweep doubles every sum.
                m.sweep();
                let mut twice = MicroKernelBench::new(level, kc, panels).unwrap();
                twice.check().unwrap();
                let doubled: Vec<f32> = twice.c.get().iter().map(|v| 2.0 * v).collect();
                assert_eq!(
                    m.c.get(),
                    &doubled[..],
                    "{} kc {kc} × {panels}",
                    level.name()
                );
            }
        }
    }

    #[test]
    fn refuses_empty_and_inexact_sizes() {
        assert!(MicroKernelBench::new(Isa::Scalar, 0, 1).is_err());
        assert!(MicroKernelBench::new(Isa::Scalar, 1, 0).is_err());
        let e = MicroKernelBench::new(Isa::Scalar, 4096, 5).err().unwrap();
        assert!(e.to_string().contains("16384"), "{e}");
    }
}
