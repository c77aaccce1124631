//! Helpers shared by the criterion benches: deterministic inputs, the ISA levels this CPU
//! has, and timing on a one-thread pool.

#![allow(dead_code)] // each bench binary uses its own subset

use criterion::Bencher;
use pretext::backend::cpu::isa::{self, Isa};

/// `len` values in [−1, 1) from a 64-bit LCG seeded by `seed`.
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The ISA levels this CPU can run, best first.
pub fn levels() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Scalar]
        .into_iter()
        .filter(|&l| l <= isa::detected())
        .collect()
}

/// A rayon pool of one thread: the benches time one core (thread scaling is in
/// `pretext bench`).
pub fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

/// Times `f` on `pool` (the kernels' rayon calls stay in that pool).
pub fn on<F: FnMut() + Send>(pool: &rayon::ThreadPool, bn: &mut Bencher, mut f: F) {
    pool.install(|| bn.iter(&mut f))
}
