//! [`Screener`]: [`Guard::screen`] kept between catalogs. The screen of
//! every VIP depends on the guard, on the VIP's own service, and on whether
//! some service has a backend on the VIP's address. With the same guard as
//! last time, only the VIPs whose service changed (a diff of persistent
//! maps) and those on an address that became or stopped being a backend's
//! are screened again; a new guard (a node address came or went) screens
//! everything.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use imbl::ordmap::DiffItem;

use super::{Guard, Refused};
use crate::model::{ServiceMap, ServiceSpec, Vip};

#[derive(Debug, Default)]
pub struct Screener {
    /// The guard and the services of the last screen.
    last: Option<(Guard, ServiceMap)>,
    /// Canonical backend address → how many services' backends are on it.
    backend_ips: HashMap<IpAddr, usize>,
    /// Canonical VIP address → the VIPs on it, sorted. A vector: an
    /// address holds one VIP in the common case, where a B-tree set's node
    /// was ~400 B (4 MB held at 10,000 named VIPs, each on its own address).
    vips_at: BTreeMap<IpAddr, Vec<Vip>>,
    refused: BTreeMap<Vip, Refused>,
}

impl Screener {
    /// `services` less the VIPs `guard` refuses, and those, in VIP order:
    /// what [`Guard::screen`] gives for the same services.
    pub fn screen(&mut self, guard: &Guard, services: &ServiceMap) -> (ServiceMap, Vec<Refused>) {
        let recheck = match self.last.take() {
            Some((g, old)) if g == *guard => self.follow(&old, services),
            _ => self.rebuild(services),
        };
        for vip in recheck {
            match services.get(&vip) {
                Some(spec) => self.judge(guard, vip, spec),
                None => drop(self.refused.remove(&vip)),
            }
        }
        self.last = Some((guard.clone(), services.clone()));
        let mut kept = services.clone();
        for vip in self.refused.keys() {
            kept.remove(vip);
        }
        (kept, self.refused.values().cloned().collect())
    }

    /// Forgets everything and counts `services` anew: every VIP to screen.
    fn rebuild(&mut self, services: &ServiceMap) -> BTreeSet<Vip> {
        *self = Screener::default();
        let mut ignored = BTreeSet::new();
        for (vip, spec) in services {
            self.count(vip, spec, true, &mut ignored);
        }
        services.keys().copied().collect()
    }

    /// Counts what changed from `old` to `new`: the VIPs to screen again.
    fn follow(&mut self, old: &ServiceMap, new: &ServiceMap) -> BTreeSet<Vip> {
        let mut recheck = BTreeSet::new();
        let mut flipped = BTreeSet::new();
        for d in old.diff(new) {
            let (vip, gone, came) = match d {
                DiffItem::Add(v, s) => (v, None, Some(s)),
                DiffItem::Remove(v, s) => (v, Some(s), None),
                DiffItem::Update { old, new } => (old.0, Some(old.1), Some(new.1)),
            };
            if let Some(s) = gone {
                self.count(vip, s, false, &mut flipped);
            }
            if let Some(s) = came {
                self.count(vip, s, true, &mut flipped);
            }
            recheck.insert(*vip);
        }
        for ip in flipped {
            recheck.extend(self.vips_at.get(&ip).into_iter().flatten());
        }
        recheck
    }

    /// Adds (`on`) or takes away `vip` and its backends' addresses;
    /// `flipped` gets the addresses that became or stopped being a backend's.
    fn count(&mut self, vip: &Vip, spec: &ServiceSpec, on: bool, flipped: &mut BTreeSet<IpAddr>) {
        let at = vip.addr.ip().to_canonical();
        let vips = self.vips_at.entry(at).or_default();
        match (vips.binary_search(vip), on) {
            (Err(i), true) => vips.insert(i, *vip),
            (Ok(i), false) => drop(vips.remove(i)),
            _ => {}
        }
        if vips.is_empty() {
            self.vips_at.remove(&at);
        }
        for b in spec.backends.keys() {
            let ip = b.ip().to_canonical();
            let n = self.backend_ips.entry(ip).or_default();
            let was = *n > 0;
            *n = if on { *n + 1 } else { *n - 1 };
            if (*n > 0) != was {
                flipped.insert(ip);
            }
            if *n == 0 {
                self.backend_ips.remove(&ip);
            }
        }
    }

    fn judge(&mut self, guard: &Guard, vip: Vip, spec: &ServiceSpec) {
        let is_backend = |ip: &IpAddr| self.backend_ips.contains_key(ip);
        match guard.reason(&vip, spec.name.is_some(), is_backend) {
            Some(reason) => {
                let origin = spec.origin.clone();
                self.refused.insert(
                    vip,
                    Refused {
                        vip,
                        origin,
                        reason,
                    },
                );
            }
            None => drop(self.refused.remove(&vip)),
        }
    }
}

#[cfg(test)]
#[path = "screen_tests.rs"]
mod tests;
