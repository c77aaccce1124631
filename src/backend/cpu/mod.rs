//! CPU kernels. Each kernel family has a portable scalar reference and, where it is hot,
//! SIMD variants chosen at run time by `isa::active()`.

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod convert;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod grad_norm;
pub mod isa;
pub mod math;
pub mod norm;
pub mod par;
pub mod pool;
pub mod simd;
pub mod softmax;
pub mod threads;
