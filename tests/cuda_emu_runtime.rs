//! The emulator itself: its schedules (a missing __syncthreads after a shared-memory read is
//! caught by the warp-ordered schedule, not by round-robin), deadlock and misuse reports,
//! the NaN fill of shared memory, the kernel registry and the launch signature check.

#![cfg(feature = "emu")]

use pretext::backend::cuda::emu::{kernel_names, EmuExecutor, Schedule};
use pretext::backend::cuda::launch::{Arg, DSlice, Executor, KernelCall};
use pretext::backend::cuda::source::{SOURCES, TEST_SOURCES};

/// out[w] = sum over tiles of the warp-sum of each thread's right neighbour in the tile.
fn race_reference(tiles: usize, n: usize, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; n / 32];
    for it in 0..tiles {
        for (w, o) in out.iter_mut().enumerate() {
            *o += (w * 32..w * 32 + 32)
                .map(|t| x[it * n + (t + 1) % n])
                .sum::<f32>();
        }
    }
    out
}

fn run_race(schedule: Schedule, second_sync: bool) -> (Vec<f32>, Vec<f32>) {
    let (tiles, n) = (3usize, 96usize);
    // Small integers: every summation order gives the exact same float.
    let x: Vec<f32> = (0..tiles * n).map(|i| ((i * 7) % 13) as f32).collect();
    let mut out = vec![0.0f32; n / 32];
    let call = KernelCall::new("race_tile_sum", (1, 1, 1), (n as u32, 1, 1), (n * 4) as u32)
        .arg(Arg::i32(tiles as i32))
        .buf(&DSlice::input(&x))
        .buf(&DSlice::output(&mut out))
        .arg(Arg::i32(second_sync as i32));
    EmuExecutor::new(schedule).launch(&call).unwrap();
    (out, race_reference(tiles, n, &x))
}

#[test]
fn correct_kernel_passes_under_every_schedule() {
    for s in [
        Schedule::RoundRobin,
        Schedule::WarpOrdered,
        Schedule::WarpReversed,
    ] {
        let (got, want) = run_race(s, true);
        assert_eq!(got, want, "{s:?}");
    }
}

#[test]
fn missing_syncthreads_is_caught_by_warp_ordered_only() {
    let (got, want) = run_race(Schedule::RoundRobin, false);
    assert_eq!(
        got, want,
        "round-robin interleaving hides this race (all reads precede all writes)"
    );
    let (got, want) = run_race(Schedule::WarpOrdered, false);
    assert_ne!(
        got, want,
        "warp-ordered must expose the missing __syncthreads"
    );
}

