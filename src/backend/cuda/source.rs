//! The kernel sources: every `kernels/*.cu` embedded at build time with `include_str!`, the
//! shared header spliced in (NVRTC compiles one self-contained string), and a stable source hash
//! for the on-disk PTX cache.

/// One `.cu` file: a compilation unit holding one or more kernels.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// File stem, e.g. `gemm` for `kernels/gemm.cu`; also the NVRTC program name.
    pub name: &'static str,
    /// The file as written, with `#include "common.cuh"` not yet expanded.
    pub text: &'static str,
    /// The `extern "C" __global__` functions it defines.
    pub kernels: &'static [&'static str],
}

const COMMON: &str = include_str!("../../../kernels/common.cuh");

macro_rules! src {
    ($name:literal, [$($k:literal),* $(,)?]) => {
        KernelSource {
            name: $name,
            text: include_str!(concat!("../../../kernels/", $name, ".cu")),
            kernels: &[$($k),*],
        }
    };
}

/// Every kernel file the runtime can launch.
pub const SOURCES: &[KernelSource] = &[
    src!(
        "activation",
        [
            "act_fwd_f32",
            "act_bwd_f32",
            "bias_act_fwd_f32",
            "bias_act_bwd_f32"
        ]
    ),
    src!(
        "attention",
        [
            "attn_fwd_f32",
            "attn_fwd_bf16",
            "attn_bwd_delta_f32",
            "attn_bwd_f32",
            "attn_bwd_bf16"
        ]
    ),
    src!("cross_entropy", ["ce_fwd_f32", "ce_bwd_f32"]),
    src!("dropout", ["dropout_f32"]),
    src!(
        "elementwise",
        [
            "binary_f32",
            "copy_strided_f32",
            "copy_strided_b32",
            "unary_f32",
            "axpby_f32",
            "fill_f32",
            "cast_f32_bf16",
            "cast_bf16_f32"
        ]
    ),
    src!("embedding", ["embedding_fwd_f32", "embedding_bwd_f32"]),
    src!("gemm", ["gemm_f32", "gemm_bf16", "gemm_bf16_autocast"]),
    src!(
        "layernorm",
        [
            "layernorm_fwd_f32",
            "layernorm_bwd_f32",
            "rmsnorm_fwd_f32",
            "rmsnorm_bwd_f32"
        ]
    ),
    src!("optim", ["adamw_f32"]),
    src!("reduce", ["sum_rows_f32", "sum_cols_f32", "sum_all_f32"]),
    src!(
        "softmax",
        [
            "softmax_fwd_warp_f32",
            "softmax_fwd_block_f32",
            "softmax_bwd_f32"
        ]
    ),
];

/// Test-only kernels (emulator schedule tests); compiled by the NVRTC check, never launched by
/// the library.
pub const TEST_SOURCES: &[KernelSource] = &[KernelSource {
    name: "race",
    text: include_str!("../../../kernels/test/race.cu"),
    kernels: &["race_tile_sum", "sync_misuse", "warp_ops"],
}];

impl KernelSource {
    /// The source NVRTC compiles: the shared header spliced in place of its `#include`.
    pub fn expanded(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + COMMON.len());
        for line in self.text.lines() {
            let t = line.trim();
            if t == "#include \"common.cuh\"" || t == "#include \"../common.cuh\"" {
                out.push_str(COMMON);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    /// The file that defines `kernel`, if any.
    pub fn find(kernel: &str) -> Option<&'static KernelSource> {
        SOURCES
            .iter()
            .chain(TEST_SOURCES)
            .find(|s| s.kernels.contains(&kernel))
    }
}

/// FNV-1a, 64 bit: stable across Rust versions and machines, unlike `DefaultHasher`.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
