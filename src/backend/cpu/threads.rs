//! The worker pool the kernels' parallel loops run on, with each worker pinned to a CPU of its
//! own.
//!
//! A rayon worker sleeps a few microseconds after its queue runs dry, and a wake-up hands it
//! to the scheduler again, which may place it beside the other worker on one CPU (or move it
//! behind another task) for the next parallel loop. OpenMP's workers, PyTorch's, spin between
//! loops and stay where they are. On the 2-vCPU Intel host (KVM, session 25), f32 GEMM on 2
//! threads, a pinned and an unpinned `pretext bench gemm --serve` alternating repetitions of
//! 10 ms (medians of 21 pairs' ratios), each after 20 ms of another process spinning on one
//! CPU: 512³ 1.29×, 1024³ 1.23×, attention's Q·Kᵀ at T = 512 (512 × 64 × 512 × 12) 1.77×,
//! 256³ and 768 × 128 × 512 1.0×; after 20 ms of sleep instead: 1.66×, 1.11×, 1.36×, 1.69×,
//! 1.74×. Against PyTorch (`tools/bench_vs_torch.py`, 2 threads) the listed f32 shapes moved
//! from 0.45–0.59 to 0.78–1.05 (sq256, sq512, sq1024, the shakespeare MLP, Q·Kᵀ). Training
//! nanogpt-shakespeare-cpu for 80 steps, three rounds: 15.1 / 14.5 / 12.5 k tokens/s pinned
//! against 12.6 / 12.5 / 12.3 k unpinned.
//!
//! Worker i is pinned to the i-th CPU this process may run on (`sched_getaffinity` when the
//! pool is built), only when the pool has at least two workers and no more than those CPUs,
//! and only on Linux; `PRETEXT_PIN_THREADS=0` turns it off.
//!
//! The pool's workers also spin between parallel loops, as OpenMP's do: each kernel opens a
//! [`region`] around its parallel loop, and the outermost region queues a spin job on every
//! other worker (unless they are spinning already), which runs the pool's jobs as they come
//! (`rayon::yield_now`: its own queue, then stealing) until none came and no region started
//! for `PRETEXT_SPIN_US` microseconds (default [`SPIN_US`]; 0 turns it off). A spinning
//! worker takes the second half of the next loop's first split at once, where a sleeping one
//! took 50–150 µs to wake on this guest, and meanwhile the caller ran both halves itself.
//! Only workers of pools made by [`pool`] spin (the CLI's; a plain rayon pool, like the
//! global one under `cargo test`, is left as it is). On the Intel host (session 26), training
//! nanogpt-shakespeare-cpu for 80 steps on 2 threads, three rounds alternating: 13.8 / 13.8 /
//! 17.1 k tokens/s spinning 500 µs against 12.5 / 12.5 / 12.8 k not spinning (2 ms: 13.0 /
//! 14.7 / 17.4 k).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::error::{Error, Result};

/// A pool of `threads` workers (default: one per CPU), pinned as the module says.
pub fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        if t == 0 {
            return Err(Error::msg("--threads must be at least 1"));
        }
        builder = builder.num_threads(t);
    }
    let cpus = allowed_cpus();
    let workers = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let pin = pin_wanted() && workers >= 2 && workers <= cpus.len();
    builder = builder.start_handler(move |i| {
        WARM_WORKER.with(|w| w.set(true));
        if pin {
            // A worker that cannot be pinned runs where the scheduler puts it.
            let _ = pin_current_thread(cpus[i]);
        }
    });
    builder
        .build()
        .map_err(|e| Error::msg(format!("cannot start a pool of {workers} threads: {e}")))
}

