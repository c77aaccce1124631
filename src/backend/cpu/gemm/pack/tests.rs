//! Unit tests of the packings against their definitions.

use super::pairs::{interleave_k_pairs_at, round_pairs16};
use super::*;
use crate::backend::cpu::isa::{self, Isa};

/// The branch-free rounding agrees bit for bit with `half` on every class of input:
/// ties both ways, carries into the exponent, overflow, subnormals, ±0, ±∞ and NaNs.
#[test]
fn f32_to_bf16_bits_matches_half() {
    let mut bits: Vec<u32> = vec![
        0,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0x7F80_0001,
        0xFFFF_FFFF,
        0x7F7F_FFFF,
        0x7F7F_8000,
        0x7F7E_8000,
        0x0000_0001,
        0x0000_8000,
        0x0001_8000,
        0x3F80_8000,
        0x3F81_8000,
        0x3F80_8001,
        0x3F80_7FFF,
        0x007F_FFFF,
        0x807F_8000,
    ];
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..200_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        bits.push(s as u32);
        // Exact ties and their neighbours.
        bits.push((s as u32 & 0xFFFF_0000) | 0x8000);
        bits.push((s as u32 & 0xFFFF_0000) | 0x7FFF);
    }
    for &b in &bits {
        let x = f32::from_bits(b);
        assert_eq!(
            f32_to_bf16_bits(x),
            bf16::from_f32(x).to_bits(),
            "f32 bits {b:#010x}"
        );
    }
    round_pairs16_matches_scalar(&bits);
}

/// AMX A panels (32 × 32 tiles) from a transposed source, bf16 and f32 rounded on the
/// way, equal the element-by-element definition: one to three panels, the last short of
/// rows (zero past the edge), k tails inside and past a whole tile, padded k rows, blocks
/// at an offset row and k step;
/// the f32 values include ties, NaNs, infinities and subnormals.
#[test]
fn amx_a_panels_from_a_transposed_source() {
    let specials = [
        0x3F80_8000u32,
        0x3F81_8000,
        0x7FC0_0001,
        0xFF80_0000,
        0x0000_8001,
        0x8000_0000,
        0x7F7F_FFFF,
    ];
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let shapes: [(usize, usize); 9] = [
        (32, 32),
        (32, 64),
        (32, 100),
        (31, 33),
        (5, 64),
        (1, 1),
        (32, 7),
        (70, 100),
        (96, 64),
    ];
    for &(nr, kc) in &shapes {
        for (pad, r0, p0) in [(0, 0, 0), (3, 3, 2)] {
            let ks = nr + pad + 40; // k rows of a wider matrix
            let off = 5;
            let len = off + (p0 + kc) * ks;
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 17 == 0 {
                        f32::from_bits(specials[(r >> 8) as usize % specials.len()])
                    } else {
                        f32::from_bits(((r as u32) & 0x807F_FFFF) | 0x3F00_0000)
                    }
                })
                .collect();
            let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            let kcp = kc.next_multiple_of(32);
            let mut want = vec![0u16; nr.div_ceil(32) * 32 * kcp];
            for p in 0..kc {
                for i in 0..nr {
                    let at = (i / 32) * 32 * kcp + (p / 32) * 1024 + (i % 32) * 32 + p % 32;
                    want[at] = xb[off + (p0 + p) * ks + r0 + i].to_bits();
                }
            }
            // The panels packed by `C` from `data` (A transposed: k rows ks apart), as bits.
            fn packed<C: Convert<Dst = bf16>>(
                data: &[C::Src],
                (off, ks, r0, rows, p0, kc): (usize, usize, usize, usize, usize, usize),
            ) -> Vec<u16> {
                let mut got =
                    vec![bf16::from_bits(0xFFFF); rows.div_ceil(32) * 32 * kc.next_multiple_of(32)];
                let view = View {
                    data,
                    off,
                    rs: 1,
                    cs: ks,
                };
                pack::<C>(view, 32, 32, 32, r0, rows, p0, kc, &mut got);
                got.iter().map(|v| v.to_bits()).collect()
            }
            let what = format!("rows {nr} kc {kc} pad {pad} from ({r0}, {p0})");
            let at = (off, ks, r0, nr, p0, kc);
            assert!(packed::<Bf16>(&xb, at) == want, "bf16 {what}");
            assert!(packed::<F32ToBf16>(&x, at) == want, "f32 {what}");
        }
    }
}

/// KU = 2 panels from a source whose panel rows are contiguous (B row-major, or an A
/// stored transposed), bf16 bits, equal the definition
/// out[q·2R + 2i + h] = x[2q + h, i] for every row count up to 32 (AVX-512: runs of 32,
/// masked; below: runs of 8, a run of 4, single pairs), even and odd depths (the last pair's second half left as the caller's
/// zero), rows of a wider matrix; the rest of the panel untouched.
#[test]
fn pair_panels_from_contiguous_panel_rows() {
    const R: usize = 32;
    let mut s = 0x1234_5678_9ABC_DEF1u64;
    for nr in 1..=R {
        for kc in [1usize, 2, 3, 8, 9] {
            let ks = nr + 7;
            let x: Vec<bf16> = (0..(kc - 1) * ks + nr)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    bf16::from_bits(s as u16)
                })
                .collect();
            let len = kc.div_ceil(2) * 2 * R;
            let mut want = vec![0xAAAAu16; len];
            let mut got = vec![0xAAAAu16; len];
            for q in 0..kc.div_ceil(2) {
                for i in 0..nr {
                    for h in 0..2 {
                        let p = 2 * q + h;
                        want[q * 2 * R + 2 * i + h] =
                            if p < kc { x[p * ks + i].to_bits() } else { 0 };
                        if p == kc {
                            got[q * 2 * R + 2 * i + h] = 0;
                        }
                    }
                }
            }
            for level in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
                if level > isa::detected() {
                    continue;
                }
                let mut got = got.clone();
                interleave_k_pairs_at::<bf16, R>(level, &x, ks, nr, kc, &mut got);
                assert_eq!(got, want, "{}: rows {nr} kc {kc}", level.name());
            }
        }
    }
}

/// The AVX-512 pairing of two f32 rows equals the scalar rounding lane by lane, for every
/// run length 1..=16 (masked lanes neither read nor written) and without a second row.
fn round_pairs16_matches_scalar(bits: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::cpu::isa::detected() >= crate::backend::cpu::isa::Isa::Avx512 {
        let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        for (c, chunk) in x.chunks_exact(32).enumerate() {
            let n = c % 16 + 1;
            let (r0, r1) = chunk.split_at(16);
            for second in [true, false] {
                let mut out = [0xDEAD_BEEFu32; 17];
                // SAFETY: AVX-512F checked above; 16 values per row, 17 u32 out.
                unsafe {
                    round_pairs16(
                        r0.as_ptr(),
                        second.then_some(r1.as_ptr()),
                        out.as_mut_ptr(),
                        n,
                    )
                };
                for j in 0..17 {
                    let want = if j >= n {
                        0xDEAD_BEEF
                    } else {
                        let hi = if second { f32_to_bf16_bits(r1[j]) } else { 0 };
                        f32_to_bf16_bits(r0[j]) as u32 | (hi as u32) << 16
                    };
                    assert_eq!(out[j], want, "lane {j} of {n}, {:?}", (r0[j], r1[j]));
                }
            }
        }
    }
}
