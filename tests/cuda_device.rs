//! The real-device path. Without a GPU (this project's CI): opening a device is an
//! `Error::Device` that says what is missing (never a panic), and `pretext cuda-check` exits
//! non-zero at once with that message. With a GPU (or PRETEXT_REQUIRE_GPU=1, which fails when
//! there is none): the kernels run on the device and must match the emulator (feature `emu`)
//! on the same inputs.

use std::process::Command;
use std::time::{Duration, Instant};

use pretext::backend::cuda::device::driver_present;
use pretext::backend::cuda::CudaDevice;
use pretext::error::Error;

/// The GPU, or None (printing why) when there is none and none is required.
#[cfg(feature = "emu")]
fn gpu() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("PRETEXT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("PRETEXT_REQUIRE_GPU=1 but no usable CUDA device: {e}");
            }
            println!("no CUDA device, skipping GPU checks: {e}");
            None
        }
    }
}

#[test]
fn missing_driver_is_a_clear_error_not_a_panic() {
    if driver_present().is_ok() {
        println!("a CUDA driver is present; the no-driver path cannot be exercised here");
        return;
    }
    let e = match CudaDevice::new(0) {
        Ok(_) => panic!("CudaDevice::new succeeded without a driver"),
        Err(e) => e,
    };
    assert!(matches!(e, Error::Device { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("no CUDA driver found") && msg.contains("--device cpu"),
        "{msg}"
    );
}

#[test]
fn cuda_check_command_fails_fast_without_a_device() {
    if CudaDevice::new(0).is_ok() {
        println!("a CUDA device is present; the failure path cannot be exercised here");
        return;
    }
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .arg("cuda-check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("error: cuda: device error:")
            || stderr.contains("error: nvrtc: device error:"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[cfg(feature = "emu")]
mod against_emulator {
    use super::gpu;
    use pretext::backend::cuda::emu::{EmuExecutor, Schedule};
    use pretext::backend::cuda::launch::{DSlice, Space};
    use pretext::backend::cuda::ops::{Attn, Gemm};
    use pretext::backend::cuda::Ops;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(what: &str, gpu: &[f32], emu: &[f32], tol: f32) {
        assert_eq!(gpu.len(), emu.len());
        for (i, (g, e)) in gpu.iter().zip(emu).enumerate() {
            assert!(
                (g - e).abs() <= tol * (1.0 + e.abs()),
                "{what}[{i}]: gpu {g}, emulator {e}"
            );
        }
    }

    #[test]
    fn gemm_on_gpu_matches_emulator() {
        let Some(dev) = gpu() else { return };
        let emu = EmuExecutor::new(Schedule::RoundRobin);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, n, k) = (130, 77, 70);
            let g = Gemm {
                trans_a: ta,
                trans_b: tb,
                lda: if ta { m } else { k },
                ldb: if tb { k } else { n },
                ..Gemm::contiguous(2, m, n, k)
            };
            let a = data(2 * m * k, 1);
            let b = data(2 * k * n, 2);
            let mut want = vec![0.0f32; 2 * m * n];
            Ops::new(&emu)
                .gemm_f32(
                    &g,
                    &DSlice::input(&a),
                    &DSlice::input(&b),
                    &DSlice::output(&mut want),
                )
                .unwrap();
            let (da, db, dc) = (
                dev.upload(&a).unwrap(),
                dev.upload(&b).unwrap(),
                dev.alloc::<f32>(2 * m * n).unwrap(),
            );
            Ops::new(&dev)
                .gemm_f32(&g, &da.slice(), &db.slice(), &dc.slice())
                .unwrap();
            close(
                &format!("gemm_f32 ta={ta} tb={tb}"),
                &dev.download(&dc).unwrap(),
                &want,
                1e-4,
            );
            let ah: Vec<u16> = a
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_bits())
                .collect();
            let bh: Vec<u16> = b
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_bits())
                .collect();
            Ops::new(&emu)
                .gemm_bf16(
                    &g,
                    &DSlice::input(&ah),
                    &DSlice::input(&bh),
                    &DSlice::output(&mut want),
                )
                .unwrap();
            let (da, db) = (dev.upload(&ah).unwrap(), dev.upload(&bh).unwrap());
            Ops::new(&dev)
                .gemm_bf16(&g, &da.slice(), &db.slice(), &dc.slice())
                .unwrap();
            close(
                &format!("gemm_bf16 ta={ta} tb={tb}"),
                &dev.download(&dc).unwrap(),
                &want,
                1e-4,
            );
            Ops::new(&emu)
                .gemm_bf16_autocast(
                    &g,
                    &DSlice::input(&a),
                    &DSlice::input(&b),
                    &DSlice::output(&mut want),
                )
                .unwrap();
            let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
            Ops::new(&dev)
                .gemm_bf16_autocast(&g, &da.slice(), &db.slice(), &dc.slice())
                .unwrap();
            close(
                &format!("gemm_bf16_autocast ta={ta} tb={tb}"),
                &dev.download(&dc).unwrap(),
                &want,
                1e-4,
            );
        }
    }

    #[test]
    fn attention_on_gpu_matches_emulator() {
        let Some(dev) = gpu() else { return };
        let emu = EmuExecutor::new(Schedule::RoundRobin);
        for (t, d, causal) in [(45, 64, true), (33, 128, false)] {
            let a = Attn::contiguous(2, 3, t, t, d, causal);
            let n = 2 * 3 * t * d;
            let (q, k, v, dout) = (data(n, 3), data(n, 4), data(n, 5), data(n, 6));
            let nul = DSlice::<f32>::null(Space::Host);
            let nulm = DSlice::<u8>::null(Space::Host);
            let (mut o, mut lse, mut delta) =
                (vec![0.0f32; n], vec![0.0f32; 6 * t], vec![0.0f32; 6 * t]);
            let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
            let ops = Ops::new(&emu);
            ops.attention(
                &a,
                &DSlice::input(&q),
                &DSlice::input(&k),
                &DSlice::input(&v),
                &nul,
                &nulm,
                &DSlice::output(&mut o),
                &DSlice::output(&mut lse),
            )
            .unwrap();
            ops.attention_bwd(
                &a,
                &DSlice::input(&q),
                &DSlice::input(&k),
                &DSlice::input(&v),
                &nul,
                &nulm,
                &DSlice::input(&o),
                &DSlice::input(&lse),
                &DSlice::input(&dout),
                &DSlice::output(&mut delta),
                &DSlice::output(&mut dq),
                &DSlice::output(&mut dk),
                &DSlice::output(&mut dv),
                &DSlice::null(Space::Host),
            )
            .unwrap();
            let up = |x: &[f32]| dev.upload(x).unwrap();
            let (gq, gk, gv, gdo) = (up(&q), up(&k), up(&v), up(&dout));
            let (go, glse, gdelta) = (
                dev.alloc::<f32>(n).unwrap(),
                dev.alloc::<f32>(6 * t).unwrap(),
                dev.alloc::<f32>(6 * t).unwrap(),
            );
            let (gdq, gdk, gdv) = (
                dev.alloc::<f32>(n).unwrap(),
                dev.alloc::<f32>(n).unwrap(),
                dev.alloc::<f32>(n).unwrap(),
            );
            let dn = DSlice::<f32>::null(Space::Device(0));
            let dnm = DSlice::<u8>::null(Space::Device(0));
            let gops = Ops::new(&dev);
            gops.attention(
                &a,
                &gq.slice(),
                &gk.slice(),
                &gv.slice(),
                &dn,
                &dnm,
                &go.slice(),
                &glse.slice(),
            )
            .unwrap();
            gops.attention_bwd(
                &a,
                &gq.slice(),
                &gk.slice(),
                &gv.slice(),
                &dn,
                &dnm,
                &go.slice(),
                &glse.slice(),
                &gdo.slice(),
                &gdelta.slice(),
                &gdq.slice(),
                &gdk.slice(),
                &gdv.slice(),
                &dn,
            )
            .unwrap();
            close("attn o", &dev.download(&go).unwrap(), &o, 1e-4);
            close("attn dq", &dev.download(&gdq).unwrap(), &dq, 1e-4);
            close("attn dk", &dev.download(&gdk).unwrap(), &dk, 1e-4);
            close("attn dv", &dev.download(&gdv).unwrap(), &dv, 1e-4);
        }
    }

    #[test]
    fn norms_and_loss_on_gpu_match_emulator() {
        let Some(dev) = gpu() else { return };
        let emu = EmuExecutor::new(Schedule::RoundRobin);
        let (rows, c, vocab) = (70, 200, 1000);
        let (x, gamma, beta, dy) = (
            data(rows * c, 7),
            data(c, 8),
            data(c, 9),
            data(rows * c, 10),
        );
        let (mut y, mut mean, mut rstd, mut dx, mut dg, mut db) = (
            vec![0.0f32; rows * c],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0.0f32; rows * c],
            vec![0.0f32; c],
            vec![0.0f32; c],
        );
        let ops = Ops::new(&emu);
        ops.layernorm(
            rows,
            c,
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::input(&beta),
            &DSlice::output(&mut y),
            &DSlice::output(&mut mean),
            &DSlice::output(&mut rstd),
            1e-5,
        )
        .unwrap();
        ops.layernorm_bwd(
            rows,
            c,
            &DSlice::input(&dy),
            &DSlice::input(&x),
            &DSlice::input(&gamma),
            &DSlice::input(&mean),
            &DSlice::input(&rstd),
            &DSlice::output(&mut dx),
            &DSlice::output(&mut dg),
            &DSlice::output(&mut db),
        )
        .unwrap();
        let up = |v: &[f32]| dev.upload(v).unwrap();
        let (gx, gg, gb, gdy) = (up(&x), up(&gamma), up(&beta), up(&dy));
        let (gy, gm, gr, gdx) = (
            dev.alloc::<f32>(rows * c).unwrap(),
            dev.alloc::<f32>(rows).unwrap(),
            dev.alloc::<f32>(rows).unwrap(),
            dev.alloc::<f32>(rows * c).unwrap(),
        );
        let (gdg, gdb) = (up(&vec![0.0; c]), up(&vec![0.0; c]));
        let gops = Ops::new(&dev);
        gops.layernorm(
            rows,
            c,
            &gx.slice(),
            &gg.slice(),
            &gb.slice(),
            &gy.slice(),
            &gm.slice(),
            &gr.slice(),
            1e-5,
        )
        .unwrap();
        gops.layernorm_bwd(
            rows,
            c,
            &gdy.slice(),
            &gx.slice(),
            &gg.slice(),
            &gm.slice(),
            &gr.slice(),
            &gdx.slice(),
            &gdg.slice(),
            &gdb.slice(),
        )
        .unwrap();
        close("layernorm y", &dev.download(&gy).unwrap(), &y, 1e-5);
        close("layernorm dx", &dev.download(&gdx).unwrap(), &dx, 1e-4);
        close("layernorm dgamma", &dev.download(&gdg).unwrap(), &dg, 1e-4);
        close("layernorm dbeta", &dev.download(&gdb).unwrap(), &db, 1e-4);

        let logits = data(rows * vocab, 11);
        let targets: Vec<i32> = (0..rows)
            .map(|r| {
                if r % 7 == 0 {
                    -100
                } else {
                    (r * 37 % vocab) as i32
                }
            })
            .collect();
        let (mut loss, mut lse, mut valid, mut flag) = (
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0i32],
        );
        ops.cross_entropy(
            rows,
            vocab,
            &DSlice::input(&logits),
            &DSlice::input(&targets),
            -100,
            &DSlice::output(&mut loss),
            &DSlice::output(&mut lse),
            &DSlice::output(&mut valid),
            &DSlice::output(&mut flag),
        )
        .unwrap();
        let (gl, gt) = (up(&logits), dev.upload(&targets).unwrap());
        let (gloss, glse, gvalid, gflag) = (
            dev.alloc::<f32>(rows).unwrap(),
            dev.alloc::<f32>(rows).unwrap(),
            dev.alloc::<f32>(rows).unwrap(),
            dev.alloc::<i32>(1).unwrap(),
        );
        gops.cross_entropy(
            rows,
            vocab,
            &gl.slice(),
            &gt.slice(),
            -100,
            &gloss.slice(),
            &glse.slice(),
            &gvalid.slice(),
            &gflag.slice(),
        )
        .unwrap();
        close("ce loss", &dev.download(&gloss).unwrap(), &loss, 1e-5);
        close("ce lse", &dev.download(&glse).unwrap(), &lse, 1e-5);
    }
}
