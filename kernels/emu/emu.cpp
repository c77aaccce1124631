// CUDA emulation runtime: runs a kernel compiled as C++ (see cuda_emu.h) on the CPU.
//
// Each CUDA thread of a block is a fiber with its own mmap'd stack; emu_switch
// (switch_x86_64.S) moves between a fiber and the scheduler. Blocks run one at a time in grid
// order. A fiber runs until its next synchronisation point (__syncthreads, a warp intrinsic,
// mma.sync) and then always returns to the scheduler, which picks the next runnable fiber by
// the chosen schedule:
//   round-robin   one FIFO over the whole block: every runnable thread runs once before any
//                 thread runs again (fair interleaving, like warps issuing in turn);
//   warp-ordered  the lowest warp with a runnable thread runs first, as far as it can, before
//                 the next warp starts (exposes cross-warp races that need a __syncthreads).
//   warp-reversed as warp-ordered but starting from the highest warp.
// A block whose fibers all wait with none runnable is a deadlock, reported with the block and
// the barriers (file:line) the threads wait at. Shared memory (static and dynamic) is a
// per-block buffer filled with 0xFF bytes, so a read before any write gives NaN (or -1).
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

#include <deque>
#include <string>
#include <vector>

#include "cuda_emu.h"

extern "C" void emu_switch(void **save_sp, void *next_sp);

namespace emu {

enum State { Runnable = 0, WaitBlock = 1, WaitWarp = 2, Done = 3 };
enum Schedule { RoundRobin = 0, WarpOrdered = 1, WarpReversed = 2 };

static const size_t kStack = 256 * 1024;  // per fiber, plus one guard page below
static const size_t kGuard = 4096;
static const size_t kStaticSmem = 48 * 1024;

struct Warp {
    unsigned existing = 0;   // lanes that exist in this block
    unsigned exited = 0;     // lanes whose thread has returned
    unsigned arrived = 0;    // lanes waiting at the current warp barrier
    unsigned mask = 0;       // mask of the current warp barrier
    const char *what = nullptr, *file = nullptr;
    int line = 0;
    uint64_t slots[2][32 * 8];  // double-buffered by barrier parity
};

struct Ctx {
    dim3 grid{1, 1, 1}, block{1, 1, 1}, bidx{0, 0, 0};
    unsigned nthreads = 0, nwarps = 0;
    int schedule = RoundRobin;
    void (*thunk)(void **) = nullptr;
    void **args = nullptr;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<std::deque<unsigned>> queues;  // one per warp (round-robin uses queue 0)
    unsigned block_arrived = 0, done = 0;
    const char *block_file = nullptr;
    int block_line = 0;
    std::vector<uint8_t> smem_static, smem_dyn;
    std::vector<std::pair<size_t, size_t>> decls;  // (size, offset) of each static declaration
    size_t static_used = 0;
    void *sched_sp = nullptr;
    bool failed = false;
    std::string error;
};

thread_local Fiber *cur = nullptr;
static thread_local Ctx *ctx = nullptr;

// Stacks survive between launches on the same OS thread and are unmapped when it exits.
struct StackPool {
    std::vector<void *> stacks;
    ~StackPool() {
        for (void *s : stacks) munmap(s, kStack + kGuard);
    }
    void *get(size_t i) {
        while (stacks.size() <= i) {
            void *p = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) return nullptr;
            mprotect(p, kGuard, PROT_NONE);
            stacks.push_back(p);
        }
        return stacks[i];
    }
};
static thread_local StackPool pool;

const dim3 &block_idx() { return ctx->bidx; }
const dim3 &block_dim() { return ctx->block; }
const dim3 &grid_dim() { return ctx->grid; }

static void to_scheduler() { emu_switch(&cur->sp, ctx->sched_sp); }

[[noreturn]] void fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!ctx->failed) {
        ctx->failed = true;
        char where[160];
        snprintf(where, sizeof where, "block (%u,%u,%u) thread (%u,%u,%u): ", ctx->bidx.x,
                 ctx->bidx.y, ctx->bidx.z, cur ? cur->tid.x : 0, cur ? cur->tid.y : 0,
                 cur ? cur->tid.z : 0);
        ctx->error = std::string(where) + buf;
    }
    // The fiber is abandoned: the scheduler sees `failed` and never resumes it.
    for (;;) to_scheduler();
}

