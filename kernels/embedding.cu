// Embedding lookup: out[i, :] = table[ids[i], :] for n ids into a [V, C] table.
// An id outside [0, V) writes zeros and records (position + 1) in err[0] (atomicMax, so the
// caller sees the last bad position); the launcher turns that into an Index error.
// Backward: dtable[ids[i], :] += dout[i, :] (atomic: repeated ids accumulate).
#include "common.cuh"

extern "C" __global__ void embedding_fwd_f32(int n, int C, int V, const int *__restrict__ ids,
                                             const float *__restrict__ table, float *__restrict__ out, int *err) {
    i64 total = (i64)n * C;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        int row = (int)(i / C), c = (int)(i % C), id = ids[row];
        if (id < 0 || id >= V) {
            out[i] = 0.0f;
            if (c == 0) atomicMax(err, row + 1);
        } else {
            out[i] = table[(i64)id * C + c];
        }
    }
}

extern "C" __global__ void embedding_bwd_f32(int n, int C, int V, const int *__restrict__ ids,
                                             const float *__restrict__ dout, float *dtable) {
    i64 total = (i64)n * C;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        int row = (int)(i / C), id = ids[row];
        if (id >= 0 && id < V) atomicAdd(&dtable[(i64)id * C + i % C], dout[i]);
    }
}
