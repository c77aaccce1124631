# generates probe.rs: micro-kernel loop variants on L1-resident panels
variants = []
def step(kind, u):
    L = []
    if kind == "ebc12":
        L += [f"vmovups zmm24, [{{b}} + 128*{u}]", f"vmovups zmm25, [{{b}} + 128*{u} + 64]"]
        for i in range(12):
            L += [f"vfmadd231ps zmm{2*i}, zmm24, dword ptr [{{a}} + 4*(12*{u} + {i})]{{{{1to16}}}}",
                  f"vfmadd231ps zmm{2*i+1}, zmm25, dword ptr [{{a}} + 4*(12*{u} + {i})]{{{{1to16}}}}"]
    elif kind == "bc12":
        L += [f"vmovups zmm24, [{{b}} + 128*{u}]", f"vmovups zmm25, [{{b}} + 128*{u} + 64]"]
        for i in range(12):
            L += [f"vbroadcastss zmm31, dword ptr [{{a}} + 4*(12*{u} + {i})]",
                  f"vfmadd231ps zmm{2*i}, zmm31, zmm24", f"vfmadd231ps zmm{2*i+1}, zmm31, zmm25"]
    elif kind == "noB12":
        for i in range(12):
            L += [f"vfmadd231ps zmm{2*i}, zmm24, dword ptr [{{a}} + 4*(12*{u} + {i})]{{{{1to16}}}}",
                  f"vfmadd231ps zmm{2*i+1}, zmm25, dword ptr [{{a}} + 4*(12*{u} + {i})]{{{{1to16}}}}"]
    elif kind == "noA12":
        L += [f"vmovups zmm24, [{{b}} + 128*{u}]", f"vmovups zmm25, [{{b}} + 128*{u} + 64]"]
        for i in range(12):
            L += [f"vfmadd231ps zmm{2*i}, zmm31, zmm24", f"vfmadd231ps zmm{2*i+1}, zmm31, zmm25"]
    elif kind == "regs12":
        for i in range(12):
            L += [f"vfmadd231ps zmm{2*i}, zmm31, zmm24", f"vfmadd231ps zmm{2*i+1}, zmm31, zmm25"]
    elif kind == "ebc14":
        L += [f"vmovups zmm28, [{{b}} + 128*{u}]", f"vmovups zmm29, [{{b}} + 128*{u} + 64]"]
        for i in range(14):
            L += [f"vfmadd231ps zmm{2*i}, zmm28, dword ptr [{{a}} + 4*(14*{u} + {i})]{{{{1to16}}}}",
                  f"vfmadd231ps zmm{2*i+1}, zmm29, dword ptr [{{a}} + 4*(14*{u} + {i})]{{{{1to16}}}}"]
    elif kind == "ebc8x48":
        L += [f"vmovups zmm{24+v}, [{{b}} + 192*{u} + {64*v}]" for v in range(3)]
        for i in range(8):
            L += [f"vfmadd231ps zmm{3*i+v}, zmm{24+v}, dword ptr [{{a}} + 4*(8*{u} + {i})]{{{{1to16}}}}" for v in range(3)]
    elif kind == "bc8x48":
        L += [f"vmovups zmm{24+v}, [{{b}} + 192*{u} + {64*v}]" for v in range(3)]
        for i in range(8):
            L += [f"vbroadcastss zmm31, dword ptr [{{a}} + 4*(8*{u} + {i})]"]
            L += [f"vfmadd231ps zmm{3*i+v}, zmm31, zmm{24+v}" for v in range(3)]
    elif kind == "ebc6x64":
        L += [f"vmovups zmm{24+v}, [{{b}} + 256*{u} + {64*v}]" for v in range(4)]
        for i in range(6):
            L += [f"vfmadd231ps zmm{4*i+v}, zmm{24+v}, dword ptr [{{a}} + 4*(6*{u} + {i})]{{{{1to16}}}}" for v in range(4)]
    elif kind == "bc6x64":
        L += [f"vmovups zmm{24+v}, [{{b}} + 256*{u} + {64*v}]" for v in range(4)]
        for i in range(6):
            L += [f"vbroadcastss zmm31, dword ptr [{{a}} + 4*(6*{u} + {i})]"]
            L += [f"vfmadd231ps zmm{4*i+v}, zmm31, zmm{24+v}" for v in range(4)]
    return L
