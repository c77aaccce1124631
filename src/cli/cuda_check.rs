//! `pretext cuda-check`: open a CUDA device, compile and load every kernel for its
//! architecture (filling the PTX cache), run a small GEMM and compare it with the CPU. On a
//! machine without a driver or NVRTC it fails at once with a message saying what is missing.

use clap::Args as ClapArgs;

use crate::backend::cuda::ops::Gemm;
use crate::backend::cuda::source::SOURCES;
use crate::backend::cuda::{CudaDevice, Ops};
use crate::error::{Error, Result};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub ordinal: usize,
}

pub fn run(args: Args) -> Result<()> {
    let dev = CudaDevice::new(args.ordinal)?;
    println!("cuda:{} {} ({})", dev.ordinal(), dev.name(), dev.arch());
    for src in SOURCES {
        let ptx = crate::backend::cuda::nvrtc::compile_cached(src, dev.arch())?;
        println!(
            "  kernels/{}.cu: {} kernels, {} bytes of PTX",
            src.name,
            src.kernels.len(),
            ptx.len()
        );
    }
    // C = A B for a 67x45x33 problem with exactly representable inputs.
    let (m, n, k) = (67, 45, 33);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
    let (da, db, dc) = (dev.upload(&a)?, dev.upload(&b)?, dev.alloc::<f32>(m * n)?);
    Ops::new(&dev).gemm_f32(
        &Gemm::contiguous(1, m, n, k),
        &da.slice(),
        &db.slice(),
        &dc.slice(),
    )?;
    let c = dev.download(&dc)?;
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            if c[i * n + j] != want {
                return Err(Error::Device {
                    op: "cuda-check",
                    msg: format!(
                        "gemm_f32 C[{i},{j}] = {} on the GPU, {want} on the CPU",
                        c[i * n + j]
                    ),
                });
            }
        }
    }
    println!("  gemm_f32 {m}x{n}x{k}: matches the CPU");
    Ok(())
}
