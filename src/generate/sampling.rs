//! Choosing the next token from one row of logits z ∈ ℝ^V.
//!   greedy (temperature 0): argmax z (first index on ties)
//!   otherwise p = softmax(z / T), then
//!     top-k: keep the k largest p (ties at the k-th value kept in index order), renormalise
//!     top-p: keep the smallest prefix of p sorted descending whose mass reaches p_top
//!            (the token that crosses the threshold is kept), renormalise
//!   and draw from what is left with the seeded RNG.

use crate::error::{Error, Result};
use crate::tensor::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

impl SamplingConfig {
    pub fn greedy() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.temperature.is_nan() || self.temperature < 0.0 || !self.temperature.is_finite() {
            return Err(Error::msg(format!(
                "temperature {} must be ≥ 0",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::msg("top-k must be at least 1"));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::msg(format!("top-p {p} must be in (0, 1]")));
            }
        }
        Ok(())
    }
}

fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// The next token for one row of logits.
pub fn sample_next(logits: &[f32], cfg: &SamplingConfig, rng: &mut Rng) -> Result<usize> {
    cfg.validate()?;
    if logits.is_empty() {
        return Err(Error::msg("sample_next: empty logits"));
    }
    if cfg.temperature == 0.0 {
        return Ok(argmax(logits));
    }
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &z)| (i, (((z - m) / cfg.temperature) as f64).exp()))
        .collect();
    // Sort by probability, descending; ties keep index order (stable sort).
    probs.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    if let Some(k) = cfg.top_k {
        probs.truncate(k.min(probs.len()));
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if let Some(top_p) = cfg.top_p {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p.1 / total;
            if acc >= top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * total;
    for &(i, p) in &probs {
        if u < p {
            return Ok(i);
        }
        u -= p;
    }
    Ok(probs.last().expect("at least one token").0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut rng = Rng::new(0);
        assert_eq!(
            sample_next(&[0.0, 3.0, 3.0, 1.0], &SamplingConfig::greedy(), &mut rng).unwrap(),
            1
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_crossing_token() {
        let mut rng = Rng::new(1);
        let z = [1.0, 2.0, 0.5, 1.9];
        let k1 = SamplingConfig {
            top_k: Some(1),
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(sample_next(&z, &k1, &mut rng).unwrap(), 1);
        }
        // p ∝ e^z ≈ (0.15, 0.40, 0.09, 0.36) for tokens 0..3: sorted 1, 3, 0, 2; 0.40 < 0.5 ≤ 0.76, so top-p 0.5 keeps {1, 3}.
        let p = SamplingConfig {
            top_p: Some(0.5),
            ..Default::default()
        };
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            seen[sample_next(&z, &p, &mut rng).unwrap()] += 1;
        }
        assert!(
            seen[1] > 0 && seen[3] > 0 && seen[0] == 0 && seen[2] == 0,
            "{seen:?}"
        );
    }

    #[test]
    fn temperature_sampling_follows_the_softmax() {
        let mut rng = Rng::new(2);
        let z = [0.0f32, (3.0f32).ln()]; // p = (0.25, 0.75)
        let cfg = SamplingConfig::default();
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample_next(&z, &cfg, &mut rng).unwrap() == 1)
            .count();
        let f = ones as f64 / n as f64;
        assert!((f - 0.75).abs() < 0.02, "{f}");
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut rng = Rng::new(0);
        let bad = SamplingConfig {
            top_p: Some(0.0),
            ..Default::default()
        };
        assert!(sample_next(&[1.0], &bad, &mut rng).is_err());
        let bad = SamplingConfig {
            temperature: -1.0,
            ..Default::default()
        };
        assert!(sample_next(&[1.0], &bad, &mut rng).is_err());
    }
}
