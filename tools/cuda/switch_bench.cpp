// Micro-benchmark: the emulator's fiber switch (kernels/emu/switch_x86_64.S) against glibc's
// swapcontext, which also saves/restores the signal mask with a system call.
//   g++ -O2 tools/cuda/switch_bench.cpp kernels/emu/switch_x86_64.S -o /tmp/swbench && /tmp/swbench
#include <ucontext.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
extern "C" void emu_switch(void **save, void *next);
static void *main_sp, *fib_sp;
static const long N = 5000000;
static void fib_main() { for (;;) emu_switch(&fib_sp, main_sp); }
static ucontext_t uc_main, uc_fib;
static void uc_fn() { for (;;) swapcontext(&uc_fib, &uc_main); }
int main() {
    size_t sz = 1 << 16;
    char *st = (char *)malloc(sz);
    uint64_t *top = (uint64_t *)(st + sz);
    top -= 2; top[1] = 0; top[0] = (uint64_t)&fib_main; top -= 6;
    for (int i = 0; i < 6; i++) top[i] = 0;
    fib_sp = top;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < N; i++) emu_switch(&main_sp, fib_sp);
    auto t1 = std::chrono::steady_clock::now();
    getcontext(&uc_fib);
    uc_fib.uc_stack.ss_sp = malloc(sz); uc_fib.uc_stack.ss_size = sz; uc_fib.uc_link = 0;
    makecontext(&uc_fib, uc_fn, 0);
    auto t2 = std::chrono::steady_clock::now();
    for (long i = 0; i < N; i++) swapcontext(&uc_main, &uc_fib);
    auto t3 = std::chrono::steady_clock::now();
    double a = std::chrono::duration<double, std::nano>(t1 - t0).count() / (2.0 * N);
    double b = std::chrono::duration<double, std::nano>(t3 - t2).count() / (2.0 * N);
    printf("emu_switch %.1f ns/switch, swapcontext %.1f ns/switch, ratio %.1fx\n", a, b, b / a);
}
