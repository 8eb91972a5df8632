//! A service's backends as one sorted, shared slice: every service of the
//! desired state holds one (a B-tree map of five backends is a 408-byte
//! node where the five entries take 180 bytes), and a catalog's service
//! shares the list its app's part holds when they are the same (a copy per
//! service was 1.8 MB at 10,000 services of five).
use std::{collections::BTreeMap, fmt, net::SocketAddr, sync::Arc};

use serde::{Serialize, Serializer};

/// Backend → weight, sorted by address, each address once. Reads like the
/// `BTreeMap` it replaces; a clone is a count, a change copies the list
/// (services are made whole, not edited).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Backends(Arc<[(SocketAddr, u32)]>);

impl Backends {
    pub fn new() -> Backends {
        Backends::default()
    }

    /// Changes a copy of the list with `f` (a sorted vector still).
    fn edit<T>(&mut self, f: impl FnOnce(&mut Vec<(SocketAddr, u32)>) -> T) -> T {
        let mut v = self.0.to_vec();
        let out = f(&mut v);
        self.0 = v.into();
        out
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, addr: &SocketAddr) -> Result<usize, usize> {
        self.0.binary_search_by(|(a, _)| a.cmp(addr))
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&u32> {
        self.find(addr).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.find(addr).is_ok()
    }

    /// Sets `addr`'s weight; the weight it had, if any.
    pub fn insert(&mut self, addr: SocketAddr, weight: u32) -> Option<u32> {
        match self.find(&addr) {
            Ok(i) => Some(std::mem::replace(&mut self.slice_mut()[i].1, weight)),
            Err(i) => {
                self.edit(|v| v.insert(i, (addr, weight)));
                None
            }
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) -> Option<u32> {
        let i = self.find(addr).ok()?;
        Some(self.edit(|v| v.remove(i).1))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&SocketAddr, &mut u32) -> bool) {
        self.edit(|v| v.retain_mut(|(a, w)| keep(a, w)));
    }

    /// The entries to change in place (copied first if shared).
    fn slice_mut(&mut self) -> &mut [(SocketAddr, u32)] {
        Arc::make_mut(&mut self.0)
    }

    /// (address, weight) in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&SocketAddr, &u32)> + ExactSizeIterator {
        self.0.iter().map(|(a, w)| (a, w))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &SocketAddr> + ExactSizeIterator {
        self.0.iter().map(|(a, _)| a)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &u32> + ExactSizeIterator {
        self.0.iter().map(|(_, w)| w)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut u32> {
        self.slice_mut().iter_mut().map(|(_, w)| w)
    }

    pub fn first_key_value(&self) -> Option<(&SocketAddr, &u32)> {
        self.0.first().map(|(a, w)| (a, w))
    }
}

impl FromIterator<(SocketAddr, u32)> for Backends {
    /// A repeated address keeps its last weight, as a map's would.
    fn from_iter<I: IntoIterator<Item = (SocketAddr, u32)>>(iter: I) -> Backends {
        let mut v: Vec<(SocketAddr, u32)> = iter.into_iter().collect();
        if v.windows(2).all(|w| w[0].0 < w[1].0) {
            // Already sorted without repeats, as a catalog's merged lists are.
            return Backends(v.into());
        }
        v.sort_by_key(|(a, _)| *a); // stable: repeats in given order
        v.reverse();
        v.dedup_by(|later, kept| later.0 == kept.0);
        v.reverse();
        Backends(v.into())
    }
}

impl<const N: usize> From<[(SocketAddr, u32); N]> for Backends {
    fn from(list: [(SocketAddr, u32); N]) -> Backends {
        list.into_iter().collect()
    }
}

impl From<BTreeMap<SocketAddr, u32>> for Backends {
    fn from(map: BTreeMap<SocketAddr, u32>) -> Backends {
        Backends(map.into_iter().collect())
    }
}

impl From<&BTreeMap<SocketAddr, u32>> for Backends {
    fn from(map: &BTreeMap<SocketAddr, u32>) -> Backends {
        Backends(map.iter().map(|(a, w)| (*a, *w)).collect())
    }
}

impl Extend<(SocketAddr, u32)> for Backends {
    /// One sort of the whole, not an insert (a shift of the vector) per
    /// backend: a service of thousands stays O(n log n). The added weights
    /// win, as inserts' would.
    fn extend<I: IntoIterator<Item = (SocketAddr, u32)>>(&mut self, iter: I) {
        let mut all = self.0.to_vec();
        all.extend(iter);
        *self = all.into_iter().collect();
    }
}

impl<'a> IntoIterator for &'a Backends {
    type Item = (&'a SocketAddr, &'a u32);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (SocketAddr, u32)>,
        fn(&'a (SocketAddr, u32)) -> (&'a SocketAddr, &'a u32),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(a, w)| (a, w))
    }
}

impl IntoIterator for Backends {
    type Item = (SocketAddr, u32);
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter {
            list: self.0,
            at: 0,
        }
    }
}

/// [`Backends`]' entries by value (the list may be shared: copied out).
pub struct IntoIter {
    list: Arc<[(SocketAddr, u32)]>,
    at: usize,
}

impl Iterator for IntoIter {
    type Item = (SocketAddr, u32);
    fn next(&mut self) -> Option<(SocketAddr, u32)> {
        let entry = self.list.get(self.at).copied();
        self.at += 1;
        entry
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As a map, address → weight (the JSON the `BTreeMap` gave).
impl Serialize for Backends {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_and_writes_as_the_map_it_replaces() {
        let given = [("10.0.0.3:1", 1), ("10.0.0.1:1", 2), ("10.0.0.3:1", 0)];
        let given: Vec<(SocketAddr, u32)> = given.iter().map(|(a, w)| (sa(a), *w)).collect();
        let map: BTreeMap<SocketAddr, u32> = given.iter().copied().collect();
        let mut b: Backends = given.into_iter().collect();
        assert!(b.iter().eq(map.iter()), "sorted, the last weight kept");
        assert_eq!(b, Backends::from(&map));
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert_eq!(format!("{b:?}"), format!("{map:?}"));
        assert_eq!(b.insert(sa("10.0.0.2:1"), 5), None);
        assert_eq!(b.insert(sa("10.0.0.2:1"), 6), Some(5));
        assert_eq!(b.remove(&sa("10.0.0.1:1")), Some(2));
        let keys: Vec<SocketAddr> = b.keys().copied().collect();
        assert_eq!(keys, [sa("10.0.0.2:1"), sa("10.0.0.3:1")]);
        assert_eq!((b.get(&sa("10.0.0.2:1")), b.len()), (Some(&6), 2));
    }

    /// Sorted, unsorted, with repeats next to each other or apart: the
    /// same as the map the list would make.
    #[test]
    fn any_list_collects_as_its_map() {
        let a = |n: u8, w: u32| (sa(&format!("10.0.0.{n}:1")), w);
        let lists: [Vec<(SocketAddr, u32)>; 5] = [
            vec![],
            vec![a(1, 1), a(2, 2), a(3, 3)],
            vec![a(1, 1), a(1, 5), a(2, 2)],
            vec![a(3, 1), a(2, 2), a(1, 3)],
            vec![a(1, 1), a(2, 2), a(1, 7)],
        ];
        for list in lists {
            let map: BTreeMap<SocketAddr, u32> = list.iter().copied().collect();
            let b: Backends = list.iter().copied().collect();
            assert!(b.iter().eq(map.iter()), "{list:?}");
        }
    }

    #[test]
    fn extend_keeps_the_added_weights_as_a_map_would() {
        let mut b: Backends = [(sa("10.0.0.2:1"), 1), (sa("10.0.0.1:1"), 1)].into();
        let mut map: BTreeMap<SocketAddr, u32> = b.iter().map(|(a, w)| (*a, *w)).collect();
        let added = [
            (sa("10.0.0.2:1"), 7),
            (sa("10.0.0.0:1"), 3),
            (sa("10.0.0.0:1"), 4),
        ];
        b.extend(added);
        map.extend(added);
        assert!(b.iter().eq(map.iter()));
    }
}
