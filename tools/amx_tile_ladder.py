#!/usr/bin/env python3
"""How close can the AMX bf16 GEMM's 32 × 32 tile loop come to the AMX probe on this CPU? A
ladder of bare tile loops, each rung adding one thing the kernel's loop has, timed against the
probe (four `tdpbf16ps` a round on tiles held in registers, as `pretext bench peak --dtype
bf16`), in one process, in turn. Every loop is the kernel's 2 × 2 blocking: C in tmm0–3, two
A tiles (tmm4/5) and two B tiles (tmm6/7) loaded per 32-long k block, four products.

  probe          the four products on tiles in registers
  fixed loads    + the four tile loads a block, from one fixed L1 address each
  L1 panels      A and B walking packed panels of depth 256 held in L1
  B from L2      A's panel in L1 (depth 256, 16 KiB), B's panels streamed from L2 (16 of them)
  + C zero/store + C zeroed before and stored after each panel's products (a first depth
                   sub-block), rows 8320 bytes apart
  + C load/store + C loaded before and stored after (the later sub-blocks, accumulating)
  C stride 8192  the same with C's rows 8192 bytes apart (2048 f32 columns)
  C summed by    C zeroed and stored to a 4 KiB buffer, added into C's rows by AVX-512
    vectors        between the next panel's products (instead of C's tile load)
  depth 384/512  the load/store loop at depths 384 and 512 (A 24 / 32 KiB of the 48 KiB L1)

Needs a C compiler with AMX intrinsics (gcc ≥ 11), Linux ≥ 5.16 (the tile-data permission)
and a CPU with AMX-BF16.

    python3 tools/amx_tile_ladder.py [--rounds 2]

Intel Xeon (KVM family 6 model 167), session 40, four rounds: probe 2.79–2.82 TFLOP/s =
100%, fixed loads 85.5–85.8%, L1 panels 85.0–85.9%, B from L2 80.7–81.8%, + C zero/store
52–61%, + C load/store 55–59%, C stride 8192 48.6–49.9%, C summed by vectors 56–57%, depth
384 46–51%, depth 512 47–53%. Each 32 × 32 tile's C costs a quarter to a third of the loop
(stores wait on the last products, loads hold up the first), and deeper sweeps, which would
amortise it, lose A's panel from L1. The GEMM's own sweeps run at ~30% of the probe (sq2048
bf16, one thread) and oneDNN's about as fast (PyTorch's bf16 matmul at 0.84–1.1× of
pretext's on the large shapes): this loop, not the products, bounds the tile unit here.
"""

import argparse
import os
import subprocess
import sys
import tempfile

SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint8_t palette, start; uint8_t rsv[14]; uint16_t colsb[16]; uint8_t rows[16]; } cfg_t;
static uint16_t *A, *B; static float *C; static float SC[1024] __attribute__((aligned(64)));

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

/* mode 0 probe, 1 fixed loads, 2 panels walk in L1, 3 B panels from L2;
   c: 0 none, 1 zero+store, 2 load+store, 3 zero+store to a buffer, added by vectors */
