// Test-only kernel for the emulator's schedules (never launched by the library): a tiled sum
// whose second __syncthreads can be switched off. Each iteration stages a tile of x in shared
// memory, every thread reads its right neighbour's element (crossing warps), sums within the
// warp by shuffles, and accumulates. Without the barrier after the read, a fast warp overwrites
// the tile for the next iteration while a slow warp still has to read it: a race that the fair
// round-robin schedule hides (every thread reads before any thread writes again) and the
// warp-ordered schedule exposes. out[w] = sum over tiles of warp w's neighbour values.
#include "../common.cuh"

extern "C" __global__ void race_tile_sum(int tiles, const float *__restrict__ x, float *__restrict__ out,
                                         int second_sync) {
    extern __shared__ float tile[];
    int t = threadIdx.x, n = blockDim.x;
    float acc = 0.0f;
    for (int it = 0; it < tiles; it++) {
        tile[t] = x[it * n + t];
        __syncthreads();
        float v = tile[(t + 1) % n];
        v = warp_sum(v);
        acc += v;
        if (second_sync) __syncthreads();
    }
    if ((t & 31) == 0) out[t >> 5] = acc;
}

// Misuses the emulator must report rather than hang or silently pass:
//   mode 0: thread 0 of block 1 returns before a __syncthreads the others wait at (deadlock);
//   mode 1: lane 5 returns before a full-mask shuffle (lane exited);
//   mode 2: reads shared memory nobody wrote (the emulator's NaN fill shows through).
extern "C" __global__ void sync_misuse(int mode, float *__restrict__ out) {
    __shared__ float buf[64];
    int t = threadIdx.x;
    if (mode == 0) {
        if (blockIdx.x == 1 && t == 0) return;
        __syncthreads();
        out[blockIdx.x * blockDim.x + t] = 1.0f;
    } else if (mode == 1) {
        if (t == 5) return;
        out[t] = __shfl_xor_sync(PT_FULL_MASK, 1.0f, 1);
    } else {
        out[t] = buf[t];
    }
}

// Warp intrinsics with known answers (one warp): out[lane * 8 + i] for
//   0 ballot(lane % 3 == 0)  1 shfl_up(lane, 1)  2 shfl_down(lane, 2)  3 shfl(lane, 7)
//   4 all(lane < 32)  5 any(lane == 5)  6 shfl_xor(lane, 1, width 8)  7 shfl(lane, 3, width 8)
extern "C" __global__ void warp_ops(int *__restrict__ out) {
    int lane = threadIdx.x & 31;
    int *o = out + lane * 8;
    o[0] = (int)__ballot_sync(PT_FULL_MASK, lane % 3 == 0);
    o[1] = __shfl_up_sync(PT_FULL_MASK, lane, 1);
    o[2] = __shfl_down_sync(PT_FULL_MASK, lane, 2);
    o[3] = __shfl_sync(PT_FULL_MASK, lane, 7);
    o[4] = __all_sync(PT_FULL_MASK, lane < 32);
    o[5] = __any_sync(PT_FULL_MASK, lane == 5);
    o[6] = __shfl_xor_sync(PT_FULL_MASK, lane, 1, 8);
    o[7] = __shfl_sync(PT_FULL_MASK, lane, 3, 8);
}
