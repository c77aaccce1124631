// LayerNorm and RMSNorm over the last dimension C of a [rows, C] f32 matrix; one warp per row,
// blockDim.x = 32 * rows per block.
//   LayerNorm: mean = sum x / C, rstd = 1 / sqrt(sum (x - mean)^2 / C + eps),
//              y = (x - mean) * rstd * gamma + beta.
//   Backward with xhat = (x - mean) * rstd, g = dy * gamma:
//              dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),
//              dgamma += sum_rows dy * xhat, dbeta += sum_rows dy.
//   RMSNorm:   rstd = 1 / sqrt(sum x^2 / C + eps), y = x * rstd * gamma;
//              dx = rstd * (g - xhat * mean_c(g * xhat)), dgamma += sum_rows dy * xhat.
// The backward kernels accumulate dgamma/dbeta in dynamic shared memory (2 * C floats) over the
// rows of a block, then add them to global memory with one atomic per column per block; the
// caller zeroes dgamma/dbeta (or passes existing gradients to accumulate into).
#include "common.cuh"

extern "C" __global__ void layernorm_fwd_f32(int rows, int C, const float *__restrict__ x,
                                             const float *__restrict__ gamma, const float *__restrict__ beta,
                                             float *__restrict__ y, float *__restrict__ mean_out,
                                             float *__restrict__ rstd_out, float eps) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float *xr = x + (i64)r * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += xr[c];
    float mean = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = xr[c] - mean;
        v += d * d;
    }
    float rstd = rsqrtf(warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += 32) y[(i64)r * C + c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    if (lane == 0) {
        mean_out[r] = mean;
        rstd_out[r] = rstd;
    }
}

extern "C" __global__ void layernorm_bwd_f32(int rows, int C, const float *__restrict__ dy,
                                             const float *__restrict__ x, const float *__restrict__ gamma,
                                             const float *__restrict__ mean_in, const float *__restrict__ rstd_in,
                                             float *__restrict__ dx, float *dgamma, float *dbeta) {
    extern __shared__ float acc[];
    float *sg = acc, *sb = acc + C;
    for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) acc[c] = 0.0f;
    __syncthreads();
    int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int r = blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += gridDim.x * warps) {
        const float *xr = x + (i64)r * C, *dyr = dy + (i64)r * C;
        float mean = mean_in[r], rstd = rstd_in[r];
        float sg1 = 0.0f, sg2 = 0.0f;
        for (int c = lane; c < C; c += 32) {
            float xh = (xr[c] - mean) * rstd, g = dyr[c] * gamma[c];
            sg1 += g;
            sg2 += g * xh;
            atomicAdd(&sg[c], dyr[c] * xh);
            atomicAdd(&sb[c], dyr[c]);
        }
        sg1 = warp_sum(sg1) / C;
        sg2 = warp_sum(sg2) / C;
        for (int c = lane; c < C; c += 32) {
            float xh = (xr[c] - mean) * rstd, g = dyr[c] * gamma[c];
            dx[(i64)r * C + c] = rstd * (g - sg1 - xh * sg2);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        atomicAdd(&dgamma[c], sg[c]);
        atomicAdd(&dbeta[c], sb[c]);
    }
}

extern "C" __global__ void rmsnorm_fwd_f32(int rows, int C, const float *__restrict__ x,
                                           const float *__restrict__ gamma, float *__restrict__ y,
                                           float *__restrict__ rstd_out, float eps) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float *xr = x + (i64)r * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += xr[c] * xr[c];
    float rstd = rsqrtf(warp_sum(s) / C + eps);
    for (int c = lane; c < C; c += 32) y[(i64)r * C + c] = xr[c] * rstd * gamma[c];
    if (lane == 0) rstd_out[r] = rstd;
}

extern "C" __global__ void rmsnorm_bwd_f32(int rows, int C, const float *__restrict__ dy,
                                           const float *__restrict__ x, const float *__restrict__ gamma,
                                           const float *__restrict__ rstd_in, float *__restrict__ dx,
                                           float *dgamma) {
    extern __shared__ float acc[];
    for (int c = threadIdx.x; c < C; c += blockDim.x) acc[c] = 0.0f;
    __syncthreads();
    int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int r = blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += gridDim.x * warps) {
        const float *xr = x + (i64)r * C, *dyr = dy + (i64)r * C;
        float rstd = rstd_in[r], s = 0.0f;
        for (int c = lane; c < C; c += 32) {
            float xh = xr[c] * rstd;
            s += dyr[c] * gamma[c] * xh;
            atomicAdd(&acc[c], dyr[c] * xh);
        }
        s = warp_sum(s) / C;
        for (int c = lane; c < C; c += 32) {
            float xh = xr[c] * rstd;
            dx[(i64)r * C + c] = rstd * (dyr[c] * gamma[c] - xh * s);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(&dgamma[c], acc[c]);
}
