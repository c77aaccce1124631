// Batched GEMM: for each batch b (blockIdx.z),
//   C_b = alpha * op(A_b) op(B_b) + beta * C_b,  op(A_b) M x K, op(B_b) K x N, C_b M x N,
// with A_b = A + b * stride_a and so on (a stride of 0 broadcasts an operand over the batch).
// op(A)[m, k] = trans_a ? A[k * lda + m] : A[m * lda + k]; op(B)[k, n] = trans_b ? B[n * ldb + k]
// : B[k * ldb + n]; C[m, n] = C[m * ldc + n]. beta == 0 never reads C.
//
// gemm_f32:  64x64 tile per 256-thread block, K in steps of 16 through shared memory; each
//            thread accumulates a 4x4 register block (rows ty + 16 i, columns tx + 16 j).
// gemm_bf16: bf16 A and B (raw 16-bit), f32 accumulation and output, on tensor cores:
//            mma.sync m16n8k16 (sm_80+). 64x64 tile per 128-thread block (2x2 warps, each warp
//            a 32x32 sub-tile = 2 x 4 mma tiles), K in steps of 16. A is staged as [m][k] and
//            B as [n][k] in shared memory so both fragments read pairs along k.
// gemm_bf16_autocast: the same with f32 A and B, rounded to bf16 while staging (mixed precision
//            with f32 master weights: no bf16 copies of the operands).
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16

extern "C" __global__ void __launch_bounds__(256)
    gemm_f32(int M, int N, int K, const float *__restrict__ A, i64 lda, i64 stride_a, int trans_a,
             const float *__restrict__ B, i64 ldb, i64 stride_b, int trans_b, float *__restrict__ C,
             i64 ldc, i64 stride_c, float alpha, float beta) {
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += BK) {
        // 1024 elements of each tile, 4 per thread. Element e: (k, m) = (e / 64, e % 64) for
        // the non-transposed layout read along m, or (e % 16, e / 16) read along k.
#pragma unroll
        for (int l = 0; l < 4; l++) {
            int e = tid + l * 256;
            int kk = trans_a ? e / BM : e % BK, mm = trans_a ? e % BM : e / BK;
            int gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < M && gk < K) ? (trans_a ? A[(i64)gk * lda + gm] : A[(i64)gm * lda + gk]) : 0.0f;
            int kb = trans_b ? e % BK : e / BN, nb = trans_b ? e / BK : e % BN;
            int gn = n0 + nb, gkb = k0 + kb;
            Bs[kb][nb] = (gn < N && gkb < K) ? (trans_b ? B[(i64)gn * ldb + gkb] : B[(i64)gkb * ldb + gn]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int n = n0 + tx + 16 * j;
            if (n >= N) continue;
            float *c = C + (i64)m * ldc + n;
            *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
        }
    }
}

static __device__ __forceinline__ u16 to_bf16_bits(u16 x) { return x; }
static __device__ __forceinline__ u16 to_bf16_bits(float x) { return f32_to_bf16(x); }

// The tensor-core GEMM for either input type: bf16 bits are staged as they are, f32 inputs are
// rounded to bf16 (nearest even) on their way into shared memory (autocast without a copy).
template <class TI>
static __device__ __forceinline__ void gemm_tc(int M, int N, int K, const TI *__restrict__ A, i64 lda,
                                               i64 stride_a, int trans_a, const TI *__restrict__ B, i64 ldb,
                                               i64 stride_b, int trans_b, float *__restrict__ C, i64 ldc,
                                               i64 stride_c, float alpha, float beta) {
    // Rows padded by 8 halves so fragment reads of consecutive rows fall in different banks.
    __shared__ u16 As[BM][BK + 8];
    __shared__ u16 Bs[BN][BK + 8];
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;  // warp's sub-tile origin in the block tile
    int g = lane >> 2, t = lane & 3;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int l = 0; l < 8; l++) {
            int e = tid + l * 128;
            int kk = trans_a ? e / BM : e % BK, mm = trans_a ? e % BM : e / BK;
            int gm = m0 + mm, gk = k0 + kk;
            As[mm][kk] = (gm < M && gk < K) ? to_bf16_bits(trans_a ? A[(i64)gk * lda + gm] : A[(i64)gm * lda + gk]) : (u16)0;
            int kb = trans_b ? e % BK : e / BN, nb = trans_b ? e / BK : e % BN;
            int gn = n0 + nb, gkb = k0 + kb;
            Bs[nb][kb] = (gn < N && gkb < K) ? to_bf16_bits(trans_b ? B[(i64)gn * ldb + gkb] : B[(i64)gkb * ldb + gn]) : (u16)0;
        }
        __syncthreads();
        u32 af[2][4], bfr[4][2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int r = wm + i * 16 + g;
            af[i][0] = pack_bf16(As[r][2 * t], As[r][2 * t + 1]);
            af[i][1] = pack_bf16(As[r + 8][2 * t], As[r + 8][2 * t + 1]);
            af[i][2] = pack_bf16(As[r][2 * t + 8], As[r][2 * t + 9]);
            af[i][3] = pack_bf16(As[r + 8][2 * t + 8], As[r + 8][2 * t + 9]);
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int c = wn + j * 8 + g;
            bfr[j][0] = pack_bf16(Bs[c][2 * t], Bs[c][2 * t + 1]);
            bfr[j][1] = pack_bf16(Bs[c][2 * t + 8], Bs[c][2 * t + 9]);
        }
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) mma_m16n8k16_bf16(acc[i][j], af[i], bfr[j], acc[i][j]);
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                int m = m0 + wm + i * 16 + g + (r >= 2 ? 8 : 0);
                int n = n0 + wn + j * 8 + 2 * t + (r & 1);
                if (m < M && n < N) {
                    float *c = C + (i64)m * ldc + n;
                    *c = beta == 0.0f ? alpha * acc[i][j][r] : alpha * acc[i][j][r] + beta * *c;
                }
            }
}

extern "C" __global__ void __launch_bounds__(128)
    gemm_bf16(int M, int N, int K, const u16 *__restrict__ A, i64 lda, i64 stride_a, int trans_a,
              const u16 *__restrict__ B, i64 ldb, i64 stride_b, int trans_b, float *__restrict__ C,
              i64 ldc, i64 stride_c, float alpha, float beta) {
    gemm_tc(M, N, K, A, lda, stride_a, trans_a, B, ldb, stride_b, trans_b, C, ldc, stride_c, alpha, beta);
}

extern "C" __global__ void __launch_bounds__(128)
    gemm_bf16_autocast(int M, int N, int K, const float *__restrict__ A, i64 lda, i64 stride_a, int trans_a,
                       const float *__restrict__ B, i64 ldb, i64 stride_b, int trans_b, float *__restrict__ C,
                       i64 ldc, i64 stride_c, float alpha, float beta) {
    gemm_tc(M, N, K, A, lda, stride_a, trans_a, B, ldb, stride_b, trans_b, C, ldc, stride_c, alpha, beta);
}