static void make_runnable(unsigned t) {
    Fiber &f = ctx->fibers[t];
    f.state = Runnable;
    ctx->queues[ctx->schedule == RoundRobin ? 0 : f.warp].push_back(t);
}

void syncthreads(const char *file, int line) {
    if (ctx->block_arrived == 0) {
        ctx->block_file = file;
        ctx->block_line = line;
    } else if (ctx->block_line != line || strcmp(ctx->block_file, file) != 0) {
        fail("divergent __syncthreads: this thread is at %s:%d while others wait at %s:%d", file,
             line, ctx->block_file, ctx->block_line);
    }
    cur->state = WaitBlock;
    if (++ctx->block_arrived == ctx->nthreads) {
        ctx->block_arrived = 0;
        for (unsigned t = 0; t < ctx->nthreads; t++) make_runnable(t);
    }
    to_scheduler();
}

const uint64_t *warp_exchange(unsigned mask, const uint64_t *words, int n, const char *what,
                              const char *file, int line, unsigned *present) {
    Warp &w = ctx->warps[cur->warp];
    unsigned expect = mask & w.existing;
    if (!(expect >> cur->lane & 1u))
        fail("%s at %s:%d: calling lane %u is not in mask 0x%08x", what, file, line, cur->lane, mask);
    if (expect & w.exited)
        fail("%s at %s:%d: mask 0x%08x includes lanes that have exited (0x%08x)", what, file, line,
             mask, expect & w.exited);
    if (w.arrived == 0) {
        w.mask = mask;
        w.what = what;
        w.file = file;
        w.line = line;
    } else if (w.mask != mask) {
        fail("%s at %s:%d with mask 0x%08x while lanes 0x%08x wait at %s (%s:%d) with mask 0x%08x",
             what, file, line, mask, w.arrived, w.what, w.file, w.line, w.mask);
    }
    uint64_t *slots = w.slots[cur->wgen & 1];
    for (int i = 0; i < n; i++) slots[cur->lane * 8 + i] = words[i];
    cur->wgen++;
    cur->state = WaitWarp;
    w.arrived |= 1u << cur->lane;
    if (w.arrived == expect) {
        w.arrived = 0;
        for (unsigned l = 0; l < 32; l++)
            if (expect >> l & 1u) make_runnable(cur->warp * 32 + l);
    }
    to_scheduler();
    *present = expect;
    return slots;
}

void *shared_static(size_t size, size_t align) {
    unsigned k = cur->decl++;
    if (k < ctx->decls.size()) {
        if (ctx->decls[k].first != size)
            fail("static __shared__ declaration #%u has size %zu here but %zu in another thread", k,
                 size, ctx->decls[k].first);
        return ctx->smem_static.data() + ctx->decls[k].second;
    }
    size_t off = (ctx->static_used + align - 1) / align * align;
    if (off + size > kStaticSmem)
        fail("static __shared__ memory exceeds %zu bytes", kStaticSmem);
    ctx->decls.push_back({size, off});
    ctx->static_used = off + size;
    return ctx->smem_static.data() + off;
}

void *shared_dynamic() { return ctx->smem_dyn.data(); }

