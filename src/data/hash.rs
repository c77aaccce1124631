//! 64-bit FNV-1a, the fingerprint of a tokenizer's canonical serialization and the
//! checksum of shard headers and token streams. Not cryptographic: it detects
//! corruption and mismatched vocabularies, not tampering.

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over bytes: `h = (h ^ b) · P` for each byte, from `h = offset`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

pub fn fnv1a_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Checksum of a token sequence, fed incrementally. Token `i` goes to lane `i mod 4`,
/// each lane an FNV-1a chain with one token (not one byte) per step,
/// `h_j = (h_j ^ t) · P`; the value is FNV-1a over the four lanes and the count. The
/// four independent chains run in parallel in the CPU, and the result does not depend
/// on the token width on disk or on how the sequence was cut into updates.
#[derive(Clone, Copy, Debug)]
pub struct TokenChecksum {
    lanes: [u64; 4],
    n: u64,
}

impl Default for TokenChecksum {
    fn default() -> Self {
        TokenChecksum {
            lanes: [FNV_OFFSET; 4],
            n: 0,
        }
    }
}

impl TokenChecksum {
    fn step(&mut self, t: u32) {
        let j = (self.n % 4) as usize;
        self.lanes[j] = (self.lanes[j] ^ t as u64).wrapping_mul(FNV_PRIME);
        self.n += 1;
    }

    pub fn update(&mut self, tokens: &[u32]) {
        let mut i = 0;
        while i < tokens.len() && !self.n.is_multiple_of(4) {
            self.step(tokens[i]);
            i += 1;
        }
        let chunks = tokens[i..].chunks_exact(4);
        let rest = chunks.remainder();
        let mut l = self.lanes;
        for c in chunks {
            for j in 0..4 {
                l[j] = (l[j] ^ c[j] as u64).wrapping_mul(FNV_PRIME);
            }
        }
        self.lanes = l;
        self.n += ((tokens.len() - i) / 4 * 4) as u64;
        for &t in rest {
            self.step(t);
        }
    }

    pub fn value(self) -> u64 {
        let mut h = FNV_OFFSET;
        for l in self.lanes {
            h = fnv1a_extend(h, &l.to_le_bytes());
        }
        fnv1a_extend(h, &self.n.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_independent_of_update_cuts() {
        let toks: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2654435761) >> 16)
            .collect();
        let mut a = TokenChecksum::default();
        a.update(&toks);
        let mut b = TokenChecksum::default();
        for c in toks.chunks(7) {
            b.update(c);
        }
        assert_eq!(a.value(), b.value());
        let mut t2 = toks.clone();
        t2[500] ^= 1;
        let mut c = TokenChecksum::default();
        c.update(&t2);
        assert_ne!(a.value(), c.value());
    }
}
