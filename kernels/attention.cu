// Flash attention, f32, O(T) memory: the [Tq, Tk] score matrix is never stored.
// For each batch b, head h, query i:  s_ij = scale * q_i . k_j + bias[b, h, i, j] (masked: -inf
// when causal and j > i, or key_mask[b, j] == 0),  p_ij = softmax_j(s_ij),  o_i = sum_j p_ij v_j,
// and lse_i = log sum_j exp(s_ij) (+inf for a query that can see no key, whose o_i is 0).
// Backward (with delta_i = do_i . o_i, from attn_bwd_delta_f32):
//   dv_j = sum_i p_ij do_i,  dp_ij = do_i . v_j,  ds_ij = p_ij (dp_ij - delta_i),
//   dq_i = scale * sum_j ds_ij k_j,  dk_j = scale * sum_i ds_ij q_i,  dbias_ij += ds_ij.
// Dropout of the probabilities (drop_p > 0): o_i = sum_j p_ij z_ij v_j with z_ij = 1 / (1 - p) when
// keep(drop_seed, (bh * Tq + i) * Tk + j, p), else 0 (the host's mask for the [B, H, Tq, Tk]
// probabilities), regenerated in the backward: dv_j = sum_i p_ij z_ij do_i, dp_ij = z_ij do_i . v_j,
// and delta_i = do_i . o_i as before.
// Layout: q, k, v, o, dout addressed through (batch, head, time) strides with the head dimension
// D contiguous, so [B, H, T, D] and [B, T, H, D] (a view of a fused QKV projection) both work
// without copies. The _bf16 kernels read q, k, v as bf16 (mixed precision); everything else,
// and all arithmetic, stays f32. lse and delta are contiguous [B, H, Tq]; dq is contiguous [B, H, Tq, D] and
// dk, dv contiguous [B, H, Tk, D]. D <= 128.
#include "common.cuh"

struct AttnParams {
    const void *q;      // f32, or bf16 bits for the _bf16 kernels
    const void *k;
    const void *v;
    float *o;
    float *lse;
    const float *bias;  // null, or additive bias addressed by bias_sb, bias_sh, bias_sq (key stride 1)
    const u8 *key_mask; // null, or [B, Tk] with 1 = attend
    const float *dout;  // backward only, o's strides
    float *delta;       // backward only (written by attn_bwd_delta_f32)
    float *dq;          // backward only, accumulated (zeroed by the caller)
    float *dk;          // backward only, written
    float *dv;          // backward only, written
    float *dbias;       // backward only, null or accumulated with the bias strides
    i64 q_sb, q_sh, q_st;
    i64 k_sb, k_sh, k_st;
    i64 v_sb, v_sh, v_st;
    i64 o_sb, o_sh, o_st;
    i64 bias_sb, bias_sh, bias_sq;
    int B, H, Tq, Tk, D;
    int causal;
    float scale;
    float drop_p;       // 0: no dropout
    u64 drop_seed;
};
// z_ij: the dropout weight of probability (bh, i, j).
static __device__ __forceinline__ float drop_weight(const AttnParams &p, int bh, int i, int j) {
    if (p.drop_p <= 0.0f) return 1.0f;
    u64 counter = ((u64)bh * p.Tq + i) * p.Tk + j;
    return keep(p.drop_seed, counter, p.drop_p) ? 1.0f / (1.0f - p.drop_p) : 0.0f;
}

static __device__ __forceinline__ float ld_f32(const float *p, i64 i) { return p[i]; }
static __device__ __forceinline__ float ld_f32(const u16 *p, i64 i) { return bf16_to_f32(p[i]); }

#define FA_BR 16  // query rows per forward block (4 warps x 4 rows)
#define FA_BC 32  // keys per tile (one per lane)

static __device__ __forceinline__ bool key_visible(const AttnParams &p, int b, int i, int j) {
    if (j >= p.Tk) return false;
    if (p.causal && j > i) return false;
    if (p.key_mask && !p.key_mask[(i64)b * p.Tk + j]) return false;
    return true;
}

