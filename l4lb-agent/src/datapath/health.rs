//! The balancing policy (`--lb-policy`, written to the pinned `L4LB_LB_CONFIG`
//! before the hooks are attached) and the per-backend health the kernel keeps
//! (`L4LB_HEALTH`; p2c's counters are in `L4LB_SVC_STATS`), read back for the CLI and `/metrics`.
//! The agent only zeroes health entries when it hands an id to a new backend;
//! everything else in them is written by the kernel programs.
use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use l4lb_common::{
    BackendHealth, HealthState, LB_CONFIG_MAP, LB_POLICY_P2C, LB_POLICY_RANDOM, LbConfig,
    PROBES_AGENT, PROBES_CONNECTION, ProbeMark,
};

/// `--lb-policy`. The variants carry no doc comments: clap would list them in
/// `--help`, and the flag's help says what each does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LbPolicy {
    // A uniformly random Maglev slot per connect().
    Random,
    // Power of two choices over healthy backends.
    #[default]
    P2c,
}

impl LbPolicy {
    pub fn raw(self) -> u32 {
        match self {
            LbPolicy::Random => LB_POLICY_RANDOM,
            LbPolicy::P2c => LB_POLICY_P2C,
        }
    }

    pub fn from_raw(v: u32) -> LbPolicy {
        if v == LB_POLICY_RANDOM {
            LbPolicy::Random
        } else {
            LbPolicy::P2c
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LbPolicy::Random => "random",
            LbPolicy::P2c => "p2c",
        }
    }
}

/// `--health-probes`: who probes a backend down for this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthProbes {
    // The agent connects to it (no client connection is a probe).
    #[default]
    Agent,
    // The next client connection that draws it, once its back-off is over.
    Connection,
}

impl HealthProbes {
    pub fn raw(self) -> u32 {
        match self {
            HealthProbes::Agent => PROBES_AGENT,
            HealthProbes::Connection => PROBES_CONNECTION,
        }
    }

    pub fn from_raw(v: u32) -> HealthProbes {
        if v == PROBES_CONNECTION {
            HealthProbes::Connection
        } else {
            HealthProbes::Agent
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HealthProbes::Agent => "agent",
            HealthProbes::Connection => "connection",
        }
    }
}

/// What the agent writes to `L4LB_LB_CONFIG` before the hooks attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbConfigArgs {
    pub policy: LbPolicy,
    pub probes: HealthProbes,
    /// Whether connect4/6 carry the locality step (`--locality node|zone`):
    /// set at load, so under `off` the verifier drops it (~80 % of their
    /// verification time).
    pub locality_step: bool,
}

/// Writes the policy and the probe mode into the loaded object's (pinned) config map.
pub(super) fn write_config(ebpf: &mut Ebpf, policy: LbPolicy, probes: HealthProbes) -> Result<()> {
    let mut config: Array<&mut MapData, LbConfig> = ebpf
        .map_mut(LB_CONFIG_MAP)
        .with_context(|| format!("map {LB_CONFIG_MAP} missing from the BPF object"))?
        .try_into()?;
    let value = LbConfig {
        policy: policy.raw(),
        // Set after the load by the locality sync (`Maps::set_locality_mode`).
        locality: 0,
        probes: probes.raw() as u16,
    };
    config
        .set(0, value, 0)
        .with_context(|| format!("writing {LB_CONFIG_MAP}"))
}

/// Handles on the health maps (None when the pin root predates them).
pub(super) struct HealthMaps {
    pub(super) health: Array<MapData, BackendHealth>,
    pub(super) config: Array<MapData, LbConfig>,
    /// The agent's probe marks (`L4LB_PROBES`); None under an older pin root.
    pub(super) probes: Option<Array<MapData, ProbeMark>>,
}

impl HealthMaps {
    pub(super) fn reset_backend(&mut self, id: u32) -> Result<(), aya::maps::MapError> {
        self.health.set(id, BackendHealth::default(), 0)
    }
}

