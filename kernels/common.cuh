// Shared definitions for every kernel: fixed-width typedefs (NVRTC has no libc headers), the
// math constants under their <math_constants.h> names, bf16 conversion, warp and block
// reductions, the dropout mask (dropout.cu, attention.cu), and the mma.sync wrapper that the
// emulator replaces (kernels/emu/).
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef long long i64;
typedef unsigned long long u64;

#ifndef CUDART_INF_F
#define CUDART_INF_F __int_as_float(0x7f800000)
#endif
#ifndef CUDART_NAN_F
#define CUDART_NAN_F __int_as_float(0x7fffffff)
#endif
#ifndef CUDART_SQRT_2_OVER_PI_F
#define CUDART_SQRT_2_OVER_PI_F 0.797884561f
#endif
#ifndef CUDART_SQRT_HALF_F
#define CUDART_SQRT_HALF_F 0.707106781f
#endif
#define PT_FULL_MASK 0xffffffffu

// bf16 is stored as its 16 raw bits. f32 -> bf16 rounds to nearest even; NaN stays NaN.
// Dropout's counter-based mask (backend::cpu::dropout on the host): element `counter` of the
// stream `seed` is kept when the top 24 bits of splitmix64(splitmix64(seed) + counter * GAMMA),
// / 2^24, are >= p (element `counter` of the SplitMix64 generator started at splitmix64(seed)).
#define PT_GAMMA 0x9e3779b97f4a7c15ull
static __device__ __forceinline__ u64 splitmix64(u64 z) {
    z += PT_GAMMA;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
// keep() for the stream starting at base = splitmix64(seed), hoisted out of the callers' loops.
static __device__ __forceinline__ bool keep_in(u64 base, u64 counter, float p) {
    u64 h = splitmix64(base + counter * PT_GAMMA);
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= p;
}
static __device__ __forceinline__ bool keep(u64 seed, u64 counter, float p) {
    return keep_in(splitmix64(seed), counter, p);
}
static __device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }
static __device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (u16)(x >> 16);
}
// Two bf16 in one 32-bit register, `lo` in the low half (the mma fragment convention).
static __device__ __forceinline__ u32 pack_bf16(u16 lo, u16 hi) { return (u32)lo | ((u32)hi << 16); }

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(PT_FULL_MASK, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(PT_FULL_MASK, v, o));
    return v;
}

// Sum (or max) over a whole block of blockDim.x threads (a multiple of 32, at most 1024).
// `scratch` is 32 floats of shared memory; the result is returned to every thread. The leading
// __syncthreads makes back-to-back calls on the same scratch safe.
static __device__ __forceinline__ float block_sum(float v, float *scratch) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
static __device__ __forceinline__ float block_max(float v, float *scratch) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : -CUDART_INF_F;
    return warp_max(v);
}

// D = A * B + C for one warp: A 16x16 bf16 (row), B 16x8 bf16 (col), C and D 16x8 f32.
// Fragments follow the PTX ISA layout for mma.m16n8k16 (see kernels/emu/emu.cpp).
static __device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const u32 a[4], const u32 b[2],
                                                         const float c[4]) {
#ifdef PRETEXT_EMU
    emu::mma_m16n8k16_bf16(d, a, b, c, __FILE__, __LINE__);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
#endif
}
