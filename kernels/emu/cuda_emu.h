// CUDA emulation prelude: lets the kernel sources in kernels/*.cu compile as C++ and run on the
// CPU. Each CUDA thread is a fiber (emu.cpp); blocks run one at a time; __syncthreads is a block
// barrier and the warp intrinsics are warp barriers that exchange one 64-bit word per lane.
// build.rs prepends this header and rewrites `__shared__` declarations into calls to
// emu::shared_static / emu::shared_dynamic, whose per-block buffers are filled with NaN bytes.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PRETEXT_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
};

namespace emu {
struct Fiber {
    void *sp;          // saved stack pointer while switched out
    dim3 tid;          // threadIdx
    unsigned linear;   // x + y*bx + z*bx*by
    unsigned lane;     // linear % 32
    unsigned warp;     // linear / 32
    int state;         // emu.cpp: Runnable, WaitBlock, WaitWarp, Done
    unsigned wgen;     // warp barriers passed (selects the exchange buffer)
    unsigned decl;     // static __shared__ declarations reached so far
    void *stack;       // mmap'd stack (guard page at the bottom)
};
extern thread_local Fiber *cur;
const dim3 &block_idx();
const dim3 &block_dim();
const dim3 &grid_dim();
void syncthreads(const char *file, int line);
// Deposit `n` words for this lane, wait for every lane of `mask`, return the warp's slots
// (32 lanes x 8 words); lanes outside `mask` read as absent via `present`.
const uint64_t *warp_exchange(unsigned mask, const uint64_t *words, int n, const char *what,
                              const char *file, int line, unsigned *present);
void *shared_static(size_t size, size_t align);
void *shared_dynamic();
[[noreturn]] void fail(const char *fmt, ...);
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                       const char *file, int line);
}  // namespace emu

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::block_idx())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())
#define warpSize 32
#define __syncthreads() emu::syncthreads(__FILE__, __LINE__)

template <class T> static inline uint64_t emu_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> static inline T emu_from(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}
// Read lane `src`'s word; reading a lane that did not take part is a bug in the kernel.
template <class T>
static inline T emu_pick(const uint64_t *s, unsigned present, unsigned src, const char *what,
                         const char *f, int l) {
    if (!(present >> src & 1u))
        emu::fail("%s at %s:%d: lane %u reads lane %u, which is not in the mask", what, f, l,
                  emu::cur->lane, src);
    return emu_from<T>(s[src * 8]);
}

template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32,
                            const char *f = __builtin_FILE(), int l = __builtin_LINE()) {
    uint64_t w = emu_bits(v);
    unsigned present;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__shfl_sync", f, l, &present);
    unsigned lane = emu::cur->lane, base = lane & ~(unsigned)(width - 1);
    return emu_pick<T>(s, present, base + ((unsigned)src & (unsigned)(width - 1)), "__shfl_sync", f, l);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                                const char *f = __builtin_FILE(), int l = __builtin_LINE()) {
    uint64_t w = emu_bits(v);
    unsigned present;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__shfl_xor_sync", f, l, &present);
    unsigned lane = emu::cur->lane, src = lane ^ (unsigned)lane_mask;
    if ((src & ~(unsigned)(width - 1)) != (lane & ~(unsigned)(width - 1))) return v;
    return emu_pick<T>(s, present, src, "__shfl_xor_sync", f, l);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                                 const char *f = __builtin_FILE(), int l = __builtin_LINE()) {
    uint64_t w = emu_bits(v);
    unsigned present;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__shfl_down_sync", f, l, &present);
    unsigned lane = emu::cur->lane;
    if ((lane & (unsigned)(width - 1)) + delta >= (unsigned)width) return v;
    return emu_pick<T>(s, present, lane + delta, "__shfl_down_sync", f, l);
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                               const char *f = __builtin_FILE(), int l = __builtin_LINE()) {
    uint64_t w = emu_bits(v);
    unsigned present;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__shfl_up_sync", f, l, &present);
    unsigned lane = emu::cur->lane;
    if ((lane & (unsigned)(width - 1)) < delta) return v;
    return emu_pick<T>(s, present, lane - delta, "__shfl_up_sync", f, l);
}
static inline unsigned __ballot_sync(unsigned mask, int pred, const char *f = __builtin_FILE(),
                                     int l = __builtin_LINE()) {
    uint64_t w = pred != 0;
    unsigned present;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__ballot_sync", f, l, &present);
    unsigned r = 0;
    for (unsigned i = 0; i < 32; i++)
        if ((present >> i & 1u) && s[i * 8]) r |= 1u << i;
    return r;
}
static inline int __any_sync(unsigned mask, int pred, const char *f = __builtin_FILE(),
                             int l = __builtin_LINE()) {
    return __ballot_sync(mask, pred, f, l) != 0;
}
static inline int __all_sync(unsigned mask, int pred, const char *f = __builtin_FILE(),
                             int l = __builtin_LINE()) {
    unsigned present;
    uint64_t w = pred != 0;
    const uint64_t *s = emu::warp_exchange(mask, &w, 1, "__all_sync", f, l, &present);
    for (unsigned i = 0; i < 32; i++)
        if ((present >> i & 1u) && !s[i * 8]) return 0;
    return 1;
}
static inline void __syncwarp(unsigned mask = 0xffffffffu, const char *f = __builtin_FILE(),
                              int l = __builtin_LINE()) {
    uint64_t w = 0;
    unsigned present;
    emu::warp_exchange(mask, &w, 1, "__syncwarp", f, l, &present);
}

// Math and bit intrinsics (__expf and __logf come from glibc). Fibers are cooperative, so an atomic read-modify-write is a plain one.
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
static inline unsigned __float_as_uint(float x) { return emu_from<unsigned>(emu_bits(x)); }
static inline float __uint_as_float(unsigned x) { return emu_from<float>(emu_bits(x)); }
static inline int __float_as_int(float x) { return emu_from<int>(emu_bits(x)); }
static inline float __int_as_float(int x) { return emu_from<float>(emu_bits(x)); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <class T> static inline T atomicMax(T *p, T v) {
    T old = *p;
    if (v > old) *p = v;
    return old;
}