# (name, kind, rows, cols)
V = [("ebc12x32", "ebc12", 12, 32), ("bcast12x32", "bc12", 12, 32), ("ebc12x32_noBload", "noB12", 12, 32), ("bcast8x48", "bc8x48", 8, 48),
     ("v12x32_noAload", "noA12", 12, 32), ("v12x32_regs_only", "regs12", 12, 32), ("ebc14x32", "ebc14", 14, 32),
     ("ebc8x48", "ebc8x48", 8, 48), ("ebc6x64", "ebc6x64", 6, 64), ("bcast6x64", "bc6x64", 6, 64)]
out = ["use std::arch::asm;", "use std::time::Instant;"]
for name, kind, r, c in V:
    body = []
    for u in range(4):
        body += step(kind, u)
    lines = ["vpxord zmm%d, zmm%d, zmm%d" % (z, z, z) for z in range(32)]
    lines += ["2:", "mov {b}, {b0}", "mov {p}, {np}", "4:", "mov {a}, {a0}", "mov {n}, {kc4}", "3:"] + body + [
        f"add {{a}}, {4*4*r}", f"add {{b}}, {4*4*c}", "dec {n}", "jnz 3b", "dec {p}", "jnz 4b", "dec {outer}", "jnz 2b"]
    tmpl = ",\n        ".join('"%s"' % l for l in lines)
    clob = ", ".join('out("zmm%d") _' % z for z in range(32))
    out.append(f"""
#[target_feature(enable = "avx512f")]
unsafe fn {name}(a0: *const f32, b0: *const f32, outer: usize, np: usize, kc4: usize) {{
    unsafe {{ asm!(
        {tmpl},
        a0 = in(reg) a0, b0 = in(reg) b0, a = out(reg) _, b = out(reg) _, n = out(reg) _, p = out(reg) _, np = in(reg) np, kc4 = in(reg) kc4,
        outer = inout(reg) outer => _, {clob}, options(nostack, readonly)) }}
}}""")
names = ", ".join(f'("{n}", {n} as unsafe fn(*const f32, *const f32, usize), {r}*{c}*2)' for n, k, r, c in V)
names = ", ".join(f'("{n}", {n} as unsafe fn(*const f32, *const f32, usize, usize, usize), {r}*{c}*2, {c})' for n, k, r, c in V)
out.append(f"""
fn aligned(len: usize, x: f32) -> (Vec<f32>, usize) {{
    let v = vec![x; len + 16];
    let off = (64 - (v.as_ptr() as usize % 64)) % 64 / 4;
    (v, off)
}}
fn main() {{
    let (a, ao) = aligned(14 * 512, 0.5);
    let (b, bo) = aligned(64 * 384 * 16, 0.25);
    let (a, b) = (unsafe {{ a.as_ptr().add(ao) }}, unsafe {{ b.as_ptr().add(bo) }});
    assert!(a as usize % 64 == 0 && b as usize % 64 == 0);
    let vs: Vec<(&str, unsafe fn(*const f32, *const f32, usize, usize, usize), usize, usize)> = vec![{names}];
    // (label, kc, B block bytes): L1 = one 128-step panel; L2 = 384-step panels over a 768 KiB block
    for (label, kc, bbytes) in [("L1", 128usize, 0usize), ("L2", 384, 768 << 10)] {{
        let mut res: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
        for _round in 0..5 {{
            for (i, (_, f, fl, cols)) in vs.iter().enumerate() {{
                let np = if bbytes == 0 {{ 1 }} else {{ bbytes / (kc * cols * 4) }};
                let outer = 2_560_000 / (np * kc);
                let t = Instant::now();
                unsafe {{ f(a, b, outer, np, kc / 4) }};
                let s = t.elapsed().as_secs_f64();
                res[i].push((outer * np * kc * fl) as f64 / s / 1e9);
            }}
        }}
        for (i, (n, _, _, _)) in vs.iter().enumerate() {{
            let mut r = res[i].clone();
            r.sort_by(|x, y| x.partial_cmp(y).unwrap());
            println!("{{label}} {{n:20}} median {{:7.1}}  max {{:7.1}} GF/s", r[r.len() / 2], r[r.len() - 1]);
        }}
    }}
}}""")
open("probe.rs", "w").write("\n".join(out))
