//! f32 GEMM on raw buffers: for each batch entry i,
//!   C_i[m×n] = A_i[m×k] · B_i[k×n] + beta · C_i
//! where each matrix is read through a (row stride, column stride) pair, so a transposed
//! operand is just swapped strides, and A_i starts at `a_offsets[i]` (likewise B, C).
//! A broadcast batch operand repeats its offset. The C blocks of different i must not overlap.
//!
//! The fast path packs A and B into panels (`pack`) and runs a register-tile micro-kernel
//! (`avx512`, `avx2`, `scalar`) inside a cache-blocked, rayon-threaded loop nest (`driver`),
//! chosen by `isa::active()`; up to 8 rows of A (a decoding step) go through `gemv` instead,
//! which reads B where it lies, and so do up to 8 columns of B, as the transposed product
//! (`narrow`; on AMX, 5–8 columns against a bf16 A read in place take the tile kernel,
//! `amx_in_place_beats_narrow`); a few more rows against W's rows along k run transposed
//! on the packed path (`f32_transposed`, `amx_transposed`); a small C over a long k is
//! split along k across threads (`driver::k_split`). The bf16 entry points
//! (`bgemm_batched`, and `sgemm_batched_bf16` which rounds f32 operands to bf16 while
//! packing) multiply bf16 values with f32 accumulation: `vdpbf16ps` on CPUs with AVX-512
//! BF16, otherwise the f32 kernels on the bf16-rounded values (same products, f32 sums);
//! `bgemm_batched_to_bf16` rounds their f32 sums into a bf16 C (`round_bf16`).
//! `set_matmul_precision` (`precision`) sends the plain f32 entry point to the bf16
//! kernels, process-wide: "medium" rounds the operands to bf16, "high" splits each into two
//! bf16 values and sums three bf16 products (`bf16x3`).
//! `sgemm_batched_new` multiplies into a new C that is not zeroed first: every path stores
//! each element of C when beta is 0 and reads none (`driver::COut`). `weight_bf16` multiplies
//! f32 activations by bf16 weights widened exactly (weight-only bf16 inference).

mod amx;
mod avx2;
mod avx2_loop;
mod avx512;
mod avx512_bf16;
mod avx512_loop;
mod bf16x3;
pub mod broadcast;
mod dispense;
mod driver;
mod gemv;
mod gemv_bf16;
mod gemv_wbf16;
mod kernel;
mod micro_bench;
mod naive;
mod pack;
pub mod peak;
mod precision;
mod round_bf16;
mod scalar;
#[cfg(any(test, feature = "emu"))]
mod tile_emu;
mod weight_bf16;

use half::bf16;

use super::isa::{self, Isa};
use crate::error::{Error, Result};
pub use bf16x3::split_bf16x2;
use driver::COut;
pub use micro_bench::MicroKernelBench;
pub(crate) use pack::f32_to_bf16_bits;
use pack::Convert;
pub use precision::{matmul_precision, set_matmul_precision, MatmulPrecision, PrecisionGuard};
pub use weight_bf16::{sgemm_batched_wbf16_isa, sgemm_batched_wbf16_new};

/// Sizes and element strides of one GEMM problem (same for every batch entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLayout {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is m×k: element (i, p) at a[off + i·a_rs + p·a_cs].
    pub a_rs: usize,
    pub a_cs: usize,
    /// B is k×n: element (p, j) at b[off + p·b_rs + j·b_cs].
    pub b_rs: usize,
    pub b_cs: usize,
    /// C is m×n: element (i, j) at c[off + i·c_rs + j·c_cs].
    pub c_rs: usize,
    pub c_cs: usize,
}

impl GemmLayout {
    /// All three row-major and contiguous.
    pub fn row_major(m: usize, n: usize, k: usize) -> Self {
        GemmLayout {
            m,
            n,
            k,
            a_rs: k,
            a_cs: 1,
            b_rs: n,
            b_cs: 1,
            c_rs: n,
            c_cs: 1,
        }
    }

    fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    }
}

