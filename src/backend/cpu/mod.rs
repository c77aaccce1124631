//! CPU kernels. Each kernel family has a portable scalar reference and, where it is hot,
//! SIMD variants chosen at run time by `isa::active()`.

pub mod gemm;
pub mod isa;
