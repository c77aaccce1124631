#!/usr/bin/env python3
"""How close can a 12 × 32 f32 GEMM loop come to the FMA probe on this CPU? A ladder of bare
AVX-512 loops, each step adding one thing a GEMM k loop has, timed against the probe
(16 independent register-only FMAs, as `pretext bench peak`), in one process, in turn.

  reg          24 FMAs a step on 24 accumulators, operands in registers (the probe's work
               laid out as the kernel's)
  +B loads     + the two 16-wide loads of B a step (one fixed L1 address)
  +broadcasts  + twelve `vbroadcastss` of A a step (fixed address): the kernel's explicit form
  embedded     the broadcasts inside the FMAs' memory operands instead (`{1to16}`)
  A moving     the explicit loop with A walking a packed panel in L1 (B fixed; kc 128)
  B moving     the same with B walking its packed panel in L1 (A fixed)
  moving L1    both walking their panels, held in L1 (kc 128, one panel): the kernel's loop
  moving L2    the same with B panels streamed from L2 (kc 384, 16 panels: 768 KiB)

The share of the probe that a GEMM can reach is bounded by the last rows (before packing,
edges and C's loads and stores). Needs a C compiler (`cc`, AVX-512F) and Linux/x86-64.

    python3 tools/fma_load_ladder.py [--rounds 4]

Intel Xeon with AMX (KVM family 6 model 167), session 39, three runs: reg 99–101%, +B loads
97–101%, +broadcasts 90–92% (one round 80%), embedded 84–86%, A moving 85–87%, B moving 86%,
moving L1 84–86%, moving L2 85–87%. The 12 × 32 kernel's own loop thus tops out at ~85–89%
of the probe here, in L1 or from L2 alike.
"""

import argparse
import os
import subprocess
import sys
import tempfile

CLOBBER = ",".join(f'"xmm{i}"' for i in range(32))


def walks(kind):
    """(A walks its panel, B walks its panel) in loop `kind`."""
    return kind in ("moving", "moving_a"), kind in ("moving", "moving_b")


def step(u, kind):
    """One k step (unrolled copy u of 4) of the 12 × 32 loop; `kind` as the module doc."""
    lines = []
    moving_a, moving_b = walks(kind)
    if kind != "reg":
        lines += [f"vmovups {64 * v + (128 * u if moving_b else 0)}(%%rsi), %%zmm{24 + v}"
                  for v in range(2)]
    for i in range(12):
        off = 4 * (12 * u + i) if moving_a else 4 * i
        if kind == "broadcasts" or kind.startswith("moving"):
            lines.append(f"vbroadcastss {off}(%%rdi), %%zmm31")
            lines += [f"vfmadd231ps %%zmm31, %%zmm{24 + v}, %%zmm{2 * i + v}" for v in range(2)]
        elif kind == "embedded":
            lines += [f"vfmadd231ps {off}(%%rdi)%{{1to16%}}, %%zmm{24 + v}, %%zmm{2 * i + v}"
                      for v in range(2)]
        else:  # reg, loads
            lines += [f"vfmadd231ps %%zmm31, %%zmm{24 + v}, %%zmm{2 * i + v}" for v in range(2)]
    return lines


def loop(name, kind):
    body = [x for u in range(4) for x in step(u, kind)]
    moving_a, moving_b = walks(kind)
    advance = ("add $192, %%rdi\\n\\t" if moving_a else "") + (
        "add $512, %%rsi\\n\\t" if moving_b else "")
    return asm_loop(name, body, advance)


def asm_loop(name, body, advance):
    """A C function `name(n, a, b)` running the instructions `body` (AT&T syntax, A at %rdi, B
    at %rsi) then `advance`, n times."""
    text = "\\n\\t".join(body)
    return (f'static void {name}(long n, const float *a, const float *b) {{ __asm__ volatile('
            f'"1:\\n\\t{text}\\n\\t{advance}dec %%rcx\\n\\tjnz 1b"'
            f' : "+c"(n), "+D"(a), "+S"(b) :: "memory", {CLOBBER}); }}')