/// Checks that every matrix lies inside its buffer and that the C blocks are pairwise
/// disjoint; the kernels rely on both.
fn check_bounds(
    l: &GemmLayout,
    a_len: usize,
    a_offsets: &[usize],
    b_len: usize,
    b_offsets: &[usize],
    c_len: usize,
    c_offsets: &[usize],
) -> Result<()> {
    if a_offsets.len() != b_offsets.len() || a_offsets.len() != c_offsets.len() {
        return Err(Error::msg(format!(
            "gemm: batch offset lists differ in length: a {}, b {}, c {}",
            a_offsets.len(),
            b_offsets.len(),
            c_offsets.len()
        )));
    }
    let ea = GemmLayout::extent(l.m, l.k, l.a_rs, l.a_cs);
    let eb = GemmLayout::extent(l.k, l.n, l.b_rs, l.b_cs);
    let ec = GemmLayout::extent(l.m, l.n, l.c_rs, l.c_cs);
    for (name, len, ext, offs) in [
        ("A", a_len, ea, a_offsets),
        ("B", b_len, eb, b_offsets),
        ("C", c_len, ec, c_offsets),
    ] {
        if let Some(&o) = offs.iter().find(|&&o| ext > 0 && o + ext > len) {
            return Err(Error::msg(format!(
                "gemm: operand {name} at offset {o} spans {ext} elements, past its buffer of {len} ({l:?})"
            )));
        }
    }
    if ec > 0 && c_offsets.len() > 1 {
        // Blocks may interleave (e.g. heads written into a [T, H, d] layout), so only a
        // repeated offset is certainly an overlap; the rest is the caller's contract.
        let mut offs: Vec<usize> = c_offsets.to_vec();
        offs.sort_unstable();
        if let Some(w) = offs.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::msg(format!(
                "gemm: two C blocks share offset {}; C blocks must be disjoint",
                w[0]
            )));
        }
    }
    // The kernels store within a tile with no wrap-around, and a zero C stride would make
    // two tiles alias.
    if (l.m > 1 && l.c_rs == 0) || (l.n > 1 && l.c_cs == 0) {
        return Err(Error::msg(format!("gemm: C has a zero stride ({l:?})")));
    }
    Ok(())
}

/// Scales the C blocks by beta ∉ {0, 1} so the kernels only ever overwrite or accumulate.
/// Every path goes through here first, so this is where an uninitialised C is refused for
/// any beta but 0 (with beta 0 the kernels store every element of C and read none).
fn prescale(l: &GemmLayout, beta: f32, c: &mut COut<'_>, c_offsets: &[usize]) -> bool {
    if beta == 0.0 {
        return false;
    }
    let c = c
        .init_mut()
        .expect("gemm: beta ≠ 0 reads C, which is uninitialised here");
    if beta == 1.0 {
        return true;
    }
    for &co in c_offsets {
        for i in 0..l.m {
            for j in 0..l.n {
                c[co + i * l.c_rs + j * l.c_cs] *= beta;
            }
        }
    }
    true
}

/// Runs micro-kernel `K` with operand conversions `CA`, `CB`.
#[allow(clippy::too_many_arguments)]
fn run<K, CA, CB>(
    l: &GemmLayout,
    a: &[CA::Src],
    a_offsets: &[usize],
    b: &[CB::Src],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) where
    K: kernel::MicroKernel,
    CA: Convert<Dst = K::P>,
    CB: Convert<Dst = K::P>,
{
    let acc = prescale(l, beta, c, c_offsets);
    let beta = if acc { 1.0 } else { 0.0 };
    driver::gemm::<K, CA, CB>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
}

/// Which kernel the bf16 entry points use at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Path {
    /// AMX tiles (`tdpbf16ps`), when the CPU has them and Linux grants the tile state.
    Amx,
    /// The AMX kernel on a scalar model of the tile unit (feature `emu`, for tests): the same
    /// packing, driver and kernel code as `Amx` on any CPU, only the tile instructions
    /// modelled. Never chosen by `at` nor listed by `available`.
    #[cfg(feature = "emu")]
    AmxEmulated,
    /// `vdpbf16ps` pair dot products (AVX-512 BF16).
    Avx512Bf16,
    /// The f32 kernel of this level on bf16-rounded inputs.
    F32(Isa),
}

impl Bf16Path {
    /// The path used at `level` on this CPU: AMX where usable; else `vdpbf16ps` when the
    /// CPU has it and it out-runs the f32 FMA kernel on widened values (measured once; on
    /// CPUs where `vdpbf16ps` issues at half the FMA rate the f32 kernel is twice as fast,
    /// with the same exact products); else the f32 kernel. `PRETEXT_BF16=amx|dot|f32`
    /// picks one (when the CPU can run it).
    pub fn at(level: Isa) -> Bf16Path {
        if level != Isa::Avx512 {
            return Bf16Path::F32(level);
        }
        let dot = isa::has_avx512_bf16();
        match std::env::var("PRETEXT_BF16").as_deref() {
            Ok("f32") => Bf16Path::F32(level),
            Ok("dot") if dot => Bf16Path::Avx512Bf16,
            Ok("dot") => Bf16Path::F32(level),
            _ if isa::amx_bf16_usable() => Bf16Path::Amx,
            Ok("amx") if dot => Bf16Path::Avx512Bf16,
            _ if dot && dot_beats_fma() => Bf16Path::Avx512Bf16,
            _ => Bf16Path::F32(level),
        }
    }

