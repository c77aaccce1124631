// AdamW (decoupled weight decay), f32 master weights, one thread per parameter:
//   g = grad * grad_scale (gradient clipping folds into grad_scale)
//   p -= lr * weight_decay * p
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
#include "common.cuh"

extern "C" __global__ void adamw_f32(i64 n, float *__restrict__ p, const float *__restrict__ grad,
                                     float *__restrict__ m, float *__restrict__ v, float lr, float beta1,
                                     float beta2, float eps, float weight_decay, float bc1, float bc2,
                                     float grad_scale) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale, w = p[i];
        w -= lr * weight_decay * w;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = w - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}