static inline float bf16_to_f32(uint32_t h) { return __uint_as_float(h << 16); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, from the PTX ISA fragment layout.
// groupID g = lane >> 2, threadID_in_group t = lane & 3.
//   A (16x16, row-major), regs a0..a3 each two bf16 (low half = lower column):
//     a0: (g,   2t..2t+1)   a1: (g+8, 2t..2t+1)   a2: (g, 2t+8..)   a3: (g+8, 2t+8..)
//   B (16x8, column-major), regs b0, b1: b0: rows k = 2t..2t+1, col g; b1: rows 2t+8.., col g
//   C, D (16x8 f32): c0, c1: (g, 2t), (g, 2t+1); c2, c3: (g+8, 2t), (g+8, 2t+1)
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                       const char *file, int line) {
    uint64_t words[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    unsigned present;
    const uint64_t *s = warp_exchange(0xffffffffu, words, 6, "mma.sync", file, line, &present);
    if (present != 0xffffffffu) fail("mma.sync at %s:%d needs a full warp", file, line);
    auto A = [&](unsigned row, unsigned k) {
        unsigned lane = (row & 7) * 4 + (k & 7) / 2;
        unsigned reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        uint32_t v = (uint32_t)s[lane * 8 + reg];
        return bf16_to_f32((k & 1) ? v >> 16 : v & 0xffff);
    };
    auto B = [&](unsigned k, unsigned col) {
        unsigned lane = col * 4 + (k & 7) / 2;
        uint32_t v = (uint32_t)s[lane * 8 + 4 + (k >= 8 ? 1 : 0)];
        return bf16_to_f32((k & 1) ? v >> 16 : v & 0xffff);
    };
    unsigned g = cur->lane >> 2, t = cur->lane & 3;
    for (int i = 0; i < 4; i++) {
        unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        float acc = c[i];
        for (unsigned k = 0; k < 16; k++) acc += A(row, k) * B(k, col);
        d[i] = acc;
    }
}

static void fiber_main() {
    ctx->thunk(ctx->args);
    Fiber *f = cur;
    Warp &w = ctx->warps[f->warp];
    w.exited |= 1u << f->lane;
    if (w.arrived && (w.mask >> f->lane & 1u))
        fail("thread exits while its warp waits for it at %s (%s:%d)", w.what, w.file, w.line);
    f->state = Done;
    ctx->done++;
    to_scheduler();
    fail("finished fiber resumed");  // unreachable: the scheduler never resumes a Done fiber
}

static void init_fiber(Fiber &f, unsigned linear, void *stack) {
    const dim3 &b = ctx->block;
    f.linear = linear;
    f.tid = {linear % b.x, (linear / b.x) % b.y, linear / (b.x * b.y)};
    f.lane = linear % 32;
    f.warp = linear / 32;
    f.state = Runnable;
    f.wgen = 0;
    f.decl = 0;
    f.stack = stack;
    // Top of stack: [fake return 0][fiber_main][rbp rbx r12 r13 r14 r15 = 0] (see the .S file).
    uint64_t *top = (uint64_t *)((char *)stack + kGuard + kStack);
    top -= 2;  // keep 16-byte alignment: after `ret` into fiber_main, rsp % 16 == 8
    top[1] = 0;
    top[0] = (uint64_t)(uintptr_t)&fiber_main;
    top -= 6;
    for (int i = 0; i < 6; i++) top[i] = 0;
    f.sp = top;
}

static std::string deadlock_report() {
    char buf[512];
    std::string r;
    snprintf(buf, sizeof buf, "deadlock in block (%u,%u,%u):", ctx->bidx.x, ctx->bidx.y,
             ctx->bidx.z);
    r += buf;
    unsigned nblock = 0, ndone = 0;
    for (auto &f : ctx->fibers) {
        nblock += f.state == WaitBlock;
        ndone += f.state == Done;
    }
    if (nblock) {
        snprintf(buf, sizeof buf, " %u threads wait at __syncthreads (%s:%d);", nblock,
                 ctx->block_file, ctx->block_line);
        r += buf;
    }
    for (unsigned wi = 0; wi < ctx->nwarps; wi++) {
        Warp &w = ctx->warps[wi];
        if (w.arrived) {
            snprintf(buf, sizeof buf,
                     " warp %u: lanes 0x%08x wait at %s (%s:%d) for mask 0x%08x;", wi, w.arrived,
                     w.what, w.file, w.line, w.mask);
            r += buf;
        }
    }
    snprintf(buf, sizeof buf, " %u of %u threads have exited", ndone, ctx->nthreads);
    r += buf;
    return r;
}

static int pick() {
    int nq = (int)ctx->queues.size();
    for (int i = 0; i < nq; i++) {
        int q = ctx->schedule == WarpReversed ? nq - 1 - i : i;
        if (!ctx->queues[q].empty()) {
            int t = (int)ctx->queues[q].front();
            ctx->queues[q].pop_front();
            return t;
        }
    }
    return -1;
}

static bool run_block() {
    unsigned n = ctx->nthreads;
    memset(ctx->smem_static.data(), 0xff, ctx->smem_static.size());
    memset(ctx->smem_dyn.data(), 0xff, ctx->smem_dyn.size());
    ctx->decls.clear();
    ctx->static_used = 0;
    ctx->block_arrived = 0;
    ctx->done = 0;
    for (unsigned w = 0; w < ctx->nwarps; w++) {
        Warp &wp = ctx->warps[w];
        unsigned lanes = n - w * 32 >= 32 ? 32 : n - w * 32;
        wp.existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        wp.exited = wp.arrived = wp.mask = 0;
    }
    for (auto &q : ctx->queues) q.clear();
    for (unsigned t = 0; t < n; t++) {
        void *st = pool.get(t);
        if (!st) {
            ctx->error = "cannot map a fiber stack";
            return false;
        }
        init_fiber(ctx->fibers[t], t, st);
        ctx->queues[ctx->schedule == RoundRobin ? 0 : t / 32].push_back(t);
    }
    for (;;) {
        int t = pick();
        if (t < 0) {
            if (ctx->done == n) return true;
            ctx->error = deadlock_report();
            return false;
        }
        Fiber &f = ctx->fibers[t];
        if (f.state != Runnable) continue;
        cur = &f;
        emu_switch(&ctx->sched_sp, f.sp);
        cur = nullptr;
        if (ctx->failed) return false;
    }
}

}  // namespace emu

