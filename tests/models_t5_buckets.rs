//! T5 relative-position buckets against transformers 5.23 (tests/fixtures/hf/t5_buckets.json) and
//! the spec's test vectors.

use std::path::Path;

use pretext::models::t5_buckets::{bucket_matrix, relative_position_bucket};
use serde_json::Value;

#[test]
fn spec_vectors() {
    let rel = [
        -200, -128, -64, -32, -16, -9, -8, -7, -1, 0, 1, 7, 8, 9, 12, 16, 32, 64, 100, 127, 128,
    ];
    let bi = [
        15, 15, 14, 12, 10, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 28, 30, 31, 31, 31,
    ];
    for (r, b) in rel.iter().zip(bi) {
        assert_eq!(
            relative_position_bucket(*r, true, 32, 128),
            b,
            "bidirectional rel {r}"
        );
    }
    let rel = [-200, -128, -100, -64, -32, -16, -8, -1, 0, 5];
    let uni = [31, 31, 30, 26, 21, 16, 8, 1, 0, 0];
    for (r, b) in rel.iter().zip(uni) {
        assert_eq!(
            relative_position_bucket(*r, false, 32, 128),
            b,
            "unidirectional rel {r}"
        );
    }
}

#[test]
fn matches_transformers_on_every_position_in_range() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/t5_buckets.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let start = v["rel_start"].as_i64().unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        let nb = c["num_buckets"].as_u64().unwrap() as usize;
        let md = c["max_distance"].as_u64().unwrap() as usize;
        let bi = c["bidirectional"].as_bool().unwrap();
        let want = c["buckets"].as_array().unwrap();
        assert_eq!(want.len(), 601);
        for (k, w) in want.iter().enumerate() {
            let rel = start + k as i64;
            let got = relative_position_bucket(rel, bi, nb, md);
            assert_eq!(
                got as u64,
                w.as_u64().unwrap(),
                "rel {rel}, nb {nb}, max_distance {md}, bidirectional {bi}"
            );
        }
    }
}

#[test]
fn matrix_uses_key_minus_query_with_cache_offset() {
    // 1 query at position 3 (3 cached), 4 keys: rel = -3, -2, -1, 0.
    assert_eq!(bucket_matrix(1, 4, 3, false, 32, 128), vec![3, 2, 1, 0]);
    // Degenerate max_distance <= max_exact saturates instead of overflowing.
    assert_eq!(relative_position_bucket(-40, false, 32, 16), 31);
    assert_eq!(relative_position_bucket(40, true, 32, 8), 31);
    // Encoder 2x3: rel = [[0, 1, 2], [-1, 0, 1]].
    assert_eq!(
        bucket_matrix(2, 3, 0, true, 32, 128),
        vec![0, 17, 18, 1, 0, 17]
    );
}
