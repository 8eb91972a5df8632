//! [`Wanted`]: which VIP addresses get a route, followed apply by apply.
//! An address is wanted while some applied service is on it and no backend
//! nor protected endpoint is; each sync diffs the applied table with the
//! last one (persistent maps: O(change)) and counts what came and went.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use imbl::ordmap::DiffItem;

use crate::plan::Applied;

#[derive(Debug)]
pub(super) struct Wanted {
    /// The table the counts are of.
    last: Applied,
    /// Canonical VIP address → how many applied services are on it.
    vips: BTreeMap<IpAddr, usize>,
    /// Canonical backend address → how many backends have it.
    backends: BTreeMap<IpAddr, usize>,
    /// Canonical addresses never routed.
    protect: BTreeSet<IpAddr>,
    /// VIP addresses a backend or a protected endpoint has.
    skipped: BTreeSet<IpAddr>,
}

impl Wanted {
    pub(super) fn new(protect: &BTreeSet<IpAddr>) -> Wanted {
        Wanted {
            last: Applied::default(),
            vips: BTreeMap::new(),
            backends: BTreeMap::new(),
            protect: protect.iter().map(|ip| ip.to_canonical()).collect(),
            skipped: BTreeSet::new(),
        }
    }

    /// Counts `applied` in place of the last table; returns the addresses
    /// whose counts changed (whether they are wanted may have).
    pub(super) fn follow(&mut self, applied: &Applied) -> BTreeSet<IpAddr> {
        let mut touched = BTreeSet::new();
        for d in self.last.services.diff(&applied.services) {
            match d {
                DiffItem::Add(v, _) => touched.insert(add(&mut self.vips, v.addr.ip(), 1)),
                DiffItem::Remove(v, _) => touched.insert(add(&mut self.vips, v.addr.ip(), -1)),
                DiffItem::Update { .. } => false,
            };
        }
        for d in self.last.backends.diff(&applied.backends) {
            let (gone, came) = match d {
                DiffItem::Add(_, b) => (None, Some(b)),
                DiffItem::Remove(_, b) => (Some(b), None),
                DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
            };
            if let Some(b) = gone {
                touched.insert(add(&mut self.backends, b.ip(), -1));
            }
            if let Some(b) = came {
                touched.insert(add(&mut self.backends, b.ip(), 1));
            }
        }
        self.last = applied.clone();
        for ip in &touched {
            match self.vips.contains_key(ip) && self.taken(ip) {
                true => self.skipped.insert(*ip),
                false => self.skipped.remove(ip),
            };
        }
        touched
    }

    /// True if `ip` (canonical) is to be routed.
    pub(super) fn wants(&self, ip: &IpAddr) -> bool {
        self.vips.contains_key(ip) && !self.taken(ip)
    }

    /// VIP addresses left without a route: a backend or the control plane uses them.
    pub(super) fn skipped(&self) -> Vec<IpAddr> {
        self.skipped.iter().copied().collect()
    }

    fn taken(&self, ip: &IpAddr) -> bool {
        self.backends.contains_key(ip) || self.protect.contains(ip)
    }
}

/// Adds `n` to `ip`'s count (an entry only while it is above 0); returns
/// the canonical address.
fn add(counts: &mut BTreeMap<IpAddr, usize>, ip: IpAddr, n: isize) -> IpAddr {
    let ip = ip.to_canonical();
    let c = counts.entry(ip).or_default();
    *c = c.checked_add_signed(n).expect("counted before");
    if *c == 0 {
        counts.remove(&ip);
    }
    ip
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::{
        model::{Proto, Vip},
        plan::AppliedService,
    };

    fn addr(i: u8, port: u16) -> SocketAddr {
        let ip: IpAddr = match i % 5 {
            4 => format!("::ffff:198.18.0.{}", i % 6).parse().unwrap(),
            _ => format!("198.18.0.{}", i % 6).parse().unwrap(),
        };
        SocketAddr::new(ip, port)
    }

    #[test]
    fn following_the_table_wants_what_comparing_it_whole_wants() {
        for seed in 0..100 {
            let mut rng = StdRng::seed_from_u64(seed);
            let protect: BTreeSet<IpAddr> = [addr(rng.random_range(0..12), 0).ip()].into();
            let mut w = Wanted::new(&protect);
            let mut a = Applied::default();
            for step in 0..50 {
                for _ in 0..rng.random_range(1..4) {
                    let vip = Vip {
                        addr: addr(rng.random_range(0..12), rng.random_range(80..82)),
                        proto: Proto::Tcp,
                    };
                    match rng.random_bool(0.4) {
                        true => drop(a.services.remove(&vip)),
                        false => drop(a.services.insert(vip, AppliedService::default())),
                    }
                    let id = rng.random_range(1..8);
                    match rng.random_bool(0.4) {
                        true => drop(a.backends.remove(&id)),
                        false => drop(a.backends.insert(id, addr(rng.random_range(0..12), 9))),
                    }
                }
                w.follow(&a);
                // What comparing the whole table wants.
                let (want, skipped) = super::super::wanted(&a, &protect);
                let got: BTreeSet<IpAddr> =
                    w.vips.keys().filter(|ip| w.wants(ip)).copied().collect();
                assert_eq!(got, want, "seed {seed} step {step}");
                assert_eq!(w.skipped(), skipped, "seed {seed} step {step}");
            }
        }
    }
}
