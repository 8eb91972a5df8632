//! [`AddrIds`]: backend id by address, the largest part of the index (a
//! full sync's 50,000 backends). Keyed per family: an IPv4 address takes a
//! 12-byte entry, where a `SocketAddr` key (32 B, the size of the IPv6
//! one) made every entry 36; the entries of a family are reserved together.
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// Only looked up, never walked in order (see `index.rs`).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct AddrIds {
    v4: HashMap<SocketAddrV4, u32>,
    v6: HashMap<SocketAddrV6, u32>,
}

impl AddrIds {
    pub(super) fn get(&self, addr: &SocketAddr) -> Option<u32> {
        match addr {
            SocketAddr::V4(a) => self.v4.get(a),
            SocketAddr::V6(a) => self.v6.get(a),
        }
        .copied()
    }

    pub(super) fn insert(&mut self, addr: SocketAddr, id: u32) {
        match addr {
            SocketAddr::V4(a) => self.v4.insert(a, id),
            SocketAddr::V6(a) => self.v6.insert(a, id),
        };
    }

    pub(super) fn remove(&mut self, addr: &SocketAddr) {
        match addr {
            SocketAddr::V4(a) => self.v4.remove(a),
            SocketAddr::V6(a) => self.v6.remove(a),
        };
    }

    /// Room for `v4` and `v6` addresses in all, taken at once (none more
    /// if a family holds that many already).
    pub(super) fn reserve(&mut self, v4: usize, v6: usize) {
        self.v4.reserve(v4.saturating_sub(self.v4.len()));
        self.v6.reserve(v6.saturating_sub(self.v6.len()));
    }
}

impl FromIterator<(SocketAddr, u32)> for AddrIds {
    fn from_iter<T: IntoIterator<Item = (SocketAddr, u32)>>(iter: T) -> AddrIds {
        let mut ids = AddrIds::default();
        for (addr, id) in iter {
            ids.insert(addr, id);
        }
        ids
    }
}