# The C program's opening: a clock, the loops (%(loops)s), and the probe (16 independent
# register FMAs per iteration, as `pretext bench peak`); `prelude` fills it in.
PRELUDE = r'''
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + 1e-9 * t.tv_nsec; }
%(loops)s
static void probe(long n) { __asm__ volatile("1:\n\t" %(probe)s "dec %%%%rcx\n\tjnz 1b"
                                             : "+c"(n) :: %(clobber)s); }
'''


def prelude(loops):
    """`PRELUDE` with the C functions `loops` and the probe."""
    probe = " ".join(f'"vfmadd231ps %%zmm30, %%zmm31, %%zmm{i}\\n\\t"' for i in range(16))
    return PRELUDE % dict(loops="\n".join(loops), probe=probe, clobber=CLOBBER)


def build_and_run(src, cc, args):
    """Compiles the C program `src` with `cc` (AVX-512F) and runs it with `args`."""
    with tempfile.TemporaryDirectory() as d:
        c, exe = os.path.join(d, "loops.c"), os.path.join(d, "loops")
        with open(c, "w") as f:
            f.write(src)
        r = subprocess.run([cc, "-O2", "-mavx512f", "-o", exe, c], capture_output=True,
                           text=True)
        if r.returncode != 0:
            sys.exit(f"{cc} failed on {c}:\n{r.stderr}")
        subprocess.run([exe, *map(str, args)], check=True)


PROGRAM = r'''
/* 4 steps of 24 FMAs (of 32 flops) per iteration. */
static double rate(void (*f)(long, const float *, const float *), const float *a,
                   const float *b, long kc, long panels, long total) {
    long sweeps = total / (kc * panels) + 1; double t = now();
    for (long s = 0; s < sweeps; s++)
        for (long p = 0; p < panels; p++) f(kc / 4, a, b + p * kc * 32);
    return (double)sweeps * panels * kc * 24 * 32 / (now() - t) / 1e9;
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]);
    float *a = aligned_alloc(64, 1 << 20), *b = aligned_alloc(64, 64 << 20);
    for (long i = 0; i < (1 << 18); i++) a[i] = 1e-3f;
    for (long i = 0; i < (16 << 20); i++) b[i] = 1e-3f;
    for (int r = 0; r < rounds; r++) {
        double t = now(); probe(20000000);
        double pk = 20000000.0 * 16 * 32 / (now() - t) / 1e9;
        printf("probe %6.1f GFLOP/s |", pk);
        printf(" reg %4.0f%%", 100 * rate(k_reg, a, b, 4, 1, 20000000) / pk);
        printf(" +B loads %4.0f%%", 100 * rate(k_loads, a, b, 4, 1, 20000000) / pk);
        printf(" +broadcasts %4.0f%%", 100 * rate(k_broadcasts, a, b, 4, 1, 20000000) / pk);
        printf(" embedded %4.0f%%", 100 * rate(k_embedded, a, b, 4, 1, 20000000) / pk);
        printf(" A moving %4.0f%%", 100 * rate(k_moving_a, a, b, 128, 1, 20000000) / pk);
        printf(" B moving %4.0f%%", 100 * rate(k_moving_b, a, b, 128, 1, 20000000) / pk);
        printf(" moving L1 %4.0f%%", 100 * rate(k_moving, a, b, 128, 1, 20000000) / pk);
        printf(" moving L2 %4.0f%%\n", 100 * rate(k_moving, a, b, 384, 16, 20000000) / pk);
    }
    return 0;
}
'''


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = p.parse_args()
    kinds = ("reg", "loads", "broadcasts", "embedded", "moving_a", "moving_b", "moving")
    src = prelude(loop(f"k_{n}", n) for n in kinds) + PROGRAM
    build_and_run(src, a.cc, [a.rounds])


if __name__ == "__main__":
    main()
