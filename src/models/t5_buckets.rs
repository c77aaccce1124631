//! T5 relative-position buckets (transformers `T5Attention._relative_position_bucket`).
//!
//! For a query at position i and a key at position j, rel = j - i. Bidirectional (encoder):
//! half of the buckets (nb/2) for rel > 0, the other half for rel <= 0, n = |rel|. Unidirectional
//! (decoder self-attention): n = max(-rel, 0), so every future key shares bucket 0. Within a half of
//! `nb'` buckets, `max_exact = nb'/2`: n < max_exact maps to n; otherwise
//! `min(max_exact + trunc(ln(n / max_exact) / ln(max_distance / max_exact) * (nb' - max_exact)), nb' - 1)`,
//! evaluated in f32 as torch does. The bias added to the scores is `table[bucket(rel)][head]`.

/// Bucket of one relative position `rel = key_pos - query_pos`.
pub fn relative_position_bucket(
    rel: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut nb = num_buckets as i64;
    let mut bucket = 0i64;
    let n = if bidirectional {
        nb /= 2;
        if rel > 0 {
            bucket += nb;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = nb / 2;
    if n < max_exact {
        return (bucket + n) as usize;
    }
    // f32 arithmetic in torch's order: ln(n / max_exact) / ln(max_distance / max_exact) * (nb - max_exact).
    let denom = (max_distance as f64 / max_exact as f64).ln() as f32;
    let scaled = (n as f32 / max_exact as f32).ln() / denom * (nb - max_exact) as f32;
    // `as i64` truncates toward zero like torch's `.to(torch.long)` (scaled >= 0 here). When
    // max_distance <= max_exact (a degenerate config; HF then yields garbage negative buckets) the
    // ratio is +inf or NaN, which saturates to the last bucket (NaN, n = max_exact: to max_exact).
    let large = max_exact.saturating_add(scaled as i64).min(nb - 1);
    (bucket + large) as usize
}

/// Row-major `(q_len, k_len)` bucket matrix for queries at positions `past .. past + q_len` and keys at
/// `0 .. k_len` (with a KV cache, `past` is the number of cached positions).
pub fn bucket_matrix(
    q_len: usize,
    k_len: usize,
    past: usize,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(q_len * k_len);
    for i in 0..q_len {
        for j in 0..k_len {
            let rel = j as i64 - (i + past) as i64;
            out.push(relative_position_bucket(
                rel,
                bidirectional,
                num_buckets,
                max_distance,
            ));
        }
    }
    out
}