thread_local! {
    /// Whether this thread is a worker of a pool made by [`pool`] (whose workers spin).
    static WARM_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is running [`spin`] (so a nested spin job returns at once).
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// Spin jobs queued or running, over all pools.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// Rounds of spin jobs queued, and spins begun (one per worker per round, at most): for tests.
static ROUNDS_QUEUED: AtomicUsize = AtomicUsize::new(0);
static SPINS_BEGUN: AtomicUsize = AtomicUsize::new(0);
/// Parallel regions in flight (a [`Region`] alive), over all pools.
static REGIONS: AtomicUsize = AtomicUsize::new(0);
/// When a parallel region last started ([`now_ns`]).
static TOUCHED: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds since the first call.
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Default spin of an idle worker, microseconds.
pub const SPIN_US: u64 = 500;

/// How long an idle worker keeps polling for work, in nanoseconds: `PRETEXT_SPIN_US`
/// microseconds, default [`SPIN_US`]; 0 turns spinning off.
fn spin_ns() -> u64 {
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| {
        std::env::var("PRETEXT_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(SPIN_US)
            .saturating_mul(1000)
    })
}

/// A parallel region, from [`region`] until dropped.
#[must_use = "the region lasts as long as this value"]
pub struct Region {
    counted: bool,
}

/// Opens a parallel region: call it before a kernel's parallel loop and keep the value
/// until the loop is done. On a worker of a pool made by [`pool`] with 2+ workers, the
/// outermost region (none other in flight) sets the pool's other workers spinning, unless
/// they already are: each runs the pool's jobs as they come until none came, and no region
/// started, for the spin time. A nested region only restarts that clock (it never queues a
/// spin job, which a worker waiting inside a join of the outer region could pick up and
/// then keep polling for the spin time before it sees its join done).
pub fn region() -> Region {
    let ns = spin_ns();
    if ns == 0 || !WARM_WORKER.with(Cell::get) || rayon::current_num_threads() < 2 {
        return Region { counted: false };
    }
    TOUCHED.store(now_ns(), Ordering::Relaxed);
    if REGIONS.fetch_add(1, Ordering::AcqRel) == 0 {
        start_spinners(ns);
    }
    Region { counted: true }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.counted {
            REGIONS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Queues a spin job on each of the current pool's workers but this one, unless spin jobs
/// are queued or running already.
fn start_spinners(ns: u64) {
    let want = rayon::current_num_threads() - 1;
    if SPINNERS
        .compare_exchange(0, want, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    ROUNDS_QUEUED.fetch_add(1, Ordering::Relaxed);
    let me = rayon::current_thread_index();
    rayon::spawn_broadcast(move |ctx| {
        if Some(ctx.index()) == me {
            return;
        }
        if !SPINNING.with(Cell::get) {
            spin(ns);
        }
        SPINNERS.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Runs the pool's pending jobs as they come, until none came for `ns` nanoseconds since
/// the last one or the last region's start.
fn spin(ns: u64) {
    SPINNING.with(|s| s.set(true));
    SPINS_BEGUN.fetch_add(1, Ordering::Relaxed);
    let mut last = now_ns();
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => last = now_ns(),
            Some(rayon::Yield::Idle) => {
                for _ in 0..8 {
                    std::hint::spin_loop();
                }
                let t = now_ns();
                if t.saturating_sub(last.max(TOUCHED.load(Ordering::Relaxed))) > ns {
                    break;
                }
            }
            None => break,
        }
    }
    SPINNING.with(|s| s.set(false));
}

/// Whether workers are pinned: unless `PRETEXT_PIN_THREADS` is `0`.
fn pin_wanted() -> bool {
    std::env::var("PRETEXT_PIN_THREADS").map_or(true, |v| v.trim() != "0")
}

/// The CPUs this process may run on, in increasing order (empty where unknown).
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `cpu_set_t` is plain bits, for which all zeroes is the empty set;
        // `sched_getaffinity` writes at most `size_of::<cpu_set_t>()` bytes into it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as above; pid 0 is this thread.
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` < CPU_SETSIZE, inside the set.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Pins the calling thread to `cpu`; false when the system refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: an all-zero `cpu_set_t` is the empty set; `cpu` < CPU_SETSIZE is inside it;
        // `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes of it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_pinned_to_distinct_allowed_cpus() {
        let cpus = allowed_cpus();
        if cfg!(target_os = "linux") {
            assert!(!cpus.is_empty(), "sched_getaffinity gave no CPU");
        }
        if cpus.len() < 2 {
            eprintln!("skipped: fewer than 2 CPUs allowed");
            return;
        }
        let p = pool(Some(2)).unwrap();
        let seen: Vec<Vec<usize>> = p.broadcast(|_| allowed_cpus());
        if pin_wanted() {
            assert_eq!(seen, [vec![cpus[0]], vec![cpus[1]]]);
        }
        // More workers than CPUs: none pinned.
        let p = pool(Some(cpus.len() + 1)).unwrap();
        for s in p.broadcast(|_| allowed_cpus()) {
            assert_eq!(s, cpus);
        }
        assert!(pool(Some(0)).is_err());
    }

    /// Waits up to 5 s for `f` to hold.
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed().as_secs() < 5, "never: {what}");
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// The outermost region of a 2-worker pool from `pool` sets the other worker spinning,
    /// the spin ends by itself, nested regions (inside the loop's tasks, on either worker)
    /// queue nothing, and a plain rayon pool or a 1-worker pool never spins. (The only test
    /// that opens regions on such pools, so the counters are its own.)
    #[test]
    fn outermost_region_sets_the_other_worker_spinning_for_a_while() {
        if spin_ns() == 0 {
            eprintln!("skipped: PRETEXT_SPIN_US=0");
            return;
        }
        let idle = || SPINNERS.load(Ordering::Acquire) == 0;
        let p = pool(Some(2)).unwrap();
        p.install(|| {
            eventually("spinners of earlier rounds done", idle);
            let (rounds, begun) = (
                ROUNDS_QUEUED.load(Ordering::Relaxed),
                SPINS_BEGUN.load(Ordering::Relaxed),
            );
            let outer = region();
            assert_eq!(ROUNDS_QUEUED.load(Ordering::Relaxed), rounds + 1);
            // With no region starting meanwhile, the spin ends by itself.
            eventually("the spin ended", idle);
            assert_eq!(SPINS_BEGUN.load(Ordering::Relaxed), begun + 1);
            // Regions inside the outer one's loop, on either worker, queue nothing even with
            // no worker spinning.
            use rayon::prelude::*;
            let total: u64 = (0..64u64)
                .into_par_iter()
                .map(|i| {
                    let _nested = region();
                    (0..1000u64).into_par_iter().map(|j| i * j).sum::<u64>()
                })
                .sum();
            drop(outer);
            assert_eq!(total, (0..64u64).sum::<u64>() * (0..1000u64).sum::<u64>());
            assert_eq!(
                ROUNDS_QUEUED.load(Ordering::Relaxed),
                rounds + 1,
                "a nested region queued spin jobs"
            );
        });
        let rounds = ROUNDS_QUEUED.load(Ordering::Relaxed);
        let plain = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        plain.install(|| drop(region()));
        pool(Some(1)).unwrap().install(|| drop(region()));
        assert_eq!(ROUNDS_QUEUED.load(Ordering::Relaxed), rounds);
    }
}
