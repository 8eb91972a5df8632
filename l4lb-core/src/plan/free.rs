//! [`FreeList`]: the free intervals of a number line (ids, slots), lowest
//! first. A plan takes from it first-fit; a free interval is only ever
//! released into it once nothing uses it (after the plan that replaced it),
//! and adjacent intervals are merged, so it equals the list built from what
//! is in use, whichever way it got there.
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FreeList {
    first: u32,
    limit: u32,
    /// end → start of the free intervals `start..end` of `first..limit`,
    /// never adjacent. Keyed by the end: a take from an interval's front
    /// (a full sync takes 70,000 times) changes its start in place, where a
    /// start key was a remove and an insert each.
    free: BTreeMap<u32, u32>,
    /// Sum of their lengths: `has` is O(1), so a full list costs nothing per service.
    total: u64,
}

impl FreeList {
    /// `first..limit` less every `(start, len)` of `used` (which may overlap,
    /// come in any order, or lie partly outside).
    pub(crate) fn new(first: u32, limit: u32, used: impl Iterator<Item = (u32, u32)>) -> FreeList {
        let mut used: Vec<(u32, u32)> = used.filter(|(_, len)| *len > 0).collect();
        used.sort_unstable();
        let mut list = FreeList {
            first,
            limit,
            free: BTreeMap::new(),
            total: 0,
        };
        let mut at = first;
        for (base, len) in used {
            if base > at {
                list.insert(at, base.min(limit).max(at));
            }
            at = at.max(base.saturating_add(len));
        }
        list.insert(at, limit.max(at));
        list
    }

    /// Ids `first..limit` less `used`.
    pub(crate) fn ids(first: u32, limit: u32, used: impl Iterator<Item = u32>) -> FreeList {
        FreeList::new(first, limit, used.map(|id| (id, 1)))
    }

    /// Adds the free interval `start..end` (nothing if empty).
    fn insert(&mut self, start: u32, end: u32) {
        if end > start {
            self.free.insert(end, start);
            self.total += u64::from(end - start);
        }
    }

    /// True if `n` more units can be taken (one at a time).
    pub(crate) fn has(&self, n: usize) -> bool {
        self.total >= n as u64
    }

    /// The first free interval of at least `len`: its start.
    pub(crate) fn alloc(&mut self, len: u32) -> Option<u32> {
        // Disjoint intervals: in order of their ends is in order of their starts.
        let (&end, start) = self.free.iter_mut().find(|(e, s)| **e - **s >= len)?;
        let taken = *start;
        *start += len;
        self.total -= u64::from(len);
        if *start == end {
            self.free.remove(&end);
        }
        Some(taken)
    }

    /// The lowest free id.
    pub(crate) fn take(&mut self) -> Option<u32> {
        self.alloc(1)
    }

    /// `start..start + len` is no longer used (the part inside `first..limit`).
    pub(crate) fn release(&mut self, start: u32, len: u32) {
        let end = start.saturating_add(len).min(self.limit);
        let mut start = start.max(self.first);
        if start >= end {
            return;
        }
        // The interval ending where this one starts merges into it.
        if let Some(s) = self.free.remove(&start) {
            self.total -= u64::from(start - s);
            start = s;
        }
        debug_assert!(
            self.free.range(start + 1..=end).next().is_none(),
            "{start}..{end} released twice"
        );
        // The first interval ending after this one starts at or after `end`:
        // it merges into this one if it starts right there.
        if let Some((_, s)) = self.free.range_mut(end..).next() {
            debug_assert!(end <= *s, "{start}..{end} released twice");
            if *s == end {
                self.total += u64::from(end - start);
                *s = start;
                return;
            }
        }
        self.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_what_is_left_and_come_lowest_first() {
        let mut pool = FreeList::ids(1, 6, [1, 2, 4, 9].into_iter());
        assert!(pool.has(2) && !pool.has(3));
        assert_eq!(
            (pool.take(), pool.take(), pool.take()),
            (Some(3), Some(5), None)
        );
        assert!(!pool.has(1));
        pool.release(4, 1);
        pool.release(2, 1);
        assert_eq!(pool.take(), Some(2));
    }

    #[test]
    fn releases_merge_into_what_a_fresh_list_holds() {
        let used = [(0, 10), (10, 5), (20, 5), (40, 100)];
        let mut list = FreeList::new(0, 100, used.into_iter());
        assert_eq!(
            list,
            FreeList::new(0, 100, [(0, 15), (20, 5), (40, 60)].into_iter())
        );
        list.release(10, 5);
        list.release(20, 5);
        assert_eq!(list, FreeList::new(0, 100, [(0, 10), (40, 60)].into_iter()));
        list.release(0, 10);
        list.release(40, 100);
        assert_eq!(list, FreeList::new(0, 100, std::iter::empty()));
        assert_eq!(list.alloc(101), None);
        assert_eq!(list.alloc(100), Some(0));
    }

    #[test]
    fn first_fit_skips_holes_too_small() {
        // Free: 0..5 and 15..20.
        let mut list = FreeList::new(0, 100, [(5, 10), (20, 80)].into_iter());
        assert_eq!(list.alloc(6), None);
        assert_eq!(list.alloc(4), Some(0));
        assert_eq!(list.alloc(2), Some(15));
        assert_eq!(list.alloc(1), Some(4));
        assert!(list.has(3) && !list.has(4));
    }

    /// Random takes, allocations and releases against a plain used/free
    /// array: the same first fits, and always the list built from what is used.
    #[test]
    fn random_use_matches_a_plain_array() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let (first, limit) = (3u32, 200u32);
        let mut rng = StdRng::seed_from_u64(21);
        let mut list = FreeList::new(first, limit, std::iter::empty());
        let mut used = vec![false; limit as usize];
        let mut taken: Vec<(u32, u32)> = Vec::new();
        for _ in 0..20_000 {
            if taken.is_empty() || rng.random_bool(0.55) {
                let len = rng.random_range(1..12);
                let fit = (first..limit.saturating_sub(len - 1))
                    .find(|&s| (s..s + len).all(|i| !used[i as usize]));
                assert_eq!(list.alloc(len), fit, "alloc({len})");
                if let Some(s) = fit {
                    (s..s + len).for_each(|i| used[i as usize] = true);
                    taken.push((s, len));
                }
            } else {
                let (s, len) = taken.swap_remove(rng.random_range(0..taken.len()));
                (s..s + len).for_each(|i| used[i as usize] = false);
                list.release(s, len);
            }
            let in_use = taken.iter().copied();
            assert_eq!(list, FreeList::new(first, limit, in_use));
        }
    }
}
