// Row softmax fused with scale and mask: y[r, c] = softmax_c(scale * x[r, c] + m[r, c]) where
// m is an optional additive mask row (mask[(r % mask_rows) * cols + c], null for none) and,
// when `causal`, -inf for c > r % causal_t (the query position of row r in a [.., T, T] score
// tensor). A row masked everywhere gives zeros, not NaN.
//   softmax_fwd_warp_f32: one warp per row (short rows), blockDim.x = 32 * rows per block.
//   softmax_fwd_block_f32: one block per row (long rows).
// Backward: dx = scale * y * (dy - sum_c dy * y).
#include "common.cuh"

static __device__ __forceinline__ float masked_logit(const float *x, const float *mask, int mask_rows,
                                                     int causal, int causal_t, int r, int cols, int c,
                                                     float scale) {
    if (causal && c > r % causal_t) return -CUDART_INF_F;
    float v = scale * x[c];
    if (mask) v += mask[(i64)(r % mask_rows) * cols + c];
    return v;
}

// Online max/sum: combine (m, s) with one value v.
static __device__ __forceinline__ void online_add(float &m, float &s, float v) {
    if (v == -CUDART_INF_F) return;
    if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
    } else {
        s += expf(v - m);
    }
}
static __device__ __forceinline__ void online_merge(float &m, float &s, float m2, float s2) {
    float mm = fmaxf(m, m2);
    if (mm == -CUDART_INF_F) return;
    s = (m == -CUDART_INF_F ? 0.0f : s * expf(m - mm)) + (m2 == -CUDART_INF_F ? 0.0f : s2 * expf(m2 - mm));
    m = mm;
}

extern "C" __global__ void softmax_fwd_warp_f32(int rows, int cols, const float *__restrict__ x,
                                                float *__restrict__ y, float scale, const float *__restrict__ mask,
                                                int mask_rows, int causal, int causal_t) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float *xr = x + (i64)r * cols;
    float m = -CUDART_INF_F, s = 0.0f;
    for (int c = lane; c < cols; c += 32)
        online_add(m, s, masked_logit(xr, mask, mask_rows, causal, causal_t, r, cols, c, scale));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(PT_FULL_MASK, m, o), s2 = __shfl_xor_sync(PT_FULL_MASK, s, o);
        online_merge(m, s, m2, s2);
    }
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float v = masked_logit(xr, mask, mask_rows, causal, causal_t, r, cols, c, scale);
        y[(i64)r * cols + c] = v == -CUDART_INF_F ? 0.0f : expf(v - m) * inv;
    }
}

extern "C" __global__ void __launch_bounds__(1024) softmax_fwd_block_f32(int rows, int cols, const float *__restrict__ x,
                                                                       float *__restrict__ y, float scale,
                                                                       const float *__restrict__ mask, int mask_rows,
                                                                       int causal, int causal_t) {
    __shared__ float sm[32];
    __shared__ float ss[32];
    int r = blockIdx.x, lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float *xr = x + (i64)r * cols;
    float m = -CUDART_INF_F, s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        online_add(m, s, masked_logit(xr, mask, mask_rows, causal, causal_t, r, cols, c, scale));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(PT_FULL_MASK, m, o), s2 = __shfl_xor_sync(PT_FULL_MASK, s, o);
        online_merge(m, s, m2, s2);
    }
    if (lane == 0) {
        sm[w] = m;
        ss[w] = s;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : -CUDART_INF_F;
    s = lane < nw ? ss[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(PT_FULL_MASK, m, o), s2 = __shfl_xor_sync(PT_FULL_MASK, s, o);
        online_merge(m, s, m2, s2);
    }
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = masked_logit(xr, mask, mask_rows, causal, causal_t, r, cols, c, scale);
        y[(i64)r * cols + c] = v == -CUDART_INF_F ? 0.0f : expf(v - m) * inv;
    }
}

// One warp per row.
extern "C" __global__ void softmax_bwd_f32(int rows, int cols, const float *__restrict__ y,
                                           const float *__restrict__ dy, float *__restrict__ dx, float scale) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float *yr = y + (i64)r * cols, *dyr = dy + (i64)r * cols;
    float dot = 0.0f;
    for (int c = lane; c < cols; c += 32) dot += yr[c] * dyr[c];
    dot = warp_sum(dot);
    for (int c = lane; c < cols; c += 32) dx[(i64)r * cols + c] = scale * yr[c] * (dyr[c] - dot);
}