    /// Every path this CPU can run, best first.
    pub fn available() -> Vec<Bf16Path> {
        let mut v = Vec::new();
        if isa::amx_bf16_usable() {
            v.push(Bf16Path::Amx);
        }
        if isa::has_avx512_bf16() {
            v.push(Bf16Path::Avx512Bf16);
        }
        for l in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
            if l <= isa::detected() {
                v.push(Bf16Path::F32(l));
            }
        }
        v
    }

    pub fn name(self) -> String {
        match self {
            Bf16Path::Amx => "amx_bf16".to_string(),
            #[cfg(feature = "emu")]
            Bf16Path::AmxEmulated => "amx_bf16-emulated".to_string(),
            Bf16Path::Avx512Bf16 => "avx512_bf16".to_string(),
            Bf16Path::F32(l) => format!("{}-f32-on-bf16", l.name()),
        }
    }

    /// Clamps an f32 level to the CPU; errors for `vdpbf16ps` on a CPU without it.
    fn checked(self) -> Result<Bf16Path> {
        match self {
            Bf16Path::Avx512Bf16 if !isa::has_avx512_bf16() => Err(Error::msg(
                "bgemm: the avx512_bf16 path was requested but this CPU lacks AVX-512 BF16",
            )),
            Bf16Path::Avx512Bf16 => Ok(self),
            Bf16Path::Amx if !isa::amx_bf16_usable() => Err(Error::msg(
                "bgemm: the amx_bf16 path was requested but AMX tiles are unavailable \
                 (CPU, XCR0 or the Linux arch_prctl permission)",
            )),
            Bf16Path::Amx => Ok(self),
            #[cfg(feature = "emu")]
            Bf16Path::AmxEmulated => Ok(self),
            Bf16Path::F32(l) => Ok(Bf16Path::F32(l.min(isa::detected()))),
        }
    }
}

/// A decoding step (up to 8 rows of A) straight from W, or its transpose (up to 8 columns of
/// B, `narrow`). W's rows along k (x·Wᵀ) take dot products: `vdpbf16ps` (`gemv_bf16`) on
/// its paths, bf16 or f32 rounded as it is read; on the f32 paths, f32 dot products on bf16
/// rows widened as they are loaded (`Bf16Row::WIDENED`; none for f32 rows). W's rows along
/// n (x·W, as GPT-2's Conv1D stores its weights) take the axpy form on bf16 rows widened
/// as they are loaded, on every path (`Bf16Row::AXPY`): the packed path would pack all of W
/// for a tile that is mostly padding (1 × 768 × 3072 x·W, 1 thread: 4.7 GFLOP/s packed on
/// AMX against 21 for x·Wᵀ's dot products). Returns false, having done nothing, when the
/// path, CPU or layout does not fit.
#[allow(clippy::too_many_arguments)]
fn gemv_bf16<T: gemv_bf16::Bf16Row + Send + Sync>(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[T],
    a_offsets: &[usize],
    b: &[T],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> bool {
    // A few rows as they are, or a few columns as Cᵀ = Bᵀ·Aᵀ (the two exclude each other:
    // `form` takes at most MAX_M rows, `narrow` more).
    let (form, lg, ag, ag_offsets, bg, bg_offsets) = match (gemv::form(l), narrow(l)) {
        (Some(form), _) => (form, *l, a, a_offsets, b, b_offsets),
        (None, Some(_)) if amx_in_place_beats_narrow::<T>(path, l) => return false,
        (None, Some((lt, form))) => (form, lt, b, b_offsets, a, a_offsets),
        (None, None) => return false,
    };
    let level = match path {
        Bf16Path::F32(level) => level,
        _ => isa::detected(),
    };
    let run = |c: &mut COut<'_>, kernel: &(dyn Fn(gemv::Job<'_, T>) + Sync)| {
        // The same elements of C either way, so beta applies through `l`.
        let acc = prescale(l, beta, c, c_offsets);
        gemv::run_with(
            form, level, &lg, ag, ag_offsets, bg, bg_offsets, acc, c, c_offsets, kernel,
        );
    };
    match (form, path, T::WIDENED, T::AXPY) {
        // The emulated AMX path takes no shortcut: every shape runs its tile kernel.
        #[cfg(feature = "emu")]
        (_, Bf16Path::AmxEmulated, _, _) => return false,
        (gemv::Form::Dot, Bf16Path::Amx | Bf16Path::Avx512Bf16, _, _) if isa::has_avx512_bf16() => {
            // SAFETY: the CPU has AVX-512 BF16 (checked, with F/BW, which every CPU with it
            // has), and `run_with` keeps each job inside the checked bounds.
            run(c, &|job| unsafe { gemv_bf16::dot(job) })
        }
        (gemv::Form::Dot, Bf16Path::F32(_), Some(widened), _) => run(c, &|job| widened(level, job)),
        (gemv::Form::Axpy, _, _, Some(axpy)) => run(c, &|job| axpy(level, job)),
        _ => return false,
    }
    true
}

