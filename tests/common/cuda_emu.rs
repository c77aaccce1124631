//! Helpers shared by the emulated CUDA kernel tests (included with `#[path]`, not a test
//! itself): a seeded RNG, closeness checks and the schedules every kernel runs under.

#![allow(dead_code)]

use pretext::backend::cuda::emu::{EmuExecutor, Schedule};
use pretext::backend::cuda::Ops;

/// Both schedules the acceptance criteria name; every kernel test runs under each.
pub const SCHEDULES: [Schedule; 2] = [Schedule::RoundRobin, Schedule::WarpOrdered];

/// Run `f` once per schedule with a fresh emulator.
pub fn each_schedule(mut f: impl FnMut(&Ops, Schedule)) {
    for s in SCHEDULES {
        let ex = EmuExecutor::new(s);
        f(&Ops::new(&ex), s);
    }
}

/// splitmix64: a small seeded RNG for test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Assert |got - want| <= atol + rtol |want| elementwise, naming the first bad index.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = *g as f64;
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (|diff| {:.3e})",
            (g - w).abs()
        );
    }
}

/// f32 -> bf16 bits, round to nearest even (the reference for the cast kernel).
pub fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}
pub fn bf16_value(b: u16) -> f32 {
    half::bf16::from_bits(b).to_f32()
}