fn misuse(mode: i32, grid: u32, block: u32) -> Result<Vec<f32>, String> {
    let mut out = vec![0.0f32; (grid * block) as usize];
    let call = KernelCall::new("sync_misuse", (grid, 1, 1), (block, 1, 1), 0)
        .arg(Arg::i32(mode))
        .buf(&DSlice::output(&mut out));
    EmuExecutor::new(Schedule::RoundRobin)
        .launch(&call)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn deadlock_is_reported_with_block_and_barrier() {
    let e = misuse(0, 3, 64).unwrap_err();
    assert!(e.contains("deadlock in block (1,0,0)"), "{e}");
    assert!(
        e.contains("63 threads wait at __syncthreads (kernels/test/race.cu:"),
        "{e}"
    );
    assert!(e.contains("1 of 64 threads have exited"), "{e}");
}

#[test]
fn shuffle_with_exited_lane_is_reported() {
    let e = misuse(1, 1, 32).unwrap_err();
    assert!(
        e.contains("__shfl_xor_sync") && e.contains("thread exits while its warp waits"),
        "{e}"
    );
}

#[test]
fn shared_memory_starts_as_nan() {
    let out = misuse(2, 1, 64).unwrap();
    assert!(out.iter().all(|v| v.is_nan()), "{out:?}");
}

#[test]
fn registry_holds_every_kernel() {
    let mut got = kernel_names();
    got.sort();
    let mut want: Vec<String> = SOURCES
        .iter()
        .chain(TEST_SOURCES)
        .flat_map(|s| s.kernels.iter().map(|k| k.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn launch_signature_is_checked() {
    let ex = EmuExecutor::new(Schedule::RoundRobin);
    let mut out = vec![0.0f32; 4];
    // fill_f32(i64 n, float *y, float value): pass an i32 where the i64 goes.
    let call = KernelCall::new("fill_f32", (1, 1, 1), (32, 1, 1), 0)
        .arg(Arg::i32(4))
        .buf(&DSlice::output(&mut out))
        .arg(Arg::f32(1.0));
    let e = ex.launch(&call).unwrap_err().to_string();
    assert!(e.contains("parameter 0 is 8 bytes, launch passed 4"), "{e}");
    let call = KernelCall::new("fill_f32", (1, 1, 1), (32, 1, 1), 0).arg(Arg::i64(4));
    let e = ex.launch(&call).unwrap_err().to_string();
    assert!(e.contains("takes 3 parameters, launch passed 1"), "{e}");
    let call = KernelCall::new("no_such_kernel", (1, 1, 1), (32, 1, 1), 0);
    assert!(ex
        .launch(&call)
        .unwrap_err()
        .to_string()
        .contains("no emulated kernel named `no_such_kernel`"));
}

#[test]
fn device_buffers_are_refused() {
    let ex = EmuExecutor::new(Schedule::RoundRobin);
    // SAFETY: the slice is never dereferenced: the launch is refused before running.
    let dev =
        unsafe { DSlice::<f32>::from_raw(0x1000, 4, pretext::backend::cuda::Space::Device(0)) };
    let call = KernelCall::new("fill_f32", (1, 1, 1), (32, 1, 1), 0)
        .arg(Arg::i64(4))
        .buf(&dev)
        .arg(Arg::f32(1.0));
    let e = ex.launch(&call).unwrap_err().to_string();
    assert!(e.contains("Device(0)"), "{e}");
}

#[test]
fn backend_memory_round_trip_and_poison() {
    use pretext::backend::cuda::ops::Gemm;
    use pretext::backend::cuda::{Backend, Ops};
    let ex = EmuExecutor::new(Schedule::WarpOrdered);
    let fresh = ex.alloc::<f32>(5).unwrap();
    assert!(
        ex.download(&fresh).unwrap().iter().all(|v| v.is_nan()),
        "fresh emulator memory is NaN"
    );
    let a = ex.upload(&[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let b = ex.upload(&[5.0f32, 6.0, 7.0, 8.0]).unwrap();
    let c = ex.alloc::<f32>(4).unwrap();
    Ops::new(&ex)
        .gemm_f32(
            &Gemm::contiguous(1, 2, 2, 2),
            &a.slice(),
            &b.slice(),
            &c.slice(),
        )
        .unwrap();
    assert_eq!(ex.download(&c).unwrap(), vec![19.0, 22.0, 43.0, 50.0]);
}

#[test]
fn read_only_views_are_refused_as_outputs() {
    use pretext::backend::cuda::Ops;
    let ex = EmuExecutor::new(Schedule::RoundRobin);
    let x = vec![1.0f32; 8];
    let y = vec![0.0f32; 8];
    let e = Ops::new(&ex)
        .unary(
            pretext::backend::cuda::ops::UnOp::Neg,
            8,
            &DSlice::input(&x),
            &DSlice::input(&y),
            0.0,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("output `y` was passed as a read-only view"),
        "{e}"
    );
    assert_eq!(y, vec![0.0f32; 8]);
}

#[test]
fn warp_intrinsics_follow_cuda_semantics() {
    let mut out = vec![0i32; 32 * 8];
    let call = KernelCall::new("warp_ops", (1, 1, 1), (32, 1, 1), 0).buf(&DSlice::output(&mut out));
    EmuExecutor::new(Schedule::WarpOrdered)
        .launch(&call)
        .unwrap();
    let ballot = (0..32).filter(|l| l % 3 == 0).fold(0u32, |m, l| m | 1 << l) as i32;
    for lane in 0..32i32 {
        let got = &out[lane as usize * 8..lane as usize * 8 + 8];
        let want = [
            ballot,
            if lane >= 1 { lane - 1 } else { lane },
            if lane + 2 < 32 { lane + 2 } else { lane },
            7,
            1,
            1,
            lane ^ 1,
            (lane & !7) + 3,
        ];
        assert_eq!(got, &want, "lane {lane}");
    }
}
