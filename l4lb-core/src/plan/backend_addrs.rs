//! [`BackendAddrs`]: backend id → address, what `L4LB_BACKENDS` holds, as
//! a persistent array. Ids are small and dense (taken lowest first from
//! `1..capacity`), so an entry is found by its id, with no tree to walk:
//! a full sync's 50,000 backends are pushed in order into full chunks (1.8
//! MB, where a persistent B-tree filled in key order held its leaves half
//! full: 3.8 MB, and took two fifths of the full plan's instructions).
//! Chunks are shared between copies: a copy is O(1), a write copies the
//! chunk it writes and the list of chunks, and a diff of two copies skips
//! the chunks they share. Read like the `imbl::OrdMap` it replaces.
use std::{
    fmt,
    net::SocketAddr,
    ops::{self, Bound, RangeBounds},
    sync::Arc,
};

use imbl::ordmap::DiffItem;

/// Ids per chunk: what a write copies (36 B an entry, 4.6 KB).
const CHUNK: usize = 128;

/// An entry keeps its id beside its address, so that the iterators lend
/// both as the map they replace did.
type Slot = Option<(u32, SocketAddr)>;
type Chunk = [Slot; CHUNK];

#[derive(Clone, Default)]
pub struct BackendAddrs {
    chunks: Arc<Vec<Arc<Chunk>>>,
    len: usize,
}

/// Chunk and place of `id`.
fn at(id: u32) -> (usize, usize) {
    let id = id as usize;
    (id / CHUNK, id % CHUNK)
}

impl BackendAddrs {
    pub fn new() -> BackendAddrs {
        BackendAddrs::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &u32) -> Option<&SocketAddr> {
        let (c, i) = at(*id);
        self.chunks.get(c)?[i].as_ref().map(|(_, a)| a)
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.get(id).is_some()
    }

    /// Puts `addr` at `id`; the address it replaces, if any.
    pub fn insert(&mut self, id: u32, addr: SocketAddr) -> Option<SocketAddr> {
        let (c, i) = at(id);
        let chunks = Arc::make_mut(&mut self.chunks);
        if chunks.len() <= c {
            chunks.resize_with(c + 1, || Arc::new([None; CHUNK]));
        }
        let old = Arc::make_mut(&mut chunks[c])[i].replace((id, addr));
        self.len += usize::from(old.is_none());
        old.map(|(_, a)| a)
    }

    /// Takes the address at `id` out (nothing is copied if there is none).
    pub fn remove(&mut self, id: &u32) -> Option<SocketAddr> {
        self.get(id)?;
        let (c, i) = at(*id);
        let chunk = &mut Arc::make_mut(&mut self.chunks)[c];
        let old = Arc::make_mut(chunk)[i].take();
        self.len -= 1;
        old.map(|(_, a)| a)
    }

    /// (id, address) in id order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// (id, address) of the ids in `range`, in id order.
    pub fn range<R: RangeBounds<u32>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&u32, &SocketAddr)> {
        let first = match range.start_bound() {
            Bound::Included(id) => u64::from(*id),
            Bound::Excluded(id) => u64::from(*id) + 1,
            Bound::Unbounded => 0,
        };
        self.iter_from(first)
            .take_while(move |(id, _)| range.contains(*id))
    }

    /// [`BackendAddrs::iter`] from id `first` on.
    fn iter_from(&self, first: u64) -> Iter<'_> {
        let (c, i) = (
            (first / CHUNK as u64) as usize,
            (first % CHUNK as u64) as usize,
        );
        match self.chunks.get(c) {
            Some(chunk) => Iter {
                chunks: self.chunks[c + 1..].iter(),
                slots: chunk[i..].iter(),
            },
            None => Iter {
                chunks: [].iter(),
                slots: [].iter(),
            },
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &SocketAddr> {
        self.iter().map(|(_, a)| a)
    }

    /// What changed from `self` to `other`, in id order, as the ordered
    /// map's diff gives it; the chunks both share are skipped.
    pub fn diff<'a, 'b>(
        &'a self,
        other: &'b BackendAddrs,
    ) -> impl Iterator<Item = DiffItem<'a, 'b, u32, SocketAddr>> {
        let n = self.chunks.len().max(other.chunks.len());
        (0..n)
            .filter(|c| match (self.chunks.get(*c), other.chunks.get(*c)) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                _ => true,
            })
            .flat_map(move |c| {
                (0..CHUNK).filter_map(move |i| slot_diff(slot(self, c, i), slot(other, c, i)))
            })
    }
}