static double run(int mode, int kb, int npan, int c, long cs, long reps) {
    cfg_t cfg; memset(&cfg, 0, sizeof cfg); cfg.palette = 1;
    for (int i = 0; i < 8; i++) { cfg.colsb[i] = 64; cfg.rows[i] = 16; }
    _tile_loadconfig(&cfg);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, A, 64); _tile_loadd(5, A + 512, 64); _tile_loadd(6, B, 128); _tile_loadd(7, B + 32, 128);
    long products = 0; double t = now();
    for (long r = 0; r < reps; r++)
        for (int p = 0; p < npan; p++) {
            const uint16_t *a = A, *b = B + (mode == 3 ? (size_t)p * kb * 1024 : 0);
            float *ct = C + (size_t)p * 32;
            if (c == 2) { _tile_loadd(0, ct, cs); _tile_loadd(1, ct + 16, cs); _tile_loadd(2, ct + cs * 4, cs); _tile_loadd(3, ct + cs * 4 + 16, cs); }
            else if (c) { _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); }
            for (int k = 0; k < kb; k++) {
                if (mode == 1) { _tile_loadd(4, A, 64); _tile_loadd(6, B, 128); _tile_loadd(7, B + 32, 128); _tile_loadd(5, A + 512, 64); }
                else if (mode >= 2) { _tile_loadd(4, a, 64); _tile_loadd(6, b, 128); _tile_loadd(7, b + 32, 128); _tile_loadd(5, a + 512, 64); a += 1024; b += 1024; }
                _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
                if (c == 3 && p > 0) {  /* the previous panel's sums into its C rows */
                    float *prev = ct - 32; int per = (32 + kb - 1) / kb;
                    for (int q = k * per; q < (k + 1) * per && q < 32; q++) {
                        float *row = prev + q * (cs / 4);
                        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), _mm512_load_ps(SC + q * 32)));
                        _mm512_storeu_ps(row + 16, _mm512_add_ps(_mm512_loadu_ps(row + 16), _mm512_load_ps(SC + q * 32 + 16)));
                    }
                }
                products += 4;
            }
            if (c == 3) { _tile_stored(0, SC, 128); _tile_stored(1, SC + 16, 128); _tile_stored(2, SC + 512, 128); _tile_stored(3, SC + 528, 128); }
            else if (c) { _tile_stored(0, ct, cs); _tile_stored(1, ct + 16, cs); _tile_stored(2, ct + cs * 4, cs); _tile_stored(3, ct + cs * 4 + 16, cs); }
        }
    _tile_stored(0, SC, 128);
    return products * 16.0 * 16 * 32 * 2 / (now() - t);
}

int main(int argc, char **argv) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) { perror("arch_prctl"); return 1; }
    int rounds = argc > 1 ? atoi(argv[1]) : 2;
    size_t na = 1 << 20, nb = (size_t)64 << 20, nc = (size_t)16 << 20;
    A = aligned_alloc(4096, na * 2); B = aligned_alloc(4096, nb * 2); C = aligned_alloc(4096, nc * 4);
    for (size_t i = 0; i < na; i++) A[i] = 0x3A80;  /* bf16 2^-10 */
    for (size_t i = 0; i < nb; i++) B[i] = 0x3A80;
    memset(C, 0, nc * 4);
    struct { const char *name; int mode, kb, npan, c; long cs; } rung[] = {
        {"probe", 0, 8, 16, 0, 8320}, {"fixed loads", 1, 8, 16, 0, 8320}, {"L1 panels", 2, 8, 16, 0, 8320},
        {"B from L2", 3, 8, 16, 0, 8320}, {"+ C zero/store", 3, 8, 16, 1, 8320}, {"+ C load/store", 3, 8, 16, 2, 8320},
        {"C stride 8192", 3, 8, 16, 2, 8192}, {"C summed by vectors", 3, 8, 16, 3, 8320},
        {"depth 384", 3, 12, 16, 2, 8320}, {"depth 512", 3, 16, 16, 2, 8320}};
    for (int round = 0; round < rounds; round++) {
        double probe = 0;
        for (unsigned i = 0; i < sizeof rung / sizeof rung[0]; i++) {
            long reps = 12500000L / (rung[i].kb * rung[i].npan * 4);
            double best = 0;
            for (int t = 0; t < 3; t++) { double g = run(rung[i].mode, rung[i].kb, rung[i].npan, rung[i].c, rung[i].cs, reps); if (g > best) best = g; }
            if (i == 0) probe = best;
            printf("round %d  %-22s %7.0f GFLOP/s  %5.1f%%\n", round + 1, rung[i].name, best * 1e-9, 100 * best / probe);
            fflush(stdout);
        }
    }
    return 0;
}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        c, exe = os.path.join(d, "ladder.c"), os.path.join(d, "ladder")
        with open(c, "w") as f:
            f.write(SOURCE)
        flags = ["-O2", "-mamx-tile", "-mamx-bf16", "-mavx512f"]
        r = subprocess.run([a.cc, *flags, "-o", exe, c], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"compiling the ladder failed:\n{r.stderr}")
        subprocess.run([exe, str(a.rounds)], check=True)


if __name__ == "__main__":
    main()
