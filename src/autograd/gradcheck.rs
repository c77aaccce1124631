//! Finite-difference gradient checking.
//!
//! For f: inputs → y, the probe loss is L = Σ w ⊙ y with fixed random weights w (so every
//! output element matters and no symmetric cancellation hides an error). The analytic
//! gradient ∂L/∂x from `backward()` is compared with central differences
//!   (L(x + h·e_j) − L(x − h·e_j)) / 2h
//! for every element j of every input. Ops run in f32; L is accumulated in f64 from the f32
//! outputs, so the rounding error of the difference quotient is about
//! ε_f32·‖w ⊙ y‖₁ / 2h ≈ 6e-8·‖w ⊙ y‖₁ / 2h; with h = 1e-2 and outputs of order one that is
//! ≈ 3e-6 per output element, and the truncation error h²/6·|L'''| is ≈ 2e-5·|L'''|.
//! Hence the default tolerance |analytic − numeric| ≤ 2e-3 + 1e-2·max(|analytic|, |numeric|).

use super::{no_grad, Var};
use crate::error::{Error, Result};
use crate::tensor::{Rng, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    pub step: f32,
    pub atol: f64,
    pub rtol: f64,
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-2,
            atol: 2e-3,
            rtol: 1e-2,
            seed: 0x5eed,
        }
    }
}

/// Largest deviation found, for reporting.
#[derive(Clone, Debug, Default)]
pub struct GradCheckReport {
    pub checked: usize,
    pub max_abs_err: f64,
}

fn probe(y: &Tensor, w: &[f32]) -> Result<f64> {
    Ok(y.to_vec_f32()?
        .iter()
        .zip(w)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum())
}

impl GradCheck {
    /// Check ∂(Σ w ⊙ f(inputs))/∂input for every f32 input and element.
    pub fn run(
        &self,
        inputs: &[Tensor],
        f: impl Fn(&[Var]) -> Result<Var>,
    ) -> Result<GradCheckReport> {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| t.contiguous().map(Var::param))
            .collect::<Result<_>>()?;
        let y = f(&vars)?;
        let mut rng = Rng::new(self.seed);
        let w = Tensor::rand_uniform(&y.shape(), -1.0, 1.0, &mut rng);
        let wv = w.to_vec_f32()?;
        let loss = y.mul(&Var::constant(w.clone()))?.sum_all()?;
        loss.backward()?;
        let mut report = GradCheckReport::default();
        for (i, (input, var)) in inputs.iter().zip(&vars).enumerate() {
            let analytic = match var.grad() {
                Some(g) => g.to_vec_f32()?,
                None => vec![0.0; input.numel()],
            };
            let base = input.contiguous()?.to_vec_f32()?;
            for j in 0..base.len() {
                let eval = |delta: f32| -> Result<f64> {
                    let mut v = base.clone();
                    v[j] += delta;
                    let mut xs: Vec<Var> = vars
                        .iter()
                        .map(|v| Var::constant(v.value().clone()))
                        .collect();
                    xs[i] = Var::constant(Tensor::from_vec(v, input.shape())?);
                    let y = no_grad(|| f(&xs))?;
                    let value = y.value().clone();
                    probe(&value, &wv)
                };
                let numeric = (eval(self.step)? - eval(-self.step)?) / (2.0 * self.step as f64);
                let a = analytic[j] as f64;
                let err = (a - numeric).abs();
                report.checked += 1;
                report.max_abs_err = report.max_abs_err.max(err);
                // Written as !(≤) so that a NaN on either side fails the check.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                if !(err <= self.atol + self.rtol * a.abs().max(numeric.abs())) {
                    return Err(Error::Autograd(format!(
                        "gradcheck: input {i} {:?}, element {j}: analytic {a:.6e}, numeric {numeric:.6e} (|Δ| {err:.2e})",
                        input.shape()
                    )));
                }
            }
        }
        Ok(report)
    }
}

/// `GradCheck::default().run(inputs, f)`.
pub fn gradcheck(inputs: &[Tensor], f: impl Fn(&[Var]) -> Result<Var>) -> Result<GradCheckReport> {
    GradCheck::default().run(inputs, f)
}
