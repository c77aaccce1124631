//! Parameter initialisation.

use std::cell::Cell;

use crate::tensor::{Rng, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// N(0, std²)
    Normal(f32),
    /// U[−a, a)
    Uniform(f32),
}

thread_local! {
    /// Set inside `no_init_weights`.
    static SKIPPED: Cell<bool> = const { Cell::new(false) };
}

impl Init {
    /// A parameter of `shape` drawn from this distribution; zeros, drawing nothing from `rng`,
    /// inside `no_init_weights`.
    pub fn tensor(self, shape: &[usize], rng: &mut Rng) -> Tensor {
        if SKIPPED.with(Cell::get) {
            // One zero seen through all-zero strides: nothing of the parameter's size is
            // allocated or touched before the checkpoint's values replace it (a write before
            // then copies it out first, as to any view).
            return Tensor::zeros(&[])
                .broadcast_to(shape)
                .unwrap_or_else(|_| Tensor::zeros(shape));
        }
        match self {
            Init::Zeros => Tensor::zeros(shape),
            Init::Ones => Tensor::ones(shape),
            Init::Normal(std) => Tensor::randn(shape, 0.0, std, rng),
            Init::Uniform(a) => Tensor::rand_uniform(shape, -a, a, rng),
        }
    }
}

/// Runs `build` (a model constructor) with initialisation skipped on this thread: every
/// `Init::tensor` gives zeros of its shape (a broadcast view of one zero: no memory of the
/// parameter's size) and draws nothing, as `transformers`'
/// `no_init_weights` does for `from_pretrained`. For models whose every parameter is then
/// loaded from a checkpoint: drawing GPT-2 124M's normals only to overwrite them took 2.3 s of
/// a 5.7 s 100-token `generate` (1 thread).
pub fn no_init_weights<R>(build: impl FnOnce() -> R) -> R {
    /// Restores the previous state however `build` ends (nested calls, unwinding).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SKIPPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SKIPPED.with(|s| s.replace(true)));
    build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_init_weights_gives_zeros_draws_nothing_and_restores() {
        let mut rng = Rng::new(7);
        let mut fresh = Rng::new(7);
        let (a, b) = no_init_weights(|| {
            let a = Init::Normal(1.0).tensor(&[3, 4], &mut rng);
            // Nested: still skipped after the inner call ends.
            let b = no_init_weights(|| Init::Ones.tensor(&[2], &mut rng));
            let c = Init::Uniform(0.5).tensor(&[5], &mut rng);
            assert_eq!(c.to_vec_f32().unwrap(), vec![0.0; 5]);
            (a, b)
        });
        assert_eq!(a.shape(), &[3, 4]);
        assert_eq!(
            a.strides(),
            &[0, 0],
            "one zero, broadcast: nothing allocated"
        );
        assert_eq!(a.to_vec_f32().unwrap(), vec![0.0; 12]);
        assert_eq!(b.to_vec_f32().unwrap(), vec![0.0; 2]);
        // Nothing was drawn: the next draw is the first one of a fresh generator.
        let after = Init::Normal(1.0)
            .tensor(&[8], &mut rng)
            .to_vec_f32()
            .unwrap();
        let want = Init::Normal(1.0)
            .tensor(&[8], &mut fresh)
            .to_vec_f32()
            .unwrap();
        assert_eq!(after, want);
        assert!(after.iter().any(|&x| x != 0.0));
        assert_eq!(
            Init::Ones.tensor(&[2], &mut rng).to_vec_f32().unwrap(),
            vec![1.0; 2]
        );
    }
}
