//! Which backends are local to this node (`--locality`, `--node-ip`,
//! `--zone`), and the per-service set the agent writes to `L4LB_LOCAL` for the
//! connect hooks (`l4lb_common::LocalSet`). Pure: the node's addresses and
//! the backends' zones are handed in.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use l4lb_common::{
    CLASS_NODE, CLASS_REMOTE, CLASS_ZONE, LOCAL_MAX, LOCALITY_NODE, LOCALITY_OFF, LOCALITY_ZONE,
    LocalSet,
};

/// `--locality`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Off,
    Node,
    Zone,
}

impl Mode {
    pub fn raw(self) -> u32 {
        match self {
            Mode::Off => LOCALITY_OFF,
            Mode::Node => LOCALITY_NODE,
            Mode::Zone => LOCALITY_ZONE,
        }
    }

    pub fn from_raw(v: u32) -> Mode {
        match v {
            LOCALITY_NODE => Mode::Node,
            LOCALITY_ZONE => Mode::Zone,
            _ => Mode::Off,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Node => "node",
            Mode::Zone => "zone",
        }
    }

    /// The farthest class still preferred (None: no preference).
    fn threshold(self) -> Option<u8> {
        match self {
            Mode::Off => None,
            Mode::Node => Some(CLASS_NODE),
            Mode::Zone => Some(CLASS_ZONE),
        }
    }
}

/// A class's name, as `vips` and `/metrics` print it.
pub fn class_name(class: u8) -> &'static str {
    match class {
        CLASS_NODE => "node",
        CLASS_ZONE => "zone",
        _ => "remote",
    }
}

/// What makes a backend local: this node's addresses, its zone, and each
/// backend address's zone as the control plane reports its task's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub ips: BTreeSet<IpAddr>,
    pub zone: Option<String>,
    /// Backend (task or agent) address → zone.
    pub zones: BTreeMap<IpAddr, String>,
}

impl NodeFacts {
    /// A backend address's class for this node.
    pub fn class(&self, ip: IpAddr) -> u8 {
        let ip = ip.to_canonical();
        if self.ips.contains(&ip) {
            return CLASS_NODE;
        }
        match (&self.zone, self.zones.get(&ip)) {
            (Some(mine), Some(theirs)) if mine == theirs => CLASS_ZONE,
            _ => CLASS_REMOTE,
        }
    }
}

/// One member of a service: backend id, weight, class for this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u32,
    pub weight: u32,
    pub class: u8,
}