/// Whether the AMX kernel reading A in place (`driver::direct_a`) computes a product of
/// `NARROW_AMX_MIN_COLUMNS` to `gemv::MAX_M` columns faster than `narrow`'s dot products:
/// a bf16 A with k contiguous on the AMX path. Its tiles pad the columns to 32, but a
/// `vdpbf16ps` runs at half the rate of an f32 FMA here (bf16 dot probe 77–80 GFLOP/s
/// against 136–168 for FMAs, Intel EMR, 1 thread), while the tile unit has flops to spare.
fn amx_in_place_beats_narrow<T: gemv_bf16::Bf16Row>(path: Bf16Path, l: &GemmLayout) -> bool {
    path == Bf16Path::Amx && T::AMX_IN_PLACE && l.a_cs == 1 && l.n >= NARROW_AMX_MIN_COLUMNS
}

/// Fewest columns of B that `amx_in_place_beats_narrow` takes from `narrow`. In-process
/// alternation, bf16, 1 thread, AMX in place against dot products (`narrow`): n = 8
/// 4096 × 4096 1.29×, 4096 × 768 1.25×, 768 × 768 1.7×, 2 threads 4096 × 4096 1.33×,
/// 768 × 768 2.3×; against the dot form with its gather mended, in separate runs, 64 × 4096
/// 57 against 27 GFLOP/s, 16 × 4096 18 against 15; n = 5–6 768 × 768 2.2×, 64 × 768 1.9×,
/// 4096 × 768 1.3–1.5×, but 4096 × 4096 0.94–0.98× (A streamed from memory at ~7 GB/s by
/// the tile loads, the dot form's vector loads at more); n = 4 and fewer 0.38–0.97×.
const NARROW_AMX_MIN_COLUMNS: usize = 5;

/// Whether `vdpbf16ps` delivers more flops per second than f32 FMAs here (decided once).
fn dot_beats_fma() -> bool {
    static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        // Best of a few ~50 µs trials each, robust to a busy machine.
        let best = |f: &dyn Fn() -> f64| -> f64 {
            (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let flops = f();
                    flops / t.elapsed().as_secs_f64().max(1e-9)
                })
                .fold(0.0, f64::max)
        };
        let dot = best(&|| peak::bf16_dot_probe(4096).map_or(0.0, |r| std::hint::black_box(r).0));
        let fma = best(&|| std::hint::black_box(peak::fma_probe(Isa::Avx512, 4096)).0);
        dot > 1.1 * fma
    })
}

/// Batched strided f32 GEMM: `C_i = A_i · B_i + beta · C_i` with `beta` 0 (overwrite) or 1
/// (accumulate). Dispatches to the fastest kernel for the active ISA, at the process's
/// `matmul_precision()` (medium: `sgemm_batched_bf16`; high: `bf16x3` where it applies).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    match matmul_precision() {
        MatmulPrecision::Medium => {
            return sgemm_batched_bf16(l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
        MatmulPrecision::High => {
            return sgemm_batched_high_isa(
                isa::active(),
                l,
                a,
                a_offsets,
                b,
                b_offsets,
                beta,
                c,
                c_offsets,
            )
        }
        MatmulPrecision::Highest => {}
    }
    sgemm_batched_isa(
        isa::active(),
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        c,
        c_offsets,
    )
}

/// `sgemm_batched` with beta 0 into a new vector: C_i = A_i · B_i for each batch entry i,
/// block i row-major at i·m·n (the layout must say `c_rs = n`, `c_cs = 1`). The vector is not
/// zeroed first: the GEMM's own stores fill it (a reused pool block would make zeroing a
/// full pass over memory).
pub fn sgemm_batched_new(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
) -> Result<Vec<f32>> {
    new_c(l, a_offsets.len(), |c, c_offsets| {
        let level = isa::active();
        let precision = matmul_precision();
        let high = (precision == MatmulPrecision::High)
            .then(|| high_path(level, l))
            .flatten();
        if precision == MatmulPrecision::Medium {
            let path = Bf16Path::at(level.min(isa::detected()));
            sgemm_bf16_path(path, l, a, a_offsets, b, b_offsets, 0.0, c, c_offsets)
        } else if let Some(path) = high {
            bf16x3::sgemm_bf16x3(path, l, a, a_offsets, b, b_offsets, 0.0, c, c_offsets)
        } else {
            sgemm_isa(level, l, a, a_offsets, b, b_offsets, 0.0, c, c_offsets)
        }
    })
}

/// A new C of `batch` row-major m×n blocks (block i at i·m·n) filled by `gemm`, which must
/// run with beta 0 into the uninitialised storage it is given (every path then stores each
/// element of C, `COut`). The layout must say `c_rs = n`, `c_cs = 1`.
fn new_c(
    l: &GemmLayout,
    batch: usize,
    gemm: impl FnOnce(&mut COut<'_>, &[usize]) -> Result<()>,
) -> Result<Vec<f32>> {
    if l.c_rs != l.n || l.c_cs != 1 {
        return Err(Error::msg(format!(
            "gemm: a new C is row-major (c_rs = n, c_cs = 1), got {l:?}"
        )));
    }
    let block = l.m * l.n;
    let len = batch * block;
    let c_offsets: Vec<usize> = (0..batch).map(|i| i * block).collect();
    let mut v = Vec::with_capacity(len);
    gemm(
        &mut COut::uninit(&mut v.spare_capacity_mut()[..len]),
        &c_offsets,
    )?;
    // SAFETY: the GEMM returned Ok with beta 0, so it stored every element of every C block
    // (`COut`); the blocks are the m×n row-major matrices at i·m·n, which tile 0..len.
    unsafe { v.set_len(len) };
    Ok(v)
}

/// `sgemm_batched` with an explicit kernel level (clamped to what the CPU supports), so
/// tests and benchmarks can run every path without touching the global `isa::force`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_isa(
    level: Isa,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    sgemm_isa(
        level,
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        &mut COut::from(c),
        c_offsets,
    )
}

