//! Which connected UDP sockets are stale: the (VIP, backend) pairs a table
//! change removed. A backend whose weight went to 0 is still a member
//! (draining: its sockets stay), and a backend that left one VIP but stays in
//! another is stale only for the first.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use super::canonical;
use crate::{
    model::{Proto, Vip},
    plan::Applied,
};

/// The UDP (VIP, backend) pairs one table change removed: a backend that left
/// a UDP VIP, or every backend of a UDP VIP that is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaleUdp {
    /// canonical backend → canonical VIP addresses it left.
    by_backend: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
}

impl StaleUdp {
    /// Compares what the maps held before a reconcile with what they hold after.
    pub fn between(before: &Applied, after: &Applied) -> StaleUdp {
        let mut stale = StaleUdp::default();
        let kept = udp_pairs(after);
        for (vip, backend) in udp_pairs(before).difference(&kept) {
            stale.insert(*vip, *backend);
        }
        stale
    }

    /// `backend` left `vip` (both UDP socket addresses).
    pub fn insert(&mut self, vip: SocketAddr, backend: SocketAddr) {
        self.by_backend
            .entry(canonical(backend))
            .or_default()
            .insert(canonical(vip));
    }

    pub fn is_empty(&self) -> bool {
        self.by_backend.is_empty()
    }

    /// The backends to pass to [`super::destroy_connected_udp`].
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.by_backend.keys().copied().collect()
    }

    /// Whether a socket connected through `vip` to `backend` is stale.
    pub fn is_stale(&self, vip: SocketAddr, backend: SocketAddr) -> bool {
        self.by_backend
            .get(&canonical(backend))
            .is_some_and(|vips| vips.contains(&canonical(vip)))
    }
}

/// (VIP, backend) for every member (any weight) of every UDP service.
fn udp_pairs(a: &Applied) -> BTreeSet<(SocketAddr, SocketAddr)> {
    let mut out = BTreeSet::new();
    for (Vip { addr, proto }, svc) in &a.services {
        if *proto != Proto::Udp {
            continue;
        }
        for id in svc.members.keys() {
            if let Some(b) = a.backends.get(id) {
                out.insert((canonical(*addr), canonical(*b)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AppliedService;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn applied(services: &[(&str, Proto, &[&str])]) -> Applied {
        let mut a = Applied::default();
        let mut ids = BTreeMap::new();
        for (i, (vip, proto, backends)) in services.iter().enumerate() {
            let mut svc = AppliedService {
                id: i as u32 + 1,
                ..Default::default()
            };
            for b in *backends {
                let n = ids.len() as u32 + 1;
                let id = *ids.entry(sa(b)).or_insert(n);
                a.backends.insert(id, sa(b));
                svc.members.insert(id, 1);
            }
            a.services.insert(
                Vip {
                    addr: sa(vip),
                    proto: *proto,
                },
                svc,
            );
        }
        a
    }

    #[test]
    fn stale_pairs_are_per_vip_and_udp_only() {
        let before = applied(&[
            ("11.0.0.1:53", Proto::Udp, &["10.0.0.1:53", "10.0.0.2:53"]),
            ("11.0.0.2:53", Proto::Udp, &["10.0.0.1:53"]),
            ("11.0.0.3:53", Proto::Udp, &["10.0.0.3:53"]),
            ("11.0.0.4:80", Proto::Tcp, &["10.0.0.4:80"]),
        ]);
        let after = applied(&[
            ("11.0.0.1:53", Proto::Udp, &["10.0.0.2:53"]),
            ("11.0.0.2:53", Proto::Udp, &["10.0.0.1:53"]),
        ]);
        let s = StaleUdp::between(&before, &after);
        assert_eq!(s.backends(), vec![sa("10.0.0.1:53"), sa("10.0.0.3:53")]);
        assert!(s.is_stale(sa("11.0.0.1:53"), sa("10.0.0.1:53")));
        assert!(
            !s.is_stale(sa("11.0.0.2:53"), sa("10.0.0.1:53")),
            "still a member of the second VIP"
        );
        assert!(
            s.is_stale(sa("11.0.0.3:53"), sa("10.0.0.3:53")),
            "VIP removed"
        );
        assert!(
            s.is_stale(sa("[::ffff:11.0.0.3]:53"), sa("[::ffff:10.0.0.3]:53")),
            "v4-mapped forms"
        );
        assert!(!s.is_stale(sa("11.0.0.1:53"), sa("10.0.0.2:53")));
        assert!(StaleUdp::between(&after, &after).is_empty());
    }
}
