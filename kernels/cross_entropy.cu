// Cross-entropy fused with log-softmax over [rows, V] logits, one block per row.
//   lse[r] = log sum_c exp(logits[r, c]);  loss[r] = lse[r] - logits[r, t_r];  valid[r] = 1,
// or loss = 0 and valid = 0 when t_r == ignore_index. A target outside [0, V) that is not
// ignore_index records (row + 1) in err[0]. The mean loss is sum(loss) / sum(valid).
// Backward: dlogits[r, c] = (softmax[r, c] - [c == t_r]) * dloss[0] / max(count[0], 1) for valid
// rows, 0 for ignored ones (dloss: gradient of the mean loss; count: number of valid rows; a
// null count means a sum reduction).
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256) ce_fwd_f32(int rows, int V, const float *__restrict__ logits,
                                                           const int *__restrict__ targets, int ignore_index,
                                                           float *__restrict__ loss, float *__restrict__ lse_out,
                                                           float *__restrict__ valid, int *err) {
    __shared__ float scratch[32];
    int r = blockIdx.x;
    const float *x = logits + (i64)r * V;
    float m = -CUDART_INF_F;
    for (int c = threadIdx.x; c < V; c += blockDim.x) m = fmaxf(m, x[c]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int c = threadIdx.x; c < V; c += blockDim.x) s += expf(x[c] - m);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
        float lse = m + logf(s);
        int t = targets[r];
        lse_out[r] = lse;
        if (t == ignore_index) {
            loss[r] = 0.0f;
            valid[r] = 0.0f;
        } else if (t < 0 || t >= V) {
            loss[r] = 0.0f;
            valid[r] = 0.0f;
            atomicMax(err, r + 1);
        } else {
            loss[r] = lse - x[t];
            valid[r] = 1.0f;
        }
    }
}

extern "C" __global__ void ce_bwd_f32(int rows, int V, const float *__restrict__ logits,
                                      const int *__restrict__ targets, int ignore_index,
                                      const float *__restrict__ lse, const float *__restrict__ dloss,
                                      const float *__restrict__ count, float *__restrict__ dlogits) {
    int r = blockIdx.x, t = targets[r];
    bool ok = t != ignore_index && t >= 0 && t < V;
    float g = ok ? dloss[0] / (count ? fmaxf(count[0], 1.0f) : 1.0f) : 0.0f;
    float l = lse[r];
    const float *x = logits + (i64)r * V;
    for (int c = threadIdx.x; c < V; c += blockDim.x)
        dlogits[(i64)r * V + c] = ok ? g * (expf(x[c] - l) - (c == t ? 1.0f : 0.0f)) : 0.0f;
}
