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