// grid (ceil(Tq / 16), B * H), block 128, dynamic shared memory
// (16 * D + 32 * (D + 1) + 32 * D) floats.
template <class TI>
static __device__ __forceinline__ void attn_fwd(const AttnParams &p) {
    extern __shared__ float smem[];
    const int D = p.D, ks = D + 1;
    float *Qs = smem, *Ks = Qs + FA_BR * D, *Vs = Ks + FA_BC * ks;
    int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
    int q0 = blockIdx.x * FA_BR, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const TI *q = (const TI *)p.q + b * p.q_sb + h * p.q_sh;
    const TI *k = (const TI *)p.k + b * p.k_sb + h * p.k_sh;
    const TI *v = (const TI *)p.v + b * p.v_sb + h * p.v_sh;
    for (int e = threadIdx.x; e < FA_BR * D; e += blockDim.x) {
        int r = e / D, d = e % D;
        Qs[e] = q0 + r < p.Tq ? ld_f32(q, (i64)(q0 + r) * p.q_st + d) : 0.0f;
    }
    float o[4][4], m[4], l[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        m[r] = -CUDART_INF_F;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < 4; c++) o[r][c] = 0.0f;
    }
    int kend = p.causal ? min(p.Tk, q0 + FA_BR) : p.Tk;
    for (int k0 = 0; k0 < kend; k0 += FA_BC) {
        __syncthreads();  // previous tile fully read (and Qs written, on the first pass)
        for (int e = threadIdx.x; e < FA_BC * D; e += blockDim.x) {
            int j = e / D, d = e % D;
            bool in = k0 + j < p.Tk;
            Ks[j * ks + d] = in ? ld_f32(k, (i64)(k0 + j) * p.k_st + d) : 0.0f;
            Vs[j * D + d] = in ? ld_f32(v, (i64)(k0 + j) * p.v_st + d) : 0.0f;
        }
        __syncthreads();
        int j = k0 + lane;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int row = warp * 4 + r, i = q0 + row;
            if (i >= p.Tq) break;  // uniform over the warp
            float s = -CUDART_INF_F;
            if (key_visible(p, b, i, j)) {
                float dot = 0.0f;
                for (int d = 0; d < D; d++) dot = fmaf(Qs[row * D + d], Ks[lane * ks + d], dot);
                s = p.scale * dot;
                if (p.bias) s += p.bias[b * p.bias_sb + h * p.bias_sh + (i64)i * p.bias_sq + j];
            }
            float mt = warp_max(s), mn = fmaxf(m[r], mt);
            if (mn == -CUDART_INF_F) continue;  // nothing visible yet for this row
            float pj = s == -CUDART_INF_F ? 0.0f : expf(s - mn);
            float corr = m[r] == -CUDART_INF_F ? 0.0f : expf(m[r] - mn);
            l[r] = l[r] * corr + warp_sum(pj);
            if (pj != 0.0f) pj *= drop_weight(p, bh, i, j);  // o takes p z, l the undropped p
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < 4; c++) o[r][c] *= corr;
            for (int jj = 0; jj < FA_BC; jj++) {
                float pw = __shfl_sync(PT_FULL_MASK, pj, jj);
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int d = lane + 32 * c;
                    if (d < D) o[r][c] = fmaf(pw, Vs[jj * D + d], o[r][c]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        int i = q0 + warp * 4 + r;
        if (i >= p.Tq) break;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float *orow = p.o + b * p.o_sb + h * p.o_sh + (i64)i * p.o_st;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int d = lane + 32 * c;
            if (d < D) orow[d] = o[r][c] * inv;
        }
        if (lane == 0) p.lse[(i64)bh * p.Tq + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : CUDART_INF_F;
    }
}

extern "C" __global__ void __launch_bounds__(128) attn_fwd_f32(AttnParams p) { attn_fwd<float>(p); }
// q, k, v as bf16 (autocast): staged to f32 in shared memory, computed and written in f32.
extern "C" __global__ void __launch_bounds__(128) attn_fwd_bf16(AttnParams p) { attn_fwd<u16>(p); }

// delta[bh, i] = dout_i . o_i; one warp per query row, blockDim.x = 32 * rows per block,
// grid (ceil(Tq / rows per block), B * H).
extern "C" __global__ void attn_bwd_delta_f32(AttnParams p) {
    int bh = blockIdx.y, b = bh / p.H, h = bh % p.H, lane = threadIdx.x & 31;
    int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (i >= p.Tq) return;
    i64 off = b * p.o_sb + h * p.o_sh + (i64)i * p.o_st;
    float s = 0.0f;
    for (int d = lane; d < p.D; d += 32) s += p.dout[off + d] * p.o[off + d];
    s = warp_sum(s);
    if (lane == 0) p.delta[(i64)bh * p.Tq + i] = s;
}

