#!/usr/bin/env python3
"""Which f32 micro-kernel tile, and which operand held in L1, lets a bare AVX-512 k loop come
closest to the FMA probe on this CPU? Each loop keeps an R × 16V tile of C in R·V zmm
accumulators; per k step it loads V vectors of B and, for each of the R rows, broadcasts
A[i, p] (`vbroadcastss`, rotating through the free registers) and issues V FMAs. Timed
against the probe (16 independent register-only FMAs, as `pretext bench peak`), in one
process, in turn, four rounds by default:

  fixed   A and B at fixed addresses (the loop's own ceiling: loads and FMAs, no misses)
  L1      both walking packed panels held in L1 (B's panel 16 KiB)
  B L2    the broadcast side (A, R × kc) in L1, B's panels (kc 384 × 16V) streamed from L2:
          the order of pretext's 12 × 32 kernel (`gemm::avx512`, BLIS's on Skylake-X)
  A L2    B's panel (kc × 16V, ~32 KiB) held in L1, A's panels (64 of them) streamed from
          L2: GotoBLAS's order, and MKL's (its sgemm kernel on this host is 8 × 48, B packed
          48 wide, A 8 high and prefetched into L1 ahead of the broadcasts)

Tiles: 12 × 32 (pretext's), 14 × 32, 8 × 48 (MKL's), 6 × 64, 4 × 96, 5 × 64. Needs a C compiler
(`cc`, AVX-512F) and Linux/x86-64.

    python3 tools/fma_tile_shapes.py [--rounds 4]

Intel Xeon (KVM family 6 model 167), session 41, three rounds (probe 203–205 GFLOP/s),
fixed / L1 / B L2 / A L2: 12 × 32 87–89 / 86 / 85 / 85–86%; 14 × 32 85–86 / 84–85 / 84–85 /
84–85%; 8 × 48 91 / 89–91 / 87–88 / 87–88%; 6 × 64 91 / 86–87 / 86–87 / 89–90%; 4 × 96 87 /
84–86 / 44 / 84–86%; 5 × 64 87–88 / 85–86 / 81–83 / 84–85%. (An earlier version of the same
loops, three rounds: 8 × 48 A L2 89–91% at every depth from 96 to 256, 12 × 32 83–87%.)
So the 8 × 48 (or 6 × 64) loop in GotoBLAS's order runs 2–6% ahead of pretext's in
the bare loop. Built into the GEMM (an 8 × 48 kernel, KC 256, each B panel swept against
every A panel of an MC block; `bench gemm`, one thread, side by side) it gained nothing:
4096×3072×768 146.1–151.3 GFLOP/s against 147.7–151.7 for the 12 × 32 kernel, 2048³ 130–147
(MC 1024: 130–131, 512: 137–139, 256: 143–147) against 148–152; KC 192 lost more (126 and
137). With every C tile sent to one scratch tile (no C traffic) the 8 × 48 GEMM ran 153–161
GFLOP/s and the 12 × 32 one 154–157: the wide tile's C, whose tiles go down the rows (eight
new rows every call, 8 KiB apart on 2048³), costs what its loop gains, and the loop's lead
shrinks in place to the calls' own work (C's 24 vectors per 256 steps, not per 384). MKL's
own prefetches added to the 8 × 48 loop: A's lines 16 steps ahead into L1, as its kernel does,
4096×3072×768 149.9–150.7 GFLOP/s, 2048³ 142.1–143.8; with C's rows also prefetched for
writing one per four steps over the last 32 steps (instead of at the call's start) 125.6–144.9
and 134.8–138.1; KC 128, 192, 384 (MC 256, A ahead) 141.7, 144.4, 146.8 and 138.9, 140.1,
145.2; the 12 × 32 kernel 147.7–153.7 in the same runs. MKL's `sgemm` in the same
process (`cargo bench --bench gemm_vs_mkl`, 15 pairs, session 41) runs these shapes 3–6%
faster than pretext (4096×3072×768 158.3 against 149.5 GFLOP/s, 2048³ 155.6 against 149.3),
while `torch.matmul` over it in `tools/bench_vs_torch.py` runs them at 146–149.
"""

