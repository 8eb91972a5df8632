//! Locality on the cluster: every node streams connects through one VIP
//! while one node's own backend stops answering its local clients (its SYNs
//! on `lo` dropped by nft in the node's namespace: the node and its other
//! clients are untouched, Marathon says nothing). Shared by the test and
//! `cargo xtask bench locality`.
use std::{thread, time::Duration};

use anyhow::{Context, Result};

use super::{Cluster, Curve, StreamSpec, backend_id, mono_ms};
use crate::sys;

/// The nft table [`Cluster::drop_local_syns`] adds in a node's namespace.
pub const LOCAL_DROP_TABLE: &str = "l4lb_cluster_local";

#[derive(Clone, Debug)]
pub struct LocalSpec {
    /// Whose local backend stops answering its local clients (None: nobody's).
    pub victim: Option<usize>,
    pub vip: usize,
    /// Streamed before the kill, and after it.
    pub before: Duration,
    pub after: Duration,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub bucket_ms: f64,
    pub stall_ms: f64,
}

impl LocalSpec {
    /// 2 s healthy, then node `victim`'s local backend dropped for 2 s; a
    /// connect every 5 ms from every node.
    pub fn new(victim: Option<usize>) -> LocalSpec {
        LocalSpec {
            victim,
            vip: 0,
            before: Duration::from_secs(2),
            after: Duration::from_secs(2),
            interval_ms: 5,
            timeout_ms: 1500,
            bucket_ms: 250.0,
            stall_ms: 900.0,
        }
    }
}

/// Per node, its stream's curve; origin = the kill (or the end of `before`).
#[derive(Debug)]
pub struct LocalRun {
    pub curves: Vec<(usize, Curve)>,
}

impl LocalRun {
    /// (to node `i`'s own backend, all) of node `i`'s connections in
    /// `[from, to)` ms from the origin that got a greeting.
    pub fn local_share(&self, i: usize, from: f64, to: f64) -> (u64, u64) {
        let curve = self.curve(i);
        let own = backend_id(i);
        let greeted: Vec<_> = curve
            .between(from, to)
            .filter_map(|c| c.backend.as_deref())
            .collect();
        let local = greeted.iter().filter(|b| **b == own).count() as u64;
        (local, greeted.len() as u64)
    }

    /// When node `i` sent its last connect to its own backend after the
    /// origin, in ms from it: the connects that reached it, or that failed
    /// or stalled (its dropped SYNs; the remote backends answer). None: none.
    pub fn last_local_ms(&self, i: usize) -> Option<f64> {
        let curve = self.curve(i);
        let own = backend_id(i);
        curve
            .between(0.0, f64::MAX)
            .filter(|c| {
                c.backend.as_deref() == Some(own.as_str())
                    || c.dur_ms > curve.stall_ms
                    || c.backend.is_none()
            })
            .map(|c| c.start_ms - curve.origin_ms)
            .reduce(f64::max)
    }

    pub fn curve(&self, i: usize) -> &Curve {
        &self
            .curves
            .iter()
            .find(|(n, _)| *n == i)
            .expect("a node of the run")
            .1
    }
}

impl Cluster {
    /// Drops the SYNs node `i`'s own clients send to its backend port of VIP
    /// `k` (they go over `lo`; the fabric's clients still reach it).
    pub fn drop_local_syns(&self, i: usize, k: usize) -> Result<()> {
        let (t, port) = (LOCAL_DROP_TABLE, self.spec.vips[k].backend_port);
        self.nft_local(
            i,
            &format!(
                "add table inet {t}; \
                 add chain inet {t} output {{ type filter hook output priority -300; policy accept; }}; \
                 add rule inet {t} output oifname \"lo\" tcp dport {port} tcp flags & (syn | ack) == syn counter drop"
            ),
        )
    }

    /// Removes what [`Cluster::drop_local_syns`] added.
    pub fn allow_local_syns(&self, i: usize) -> Result<()> {
        self.nft_local(i, &format!("delete table inet {LOCAL_DROP_TABLE}"))
    }

    /// SYNs [`Cluster::drop_local_syns`] dropped on node `i` so far.
    pub fn local_syns_dropped(&self, i: usize) -> Result<u64> {
        self.node(i)
            .sb
            .nft_packets("inet", LOCAL_DROP_TABLE, "output")
    }

    /// Every node streams to VIP `spec.vip`; after `before`, the victim's
    /// local backend is dropped (and stays so: [`Cluster::allow_local_syns`]).
    pub fn local_run(&self, spec: &LocalSpec) -> Result<LocalRun> {
        let vip = self.vip_addr(spec.vip);
        let sspec =
            StreamSpec::lasting(spec.before + spec.after, spec.interval_ms, spec.timeout_ms);
        let streams = (0..self.nodes().len())
            .map(|i| Ok((i, self.node(i).stream(vip, sspec)?)))
            .collect::<Result<Vec<_>>>()?;
        thread::sleep(spec.before);
        let t_kill = mono_ms();
        if let Some(v) = spec.victim {
            self.drop_local_syns(v, spec.vip)?;
        }
        let mut curves = vec![];
        for (i, s) in streams {
            let conns = s.finish()?;
            curves.push((i, Curve::new(conns, t_kill, spec.bucket_ms, spec.stall_ms)));
        }
        Ok(LocalRun { curves })
    }

    fn nft_local(&self, i: usize, script: &str) -> Result<()> {
        let ns = self.node(i).sb.netns_path();
        sys::run(sys::netns_command(&ns, "nft").arg(script))
            .map(drop)
            .with_context(|| format!("nft on node {i} (installed? cargo xtask setup)"))
    }
}