/// One backend's health as this node sees it, for the CLI and `/metrics`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct HealthView {
    /// "up", "suspect", "down" or "probe-due" (down, and its next probe is
    /// due: the agent's, or under `--health-probes connection` the next
    /// connect that draws it).
    pub state: &'static str,
    /// Moving average of the TCP handshake time through a VIP, µs (0: none yet).
    pub handshake_ewma_us: f64,
    /// Moving average of how long its connections through a VIP lived
    /// (established → closed), µs, as p2c reads it now: halved per second
    /// since a connection was last established to it (0: none yet).
    pub lifetime_ewma_us: f64,
    pub live_connections: u64,
    pub handshakes_in_flight: u64,
    pub handshakes: u64,
    pub handshake_failures: u64,
    pub consecutive_failures: u64,
    /// Client connections sent as half-open probes (`--health-probes connection`).
    pub probes: u64,
    /// The agent's own probes of it while down: sent, answered, failed.
    pub agent_probes: u64,
    pub agent_probes_ok: u64,
    pub agent_probes_failed: u64,
    /// p2c's cost of one more connection (lower wins).
    pub cost: u64,
}

impl HealthView {
    /// `mark`: the agent's probe entry (default when none); `mode` decides
    /// whose schedule a down backend's "probe-due" follows.
    pub fn new(h: &BackendHealth, mark: &ProbeMark, mode: HealthProbes, now_ns: u64) -> HealthView {
        let down = l4lb_common::effective_down_until(h.down_until_ns, mark.revived_for_ns);
        let kernel = l4lb_common::state(down, h.inflight, h.stall_since_ns, h.ewma_ns, now_ns);
        let state: HealthState = match mode {
            HealthProbes::Agent => mark.agent_view(kernel, h.down_until_ns, now_ns),
            HealthProbes::Connection => kernel,
        };
        HealthView {
            state: state.name(),
            handshake_ewma_us: (h.ewma_ns as f64 / 100.0).round() / 10.0,
            lifetime_ewma_us: {
                let life = l4lb_common::lifetime_now(h.lifetime_ewma_ns, h.last_ok_ns, now_ns);
                (life as f64 / 100.0).round() / 10.0
            },
            live_connections: h.live,
            handshakes_in_flight: h.inflight,
            handshakes: h.handshakes,
            handshake_failures: h.failures,
            consecutive_failures: h.consecutive,
            probes: h.probes,
            agent_probes: mark.sent,
            agent_probes_ok: mark.ok,
            agent_probes_failed: mark.failed,
            cost: h.cost(now_ns),
        }
    }
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_the_map_value() {
        for p in [LbPolicy::Random, LbPolicy::P2c] {
            assert_eq!(LbPolicy::from_raw(p.raw()), p);
        }
        // An unwritten config (0) is p2c, the default.
        assert_eq!(LbPolicy::from_raw(0), LbPolicy::default());
    }

    #[test]
    fn view_names_the_state_the_kernel_would_see() {
        let now = 10_000_000_000;
        let mut h = BackendHealth {
            ewma_ns: 45_000,
            live: 2,
            ..Default::default()
        };
        let none = ProbeMark::default();
        let view = |h: &BackendHealth, m: &ProbeMark, mode, t| HealthView::new(h, m, mode, t);
        let conn = HealthProbes::Connection;
        assert_eq!(view(&h, &none, conn, now).state, "up");
        assert_eq!(view(&h, &none, conn, now).handshake_ewma_us, 45.0);
        h.inflight = 1;
        h.stall_since_ns = now - 200_000_000;
        assert_eq!(view(&h, &none, conn, now).state, "suspect");
        h.down_until_ns = now + 1;
        assert_eq!(view(&h, &none, conn, now).state, "down");
        assert_eq!(view(&h, &none, conn, now + 1).state, "probe-due");
        // Agent probes: a failed probe pushes "probe-due" to its next one,
        // and an answer for this episode makes it up (suspect here: stuck).
        let mut m = ProbeMark::default();
        let agent = HealthProbes::Agent;
        m.step(h.down_until_ns, now + 1);
        m.outcome(false, now + 1);
        assert_eq!(view(&h, &m, agent, now + 2).state, "down");
        assert_eq!(
            view(&h, &m, agent, now + 1 + m.backoff_ns).state,
            "probe-due"
        );
        m.outcome(true, now + 3);
        h.inflight = 0;
        let v = view(&h, &m, agent, now + 4);
        assert_eq!(v.state, "up");
        assert_eq!((v.agent_probes_failed, v.agent_probes_ok), (1, 1));
    }

    #[test]
    fn probe_mode_round_trips_and_defaults_to_the_agent() {
        for p in [HealthProbes::Agent, HealthProbes::Connection] {
            assert_eq!(HealthProbes::from_raw(p.raw()), p);
        }
        assert_eq!(HealthProbes::from_raw(0), HealthProbes::default());
    }

    #[test]
    fn the_monotonic_clock_moves() {
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a && a > 0);
    }
}