struct EmuKernel {
    const char *name;
    void (*thunk)(void **);
    size_t nparams;
    const size_t *sizes;
};
extern "C" const EmuKernel pretext_emu_registry[];
extern "C" const size_t pretext_emu_registry_len;

extern "C" size_t pretext_emu_kernel_count() { return pretext_emu_registry_len; }
extern "C" const char *pretext_emu_kernel_name(size_t i) {
    return i < pretext_emu_registry_len ? pretext_emu_registry[i].name : nullptr;
}

static int set_err(char *err, size_t len, const std::string &msg) {
    if (len) {
        size_t n = msg.size() < len - 1 ? msg.size() : len - 1;
        memcpy(err, msg.data(), n);
        err[n] = 0;
    }
    return 1;
}

// Run kernel `name` over the whole grid. `args` follows cuLaunchKernel: one pointer per
// parameter, pointing at its value; `sizes` gives each value's byte size, checked against the
// kernel's signature. Returns 0, or 1 with a message in `err`.
extern "C" int pretext_emu_launch(const char *name, const unsigned grid[3], const unsigned block[3],
                                  size_t smem, void **args, const size_t *sizes, size_t nargs,
                                  int schedule, char *err, size_t errlen) {
    const EmuKernel *k = nullptr;
    for (size_t i = 0; i < pretext_emu_registry_len; i++)
        if (strcmp(pretext_emu_registry[i].name, name) == 0) k = &pretext_emu_registry[i];
    char buf[256];
    if (!k) {
        snprintf(buf, sizeof buf, "no emulated kernel named `%s`", name);
        return set_err(err, errlen, buf);
    }
    if (k->nparams != nargs) {
        snprintf(buf, sizeof buf, "kernel `%s` takes %zu parameters, launch passed %zu", name,
                 k->nparams, nargs);
        return set_err(err, errlen, buf);
    }
    for (size_t i = 0; i < nargs; i++)
        if (k->sizes[i] != sizes[i]) {
            snprintf(buf, sizeof buf, "kernel `%s` parameter %zu is %zu bytes, launch passed %zu",
                     name, i, k->sizes[i], sizes[i]);
            return set_err(err, errlen, buf);
        }
    unsigned nt = block[0] * block[1] * block[2];
    if (nt == 0 || nt > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 ||
        grid[2] > 65535) {
        snprintf(buf, sizeof buf, "kernel `%s`: invalid launch grid (%u,%u,%u) block (%u,%u,%u)",
                 name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return set_err(err, errlen, buf);
    }
    if (schedule < emu::RoundRobin || schedule > emu::WarpReversed)
        return set_err(err, errlen, "unknown schedule");
    emu::Ctx c;
    c.grid = {grid[0], grid[1], grid[2]};
    c.block = {block[0], block[1], block[2]};
    c.nthreads = nt;
    c.nwarps = (nt + 31) / 32;
    c.schedule = schedule;
    c.thunk = k->thunk;
    c.args = args;
    c.fibers.resize(nt);
    c.warps.resize(c.nwarps);
    c.queues.resize(schedule == emu::RoundRobin ? 1 : c.nwarps);
    c.smem_static.resize(emu::kStaticSmem);
    c.smem_dyn.resize(smem);
    emu::Ctx *saved = emu::ctx;
    emu::ctx = &c;
    bool ok = true;
    for (unsigned z = 0; ok && z < grid[2]; z++)
        for (unsigned y = 0; ok && y < grid[1]; y++)
            for (unsigned x = 0; ok && x < grid[0]; x++) {
                c.bidx = {x, y, z};
                ok = emu::run_block();
            }
    emu::ctx = saved;
    if (!ok) return set_err(err, errlen, std::string("kernel `") + name + "`: " + c.error);
    return 0;
}
