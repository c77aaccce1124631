//! Run-time choice of the instruction set for the CPU kernels: AVX-512 → AVX2+FMA → scalar.
//!
//! The best level the CPU supports is used unless it is lowered, either by the environment
//! variable `PRETEXT_ISA=avx512|avx2|scalar` (read once) or by `force(Some(level))` (tests use
//! this to run every path on an AVX-512 machine). A forced level above what the CPU supports
//! is clamped to what it supports.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// Whether the CPU has the AVX-512 BF16 extension (`vdpbf16ps`: bf16 pair dot products
/// accumulated in f32), used by the bf16 GEMM when the active level is `Avx512`.
pub fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU reports AMX tiles with bf16 (`tdpbf16ps`) in CPUID leaf 7: EDX bit 22
/// (AMX-BF16) and bit 24 (AMX-TILE). The OS must still grant the tile state (see
/// `gemm::amx`), so this is necessary, not sufficient.
pub fn cpu_has_amx_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Leaf 7 is only read when the maximum basic leaf (leaf 0 EAX) reaches it.
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        if max_leaf < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        (edx >> 22) & 1 == 1 && (edx >> 24) & 1 == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether AMX bf16 tiles can be used by this process: the CPU reports them, the OS
/// enabled the tile state in XCR0 (bits 17 XTILECFG and 18 XTILEDATA), and Linux granted
/// the permission requested with `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`
/// (asked once per process; the grant covers all its threads). Without the grant the
/// first tile instruction would fault, so every AMX kernel is gated on this.
pub fn amx_bf16_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| cpu_has_amx_bf16() && os_enables_tiles() && request_tile_permission())
}

#[cfg(target_arch = "x86_64")]
fn os_enables_tiles() -> bool {
    // XGETBV needs OSXSAVE (CPUID.1:ECX bit 27).
    if (std::arch::x86_64::__cpuid(1).ecx >> 27) & 1 == 0 {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; OSXSAVE guarantees it is available.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi,
            options(nomem, nostack, preserves_flags));
    }
    (lo >> 17) & 0b11 == 0b11
}

#[cfg(not(target_arch = "x86_64"))]
fn os_enables_tiles() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: the arch_prctl system call with ARCH_REQ_XCOMP_PERM only updates this
    // process's permitted XSAVE features; `syscall` clobbers rcx and r11.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// 0: not yet decided; otherwise an `Isa` discriminant.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Force a level (clamped to what the CPU supports), or `None` to go back to the default.
pub fn force(level: Option<Isa>) {
    let v = match level {
        Some(l) => l.min(detected()) as u8,
        None => default_level() as u8,
    };
    FORCED.store(v, Ordering::Relaxed);
}

fn default_level() -> Isa {
    let best = detected();
    match std::env::var("PRETEXT_ISA")
        .ok()
        .and_then(|s| Isa::parse(&s))
    {
        Some(l) => l.min(best),
        None => best,
    }
}

/// The level kernels use now.
pub fn active() -> Isa {
    match Isa::from_u8(FORCED.load(Ordering::Relaxed)) {
        Some(l) => l,
        None => {
            let l = default_level();
            FORCED.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}