/// The set to write for a service at `revision` (None: delete any). Weighted
/// members at or above the mode's class are listed, closest first, then by
/// id, at most [`LOCAL_MAX`]; `active` only when some weighted member is
/// farther than the closest listed (otherwise there is nothing to prefer, and
/// the set is kept for the CLI only). Weight-0 members are never listed:
/// they take no new connections.
pub fn local_set(mode: Mode, revision: u32, members: &[Member]) -> Option<LocalSet> {
    let threshold = mode.threshold()?;
    let mut near: Vec<&Member> = members
        .iter()
        .filter(|m| m.weight > 0 && m.class >= threshold)
        .collect();
    if near.is_empty() {
        return None;
    }
    near.sort_by_key(|m| (std::cmp::Reverse(m.class), m.id));
    let closest = near[0].class;
    let active = members.iter().any(|m| m.weight > 0 && m.class < closest);
    let mut set = LocalSet {
        revision,
        active: active as u8,
        ..Default::default()
    };
    for (i, m) in near.iter().take(LOCAL_MAX).enumerate() {
        set.ids[i] = m.id;
        set.weights[i] = m.weight.min(u32::from(u8::MAX)) as u8;
        set.classes[i] = m.class;
        set.count += 1;
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u32, weight: u32, class: u8) -> Member {
        Member { id, weight, class }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn node_addresses_then_zone_then_remote() {
        let facts = NodeFacts {
            ips: [ip("198.19.0.1"), ip("fd00::1")].into(),
            zone: Some("us-west-2a".into()),
            zones: [
                (ip("198.19.0.2"), "us-west-2a".to_string()),
                (ip("198.19.0.3"), "us-west-2b".to_string()),
            ]
            .into(),
        };
        assert_eq!(facts.class(ip("198.19.0.1")), CLASS_NODE);
        assert_eq!(facts.class(ip("fd00::1")), CLASS_NODE);
        // An IPv4-mapped form is the same address.
        assert_eq!(facts.class(ip("::ffff:198.19.0.1")), CLASS_NODE);
        assert_eq!(facts.class(ip("198.19.0.2")), CLASS_ZONE);
        assert_eq!(facts.class(ip("198.19.0.3")), CLASS_REMOTE);
        assert_eq!(facts.class(ip("198.19.0.4")), CLASS_REMOTE);
        // No zone of our own: nothing is zone-local.
        let no_zone = NodeFacts {
            zone: None,
            ..facts
        };
        assert_eq!(no_zone.class(ip("198.19.0.2")), CLASS_REMOTE);
    }

    #[test]
    fn off_writes_nothing_and_no_local_member_writes_nothing() {
        let members = [m(1, 1, CLASS_NODE), m(2, 1, CLASS_REMOTE)];
        assert_eq!(local_set(Mode::Off, 3, &members), None);
        let remote = [m(1, 1, CLASS_REMOTE), m(2, 1, CLASS_ZONE)];
        assert_eq!(local_set(Mode::Node, 3, &remote), None);
    }

    #[test]
    fn a_local_member_among_remote_ones_is_preferred() {
        let members = [
            m(5, 1, CLASS_REMOTE),
            m(9, 3, CLASS_NODE),
            m(7, 1, CLASS_ZONE),
        ];
        let s = local_set(Mode::Node, 42, &members).unwrap();
        assert_eq!((s.revision, s.count, s.active), (42, 1, 1));
        assert_eq!((s.ids[0], s.weights[0], s.classes[0]), (9, 3, CLASS_NODE));
        // Zone mode lists both, node first.
        let s = local_set(Mode::Zone, 42, &members).unwrap();
        assert_eq!((s.count, s.active), (2, 1));
        assert_eq!(&s.ids[..2], &[9, 7]);
        assert_eq!(&s.classes[..2], &[CLASS_NODE, CLASS_ZONE]);
    }

    #[test]
    fn all_local_is_kept_for_display_but_not_preferred() {
        let members = [m(1, 1, CLASS_NODE), m(2, 1, CLASS_NODE)];
        let s = local_set(Mode::Node, 1, &members).unwrap();
        assert_eq!((s.count, s.active), (2, 0));
        // Node and zone members, nothing farther: node over zone still counts.
        let mixed = [m(1, 1, CLASS_NODE), m(2, 1, CLASS_ZONE)];
        assert_eq!(local_set(Mode::Zone, 1, &mixed).unwrap().active, 1);
        // A remote member of weight 0 is not somewhere to send new connections.
        let drained = [m(1, 1, CLASS_NODE), m(2, 0, CLASS_REMOTE)];
        assert_eq!(local_set(Mode::Node, 1, &drained).unwrap().active, 0);
    }

    #[test]
    fn weight_zero_is_never_listed_and_the_set_is_bounded() {
        let members = [m(1, 0, CLASS_NODE), m(2, 1, CLASS_REMOTE)];
        assert_eq!(local_set(Mode::Node, 1, &members), None);
        let many: Vec<Member> = (1..=20)
            .map(|i| m(i, 1, CLASS_NODE))
            .chain([m(100, 1, CLASS_REMOTE)])
            .collect();
        let s = local_set(Mode::Node, 1, &many).unwrap();
        assert_eq!(s.count as usize, LOCAL_MAX);
        assert_eq!(&s.ids[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn mode_round_trips() {
        for mode in [Mode::Off, Mode::Node, Mode::Zone] {
            assert_eq!(Mode::from_raw(mode.raw()), mode);
        }
        assert_eq!(Mode::from_raw(0), Mode::Off);
        assert_eq!(class_name(CLASS_ZONE), "zone");
    }
}