fn slot(m: &BackendAddrs, c: usize, i: usize) -> Option<&(u32, SocketAddr)> {
    m.chunks.get(c)?[i].as_ref()
}

fn slot_diff<'a, 'b>(
    old: Option<&'a (u32, SocketAddr)>,
    new: Option<&'b (u32, SocketAddr)>,
) -> Option<DiffItem<'a, 'b, u32, SocketAddr>> {
    match (old, new) {
        (None, None) => None,
        (None, Some((id, a))) => Some(DiffItem::Add(id, a)),
        (Some((id, a)), None) => Some(DiffItem::Remove(id, a)),
        (Some(o), Some(n)) if o == n => None,
        (Some((oi, oa)), Some((ni, na))) => Some(DiffItem::Update {
            old: (oi, oa),
            new: (ni, na),
        }),
    }
}

/// [`BackendAddrs::iter`].
pub struct Iter<'a> {
    chunks: std::slice::Iter<'a, Arc<Chunk>>,
    slots: std::slice::Iter<'a, Slot>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a u32, &'a SocketAddr);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((id, a)) = self.slots.find_map(Option::as_ref) {
                return Some((id, a));
            }
            self.slots = self.chunks.next()?.iter();
        }
    }
}

impl<'a> IntoIterator for &'a BackendAddrs {
    type Item = (&'a u32, &'a SocketAddr);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(u32, SocketAddr)> for BackendAddrs {
    fn from_iter<T: IntoIterator<Item = (u32, SocketAddr)>>(iter: T) -> BackendAddrs {
        let mut m = BackendAddrs::new();
        for (id, a) in iter {
            m.insert(id, a);
        }
        m
    }
}

impl ops::Index<&u32> for BackendAddrs {
    type Output = SocketAddr;

    fn index(&self, id: &u32) -> &SocketAddr {
        self.get(id).expect("no backend at that id")
    }
}

/// Equal when they hold the same entries, whatever their chunks.
impl PartialEq for BackendAddrs {
    fn eq(&self, other: &BackendAddrs) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for BackendAddrs {}

impl fmt::Debug for BackendAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::new([10, 0, (i >> 8) as u8, i as u8].into(), 80)
    }

    /// Random inserts and removes, checked against a `BTreeMap`, and each
    /// copy's diff with the last against the ordered maps' diff.
    #[test]
    fn reads_and_diffs_as_an_ordered_map() {
        let mut rng = StdRng::seed_from_u64(16);
        let (mut m, mut want) = (BackendAddrs::new(), BTreeMap::new());
        let mut last = (m.clone(), imbl::OrdMap::<u32, SocketAddr>::new());
        for step in 0..2_000 {
            let id = rng.random_range(0..600);
            match rng.random_bool(0.35) {
                true => assert_eq!(m.remove(&id), want.remove(&id), "step {step}"),
                false => {
                    let a = addr(rng.random_range(0..50));
                    assert_eq!(m.insert(id, a), want.insert(id, a), "step {step}");
                }
            }
            assert_eq!(m.len(), want.len());
            assert!(m.iter().eq(want.iter()), "step {step}");
            assert_eq!(m.get(&id), want.get(&id));
            assert!(m.range(id..).eq(want.range(id..)), "step {step}");
            assert!(m.range(..=id).eq(want.range(..=id)), "step {step}");
            if step % 50 == 0 {
                let ordered: imbl::OrdMap<u32, SocketAddr> = want.clone().into();
                let got: Vec<_> = last.0.diff(&m).collect();
                let expected: Vec<_> = last.1.diff(&ordered).collect();
                assert_eq!(got, expected, "step {step}");
                last = (m.clone(), ordered);
            }
        }
    }

    /// A copy shares what it does not write: the original is untouched, and
    /// the diff visits only the chunk written.
    #[test]
    fn a_copy_is_written_apart() {
        let mut a: BackendAddrs = (1..1_000).map(|i| (i, addr(i))).collect();
        let before = a.clone();
        a.insert(500, addr(7));
        a.remove(&3);
        assert_eq!(before.get(&500), Some(&addr(500)));
        assert_eq!(before.get(&3), Some(&addr(3)));
        assert_eq!(before.diff(&a).count(), 2);
        assert_ne!(before, a);
        assert_eq!(a.remove(&3), None);
        assert_eq!(
            format!("{:?}", BackendAddrs::from_iter([(2, addr(2))])),
            "{2: 10.0.0.2:80}"
        );
    }
}
