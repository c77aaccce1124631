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

/// Checksum of a token sequence, fed incrementally: FNV-1a with one token (not one byte)
/// per step, `h = (h ^ t) · P`, so it does not depend on the token width on disk.
#[derive(Clone, Copy, Debug)]
pub struct TokenChecksum(u64);

impl Default for TokenChecksum {
    fn default() -> Self {
        TokenChecksum(FNV_OFFSET)
    }
}

impl TokenChecksum {
    pub fn update(&mut self, tokens: impl IntoIterator<Item = u32>) {
        let mut h = self.0;
        for t in tokens {
            h = (h ^ t as u64).wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    pub fn value(self) -> u64 {
        self.0
    }
}
