//! One node death, measured: client nodes stream paced connects through a
//! VIP, the victim's link goes down (or its SYNs are dropped), Marathon
//! optionally marks its tasks unreachable some time later, and each client's
//! whole curve is kept. The test and `cargo xtask bench failover` share it;
//! without the event it measures what the nodes do on their own.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{Cluster, Curve, StreamSpec, mono_ms};

/// How the victim dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Its link down on the bridge.
    Link,
    /// Its incoming SYNs dropped (nft in its netns).
    Syns,
}

#[derive(Clone, Debug)]
pub struct DeathSpec {
    pub victim: usize,
    /// Nodes that stream connects (not the victim).
    pub clients: Vec<usize>,
    /// Which VIP of the cluster's spec.
    pub vip: usize,
    pub kill: Kill,
    /// Healthy stretch streamed before the kill.
    pub before: Duration,
    /// When Marathon marks the victim's tasks TASK_UNREACHABLE, after the
    /// kill; None: it never does.
    pub event_after: Option<Duration>,
    /// Streamed after the event (or after the kill, without one).
    pub after: Duration,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub bucket_ms: f64,
    pub stall_ms: f64,
}

impl DeathSpec {
    /// Link down, the event 1.5 s later, 10 ms between connects.
    pub fn new(victim: usize, clients: &[usize]) -> DeathSpec {
        DeathSpec {
            victim,
            clients: clients.to_vec(),
            vip: 0,
            kill: Kill::Link,
            before: Duration::from_millis(1500),
            event_after: Some(Duration::from_millis(1500)),
            after: Duration::from_secs(3),
            interval_ms: 10,
            timeout_ms: 1500,
            bucket_ms: 250.0,
            // Greeted only after this long: through a retransmitted SYN
            // (the first is sent after 1 s).
            stall_ms: 900.0,
        }
    }
}

/// What one death looked like. Times are ms from the kill.
#[derive(Debug)]
pub struct DeathRun {
    /// When the event was sent, if it was.
    pub event_ms: Option<f64>,
    /// Per client: when its agent was seen without the victim's backend
    /// (polled every 20 ms, so at most that late); None without the event.
    pub applied_ms: Vec<Option<f64>>,
    /// Per client, in `clients` order; origin = the kill.
    pub curves: Vec<(usize, Curve)>,
}

impl Cluster {
    /// Runs `spec` once. The victim stays dead: [`Cluster::revive`] it
    /// before another run.
    pub fn node_death(&self, spec: &DeathSpec) -> Result<DeathRun> {
        if spec.clients.is_empty() || spec.clients.contains(&spec.victim) {
            bail!(
                "clients {:?} must be other nodes than the victim {}",
                spec.clients,
                spec.victim
            );
        }
        let vip = self.vip_addr(spec.vip);
        let event = spec.event_after.unwrap_or_default();
        let run = spec.before + event + spec.after;
        let sspec = StreamSpec::lasting(run, spec.interval_ms, spec.timeout_ms);
        let streams = spec
            .clients
            .iter()
            .map(|&i| self.node(i).stream(vip, sspec))
            .collect::<Result<Vec<_>>>()?;
        thread::sleep(spec.before);
        let t_kill = mono_ms();
        match spec.kill {
            Kill::Link => self.link_down(spec.victim)?,
            Kill::Syns => self.drop_syns(spec.victim)?,
        }
        let mut applied_ms = vec![None; spec.clients.len()];
        let mut event_ms = None;
        if let Some(after) = spec.event_after {
            thread::sleep(after);
            event_ms = Some(mono_ms() - t_kill);
            self.mark_tasks(spec.victim, "TASK_UNREACHABLE")?;
            let live: Vec<usize> = (0..self.nodes().len())
                .filter(|&i| i != spec.victim)
                .collect();
            let seen =
                self.wait_backends(spec.vip, &spec.clients, &live, Duration::from_secs(10))?;
            applied_ms = seen.into_iter().map(|t| Some(t - t_kill)).collect();
        }
        let mut curves = vec![];
        for (&i, s) in spec.clients.iter().zip(streams) {
            let conns = s.finish()?;
            curves.push((i, Curve::new(conns, t_kill, spec.bucket_ms, spec.stall_ms)));
        }
        Ok(DeathRun {
            event_ms,
            applied_ms,
            curves,
        })
    }

    /// Undoes a [`Cluster::node_death`]: the victim's link or SYNs back,
    /// its tasks TASK_RUNNING, and every node listing every backend and
    /// reaching the victim again (bounded by `bound`).
    pub fn revive(&self, victim: usize, kill: Kill, bound: Duration) -> Result<()> {
        let deadline = Instant::now() + bound;
        match kill {
            Kill::Link => self.link_up(victim)?,
            Kill::Syns => self.allow_syns(victim)?,
        }
        for id in self.tasks_on(victim)? {
            self.marathon.set_task_state(&id, "TASK_RUNNING")?;
        }
        let all: Vec<usize> = (0..self.nodes().len()).collect();
        for k in 0..self.spec.vips.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_backends(k, &all, &all, left)?;
        }
        let target = self.spec.vips[0].backend_on(victim);
        for n in self.nodes() {
            while !n.reaches(&target, 500)? {
                if Instant::now() >= deadline {
                    bail!(
                        "node {} does not reach {target} again within {bound:?}",
                        n.index
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        // Reachable is not chosen: a node that saw it down chooses it again
        // once its agent's probe answered (the next run starts from a whole
        // cluster, not one that still avoids the victim).
        // One connect through the VIP per poll: under `--health-probes
        // connection` a client connect is what probes it.
        let vip = self.vip_addr(0);
        for n in self.nodes().iter().filter(|n| n.index != victim) {
            while n.backend_state(vip, &target).is_some_and(|s| s != "up") {
                let _ = n.reaches(&vip.to_string(), 500);
                if Instant::now() >= deadline {
                    bail!(
                        "node {} does not see {target} up again within {bound:?}: {:?}",
                        n.index,
                        n.backend_state(vip, &target)
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}
