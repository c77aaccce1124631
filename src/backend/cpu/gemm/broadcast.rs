//! How the AVX-512 f32 k loops (`avx512_loop`) broadcast A[i, p] to the 16 lanes of its two
//! multiply-adds, chosen once per process:
//!
//! - `Embedded`: the broadcast rides in each FMA's memory operand (`{1to16}`). A step of the
//!   12 × 32 tile is 26 fused µops and 26 loads (A[i, p] loaded twice).
//! - `Explicit`: one `vbroadcastss` per row into a register both FMAs read: 38 µops and 14
//!   loads a step.
//!
//! The products and their order are the same, so C is bit for bit the same either way; only
//! the speed differs, and which form is faster depends on the core and its neighbours. On an
//! Intel host with AMX (session 37, family 6 model 167 as KVM reports it), the 12 × 32 loop
//! with A and B in L1 ran at 84–87% of the FMA probe embedded and 91–95% explicit (a C
//! harness; `pretext bench microkernel --k 384 --panels 16` 82–83% → 88–89%, GEMMs 5–9%
//! faster); on the AMX-less Intel EMR host (session 28) embedded won by 4–20% while the
//! core's other hyperthread was busy (the two threads then share the front end, where the 38
//! µops no longer issue in the step's 12 cycles) and the two were within ±2% in quiet
//! moments. So neither is fixed: the first AVX-512 f32 kernel call of a process times both
//! loops on a panel in L1 (`calibrate`, ~2 ms) and keeps the faster, unless
//! `PRETEXT_F32_BROADCAST=embedded|explicit` names one (read once). The loops' tests run both
//! forms directly (`avx512_loop::tests`).

use std::sync::atomic::{AtomicU8, Ordering};

/// The two ways the f32 k loops broadcast A (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BroadcastForm {
    Embedded = 1,
    Explicit = 2,
}

impl BroadcastForm {
    pub fn name(self) -> &'static str {
        match self {
            BroadcastForm::Embedded => "embedded",
            BroadcastForm::Explicit => "explicit",
        }
    }

    pub fn parse(s: &str) -> Option<BroadcastForm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "embedded" => Some(BroadcastForm::Embedded),
            "explicit" => Some(BroadcastForm::Explicit),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Option<BroadcastForm> {
        match v {
            1 => Some(BroadcastForm::Embedded),
            2 => Some(BroadcastForm::Explicit),
            _ => None,
        }
    }
}

/// The environment variable that names a form instead of the calibration.
const ENV: &str = "PRETEXT_F32_BROADCAST";

/// 0: not yet decided; otherwise a `BroadcastForm` discriminant.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The form the f32 loops use: named by `PRETEXT_F32_BROADCAST` or calibrated (the first call
/// decides; two threads deciding at once both store a valid form).
pub fn active() -> BroadcastForm {
    if let Some(f) = BroadcastForm::from_u8(ACTIVE.load(Ordering::Relaxed)) {
        return f;
    }
    let f = match std::env::var(ENV) {
        Ok(s) => match BroadcastForm::parse(&s) {
            Some(f) => f,
            None => {
                eprintln!(
                    "pretext: {ENV}={s:?} is neither \"embedded\" nor \"explicit\"; \
                     choosing by calibration"
                );
                calibrate()
            }
        },
        Err(_) => calibrate(),
    };
    ACTIVE.store(f as u8, Ordering::Relaxed);
    f
}

/// Times the packed 12 × 32 loop in both forms, alternating, on one A panel and one B panel
/// in L1 (kc = 128: 6 + 16 KiB), and returns the faster: after a warm-up of each, 7 rounds
/// of 256 calls per form (~0.1 ms each), the median over rounds of embedded / explicit
/// time; explicit when that exceeds 1. Embedded where AVX-512 is absent (never called then).
fn calibrate() -> BroadcastForm {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return calibrate_avx512();
    }
    BroadcastForm::Embedded
}

#[cfg(target_arch = "x86_64")]
fn calibrate_avx512() -> BroadcastForm {
    use super::avx512_loop::{packed_f32, Acc};
    use std::time::Instant;

    const KC: usize = 128;
    const CALLS: usize = 256;
    const ROUNDS: usize = 7;
    // Small values: the sums stay finite over every call (the accumulators restart at zero).
    let a: Vec<f32> = (0..12 * KC).map(|x| (x % 7) as f32 * 1e-3).collect();
    let b: Vec<f32> = (0..32 * KC).map(|x| (x % 5) as f32 * 1e-3).collect();
    let time = |form: BroadcastForm| {
        let start = Instant::now();
        for _ in 0..CALLS {
            // SAFETY: the packed panels hold 12·KC and 32·KC floats; the caller checked
            // AVX-512F. Zeroed accumulators are valid `__m512` values.
            unsafe {
                let mut acc: Acc = std::mem::zeroed();
                packed_f32(form, KC, a.as_ptr(), b.as_ptr(), &mut acc);
                std::hint::black_box(&acc);
            }
        }
        start.elapsed().as_secs_f64()
    };
    time(BroadcastForm::Embedded);
    time(BroadcastForm::Explicit);
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            // Alternate which form goes first, so that neither always follows the other.
            let (e, x) = if r % 2 == 0 {
                let e = time(BroadcastForm::Embedded);
                (e, time(BroadcastForm::Explicit))
            } else {
                let x = time(BroadcastForm::Explicit);
                (time(BroadcastForm::Embedded), x)
            };
            e / x.max(f64::MIN_POSITIVE)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    if ratios[ROUNDS / 2] > 1.0 {
        BroadcastForm::Explicit
    } else {
        BroadcastForm::Embedded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for f in [BroadcastForm::Embedded, BroadcastForm::Explicit] {
            assert_eq!(BroadcastForm::parse(f.name()), Some(f));
            assert_eq!(BroadcastForm::from_u8(f as u8), Some(f));
        }
        assert_eq!(
            BroadcastForm::parse(" Explicit\n"),
            Some(BroadcastForm::Explicit)
        );
        assert_eq!(BroadcastForm::parse("both"), None);
        assert_eq!(BroadcastForm::from_u8(0), None);
    }
}
