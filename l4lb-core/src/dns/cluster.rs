//! Mesos-DNS's cluster records in the Mesos-DNS zone (`<d>`, `mesos` by
//! default), from the catalog's [`Cluster`] (the `--mesos` source only):
//! - masters: `leader.<d>` → the leader; `master.<d>` → the leader and every
//!   configured master; `master<N>.<d>` → each configured master in order,
//!   the leader at its place in the list, or after it when absent; SRV
//!   `_leader._tcp|_udp.<d>` → `leader.<d>.` on the leader's port;
//! - agents: `slave.<d>` → every agent, SRV `_slave._tcp.<d>` → `slave.<d>.`
//!   on each agent's port;
//! - frameworks: `<fw>.<d>` → the scheduler's host, SRV
//!   `_framework._tcp.<fw>.<d>` → `<fw>.<d>.` on its port (when known).
//!
//! Unlike Mesos-DNS, a framework cannot put its host under the names that
//! locate the cluster itself (`leader`, `master`, `master<N>`, `slave`,
//! `ns1`): any framework may pick its name, so such a framework is skipped.
use std::{collections::BTreeSet, net::SocketAddr};

use super::{names, records::ZoneBuilder};
use crate::model::Cluster;

/// Adds the cluster records of `c` to the Mesos-DNS zone.
pub(super) fn add_cluster(z: &mut ZoneBuilder, c: &Cluster) {
    if let Some(leader) = c.leader {
        add_masters(z, leader, &c.masters);
    }
    let slave = z.name("slave");
    let slave_srv = z.name("_slave._tcp");
    for agent in &c.agents {
        if let Some(slave) = &slave {
            z.add_addrs(slave, [agent.ip]);
            if let (Some(owner), Some(port)) = (&slave_srv, agent.port) {
                z.add_srv(owner, port, slave.clone());
            }
        }
    }
    for (name, at) in &c.frameworks {
        let Some(fw) = names::domain_frag(name).filter(|f| !is_reserved(f)) else {
            continue;
        };
        let Some(host) = z.name(&fw) else { continue };
        z.add_addrs(&host, [at.ip]);
        if let (Some(owner), Some(port)) = (z.name(&format!("_framework._tcp.{fw}")), at.port) {
            z.add_srv(&owner, port, host);
        }
    }
}

/// The names that locate the cluster: no framework may add to them.
fn is_reserved(fw: &str) -> bool {
    let numbered = fw
        .strip_prefix("master")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    numbered || ["leader", "master", "slave", "ns1"].contains(&fw)
}

/// Mesos-DNS's `masterRecord`. A configured master whose address is
/// already under `master.<d>` (but is not the leader itself) is a duplicate
/// and gets no number; the leader is numbered once.
fn add_masters(z: &mut ZoneBuilder, leader: SocketAddr, masters: &[SocketAddr]) {
    let (Some(leader_name), Some(all)) = (z.name("leader"), z.name("master")) else {
        return;
    };
    z.add_addrs(&leader_name, [leader.ip()]);
    z.add_addrs(&all, [leader.ip()]);
    for proto in ["tcp", "udp"] {
        if let Some(owner) = z.name(&format!("_leader._{proto}")) {
            z.add_srv(&owner, leader.port(), leader_name.clone());
        }
    }
    let mut listed = BTreeSet::from([leader.ip()]);
    let mut next = 0;
    let mut leader_numbered = false;
    for m in masters {
        let is_leader = *m == leader;
        if (!is_leader && !listed.insert(m.ip())) || (is_leader && leader_numbered) {
            continue;
        }
        add_numbered(z, next, m);
        next += 1;
        leader_numbered |= is_leader;
    }
    if !leader_numbered {
        add_numbered(z, next, &leader);
    }
    z.add_addrs(&all, masters.iter().map(SocketAddr::ip));
}

fn add_numbered(z: &mut ZoneBuilder, n: usize, at: &SocketAddr) {
    if let Some(name) = z.name(&format!("master{n}")) {
        z.add_addrs(&name, [at.ip()]);
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
