//! `--locality`: after each apply, every service's backends local to this
//! node (`l4lb_core::locality`) are written to `L4LB_LOCAL` for the table
//! revision that serves, and the sets of services gone are deleted.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use l4lb_common::LocalSet;
use l4lb_core::locality::{Member, Mode, NodeFacts, local_set};
use tracing::{info, warn};

use crate::{datapath::Maps, model::Catalog, plan::Applied};

/// `--locality` as a flag value. The variants carry no doc comments: clap
/// would list them in `--help`, and the flag's help says what each does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalityFlag {
    #[default]
    Off,
    Node,
    Zone,
}

impl From<LocalityFlag> for Mode {
    fn from(f: LocalityFlag) -> Mode {
        match f {
            LocalityFlag::Off => Mode::Off,
            LocalityFlag::Node => Mode::Node,
            LocalityFlag::Zone => Mode::Zone,
        }
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct LocalityArgs {
    /// Prefer backends close to this node at TCP connect() (under `--lb-policy
    /// p2c`): `node` (on one of this node's addresses), `zone` (node first,
    /// then the backends whose task runs in `--zone`), or `off`. A preferred
    /// backend keeps new connections while it is up for this node and its
    /// cost is within 4× that of the cheaper of two random backends; past
    /// that, or when it is down or suspect, connections spill to the rest.
    /// Off by default: this node sees only its own connections to a local
    /// backend, not what other nodes send it, so a busy client node can load
    /// its local backend up to 4× an average one: a choice for the operator
    /// who knows where clients run.
    #[arg(long, value_enum, default_value_t = LocalityFlag::Off)]
    pub locality: LocalityFlag,
    /// An address of this node, for `--locality`: a backend on it is
    /// node-local (repeatable, IPv4 or IPv6). Default: every address on the
    /// interfaces of the agent's network namespace, read at each apply.
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<IpAddr>,
    /// This node's zone (fault domain), for `--locality zone`: a backend whose
    /// task the control plane places in the same zone is zone-local.
    #[arg(long, value_name = "NAME")]
    pub zone: Option<String>,
}

/// The local sets this agent wrote, and what it needs to compute them.
pub struct Locality {
    mode: Mode,
    fixed_ips: Option<BTreeSet<IpAddr>>,
    zone: Option<String>,
    /// Backend address → zone, from the last catalog (`--locality zone`).
    zones: BTreeMap<IpAddr, String>,
    /// Service id → the set in the map; None until read from the map once.
    written: Option<HashMap<u32, LocalSet>>,
}

impl Locality {
    pub fn new(args: &LocalityArgs) -> Locality {
        if args.locality == LocalityFlag::Zone && args.zone.is_none() {
            warn!(
                "--locality zone without --zone: no backend is zone-local, only node-local ones are preferred"
            );
        }
        Locality {
            mode: args.locality.into(),
            fixed_ips: (!args.node_ips.is_empty())
                .then(|| args.node_ips.iter().map(|ip| ip.to_canonical()).collect()),
            zone: args.zone.clone(),
            zones: BTreeMap::new(),
            written: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes the backends' zones from a catalog's tasks (zone mode only).
    pub fn learn(&mut self, catalog: &Catalog) {
        if self.mode != Mode::Zone {
            return;
        }
        self.zones = zones_of(catalog);
    }

    fn facts(&self) -> NodeFacts {
        let ips = match &self.fixed_ips {
            Some(ips) => ips.clone(),
            None => match crate::node::addresses() {
                Ok(a) => a.into_iter().map(|ip| ip.to_canonical()).collect(),
                Err(e) => {
                    warn!("locality: cannot list the node's addresses: {e}");
                    BTreeSet::new()
                }
            },
        };
        NodeFacts {
            ips,
            zone: self.zone.clone(),
            zones: self.zones.clone(),
        }
    }

    /// Writes the sets `applied` (the table that serves) calls for and
    /// deletes the others; a failed write is retried at the next apply.
    pub fn sync(&mut self, applied: &Applied, maps: &mut Maps) {
        let want = match self.mode {
            Mode::Off => HashMap::new(),
            mode => wanted(applied, &self.facts(), mode),
        };
        let written = self.written.get_or_insert_with(|| {
            let ids = maps.local_set_ids();
            if let Err(e) = maps.set_locality_mode(self.mode) {
                warn!("locality: cannot record the mode: {e:#}");
            }
            ids.into_iter()
                .filter_map(|id| Some((id, maps.local_set(id)?)))
                .collect()
        });
        let (mut put, mut del, mut errors) = (0, 0, 0);
        for (id, set) in &want {
            if written.get(id) == Some(set) {
                continue;
            }
            match maps.put_local_set(*id, *set) {
                Ok(()) => {
                    written.insert(*id, *set);
                    put += 1;
                }
                Err(e) => {
                    errors += 1;
                    warn!(service_id = id, "locality: writing the local set: {e:#}");
                }
            }
        }
        let gone: Vec<u32> = written
            .keys()
            .filter(|id| !want.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            match maps.del_local_set(id) {
                Ok(()) => {
                    written.remove(&id);
                    del += 1;
                }
                Err(e) => {
                    errors += 1;
                    warn!(service_id = id, "locality: deleting the local set: {e:#}");
                }
            }
        }
        if put + del + errors > 0 {
            let active = want.values().filter(|s| s.active != 0).count();
            info!(
                mode = self.mode.name(),
                written = put,
                deleted = del,
                errors,
                preferring = active,
                "local sets updated"
            );
        }
    }
}

/// Each service's local set for `facts` (services with none are absent).
pub fn wanted(applied: &Applied, facts: &NodeFacts, mode: Mode) -> HashMap<u32, LocalSet> {
    let mut out = HashMap::new();
    for svc in applied.services.values() {
        let members: Vec<Member> = svc
            .members
            .iter()
            .filter_map(|(id, w)| {
                let addr = applied.backends.get(id)?;
                Some(Member {
                    id: *id,
                    weight: *w,
                    class: facts.class(addr.ip()),
                })
            })
            .collect();
        if let Some(set) = local_set(mode, svc.revision, &members) {
            out.insert(svc.id, set);
        }
    }
    out
}

/// Task and agent address → the task's zone, from a catalog.
fn zones_of(catalog: &Catalog) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for t in &catalog.tasks {
        let Some(zone) = t.zone.as_deref() else {
            continue;
        };
        for ip in t.task_ips.iter().chain(t.agent_ip.as_ref()) {
            out.insert(ip.to_canonical(), zone.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::Arc};

    use l4lb_common::{CLASS_NODE, CLASS_ZONE};

    use super::*;
    use crate::{
        model::{Proto, TaskRecord, Vip},
        plan::AppliedService,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Service 1 (revision 7): backends 10 (198.19.0.1, this node) and 11
    /// (198.19.0.2); service 2: backend 11 alone.
    fn applied() -> Applied {
        let mut a = Applied::default();
        a.backends
            .insert(10, SocketAddr::new(ip("198.19.0.1"), 7000));
        a.backends
            .insert(11, SocketAddr::new(ip("198.19.0.2"), 7000));
        let svc = |id, revision, members: &[(u32, u32)]| AppliedService {
            id,
            revision,
            slot_base: 0,
            slot_count: 251,
            backends: members.iter().filter(|(_, w)| *w > 0).count() as u32,
            members: members.iter().copied().collect(),
            stale: false,
        };
        let vip = |port| Vip {
            addr: SocketAddr::new(ip("198.18.0.10"), port),
            proto: Proto::Tcp,
        };
        a.services.insert(vip(80), svc(1, 7, &[(10, 1), (11, 1)]));
        a.services.insert(vip(81), svc(2, 3, &[(11, 1)]));
        a
    }

    #[test]
    fn each_service_gets_the_set_of_its_revision() {
        let facts = NodeFacts {
            ips: [ip("198.19.0.1")].into(),
            ..Default::default()
        };
        let want = wanted(&applied(), &facts, Mode::Node);
        assert_eq!(want.len(), 1, "service 2 has no local backend");
        let s = want[&1];
        assert_eq!((s.revision, s.count, s.active), (7, 1, 1));
        assert_eq!((s.ids[0], s.classes[0]), (10, CLASS_NODE));
        // In zone mode a backend in our zone counts too.
        let facts = NodeFacts {
            zone: Some("a".into()),
            zones: [(ip("198.19.0.2"), "a".to_string())].into(),
            ..facts
        };
        let want = wanted(&applied(), &facts, Mode::Zone);
        assert_eq!(want[&1].count, 2);
        assert_eq!(want[&1].active, 1, "node-local before zone-local");
        assert_eq!(want[&2].classes[0], CLASS_ZONE);
        assert_eq!(want[&2].active, 0);
    }

    #[test]
    fn zones_come_from_task_and_agent_addresses() {
        let task = |agent: &str, own: &str, zone: Option<&str>| {
            Arc::new(TaskRecord {
                agent_ip: Some(ip(agent)),
                task_ips: [ip(own)].into(),
                zone: zone.map(Into::into),
                ..Default::default()
            })
        };
        let catalog = Catalog {
            tasks: vec![
                task("198.19.0.1", "9.0.0.1", Some("a")),
                task("198.19.0.2", "9.0.0.2", None),
            ],
            ..Default::default()
        };
        let z = zones_of(&catalog);
        assert_eq!(z.get(&ip("198.19.0.1")).map(String::as_str), Some("a"));
        assert_eq!(z.get(&ip("9.0.0.1")).map(String::as_str), Some("a"));
        assert!(!z.contains_key(&ip("198.19.0.2")));
        assert_eq!(z.len(), 2);
    }

    #[test]
    fn the_flags_parse_into_a_locality() {
        let args = LocalityArgs {
            locality: LocalityFlag::Zone,
            node_ips: vec![ip("::ffff:198.19.0.1")],
            zone: Some("a".into()),
        };
        let l = Locality::new(&args);
        assert_eq!(l.mode(), Mode::Zone);
        // Given addresses are used as they are, canonical.
        assert_eq!(l.facts().ips, [ip("198.19.0.1")].into());
        assert_eq!(Locality::new(&LocalityArgs::default()).mode(), Mode::Off);
    }
}
