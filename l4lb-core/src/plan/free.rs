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
    /// start → len of the free intervals of `first..limit`, never adjacent.
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
                list.insert(at, base.min(limit).saturating_sub(at));
            }
            at = at.max(base.saturating_add(len));
        }
        list.insert(at, limit.saturating_sub(at));
        list
    }

    /// Ids `first..limit` less `used`.
    pub(crate) fn ids(first: u32, limit: u32, used: impl Iterator<Item = u32>) -> FreeList {
        FreeList::new(first, limit, used.map(|id| (id, 1)))
    }

    fn insert(&mut self, start: u32, len: u32) {
        if len > 0 {
            self.free.insert(start, len);
            self.total += u64::from(len);
        }
    }

    /// True if `n` more units can be taken (one at a time).
    pub(crate) fn has(&self, n: usize) -> bool {
        self.total >= n as u64
    }

    /// The first free interval of at least `len`: its start.
    pub(crate) fn alloc(&mut self, len: u32) -> Option<u32> {
        let (&start, &flen) = self.free.iter().find(|(_, l)| **l >= len)?;
        self.free.remove(&start);
        self.total -= u64::from(flen);
        self.insert(start + len, flen - len);
        Some(start)
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
        let mut end = end;
        if let Some((&s, &l)) = self.free.range(..start).next_back() {
            debug_assert!(s + l <= start, "{start}..{end} released twice");
            if s + l == start {
                self.remove(s);
                start = s;
            }
        }
        if let Some((&s, &l)) = self.free.range(start..).next() {
            debug_assert!(end <= s, "{start}..{end} released twice");
            if s == end {
                self.remove(s);
                end = s + l;
            }
        }
        self.insert(start, end - start);
    }

    fn remove(&mut self, start: u32) {
        if let Some(len) = self.free.remove(&start) {
            self.total -= u64::from(len);
        }
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
}