import argparse
import os

from fma_load_ladder import asm_loop, build_and_run, prelude

TILES = [(12, 2), (14, 2), (8, 3), (6, 4), (4, 6), (5, 4)]


def loop(r, v, moving):
    """The k loop of an r × 16v tile, four steps per iteration; `moving`: A and B advance
    through their panels (else fixed addresses). Accumulators zmm0.., B in the last v
    registers, broadcasts rotating through the registers between."""
    b0 = 32 - v
    spare = b0 - r * v
    body = []
    for u in range(4):
        body += [f"vmovups {64 * j + (64 * v * u if moving else 0)}(%%rsi), %%zmm{b0 + j}"
                 for j in range(v)]
        for i in range(r):
            bc = r * v + i % spare
            body.append(f"vbroadcastss {4 * (r * u + i) if moving else 4 * i}(%%rdi), %%zmm{bc}")
            body += [f"vfmadd231ps %%zmm{bc}, %%zmm{b0 + j}, %%zmm{i * v + j}" for j in range(v)]
    advance = f"add ${16 * r}, %%rdi\\n\\tadd ${256 * v}, %%rsi\\n\\t" if moving else ""
    return asm_loop(f"k_{r}x{v}{'m' if moving else 'f'}", body, advance)


PROGRAM = r'''
/* GFLOP/s of `panels` calls of kc steps in turn, repeated for ~`total` steps: A's panels
   walk (B's fixed) when a_walks, else B's panels walk (A's fixed). */
static double rate(void (*f)(long, const float *, const float *), int r, int v,
                   const float *a, const float *b, long kc, long panels, int a_walks,
                   long total) {
    long sweeps = total / (kc * panels) + 1; double t = now();
    for (long s = 0; s < sweeps; s++)
        for (long p = 0; p < panels; p++)
            if (a_walks) f(kc / 4, a + p * kc * r, b); else f(kc / 4, a, b + p * kc * 16 * v);
    return (double)sweeps * panels * kc * r * v * 32 / (now() - t) / 1e9;
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]); long total = 5000000;
    float *a = aligned_alloc(64, 16 << 20), *b = aligned_alloc(64, 64 << 20);
    for (long i = 0; i < (4 << 20); i++) a[i] = 1e-3f;
    for (long i = 0; i < (16 << 20); i++) b[i] = 1e-3f;
    for (int round = 0; round < rounds; round++) {
        double t = now(); probe(20000000);
        double pk = 20000000.0 * 16 * 32 / (now() - t) / 1e9;
        printf("round %d: probe %.1f GFLOP/s\n", round + 1, pk);
@CALLS@
    }
    return 0;
}
'''


def calls(r, v):
    """The C statements timing tile r × 16v in the four settings, one line of output."""
    f, m = f"k_{r}x{v}f", f"k_{r}x{v}m"
    l1 = 256 // v // 4 * 4  # B's panel 16 KiB
    a_l2 = 512 // v // 4 * 4  # B's panel ~32 KiB
    cells = [(f, 1024, 1, 1), (m, l1, 1, 1), (m, 384, 16, 0), (m, a_l2, 64, 1)]
    out = [f'        printf("  {r:2d} x {16 * v:2d}");']
    for name, (fn, kc, panels, a_walks) in zip(("fixed", "L1", "B L2", "A L2"), cells):
        out.append(f'        printf("  {name} %4.0f%%", 100 * rate({fn}, {r}, {v}, a, b, '
                   f'{kc}, {panels}, {a_walks}, total) / pk);')
    out.append('        printf("\\n"); fflush(stdout);')
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = p.parse_args()
    loops = [loop(r, v, moving) for r, v in TILES for moving in (False, True)]
    body = PROGRAM.replace("@CALLS@", "\n".join(calls(r, v) for r, v in TILES))
    build_and_run(prelude(loops) + body, a.cc, [a.rounds])


if __name__ == "__main__":
    main()
