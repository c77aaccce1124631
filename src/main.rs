use clap::Parser;

use pretext::backend::cpu::pool::{self, CachingAlloc};

/// Large buffers are cached and reused across training steps instead of being mapped and
/// faulted in afresh (see `backend::cpu::pool`). `PRETEXT_CPU_POOL_MB` sets the cache's limit
/// (0 turns caching off; the default is half the physical memory).
#[global_allocator]
static ALLOC: CachingAlloc = CachingAlloc;

fn main() {
    if let Some(mb) = std::env::var("PRETEXT_CPU_POOL_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        pool::set_limit(mb << 20);
    }
    let cli = pretext::cli::Cli::parse();
    if let Err(e) = pretext::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