// One warp per tile of 32 keys (lane j owns key k0 + j), looping over the query rows that can
// see the tile. grid (ceil(Tk / 32), B * H), block 32, dynamic shared memory
// (4 * 32 * (D + 1) + 2 * D) floats: K, V, dK, dV tiles and the current q_i, do_i rows.
template <class TI>
static __device__ __forceinline__ void attn_bwd(const AttnParams &p) {
    extern __shared__ float smem[];
    const int D = p.D, ks = D + 1;
    float *Ks = smem, *Vs = Ks + FA_BC * ks, *dKs = Vs + FA_BC * ks, *dVs = dKs + FA_BC * ks;
    float *qrow = dVs + FA_BC * ks, *dorow = qrow + D;
    int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
    int k0 = blockIdx.x * FA_BC, lane = threadIdx.x, j = k0 + lane;
    const TI *q = (const TI *)p.q + b * p.q_sb + h * p.q_sh;
    const TI *k = (const TI *)p.k + b * p.k_sb + h * p.k_sh;
    const TI *v = (const TI *)p.v + b * p.v_sb + h * p.v_sh;
    const float *dout = p.dout + b * p.o_sb + h * p.o_sh;
    for (int e = lane; e < FA_BC * D; e += 32) {
        int jj = e / D, d = e % D;
        bool in = k0 + jj < p.Tk;
        Ks[jj * ks + d] = in ? ld_f32(k, (i64)(k0 + jj) * p.k_st + d) : 0.0f;
        Vs[jj * ks + d] = in ? ld_f32(v, (i64)(k0 + jj) * p.v_st + d) : 0.0f;
        dKs[jj * ks + d] = 0.0f;
        dVs[jj * ks + d] = 0.0f;
    }
    float *dq = p.dq + (i64)bh * p.Tq * D;
    for (int i = p.causal ? k0 : 0; i < p.Tq; i++) {
        __syncwarp();  // every lane is done with the previous qrow/dorow (and the tiles are loaded)
        for (int d = lane; d < D; d += 32) {
            qrow[d] = ld_f32(q, (i64)i * p.q_st + d);
            dorow[d] = dout[(i64)i * p.o_st + d];
        }
        __syncwarp();
        float lse = p.lse[(i64)bh * p.Tq + i], delta = p.delta[(i64)bh * p.Tq + i];
        float pij = 0.0f, ds = 0.0f;
        if (key_visible(p, b, i, j) && lse != CUDART_INF_F) {
            float dot = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                dot = fmaf(qrow[d], Ks[lane * ks + d], dot);
                dp = fmaf(dorow[d], Vs[lane * ks + d], dp);
            }
            float s = p.scale * dot;
            i64 boff = b * p.bias_sb + h * p.bias_sh + (i64)i * p.bias_sq + j;
            if (p.bias) s += p.bias[boff];
            pij = expf(s - lse);
            float z = drop_weight(p, bh, i, j), pz = pij * z;
            ds = pij * (dp * z - delta);
            if (p.dbias) atomicAdd(&p.dbias[boff], ds);
            for (int d = 0; d < D; d++) {
                dVs[lane * ks + d] = fmaf(pz, dorow[d], dVs[lane * ks + d]);
                dKs[lane * ks + d] = fmaf(ds, qrow[d], dKs[lane * ks + d]);
            }
        }
        if (__any_sync(PT_FULL_MASK, ds != 0.0f)) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int jj = 0; jj < FA_BC; jj++) {
                float dsj = __shfl_sync(PT_FULL_MASK, ds, jj);
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int d = lane + 32 * c;
                    if (d < D) acc[c] = fmaf(dsj, Ks[jj * ks + d], acc[c]);
                }
            }
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int d = lane + 32 * c;
                if (d < D) atomicAdd(&dq[(i64)i * D + d], p.scale * acc[c]);
            }
        }
    }
    __syncwarp();
    if (j < p.Tk) {
        float *dk = p.dk + ((i64)bh * p.Tk + j) * D, *dv = p.dv + ((i64)bh * p.Tk + j) * D;
        for (int d = 0; d < D; d++) {
            dk[d] = p.scale * dKs[lane * ks + d];
            dv[d] = dVs[lane * ks + d];
        }
    }
}

extern "C" __global__ void __launch_bounds__(32) attn_bwd_f32(AttnParams p) { attn_bwd<float>(p); }
extern "C" __global__ void __launch_bounds__(32) attn_bwd_bf16(AttnParams p) { attn_bwd<u16>(p); }
