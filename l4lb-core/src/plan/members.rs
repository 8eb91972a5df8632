//! [`Members`]: a service's backend id → weight, as the maps hold it. A
//! service has a handful of members: a sorted boxed slice holds them in 8
//! bytes each (five: 40 B) where a `BTreeMap` took a 104-byte node per
//! service. Read like that map (lookup by id, iteration in id order), and
//! serialized as it was (a map).
use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Members(Box<[(u32, u32)]>);

impl Members {
    pub fn new() -> Members {
        Members::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, id: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |(b, _)| *b)
    }

    pub fn get(&self, id: &u32) -> Option<&u32> {
        self.find(*id).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.find(*id).is_ok()
    }

    /// Sets the weight of `id`; the weight it replaces, if any (a new id
    /// copies the slice: a set of many members is collected, as the maps'
    /// read-back does, not inserted one by one).
    pub fn insert(&mut self, id: u32, weight: u32) -> Option<u32> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, weight)),
            Err(i) => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, (id, weight));
                self.0 = v.into_boxed_slice();
                None
            }
        }
    }

    /// (id, weight) in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &u32)> {
        self.0.iter().map(|(b, w)| (b, w))
    }

    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|(b, _)| b)
    }

    pub fn values(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|(_, w)| w)
    }
}

/// As a map collects: in id order, the last weight of an id repeated wins.
impl FromIterator<(u32, u32)> for Members {
    fn from_iter<T: IntoIterator<Item = (u32, u32)>>(iter: T) -> Members {
        let mut v: Vec<(u32, u32)> = iter.into_iter().collect();
        if !v.is_sorted_by(|a, b| a.0 < b.0) {
            v.sort_by_key(|(b, _)| *b);
            v.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = later.1;
                }
                same
            });
        }
        Members(v.into_boxed_slice())
    }
}

impl<const N: usize> From<[(u32, u32); N]> for Members {
    fn from(members: [(u32, u32); N]) -> Members {
        members.into_iter().collect()
    }
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl fmt::Debug for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// Built, written and read as a `BTreeMap` is, and the same JSON.
    #[test]
    fn reads_as_the_map_it_replaces() {
        let mut rng = StdRng::seed_from_u64(22);
        for round in 0..200 {
            let pairs: Vec<(u32, u32)> = (0..rng.random_range(0..12))
                .map(|_| (rng.random_range(0..20), rng.random_range(0..3)))
                .collect();
            let (mut m, mut want): (Members, BTreeMap<u32, u32>) =
                (pairs.iter().copied().collect(), pairs.into_iter().collect());
            let (id, w) = (rng.random_range(0..20), rng.random_range(0..3));
            assert_eq!(m.insert(id, w), want.insert(id, w), "round {round}");
            assert!(m.iter().eq(want.iter()), "round {round}");
            assert_eq!(m.len(), want.len());
            assert_eq!(m.get(&7), want.get(&7));
            assert_eq!(m.contains_key(&3), want.contains_key(&3));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, serde_json::to_string(&want).unwrap());
            assert_eq!(format!("{m:?}"), format!("{want:?}"));
        }
    }
}
