//! The caching allocator (backend::cpu::pool) installed as this test binary's global allocator:
//! large blocks come back from the cache, zeroed when asked, aligned, with contents kept across
//! a reallocation, within the cache limit, and safely under several threads; blocks of 2 MiB and
//! more aligned to 2 MiB and advised for huge pages.

use pretext::backend::cpu::pool::{self, CachingAlloc, HUGE_PAGE, MIN_POOLED};

#[global_allocator]
static ALLOC: CachingAlloc = CachingAlloc;

/// The pool's counters are process-wide and the test harness runs tests on threads, so every
/// check lives in this one test, in sequence.
#[test]
fn caching_allocator() {
    // A freed large buffer is reused by the next request of its size class.
    let n = 300_000usize; // 1.2 MB of f32
    let v = vec![1.0f32; n];
    let addr = v.as_ptr() as usize;
    assert_eq!(addr % 64, 0, "pooled blocks are 64-byte aligned");
    drop(v);
    let before = pool::stats();
    assert!(before.cached_bytes >= n * 4);
    let w = vec![0.0f32; n - 1000]; // same class (the class holds ≥ n·4 bytes)
    let after = pool::stats();
    assert_eq!(w.as_ptr() as usize, addr, "the cached block is handed back");
    assert_eq!(after.hits, before.hits + 1);
    // alloc_zeroed on a reused block zeroes exactly like a fresh one.
    assert!(w.iter().all(|&x| x == 0.0), "reused block not zeroed");
    drop(w);

    // Blocks of 2 MiB and more are 2 MiB aligned, advised for huge pages where the kernel has
    // them, and zeroed when asked for zeroed memory, fresh or reused.
    let advised = pool::stats().huge_advised_bytes;
    let mut big = vec![0u8; HUGE_PAGE * 3 / 2 - 12345];
    assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0, "huge block alignment");
    assert!(big.iter().all(|&x| x == 0), "fresh huge block not zeroed");
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        assert!(
            pool::stats().huge_advised_bytes >= advised + HUGE_PAGE,
            "the huge block was not advised: {:?}",
            pool::stats()
        );
    }
    big.fill(7);
    let addr = big.as_ptr() as usize;
    drop(big);
    let again = vec![0u8; HUGE_PAGE * 3 / 2 - 54321]; // the same size class
    assert_eq!(
        again.as_ptr() as usize,
        addr,
        "the cached huge block is handed back"
    );
    assert!(
        again.iter().all(|&x| x == 0),
        "reused huge block not zeroed"
    );
    drop(again);

    // Reallocation keeps the contents across classes and within one.
    let mut g: Vec<u64> = (0..(MIN_POOLED / 8) as u64).collect();
    for i in 0..3 * MIN_POOLED as u64 {
        g.push(i);
    }
    assert_eq!(g[12345], 12345);
    assert_eq!(g[MIN_POOLED / 8 + 777], 777);
    g.shrink_to_fit();
    assert_eq!(g[g.len() - 1], 3 * MIN_POOLED as u64 - 1);
    drop(g);

    // Small allocations bypass the pool.
    let hits = pool::stats().hits;
    let misses = pool::stats().misses;
    let small: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 1000]).collect();
    assert_eq!(pool::stats().hits, hits);
    assert_eq!(pool::stats().misses, misses);
    drop(small);

    // Several threads allocating and freeing large buffers: contents stay private.
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                for r in 0..50u32 {
                    let len = MIN_POOLED / 4 + ((t * 7919 + r * 104_729) as usize % MIN_POOLED);
                    let v = vec![t * 1000 + r; len];
                    assert!(v.iter().all(|&x| x == t * 1000 + r));
                }
            });
        }
    });

    // The default limit is half the physical memory.
    #[cfg(target_os = "linux")]
    {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: usize = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let half = kib * 1024 / 2;
        let got = pool::limit();
        assert!(
            got.abs_diff(half) <= half / 50,
            "default limit {got}, half of MemTotal {half}"
        );
    }

    // The limit is respected; trim empties the cache; 0 turns caching off.
    pool::trim();
    assert_eq!(pool::stats().cached_bytes, 0);
    pool::set_limit(1 << 20);
    let bufs: Vec<Vec<f32>> = (0..8).map(|_| vec![0.0f32; MIN_POOLED / 4]).collect();
    drop(bufs);
    assert!(pool::stats().cached_bytes <= 1 << 20);
    pool::set_limit(0);
    pool::trim();
    drop(vec![0.0f32; MIN_POOLED]);
    assert_eq!(pool::stats().cached_bytes, 0);
    pool::set_limit(2 << 30);
    assert_eq!(pool::limit(), 2 << 30);
}
