//! Compile check of every CUDA kernel without a GPU: each `kernels/*.cu` goes through the same
//! NVRTC path the runtime uses (`nvrtc::compile`) for compute_80 and compute_90, then `ptxas -v`
//! assembles the PTX for sm_80 and sm_90. Fails on a compile error, a kernel missing from the
//! PTX, or any register spill; prints registers, shared memory and stack per kernel.
//!
//! Needs libnvrtc and ptxas (`source tools/cuda/ci-setup.sh`). Without them the test prints why
//! and passes, unless PRETEXT_REQUIRE_NVRTC=1 (set by .ci/run), where it fails.

use std::process::Command;

use pretext::backend::cuda::nvrtc;
use pretext::backend::cuda::source::{KernelSource, SOURCES, TEST_SOURCES};

fn required() -> bool {
    std::env::var("PRETEXT_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Per-kernel numbers from `ptxas -v`.
#[derive(Debug, Default)]
struct Usage {
    kernel: String,
    registers: u32,
    smem: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

fn num_before(line: &str, suffix: &str) -> Option<u32> {
    let i = line.find(suffix)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

fn parse_ptxas(log: &str) -> Vec<Usage> {
    let mut out: Vec<Usage> = Vec::new();
    for line in log.lines() {
        if let Some(i) = line.find("Function properties for ") {
            out.push(Usage {
                kernel: line[i + 24..].trim().to_string(),
                ..Default::default()
            });
        } else if let Some(u) = out.last_mut() {
            if line.contains("spill stores") {
                u.stack = num_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_stores = num_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = num_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used ") && line.contains("registers") {
                u.registers = num_before(line, "registers").unwrap_or(0);
                u.smem = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

fn ptxas(ptx: &str, sm: &str, tag: &str) -> Result<Vec<Usage>, String> {
    let bin = std::env::var("PRETEXT_PTXAS").unwrap_or_else(|_| "ptxas".into());
    let dir = std::env::temp_dir().join(format!("pretext-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let input = dir.join(format!("{tag}.ptx"));
    std::fs::write(&input, ptx).map_err(|e| e.to_string())?;
    let out = Command::new(&bin)
        .arg(format!("-arch={sm}"))
        .arg("-v")
        .arg(&input)
        .arg("-o")
        .arg(dir.join(format!("{tag}.cubin")))
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("ptxas -arch={sm} failed on {tag}:\n{log}"));
    }
    Ok(parse_ptxas(&log))
}

fn toolchain_available() -> Result<(), String> {
    nvrtc::ensure_loaded().map_err(|e| e.to_string())?;
    let bin = std::env::var("PRETEXT_PTXAS").unwrap_or_else(|_| "ptxas".into());
    Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("ptxas ({bin}) not runnable: {e}"))?;
    Ok(())
}

fn all_sources() -> Vec<&'static KernelSource> {
    SOURCES.iter().chain(TEST_SOURCES).collect()
}

/// Compile every source for `arch`, assemble for `sm`: (report lines, failures).
fn check_arch(all: &[&KernelSource], arch: &str, sm: &str) -> (Vec<String>, Vec<String>) {
    let (mut lines, mut failures) = (Vec::new(), Vec::new());
    for src in all {
        let ptx = match nvrtc::compile(src, arch) {
            Ok(p) => p,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        for k in src.kernels {
            if !ptx.contains(&format!(".entry {k}(")) {
                failures.push(format!(
                    "kernels/{}.cu for {arch}: no PTX entry for `{k}`",
                    src.name
                ));
            }
        }
        match ptxas(&ptx, sm, &format!("{}-{sm}", src.name)) {
            Err(e) => failures.push(e),
            Ok(usages) => {
                for k in src.kernels {
                    let Some(u) = usages.iter().find(|u| u.kernel == *k) else {
                        failures.push(format!("ptxas -v {sm}: no report for `{k}`"));
                        continue;
                    };
                    lines.push(format!(
                        "{:<24} {:<6} {:>5} {:>8} {:>6} {:>6}",
                        u.kernel,
                        sm,
                        u.registers,
                        u.smem,
                        u.stack,
                        u.spill_stores + u.spill_loads
                    ));
                    if u.spill_stores > 0 || u.spill_loads > 0 {
                        failures.push(format!(
                            "{k} on {sm} spills registers: {} bytes stores, {} bytes loads ({} registers)",
                            u.spill_stores, u.spill_loads, u.registers
                        ));
                    }
                }
            }
        }
    }
    (lines, failures)
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    if let Err(why) = toolchain_available() {
        if required() {
            panic!("PRETEXT_REQUIRE_NVRTC=1 but the CUDA toolchain is missing: {why}");
        }
        println!("skipping CUDA compile check: {why} (run `source tools/cuda/ci-setup.sh`)");
        return;
    }
    let (maj, min) = nvrtc::version().unwrap();
    println!("NVRTC {maj}.{min}");
    // One thread per architecture (NVRTC is thread-safe); each returns its report lines and
    // failures, printed in a fixed order afterwards.
    let per_arch: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [("compute_80", "sm_80"), ("compute_90", "sm_90")]
            .into_iter()
            .map(|(arch, sm)| scope.spawn(move || check_arch(&all_sources(), arch, sm)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let scratch = std::env::temp_dir().join(format!("pretext-ptxas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(scratch);
    println!(
        "{:<24} {:<6} {:>5} {:>8} {:>6} {:>6}",
        "kernel", "arch", "regs", "smem(B)", "stack", "spill"
    );
    let mut failures = Vec::new();
    for (lines, fails) in per_arch {
        for l in lines {
            println!("{l}");
        }
        failures.extend(fails);
    }
    assert!(
        failures.is_empty(),
        "CUDA compile check failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn ptxas_report_parser_reads_spills() {
    let log = "ptxas info    : Compiling entry function 'k' for 'sm_90'\n\
               ptxas info    : Function properties for k\n\
               \x20   16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
               ptxas info    : Used 255 registers, used 1 barriers, 8704 bytes smem, 400 bytes cmem[0]\n";
    let u = parse_ptxas(log);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (
            u[0].registers,
            u[0].smem,
            u[0].stack,
            u[0].spill_stores,
            u[0].spill_loads
        ),
        (255, 8704, 16, 8, 4)
    );
}

#[test]
fn ptx_cache_round_trip() {
    if let Err(why) = toolchain_available() {
        if required() {
            panic!("PRETEXT_REQUIRE_NVRTC=1 but the CUDA toolchain is missing: {why}");
        }
        println!("skipping PTX cache test: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pretext-ptx-cache-{}", std::process::id()));
    let src = KernelSource::find("adamw_f32").unwrap();
    let first = nvrtc::compile_cached_in(src, "compute_80", &dir).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one cached PTX file expected, found {files:?}"
    );
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("optim-compute_80-") && name.ends_with(".ptx"),
        "{name}"
    );
    // A second call reads the cached file: make it distinguishable and check it is returned.
    let marked = format!("{first}\n// cached\n");
    std::fs::write(&files[0], &marked).unwrap();
    assert_eq!(
        nvrtc::compile_cached_in(src, "compute_80", &dir).unwrap(),
        marked
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
