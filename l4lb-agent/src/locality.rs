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
