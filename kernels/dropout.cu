// Dropout with a counter-based RNG: element i is kept when u(seed, offset + i) >= p, where u is
// the top 24 bits of splitmix64(splitmix64(seed) + (offset + i) * GAMMA) / 2^24 (common.cuh).
// The mask is never stored: the backward pass regenerates it from (seed, offset).
//   forward:  y = keep ? x / (1 - p) : 0      backward: dx = keep ? dy / (1 - p) : 0
#include "common.cuh"

extern "C" __global__ void dropout_f32(i64 n, const float *__restrict__ x, float *__restrict__ y, float p,
                                       u64 seed, u64 offset) {
    float s = 1.0f / (1.0f - p);
    u64 base = splitmix64(seed);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = keep_in(base, offset + (u64)i, p) ? x[i] * s : 0.0f;
}
