//! Learning-rate schedules.
//!
//! `CosineSchedule` is nanoGPT's get_lr(it) (it counts from 0):
//!   it < warmup:        lr·(it + 1)/(warmup + 1)
//!   it > decay_iters:   min_lr
//!   otherwise:          min_lr + ½·(1 + cos(π·(it − warmup)/(decay_iters − warmup)))·(lr − min_lr)

pub trait LrSchedule {
    fn lr(&self, it: u64) -> f32;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSchedule {
    pub lr: f32,
    pub min_lr: f32,
    pub warmup: u64,
    pub decay_iters: u64,
}

impl LrSchedule for CosineSchedule {
    fn lr(&self, it: u64) -> f32 {
        if it < self.warmup {
            return self.lr * (it + 1) as f32 / (self.warmup + 1) as f32;
        }
        if it > self.decay_iters {
            return self.min_lr;
        }
        let span = (self.decay_iters - self.warmup).max(1) as f64;
        let ratio = (it - self.warmup) as f64 / span;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + (coeff as f32) * (self.lr - self.min_lr)
    }
}

/// A constant learning rate.
impl LrSchedule for f32 {
    fn lr(&self, _it: u64) -> f32 {
        *self
    }
}