#[allow(clippy::too_many_arguments)]
fn sgemm_isa(
    level: Isa,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    let level = level.min(isa::detected());
    if let Some(form) = gemv::form(l) {
        let acc = prescale(l, beta, c, c_offsets);
        gemv::run(
            level, form, l, a, a_offsets, b, b_offsets, acc, c, c_offsets,
        );
        return Ok(());
    }
    if let Some((lt, form)) = narrow(l) {
        // Cᵀ = Bᵀ·Aᵀ (see `narrow`): the same elements of C, so beta applies as given.
        let acc = prescale(l, beta, c, c_offsets);
        gemv::run(
            level, form, &lt, b, b_offsets, a, a_offsets, acc, c, c_offsets,
        );
        return Ok(());
    }
    if f32_transposed(l) {
        // Cᵀ = Bᵀ·Aᵀ (see `f32_transposed`).
        let lt = transposed(l);
        run_f32::<pack::F32, pack::F32>(level, &lt, b, b_offsets, a, a_offsets, beta, c, c_offsets);
        return Ok(());
    }
    run_f32::<pack::F32, pack::F32>(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    Ok(())
}

/// Whether the f32 packed path computes C = A·B as Cᵀ = Bᵀ·Aᵀ: few rows of A (more than the
/// skinny path's 8, at most 128) against at least as many (and 64) columns of B contiguous
/// along k (x·Wᵀ with W n × k). Packing W's rows into B panels is a transpose of all n × k
/// of W; transposed, W is the kernels' A side, read in place where its rows allow (or packed
/// without transposing), and the few rows of A, packed, the B side. C is then stored
/// transposed, through the strided tile stores. Intel EMR, in process, 1 thread: m × 768 ×
/// 3072 m = 12 +17%, 16 +29%, 32 +48%, 64 +30%, 96 +15%, 128 +5%, but 256 −7% and 512 −20%;
/// 2 threads 32 × 768 × 3072 +58%; but only past `F32_TRANSPOSED_MIN_K`. (The AMX path has
/// its own rule, `amx_transposed`.)
fn f32_transposed(l: &GemmLayout) -> bool {
    (gemv::MAX_M + 1..=128).contains(&l.m)
        && l.n >= l.m.max(64)
        && l.b_rs == 1
        && l.k > F32_TRANSPOSED_MIN_K
}

/// `f32_transposed` only past this depth: the transposed C is stored through strided tile
/// stores, a cost per element of C that a short k does not repay. In process, 1 thread,
/// against the plain packed path: attention's Q·Kᵀ 64 × 32 × 64 × 64 heads 0.53×, 64 × 64
/// × 64 × 12 0.60×, 64 × 128 × 64 0.76×, 16 × 64 × 768 0.61×, 128 × 256 × 1024 0.90×, 64
/// × 256 × 256 1.0×; from k = 384 on it gains: 64 × 384 × 512 1.36×, 16 × 384 × 2304 1.39×,
/// 32 × 512 × 1024 2.6×.
const F32_TRANSPOSED_MIN_K: usize = 256;

/// The packed path with the f32 micro-kernel of `level`, operands converted to f32 by `CA`
/// and `CB` while packing.
#[allow(clippy::too_many_arguments)]
fn run_f32<CA: Convert<Dst = f32>, CB: Convert<Dst = f32>>(
    level: Isa,
    l: &GemmLayout,
    a: &[CA::Src],
    a_offsets: &[usize],
    b: &[CB::Src],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) {
    match level {
        Isa::Avx512 => {
            run::<avx512::Avx512, CA, CB>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
        Isa::Avx2 => run::<avx2::Avx2, CA, CB>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets),
        Isa::Scalar => {
            run::<scalar::Scalar, CA, CB>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
    }
}

/// Batched strided GEMM on bf16 operands with f32 accumulation and an f32 C:
/// `C_i = A_i · B_i + beta · C_i`, each product of bf16 values exact in f32.
#[allow(clippy::too_many_arguments)]
pub fn bgemm_batched(
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    bgemm_batched_isa(
        isa::active(),
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        c,
        c_offsets,
    )
}

/// `bgemm_batched` at an explicit level (see `Bf16Path::at`).
#[allow(clippy::too_many_arguments)]
pub fn bgemm_batched_isa(
    level: Isa,
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    let path = Bf16Path::at(level.min(isa::detected()));
    bgemm_batched_path(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// `bgemm_batched` on an explicit kernel path (tests run every one).
#[allow(clippy::too_many_arguments)]
pub fn bgemm_batched_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    let c = &mut COut::from(c);
    bgemm_path(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// `bgemm_batched_path` into C's storage as the driver takes it.
#[allow(clippy::too_many_arguments)]
fn bgemm_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    let path = path.checked()?;
    let lt;
    let (l, a, a_offsets, b, b_offsets) = if amx_transposed(path, l) {
        // Cᵀ = Bᵀ·Aᵀ (see `amx_transposed`).
        lt = transposed(l);
        (&lt, b, b_offsets, a, a_offsets)
    } else if gemv_bf16(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets) {
        return Ok(());
    } else {
        (l, a, a_offsets, b, b_offsets)
    };
    type W = pack::Bf16ToF32;
    match path {
        Bf16Path::Amx => run::<amx::Amx, pack::Bf16, pack::Bf16>(
            l, a, a_offsets, b, b_offsets, beta, c, c_offsets,
        ),
        #[cfg(feature = "emu")]
        Bf16Path::AmxEmulated => run::<amx::AmxEmulated, pack::Bf16, pack::Bf16>(
            l, a, a_offsets, b, b_offsets, beta, c, c_offsets,
        ),
        Bf16Path::Avx512Bf16 => run::<avx512_bf16::Avx512Bf16, pack::Bf16, pack::Bf16>(
            l, a, a_offsets, b, b_offsets, beta, c, c_offsets,
        ),
        Bf16Path::F32(level) => {
            run_f32::<W, W>(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
    }
    Ok(())
}

/// Batched strided GEMM on bf16 operands into a bf16 C, as `torch.matmul` on bf16 tensors:
///   C_i = bf16(A_i · B_i + beta · C_i),  beta 0 or 1,
/// the products and sums in f32 as in `bgemm_batched`, rounded to bf16 (nearest even, as
/// `half::bf16::from_f32`) once, after the last k block, tile by tile while the tile is in
/// L1. So C is `bgemm_batched`'s f32 C (on the same path, into a row-major C: the kernels
/// sum into row-major f32 tiles here) rounded afterwards, bit for bit, in half its bytes.
/// Between k blocks the partial sums wait in f32, one column block at a time, in a
/// per-thread stage.
#[allow(clippy::too_many_arguments)]
pub fn bgemm_batched_to_bf16(
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [bf16],
    c_offsets: &[usize],
) -> Result<()> {
    let path = Bf16Path::at(isa::active().min(isa::detected()));
    bgemm_batched_to_bf16_path(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// `bgemm_batched_to_bf16` on an explicit kernel path (tests run every one).
#[allow(clippy::too_many_arguments)]
pub fn bgemm_batched_to_bf16_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [bf16],
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    if beta != 0.0 && beta != 1.0 {
        return Err(Error::msg(format!(
            "bgemm_batched_to_bf16: beta must be 0 or 1 (a bf16 C is not rescaled), got {beta}"
        )));
    }
    let path = path.checked()?;
    if l.m == 0 || l.n == 0 || a_offsets.is_empty() {
        return Ok(());
    }
    let accumulate = beta != 0.0;
    let lt;
    let (l, a, a_offsets, b, b_offsets) = if l.k > 0 && amx_transposed(path, l) {
        // Cᵀ = Bᵀ·Aᵀ (see `amx_transposed`).
        lt = transposed(l);
        (&lt, b, b_offsets, a, a_offsets)
    } else if l.k == 0 || gemv::form(l).is_some() || narrow(l).is_some() {
        // An empty sum, or a decoding step (gemv reads B in place) or its transpose: f32
        // sums, then rounded.
        return to_bf16_through_f32(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    } else {
        (l, a, a_offsets, b, b_offsets)
    };
    type B = pack::Bf16;
    type W = pack::Bf16ToF32;
    let (ao, bo, co) = (a_offsets, b_offsets, c_offsets);
    match path {
        Bf16Path::Amx => driver::gemm_to_bf16::<amx::Amx, B, B>(l, a, ao, b, bo, accumulate, c, co),
        #[cfg(feature = "emu")]
        Bf16Path::AmxEmulated => {
            driver::gemm_to_bf16::<amx::AmxEmulated, B, B>(l, a, ao, b, bo, accumulate, c, co)
        }
        Bf16Path::Avx512Bf16 => driver::gemm_to_bf16::<avx512_bf16::Avx512Bf16, B, B>(
            l, a, ao, b, bo, accumulate, c, co,
        ),
        Bf16Path::F32(Isa::Avx512) => {
            driver::gemm_to_bf16::<avx512::Avx512, W, W>(l, a, ao, b, bo, accumulate, c, co)
        }
        Bf16Path::F32(Isa::Avx2) => {
            driver::gemm_to_bf16::<avx2::Avx2, W, W>(l, a, ao, b, bo, accumulate, c, co)
        }
        Bf16Path::F32(Isa::Scalar) => {
            driver::gemm_to_bf16::<scalar::Scalar, W, W>(l, a, ao, b, bo, accumulate, c, co)
        }
    }
    Ok(())
}

/// `bgemm_batched_to_bf16` through an f32 C (each problem's m × n, row-major), rounded
/// into C afterwards: for shapes the tile driver does not run.
#[allow(clippy::too_many_arguments)]
fn to_bf16_through_f32(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[bf16],
    a_offsets: &[usize],
    b: &[bf16],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [bf16],
    c_offsets: &[usize],
) -> Result<()> {
    let block = l.m * l.n;
    let sums_layout = GemmLayout {
        c_rs: l.n,
        c_cs: 1,
        ..*l
    };
    let sums_offsets: Vec<usize> = (0..c_offsets.len()).map(|i| i * block).collect();
    let mut sums = vec![0.0f32; block * c_offsets.len()];
    use round_bf16::Tile;
    for (&co, &so) in c_offsets.iter().zip(&sums_offsets) {
        if beta != 0.0 {
            // SAFETY: C's block lies inside `c` (bounds checked), the sums' inside `sums`.
            unsafe {
                round_bf16::widen_tile(
                    Tile::new(c.as_ptr().add(co), l.c_rs, l.c_cs, l.m, l.n),
                    Tile::new(sums.as_mut_ptr().add(so), l.n, 1, l.m, l.n),
                )
            };
        }
    }
    bgemm_batched_path(
        path,
        &sums_layout,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        &mut sums,
        &sums_offsets,
    )?;
    for (&co, &so) in c_offsets.iter().zip(&sums_offsets) {
        // SAFETY: as above.
        unsafe {
            round_bf16::round_tile(
                round_bf16::Rounding::at(isa::active()),
                Tile::new(sums.as_ptr().add(so), l.n, 1, l.m, l.n),
                Tile::new(c.as_mut_ptr().add(co), l.c_rs, l.c_cs, l.m, l.n),
            )
        };
    }
    Ok(())
}

/// Whether the AMX kernel computes C = A·B as Cᵀ = Bᵀ·Aᵀ: when A has fewer rows than a tile
/// (4 ≤ m < 32, e.g. decoding 8 sequences), B many columns (n ≥ 64) and B's columns are
/// contiguous along k (x·Wᵀ with W n × k). Then W's rows are the tiles' A side, read in
/// place, and the few rows of A, packed, their B side; a 32-row tile of C would otherwise
/// be mostly padding, its rows copied through the edge-row path. x·Wᵀ with W 3072 × 768,
/// 1 thread (Intel Xeon Emerald Rapids): 8 rows 0.42 ms as `vdpbf16ps` dot products, 0.23 ms
/// transposed; 16 rows 0.72 → 0.24 ms; 4 rows 0.25 → 0.18–0.23 ms. With m ≤ 2 the dot
/// products are as fast or faster (m = 1: 0.13 against 0.17 ms).
fn amx_transposed(path: Bf16Path, l: &GemmLayout) -> bool {
    #[cfg(feature = "emu")]
    let amx = matches!(path, Bf16Path::Amx | Bf16Path::AmxEmulated);
    #[cfg(not(feature = "emu"))]
    let amx = matches!(path, Bf16Path::Amx);
    amx && (4..32).contains(&l.m) && l.n >= 64 && l.b_rs == 1
}

/// C = A·B with at most `gemv::MAX_M` columns and more rows (a matrix times a few vectors,
/// e.g. 4096 × 4096 × 1) computed as Cᵀ = Bᵀ·Aᵀ, whose few rows `gemv` reads straight from
/// Aᵀ: with A row-major that is the dot form over A's rows, each streamed once per group of
/// up to four columns of B, where the packed path would copy all of A into panels and pad
/// each tile's 32 columns from n. Returns the layout of Cᵀ (operands swapped: B's buffer
/// first) and its form, or `None` when the shape or layouts do not suit (Cᵀ's rows must be
/// contiguous for the axpy form, which a transposed A gives).
///
/// Intel Xeon (EMR), paired against `torch.matmul` (1 / 2 threads): 4096 × 4096 × 1 f32
/// 0.29 / 0.21 → 1.11 / 1.38, 4096 × 4096 × 8 0.55 / 0.45 → 1.05 / 0.79. In-process against
/// the packed path, 1 thread: 4096 × 768 × 4 3.1×, 8192 × 16 × 1 4.8×, 8192 × 64 × 8 1.2×;
/// but 8192 × 16 × 8 0.64× and 8192 × 32 × 8 0.92× (a dot product that short costs its
/// lane sum, while the packed tile of 8 columns still does a quarter of its work), so more
/// than 4 columns take this only from k = 33 on (8192 × 32 × 4: 1.8×).
fn narrow(l: &GemmLayout) -> Option<(GemmLayout, gemv::Form)> {
    if l.n > gemv::MAX_M || l.m <= gemv::MAX_M || (l.n > 4 && l.k <= 32) {
        return None;
    }
    let lt = transposed(l);
    gemv::form_any_c(&lt).map(|form| (lt, form))
}

/// The layout of Cᵀ = Bᵀ·Aᵀ for the problem C = A·B of `l` (B's buffer is then the first
/// operand, A's the second).
fn transposed(l: &GemmLayout) -> GemmLayout {
    GemmLayout {
        m: l.n,
        n: l.m,
        k: l.k,
        a_rs: l.b_cs,
        a_cs: l.b_rs,
        b_rs: l.a_cs,
        b_cs: l.a_rs,
        c_rs: l.c_cs,
        c_cs: l.c_rs,
    }
}

/// Mixed-precision GEMM on f32 operands (e.g. f32 master weights): A and B are rounded to
/// bf16 (nearest even) while packing, multiplied with f32 accumulation into f32 C. Equals
/// `bgemm_batched` on the rounded operands, without materialising bf16 copies.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_bf16(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    sgemm_batched_bf16_isa(
        isa::active(),
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        c,
        c_offsets,
    )
}

/// `sgemm_batched_bf16` at an explicit level (see `Bf16Path::at`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_bf16_isa(
    level: Isa,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    let path = Bf16Path::at(level.min(isa::detected()));
    sgemm_batched_bf16_path(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// `sgemm_batched_bf16` on an explicit kernel path.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_bf16_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    sgemm_bf16_path(
        path,
        l,
        a,
        a_offsets,
        b,
        b_offsets,
        beta,
        &mut COut::from(c),
        c_offsets,
    )
}

#[allow(clippy::too_many_arguments)]
fn sgemm_bf16_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut COut<'_>,
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    let path = path.checked()?;
    if gemv_bf16(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets) {
        return Ok(());
    }
    type R = pack::F32RoundBf16;
    type T = pack::F32ToBf16;
    match path {
        Bf16Path::Amx => run::<amx::Amx, T, T>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets),
        #[cfg(feature = "emu")]
        Bf16Path::AmxEmulated => {
            run::<amx::AmxEmulated, T, T>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
        Bf16Path::Avx512Bf16 => {
            run::<avx512_bf16::Avx512Bf16, T, T>(l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
        Bf16Path::F32(level) => {
            run_f32::<R, R>(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
        }
    }
    Ok(())
}

/// `sgemm_batched` at "high" precision at an explicit level, whatever the process's setting:
/// the three bf16 products (`bf16x3`) where `bf16x3::high_uses_bf16x3` takes them, else the
/// f32 kernels ("highest").
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_high_isa(
    level: Isa,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    if let Some(path) = high_path(level, l) {
        let c = &mut COut::from(c);
        return bf16x3::sgemm_bf16x3(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    }
    sgemm_batched_isa(level, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// The bf16 path on which "high" runs `l` at `level` as three bf16 products, or `None` where
/// it runs as "highest" (`bf16x3::high_uses_bf16x3`).
fn high_path(level: Isa, l: &GemmLayout) -> Option<Bf16Path> {
    let path = Bf16Path::at(level.min(isa::detected()));
    bf16x3::high_uses_bf16x3(path, l).then_some(path)
}

/// The kernels `sgemm_batched_high_isa` runs `l` on at `level`: "bf16x3 on" the bf16 path's,
/// or the f32 level's.
pub fn high_kernel_name(level: Isa, l: &GemmLayout) -> String {
    match high_path(level, l) {
        Some(path) => format!("bf16x3 on {}", path.name()),
        None => level.min(isa::detected()).name().to_string(),
    }
}

/// The "high" precision's three bf16 products (`bf16x3`) on an explicit kernel path, for
/// every shape (tests run each path; `sgemm_batched` at "high" takes them only where
/// `bf16x3::high_uses_bf16x3`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_high_path(
    path: Bf16Path,
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    let path = path.checked()?;
    let c = &mut COut::from(c);
    bf16x3::sgemm_bf16x3(path, l, a, a_offsets, b, b_offsets, beta, c, c_offsets)
}

/// The portable reference, exposed for tests of the fast kernels.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_reference(
    l: &GemmLayout,
    a: &[f32],
    a_offsets: &[usize],
    b: &[f32],
    b_offsets: &[usize],
    beta: f32,
    c: &mut [f32],
    c_offsets: &[usize],
) -> Result<()> {
    check_bounds(
        l,
        a.len(),
        a_offsets,
        b.len(),
        b_offsets,
        c.len(),
        c_offsets,
    )?;
    naive::sgemm_batched(l, a, a_offsets, b, b_offsets, beta, c, c_offsets);
    Ok(())
}
