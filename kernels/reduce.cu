// Reductions on f32: over the last dimension (rows), over the first (columns, for bias
// gradients) and over everything.
#include "common.cuh"

// y[r] = alpha * sum_c x[r * cols + c] + beta * y[r]. One warp per row, blockDim.x = 32 * k.
extern "C" __global__ void sum_rows_f32(int rows, int cols, const float *__restrict__ x,
                                        float *__restrict__ y, float alpha, float beta) {
    int warps = blockDim.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * warps + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float *row = x + (i64)r * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += row[c];
    s = warp_sum(s);
    if (lane == 0) y[r] = beta == 0.0f ? alpha * s : alpha * s + beta * y[r];
}

// y[c] = alpha * sum_r x[r * cols + c] + beta * y[c]. Block (32, 8): 32 columns per block,
// 8 row groups combined through shared memory; deterministic (no atomics).
extern "C" __global__ void __launch_bounds__(256) sum_cols_f32(int rows, int cols, const float *__restrict__ x,
                                                               float *__restrict__ y, float alpha, float beta) {
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < cols)
        for (int r = threadIdx.y; r < rows; r += 8) s += x[(i64)r * cols + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = 0.0f;
        for (int g = 0; g < 8; g++) t += part[g][threadIdx.x];
        y[c] = beta == 0.0f ? alpha * t : alpha * t + beta * y[c];
    }
}

// out[0] += alpha * sum_i x[i]. Each block reduces a grid-stride slice, then one atomic add;
// the caller zeroes out[0] first when it wants a plain sum.
extern "C" __global__ void __launch_bounds__(256) sum_all_f32(i64 n, const float *__restrict__ x, float *out, float alpha) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) s += x[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) atomicAdd(out, alpha * s);
}
