//! NVRTC: loading the library (with a clear error when it is missing, instead of cudarc's
//! panic), compiling a kernel source to PTX for a `compute_XX` virtual architecture, and an
//! on-disk PTX cache keyed by source hash, architecture, options and NVRTC version.
//!
//! Library lookup: cudarc dlopens `libnvrtc.so.12` (and similar names) through the ordinary
//! search path, so `LD_LIBRARY_PATH` must name the directory holding it. `PRETEXT_NVRTC_LIB`
//! may instead give the library's full path: it is loaded first, and the later lookup by name
//! finds the already-loaded library by its soname. `tools/cuda/ci-setup.sh` sets both.

use std::path::PathBuf;
use std::sync::OnceLock;

use cudarc::nvrtc::{CompileError, CompileOptions};

use super::source::{fnv1a, KernelSource};
use crate::error::{Error, Result};

/// Options every kernel is compiled with (part of the cache key).
const OPTIONS: &[&str] = &["--std=c++17", "--fmad=true"];

fn nvrtc_err(msg: impl Into<String>) -> Error {
    Error::Device {
        op: "nvrtc",
        msg: msg.into(),
    }
}

/// Make sure NVRTC can be loaded; Err (never a panic) when it cannot.
pub fn ensure_loaded() -> Result<()> {
    static STATE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            if let Ok(path) = std::env::var("PRETEXT_NVRTC_LIB") {
                // SAFETY: loading libnvrtc runs only its own initialisers; the handle is leaked
                // on purpose so the library stays mapped for cudarc's later lookup by soname.
                match unsafe { libloading::Library::new(&path) } {
                    Ok(lib) => std::mem::forget(lib),
                    Err(e) => {
                        return Err(format!("PRETEXT_NVRTC_LIB={path} cannot be loaded: {e}"))
                    }
                }
            }
            // SAFETY: only tries to dlopen the candidate names; no symbol is called.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(())
            } else {
                Err(
                    "libnvrtc (CUDA 12 runtime compiler) not found: put its directory on \
                     LD_LIBRARY_PATH or set PRETEXT_NVRTC_LIB to its path \
                     (tools/cuda/ci-setup.sh installs one into .venv-cuda)"
                        .to_string(),
                )
            }
        })
        .clone()
        .map_err(nvrtc_err)
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32)> {
    ensure_loaded()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is loaded (checked above); the out-pointers are valid locals.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(nvrtc_err(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

/// `compute_80` etc. as the `&'static str` cudarc's options want.
fn static_arch(arch: &str) -> Result<&'static str> {
    const KNOWN: &[&str] = &[
        "compute_70",
        "compute_75",
        "compute_80",
        "compute_86",
        "compute_87",
        "compute_89",
        "compute_90",
        "compute_100",
        "compute_120",
    ];
    KNOWN.iter().find(|a| **a == arch).copied().ok_or_else(|| {
        nvrtc_err(format!(
            "unsupported architecture `{arch}` (known: {KNOWN:?})"
        ))
    })
}

/// Compile `src` to PTX for `arch` (e.g. `compute_90`), with no cache.
pub fn compile(src: &KernelSource, arch: &str) -> Result<String> {
    ensure_loaded()?;
    let mut opts = CompileOptions {
        arch: Some(static_arch(arch)?),
        options: OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{}.cu", src.name)),
        ..Default::default()
    };
    if let Ok(inc) = std::env::var("PRETEXT_CUDA_INCLUDE") {
        opts.include_paths.push(inc);
    }
    match cudarc::nvrtc::compile_ptx_with_opts(src.expanded(), opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => Err(nvrtc_err(format!(
            "kernels/{}.cu for {arch} failed to compile:\n{}",
            src.name,
            log.to_string_lossy()
        ))),
        Err(e) => Err(nvrtc_err(format!(
            "kernels/{}.cu for {arch}: {e:?}",
            src.name
        ))),
    }
}

/// Directory of the PTX cache: `PRETEXT_KERNEL_CACHE`, else `$XDG_CACHE_HOME/pretext/ptx`,
/// else `$HOME/.cache/pretext/ptx`, else the system temp dir.
pub fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PRETEXT_KERNEL_CACHE") {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("pretext/ptx");
    }
    if let Ok(d) = std::env::var("HOME") {
        return PathBuf::from(d).join(".cache/pretext/ptx");
    }
    std::env::temp_dir().join("pretext-ptx")
}

/// PTX for `src` on `arch`, from the cache when present, else compiled and stored (written to a
/// temp file and renamed, so a concurrent reader never sees half a file). A cache that cannot
/// be written only costs a recompile next time, so write failures are not errors.
pub fn compile_cached(src: &KernelSource, arch: &str) -> Result<String> {
    compile_cached_in(src, arch, &cache_dir())
}

/// As [`compile_cached`] with an explicit cache directory.
pub fn compile_cached_in(src: &KernelSource, arch: &str, dir: &std::path::Path) -> Result<String> {
    let (major, minor) = version()?;
    let text = src.expanded();
    let ver = format!("{major}.{minor}");
    let mut parts: Vec<&[u8]> = vec![text.as_bytes(), arch.as_bytes(), ver.as_bytes()];
    parts.extend(OPTIONS.iter().map(|o| o.as_bytes()));
    let key = fnv1a(&parts);
    let path = dir.join(format!("{}-{arch}-{key:016x}.ptx", src.name));
    if let Ok(ptx) = std::fs::read_to_string(&path) {
        if ptx.contains(".entry") {
            return Ok(ptx);
        }
    }
    let ptx = compile(src, arch)?;
    if std::fs::create_dir_all(dir).is_ok() {
        let tmp = dir.join(format!(".{}-{}.tmp", src.name, std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(ptx)
}
