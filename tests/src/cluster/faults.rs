//! Ways a node dies, and comes back: its link down on the bridge (nothing
//! in or out), or its SYNs dropped by nft in its own namespace (the node is
//! there, nothing new is accepted); and what the control plane says about
//! its tasks.
use anyhow::{Context, Result};

use super::{Cluster, fabric};
use crate::sys;

/// The nft table `drop_syns` adds in a node's namespace.
pub const SYN_DROP_TABLE: &str = "l4lb_cluster_fault";
/// Its chain (input hook), whose rule counts what it dropped.
pub const SYN_DROP_CHAIN: &str = "input";

impl Cluster {
    /// Node `i`'s link down on the bridge side.
    pub fn link_down(&self, i: usize) -> Result<()> {
        self.fabric.set_link(i, false)
    }

    /// Node `i`'s link up again.
    pub fn link_up(&self, i: usize) -> Result<()> {
        self.fabric.set_link(i, true)
    }

    /// Drops every TCP SYN that reaches node `i` over the fabric (nft, in
    /// the node's own netns; its local clients still reach it).
    pub fn drop_syns(&self, i: usize) -> Result<()> {
        let (t, c) = (SYN_DROP_TABLE, SYN_DROP_CHAIN);
        let script = format!(
            "add table inet {t}; \
             add chain inet {t} {c} {{ type filter hook input priority -300; policy accept; }}; \
             add rule inet {t} {c} iifname \"{dev}\" tcp flags & (syn | ack) == syn counter drop",
            dev = fabric::NODE_DEV
        );
        self.nft(i, &script)
    }

    /// Removes what [`Cluster::drop_syns`] added.
    pub fn allow_syns(&self, i: usize) -> Result<()> {
        self.nft(i, &format!("delete table inet {SYN_DROP_TABLE}"))
    }

    /// SYNs [`Cluster::drop_syns`] dropped on node `i` so far.
    pub fn syns_dropped(&self, i: usize) -> Result<u64> {
        self.node(i)
            .sb
            .nft_packets("inet", SYN_DROP_TABLE, SYN_DROP_CHAIN)
    }

    /// The ids of the Marathon tasks running on node `i`.
    pub fn tasks_on(&self, i: usize) -> Result<Vec<String>> {
        let host = fabric::node_ip4(i);
        let apps = self.marathon.apps()?;
        let tasks = apps["apps"]
            .as_array()
            .context("fake Marathon: no apps")?
            .iter()
            .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default());
        Ok(tasks
            .filter(|t| t["host"] == host)
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Puts every task of node `i` in Mesos state `state` (TASK_UNREACHABLE:
    /// what Marathon reports once the agent is lost); how many there were.
    pub fn mark_tasks(&self, i: usize, state: &str) -> Result<usize> {
        let ids = self.tasks_on(i)?;
        for id in &ids {
            self.marathon.set_task_state(id, state)?;
        }
        Ok(ids.len())
    }

    fn nft(&self, i: usize, script: &str) -> Result<()> {
        let ns = self.node(i).sb.netns_path();
        sys::run(sys::netns_command(&ns, "nft").arg(script))
            .map(drop)
            .with_context(|| format!("nft on node {i} (installed? cargo xtask setup)"))
    }
}
