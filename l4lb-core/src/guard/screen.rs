//! [`Screener`]: [`Guard::screen`] kept between catalogs. The screen of
//! every VIP depends on the guard, on the VIP's own service, and on whether
//! some service has a backend on the VIP's address. With the same guard as
//! last time, only the VIPs whose service changed (a diff of persistent
//! maps) and those on an address that became or stopped being a backend's
//! are screened again; a new guard (a node address came or went) screens
//! everything.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
};

use imbl::ordmap::DiffItem;

use super::{Guard, Refused};
use crate::model::{Proto, ServiceMap, ServiceSpec, Vip};

#[derive(Debug, Default)]
pub struct Screener {
    /// The guard and the services of the last screen.
    last: Option<(Guard, ServiceMap)>,
    /// Canonical backend address → how many services' backends are on it.
    backend_ips: HashMap<IpAddr, usize>,
    refused: BTreeMap<Vip, Refused>,
}

impl Screener {
    /// `services` less the VIPs `guard` refuses, and those, in VIP order:
    /// what [`Guard::screen`] gives for the same services.
    pub fn screen(&mut self, guard: &Guard, services: &ServiceMap) -> (ServiceMap, Vec<Refused>) {
        match self.last.take() {
            Some((g, old)) if g == *guard => {
                for vip in self.follow(&old, services) {
                    match services.get(&vip) {
                        Some(spec) => self.judge(guard, vip, spec),
                        None => drop(self.refused.remove(&vip)),
                    }
                }
            }
            _ => {
                self.rebuild(services);
                for (vip, spec) in services {
                    self.judge(guard, *vip, spec);
                }
            }
        }
        self.last = Some((guard.clone(), services.clone()));
        let mut kept = services.clone();
        for vip in self.refused.keys() {
            kept.remove(vip);
        }
        (kept, self.refused.values().cloned().collect())
    }

    /// Forgets everything and counts `services` anew (every VIP is then
    /// screened).
    fn rebuild(&mut self, services: &ServiceMap) {
        *self = Screener::default();
        let mut ignored = BTreeSet::new();
        for spec in services.values() {
            self.count(spec, true, &mut ignored);
        }
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
                self.count(s, false, &mut flipped);
            }
            if let Some(s) = came {
                self.count(s, true, &mut flipped);
            }
            recheck.insert(*vip);
        }
        for ip in flipped {
            recheck.extend(vips_on(new, ip));
        }
        recheck
    }

    /// Adds (`on`) or takes away `spec`'s backends' addresses; `flipped`
    /// gets the addresses that became or stopped being a backend's.
    fn count(&mut self, spec: &ServiceSpec, on: bool, flipped: &mut BTreeSet<IpAddr>) {
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

/// The VIPs of `services` on the canonical address `ip`, in either
/// spelling of it: found by range in VIP order (address first), where an
/// index by address was ~220 B a VIP (2.25 MB held at 10,000 named VIPs).
fn vips_on(services: &ServiceMap, ip: IpAddr) -> impl Iterator<Item = Vip> + '_ {
    let mapped = match ip {
        IpAddr::V4(a) => Some(IpAddr::V6(a.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    let at = move |spelling: IpAddr| {
        let first = Vip {
            addr: SocketAddr::new(spelling, 0),
            proto: Proto::Tcp,
        };
        services
            .range(first..)
            .take_while(move |(vip, _)| vip.addr.ip() == spelling)
            .map(|(vip, _)| *vip)
    };
    at(ip).chain(mapped.into_iter().flat_map(at))
}

#[cfg(test)]
#[path = "screen_tests.rs"]
mod tests;
