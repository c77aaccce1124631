// Activations and the fused bias + activation, f32.
//   act 0: identity; 1: GELU tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
//   act 2: GELU erf form 0.5 x (1 + erf(x / sqrt 2)); 3: ReLU.
// bias_act_fwd: y[r, c] = act(x[r, c] + bias[c]); bias_act_bwd: dx = dy * act'(x + bias)
// (the bias gradient is sum_cols_f32 of dx).
#include "common.cuh"

static __device__ __forceinline__ float act_fwd(int act, float x) {
    switch (act) {
        case 1: {
            float u = CUDART_SQRT_2_OVER_PI_F * (x + 0.044715f * x * x * x);
            return 0.5f * x * (1.0f + tanhf(u));
        }
        case 2: return 0.5f * x * (1.0f + erff(x * CUDART_SQRT_HALF_F));
        case 3: return fmaxf(x, 0.0f);
        default: return x;
    }
}

// d act / dx.
static __device__ __forceinline__ float act_grad(int act, float x) {
    switch (act) {
        case 1: {
            float u = CUDART_SQRT_2_OVER_PI_F * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            float du = CUDART_SQRT_2_OVER_PI_F * (1.0f + 3.0f * 0.044715f * x * x);
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        }
        case 2: {
            // Phi(x) + x phi(x), phi the standard normal density.
            float cdf = 0.5f * (1.0f + erff(x * CUDART_SQRT_HALF_F));
            return cdf + x * 0.398942280f * expf(-0.5f * x * x);
        }
        case 3: return x > 0.0f ? 1.0f : 0.0f;
        default: return 1.0f;
    }
}

extern "C" __global__ void act_fwd_f32(int act, i64 n, const float *__restrict__ x, float *__restrict__ y) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = act_fwd(act, x[i]);
}

extern "C" __global__ void act_bwd_f32(int act, i64 n, const float *__restrict__ x, const float *__restrict__ dy,
                                       float *__restrict__ dx) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dx[i] = dy[i] * act_grad(act, x[i]);
}

extern "C" __global__ void bias_act_fwd_f32(int act, int rows, int cols, const float *__restrict__ x,
                                            const float *__restrict__ bias, float *__restrict__ y) {
    i64 n = (i64)rows * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = act_fwd(act, x[i] + bias[i % cols]);
}

extern "C" __global__ void bias_act_bwd_f32(int act, int rows, int cols, const float *__restrict__ x,
                                            const float *__restrict__ bias, const float *__restrict__ dy,
                                            float *__restrict__ dx) {
    i64 n = (i64)rows * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dx[i] = dy[i] * act_grad(act, x[i] + bias[i % cols]);
}
