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
    if pin_wanted() && workers >= 2 && workers <= cpus.len() {
        builder = builder.start_handler(move |i| {
            // A worker that cannot be pinned runs where the scheduler puts it.
            let _ = pin_current_thread(cpus[i]);
        });
    }
    builder
        .build()
        .map_err(|e| Error::msg(format!("cannot start a pool of {workers} threads: {e}")))
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
}
