//! Which connected UDP sockets are stale: the (VIP, backend) pairs a table
//! change removed. A backend whose weight went to 0 is still a member
//! (draining: its sockets stay), and a backend that left one VIP but stays in
//! another is stale only for the first.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr, SocketAddrV6},
};

use imbl::ordmap::DiffItem;

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

    /// [`between`](StaleUdp::between) for `after` made by a plan from
    /// `before` (the plan's `next`): only the VIP addresses of services the
    /// plan changed or removed are compared (a diff of persistent maps), as
    /// every other service and the backends it names are as they were.
    pub fn after_plan(before: &Applied, after: &Applied) -> StaleUdp {
        let mut at = BTreeSet::new();
        for d in before.services.diff(&after.services) {
            match d {
                DiffItem::Remove(v, _) | DiffItem::Update { old: (v, _), .. } => {
                    if v.proto == Proto::Udp {
                        at.insert(canonical(v.addr));
                    }
                }
                DiffItem::Add(..) => {}
            }
        }
        let mut stale = StaleUdp::default();
        for vip in at {
            let kept = backends_at(after, vip);
            for backend in backends_at(before, vip).difference(&kept) {
                stale.insert(vip, *backend);
            }
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

/// The (canonical) backends of every member of the UDP services of `a` on
/// the canonical address `vip`, under either spelling (IPv4 or IPv4-mapped).
fn backends_at(a: &Applied, vip: SocketAddr) -> BTreeSet<SocketAddr> {
    let v6 = match vip.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let at = |addr| Vip {
        addr,
        proto: Proto::Tcp,
    };
    let v6_range = at(SocketAddrV6::new(v6, 0, 0, 0).into())..=Vip {
        addr: SocketAddrV6::new(v6, u16::MAX, u32::MAX, u32::MAX).into(),
        proto: Proto::Udp,
    };
    let v4 = vip.is_ipv4().then(|| {
        let key = Vip {
            addr: vip,
            proto: Proto::Udp,
        };
        a.services.get(&key).map(|s| (key, s))
    });
    let v6 = a.services.range(v6_range).map(|(k, s)| (*k, s));
    let mut out = BTreeSet::new();
    for (k, svc) in v4.flatten().into_iter().chain(v6) {
        if k.proto != Proto::Udp || canonical(k.addr) != vip {
            continue;
        }
        let members = svc.members.keys().filter_map(|id| a.backends.get(id));
        out.extend(members.map(|b| canonical(*b)));
    }
    out
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

    /// A plan's `before` and `next` over random UDP and TCP services (IPv4,
    /// IPv4-mapped and IPv6 VIPs, shared backends): comparing the changed
    /// VIP addresses finds the pairs comparing everything finds.
    #[test]
    fn after_a_plan_the_changed_vips_give_every_stale_pair() {
        use rand::{Rng, SeedableRng, rngs::StdRng};

        use crate::{
            model::{DesiredState, ServiceSpec},
            plan::{Capacity, plan},
        };
        let vip = |i: u8, proto| {
            let addr = match i % 3 {
                0 => sa(&format!("11.0.0.{}:53", i % 4)),
                1 => sa(&format!("[::ffff:11.0.0.{}]:53", i % 4)),
                _ => sa(&format!("[fd01::{}]:53", i % 4)),
            };
            Vip { addr, proto }
        };
        let (mut found, mut stale_pairs) = (0, 0);
        for seed in 0..100 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut applied, mut desired) = (Applied::default(), DesiredState::default());
            for _ in 0..30 {
                for _ in 0..rng.random_range(1..4) {
                    let proto = if rng.random_bool(0.7) {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    };
                    let v = vip(rng.random_range(0..12), proto);
                    let v6 = v.addr.is_ipv6() && canonical(v.addr) == v.addr;
                    let backends = (0..rng.random_range(0..4))
                        .map(|_| {
                            let i = rng.random_range(1..5);
                            let b = if v6 {
                                format!("[fd00::{i}]:53")
                            } else {
                                format!("10.0.0.{i}:53")
                            };
                            (sa(&b), rng.random_range(0..2))
                        })
                        .collect();
                    match rng.random_bool(0.3) {
                        true => drop(desired.services.remove(&v)),
                        false => drop(desired.services.insert(
                            v,
                            ServiceSpec {
                                backends,
                                ..Default::default()
                            },
                        )),
                    }
                }
                let next = plan(&applied, &desired, Capacity::default()).next;
                let want = StaleUdp::between(&applied, &next);
                assert_eq!(StaleUdp::after_plan(&applied, &next), want, "seed {seed}");
                found += usize::from(!want.is_empty());
                stale_pairs += want.by_backend.values().map(BTreeSet::len).sum::<usize>();
                applied = next;
            }
        }
        assert!(found > 300 && stale_pairs > 500, "{found} {stale_pairs}");
    }
}
