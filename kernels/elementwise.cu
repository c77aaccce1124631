// Elementwise kernels on f32 (and the f32 <-> bf16 casts). Grid-stride loops over n elements.
#include "common.cuh"

// Broadcast/strided addressing: an output index i (row-major over `shape`) maps to
// offset_a = sum_d idx_d * sa[d] and offset_b = sum_d idx_d * sb[d]; a stride of 0 broadcasts.
struct Bcast {
    int rank;
    int pad;
    i64 shape[6];
    i64 sa[6];
    i64 sb[6];
};

static __device__ __forceinline__ void bcast_offsets(const Bcast &p, i64 i, i64 *oa, i64 *ob) {
    i64 a = 0, b = 0;
    for (int d = p.rank - 1; d >= 0; d--) {
        i64 idx = i % p.shape[d];
        i /= p.shape[d];
        a += idx * p.sa[d];
        b += idx * p.sb[d];
    }
    *oa = a;
    *ob = b;
}

// y[i] = a[oa(i)] op b[ob(i)], op: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min. y is contiguous.
extern "C" __global__ void binary_f32(int op, i64 n, const float *__restrict__ a,
                                      const float *__restrict__ b, float *__restrict__ y, Bcast p) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 oa, ob;
        bcast_offsets(p, i, &oa, &ob);
        float x = a[oa], z = b[ob], r;
        switch (op) {
            case 0: r = x + z; break;
            case 1: r = x - z; break;
            case 2: r = x * z; break;
            case 3: r = x / z; break;
            case 4: r = fmaxf(x, z); break;
            default: r = fminf(x, z); break;
        }
        y[i] = r;
    }
}

// y[i] = src[oa(i)]: materialise a strided view contiguously (p.sb unused).
extern "C" __global__ void copy_strided_f32(i64 n, const float *__restrict__ src,
                                            float *__restrict__ y, Bcast p) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 oa, ob;
        bcast_offsets(p, i, &oa, &ob);
        y[i] = src[oa];
    }
}

// y[ob(i)] = src[oa(i)] on 32-bit words (f32, or integer ids copied bit for bit): a strided view
// copied into a strided destination (p.sa: source strides, p.sb: destination strides), e.g. a
// slice of a larger tensor (the adjoint of narrow, cat). Destinations must not overlap.
extern "C" __global__ void copy_strided_b32(i64 n, const u32 *__restrict__ src, u32 *__restrict__ y, Bcast p) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 oa, ob;
        bcast_offsets(p, i, &oa, &ob);
        y[ob] = src[oa];
    }
}

// y = f(x), op: 0 neg, 1 exp, 2 log, 3 sqrt, 4 alpha*x, 5 relu, 6 tanh, 7 x+alpha, 8 x*x,
// 9 1/x. In place is allowed (x == y).
extern "C" __global__ void unary_f32(int op, i64 n, const float *x, float *y, float alpha) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float v = x[i], r;
        switch (op) {
            case 0: r = -v; break;
            case 1: r = expf(v); break;
            case 2: r = logf(v); break;
            case 3: r = sqrtf(v); break;
            case 4: r = alpha * v; break;
            case 5: r = fmaxf(v, 0.0f); break;
            case 6: r = tanhf(v); break;
            case 7: r = v + alpha; break;
            case 8: r = v * v; break;
            default: r = 1.0f / v; break;
        }
        y[i] = r;
    }
}

// y = alpha * x + beta * y (residual adds, gradient accumulation). beta == 0 ignores old y.
extern "C" __global__ void axpby_f32(i64 n, float alpha, const float *x, float beta, float *y) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

extern "C" __global__ void fill_f32(i64 n, float *y, float value) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = value;
}

extern "C" __global__ void cast_f32_bf16(i64 n, const float *__restrict__ x, u16 *__restrict__ y) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void cast_bf16_f32(i64 n, const u16 *__restrict__ x, float *__restrict__ y) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = bf16_to_f32(x[i]);
}
