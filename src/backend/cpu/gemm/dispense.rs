//! Units of work (a GEMM's row tiles) handed out to parts that run in parallel, each part
//! first taking its own contiguous share front to back, then, once that is done, units from
//! the back of the share with the most left.
//!
//! With equal cores every part runs exactly its own share, in order, as a static split would
//! (so a part's rows are the ones the producing op's equal split left in its core's cache);
//! when one core runs slower (its sibling hyperthread busy on a shared host, or the thread
//! descheduled), the faster part takes over the rest of the slower one's share instead of
//! waiting for it at the join.

use std::sync::atomic::{AtomicU64, Ordering};

/// The shares of `parts` parts over units `0..total`: share t starts as
/// [t·total/parts, (t+1)·total/parts), held as `lo << 32 | hi`; units go out one at a time
/// (a GEMM row tile is microseconds of work, an exchange tens of nanoseconds; two or more
/// per exchange balanced worse and gained nothing measurable when the cores ran alike).
pub(super) struct Dispenser {
    shares: Vec<AtomicU64>,
}

fn pack(lo: usize, hi: usize) -> u64 {
    ((lo as u64) << 32) | hi as u64
}

fn unpack(v: u64) -> (usize, usize) {
    ((v >> 32) as usize, (v & 0xffff_ffff) as usize)
}

impl Dispenser {
    /// `total` units (fewer than 2³²) in `parts` equal shares (at least one).
    pub(super) fn new(total: usize, parts: usize) -> Self {
        assert!(total < 1 << 32, "dispenser of {total} units");
        let parts = parts.max(1);
        let shares = (0..parts)
            .map(|t| AtomicU64::new(pack(t * total / parts, (t + 1) * total / parts)))
            .collect();
        Dispenser { shares }
    }

    /// The next unit for part `me`: the front of its own share, or else the back of the
    /// share with the most units left; `None` when every share is empty.
    pub(super) fn next(&self, me: usize) -> Option<usize> {
        if let Some(own) = self.shares.get(me) {
            let taken = own.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let (lo, hi) = unpack(v);
                (lo < hi).then(|| pack(lo + 1, hi))
            });
            if let Ok(v) = taken {
                return Some(unpack(v).0);
            }
        }
        loop {
            let (victim, left) = self
                .shares
                .iter()
                .enumerate()
                .map(|(t, s)| {
                    let (lo, hi) = unpack(s.load(Ordering::Acquire));
                    (t, hi.saturating_sub(lo))
                })
                .max_by_key(|&(_, left)| left)?;
            if left == 0 {
                return None;
            }
            let taken =
                self.shares[victim].fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    let (lo, hi) = unpack(v);
                    (lo < hi).then(|| pack(lo, hi - 1))
                });
            if let Ok(v) = taken {
                return Some(unpack(v).1 - 1);
            }
            // Emptied by its owner or another thief meanwhile: look again.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dispenser;

    #[test]
    fn each_part_runs_its_own_share_in_order_then_steals_from_the_back() {
        let d = Dispenser::new(10, 2);
        // Part 0 owns 0..5, part 1 owns 5..10.
        assert_eq!(d.next(1), Some(5));
        assert_eq!(d.next(0), Some(0));
        assert_eq!(d.next(0), Some(1));
        // Part 1 runs ahead: its own share, then part 0's from the back.
        let ones: Vec<usize> = (0..6).filter_map(|_| d.next(1)).collect();
        assert_eq!(ones, vec![6, 7, 8, 9, 4, 3]);
        assert_eq!(d.next(0), Some(2));
        assert_eq!(d.next(0), None);
        assert_eq!(d.next(1), None);
    }

    #[test]
    fn a_thief_takes_from_the_share_with_the_most_left() {
        // Shares 0..2, 2..4, 4..7 (three left in part 2's).
        let d = Dispenser::new(7, 3);
        assert_eq!(d.next(0), Some(0));
        assert_eq!(d.next(0), Some(1));
        assert_eq!(d.next(0), Some(6));
        // Parts 1 and 2 now have two each: the later one is the victim (ties go last).
        assert_eq!(d.next(0), Some(5));
        assert_eq!(d.next(2), Some(4));
        // Part 2's share is empty: it takes from the back of part 1's.
        assert_eq!(d.next(2), Some(3));
        assert_eq!(d.next(1), Some(2));
        assert_eq!(d.next(1), None);
    }

    #[test]
    fn every_unit_goes_out_exactly_once_across_threads() {
        for parts in [1, 2, 3, 5] {
            let total = 1000;
            let d = Dispenser::new(total, parts);
            let got: Vec<Vec<usize>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..parts)
                    .map(|me| {
                        let d = &d;
                        s.spawn(move || std::iter::from_fn(|| d.next(me)).collect::<Vec<_>>())
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut all: Vec<usize> = got.concat();
            all.sort_unstable();
            assert_eq!(all, (0..total).collect::<Vec<_>>(), "{parts} parts");
        }
    }
}
