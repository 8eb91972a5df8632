//! Who probes a backend that is down for this node, and the agent's probe
//! schedule.
//!
//! Under [`PROBES_AGENT`] (the default) no client connection is ever a probe:
//! the agent connects to the down backend itself, from its own process (not in
//! the hooked cgroup, so no hook sees it), and says what it found in its own
//! map, `L4LB_PROBES` ([`ProbeMark`], by backend id). One writer per field:
//! the kernel alone writes `L4LB_HEALTH` (it updates those fields with atomic
//! operations from every CPU; an agent write there could undo a concurrent
//! kernel update), the agent alone writes `L4LB_PROBES`, and the rules below
//! read both. The kernel's `down_until_ns` names the down episode: it is set
//! once when the backend goes down and cleared only by a completed handshake,
//! so "the agent's probe succeeded for episode D" is `revived_for_ns == D`,
//! and a later failure that takes the backend down again sets a new D that the
//! old revival does not match.
//!
//! Under [`PROBES_CONNECTION`] (the fallback, `--health-probes connection`:
//! the agent cannot connect to backends, e.g. it runs where the backends'
//! network is not routed) the first client connect that draws a down
//! backend after its back-off is its half-open probe, as before.
//!
//! UDP has no handshake: nothing takes a UDP backend down, so nothing probes one.
use crate::health::{BACKOFF_MIN_NS, HealthState, next_backoff};

/// `LbConfig::probes`: the agent probes down backends (the default; also
/// what an unwritten config reads as).
pub const PROBES_AGENT: u32 = 0;
/// `LbConfig::probes`: a client connection is the half-open probe.
pub const PROBES_CONNECTION: u32 = 1;
/// The agent gives up on a probe's connect after this long (a live backend on
/// a LAN answers in well under a millisecond; the kernel's first SYN
/// retransmission would come at 1 s).
pub const AGENT_PROBE_TIMEOUT_NS: u64 = 1_000_000_000;

/// Value of `L4LB_PROBES[backend id]`: written by the agent only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeMark {
    /// The down episode (the kernel's `down_until_ns`) an agent probe
    /// found the backend answering again: it is up for this node.
    pub revived_for_ns: u64,
    /// The down episode the schedule below belongs to (0: none yet).
    pub episode_ns: u64,
    /// When the next probe may go.
    pub next_probe_ns: u64,
    /// The wait after the last failed probe (doubles, 2–30 s).
    pub backoff_ns: u64,
    /// Probes sent, answered, failed (refused, unreachable, timed out).
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub _reserved: u64,
}

/// The kernel's `down_until_ns` with the agent's revival applied: 0 (not
/// down) when an agent probe answered for this very episode.
#[inline(always)]
pub const fn effective_down_until(down_until_ns: u64, revived_for_ns: u64) -> u64 {
    if down_until_ns != 0 && down_until_ns == revived_for_ns {
        0
    } else {
        down_until_ns
    }
}

/// What the agent does about one backend at one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStep {
    /// Not down for this node (or revived): nothing to do.
    Idle,
    /// Down, its back-off not over yet.
    Wait,
    /// Down and due: connect to it now (if none is in flight).
    Probe,
}

impl ProbeMark {
    /// The schedule at `now` for a backend whose kernel entry says
    /// `down_until_ns`. A new episode starts with the kernel's first
    /// back-off: the first probe goes when `down_until_ns` passes
    /// ([`BACKOFF_MIN_NS`] after the backend went down), so the handshakes
    /// in flight when it went down have reported first.
    pub fn step(&mut self, down_until_ns: u64, now: u64) -> ProbeStep {
        if effective_down_until(down_until_ns, self.revived_for_ns) == 0 {
            return ProbeStep::Idle;
        }
        if self.episode_ns != down_until_ns {
            self.episode_ns = down_until_ns;
            self.next_probe_ns = down_until_ns;
            self.backoff_ns = BACKOFF_MIN_NS;
        }
        if now >= self.next_probe_ns {
            ProbeStep::Probe
        } else {
            ProbeStep::Wait
        }
    }

    /// A probe of the current episode is leaving.
    pub fn sent(&mut self) {
        self.sent += 1;
    }

    /// The probe's outcome at `now`: answered → the backend is up for this
    /// node; no answer → the back-off doubles (up to 30 s).
    pub fn outcome(&mut self, answered: bool, now: u64) {
        if answered {
            self.ok += 1;
            self.revived_for_ns = self.episode_ns;
        } else {
            self.failed += 1;
            self.backoff_ns = next_backoff(self.backoff_ns);
            self.next_probe_ns = now + self.backoff_ns;
        }
    }

    /// The state the CLI shows under agent probes: the kernel's
    /// state (`kernel`, computed with [`effective_down_until`]), with a down
    /// backend "probe-due" only when the agent's schedule says so.
    pub fn agent_view(&self, kernel: HealthState, down_until_ns: u64, now: u64) -> HealthState {
        match kernel {
            HealthState::Down | HealthState::ProbeDue => {
                let next = if self.episode_ns == down_until_ns {
                    self.next_probe_ns
                } else {
                    down_until_ns
                };
                if now >= next {
                    HealthState::ProbeDue
                } else {
                    HealthState::Down
                }
            }
            s => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BACKOFF_MAX_NS;

    const S: u64 = 1_000_000_000;

    #[test]
    fn first_probe_when_the_kernels_back_off_ends() {
        let mut m = ProbeMark::default();
        assert_eq!(m.step(0, 5 * S), ProbeStep::Idle, "not down");
        let down = 12 * S; // went down at 10 s
        assert_eq!(m.step(down, 11 * S), ProbeStep::Wait);
        assert_eq!((m.episode_ns, m.backoff_ns), (down, BACKOFF_MIN_NS));
        assert_eq!(m.step(down, down), ProbeStep::Probe);
    }

    #[test]
    fn failed_probes_double_the_back_off_up_to_thirty_seconds() {
        let mut m = ProbeMark::default();
        let down = 12 * S;
        let mut now = down;
        let mut waits = vec![];
        for _ in 0..6 {
            assert_eq!(m.step(down, now), ProbeStep::Probe);
            m.sent();
            m.outcome(false, now);
            assert_eq!(m.step(down, now + m.backoff_ns - 1), ProbeStep::Wait);
            waits.push(m.backoff_ns / S);
            now += m.backoff_ns;
        }
        assert_eq!(waits, [4, 8, 16, 30, 30, 30]);
        assert_eq!((m.sent, m.failed, m.ok), (6, 6, 0));
        assert_eq!(m.backoff_ns, BACKOFF_MAX_NS);
    }

    #[test]
    fn an_answer_revives_this_episode_only() {
        let mut m = ProbeMark::default();
        let down = 12 * S;
        assert_eq!(m.step(down, down), ProbeStep::Probe);
        m.sent();
        m.outcome(true, down);
        assert_eq!(m.revived_for_ns, down);
        assert_eq!(effective_down_until(down, m.revived_for_ns), 0);
        assert_eq!(m.step(down, down + S), ProbeStep::Idle);
        // Down again later: a new episode, a fresh schedule from the minimum.
        let again = 40 * S;
        assert_eq!(effective_down_until(again, m.revived_for_ns), again);
        assert_eq!(m.step(again, 39 * S), ProbeStep::Wait);
        assert_eq!(m.backoff_ns, BACKOFF_MIN_NS);
        assert_eq!(m.step(again, again), ProbeStep::Probe);
        // A completed client handshake clears the kernel's mark: idle.
        assert_eq!(m.step(0, again), ProbeStep::Idle);
    }

    #[test]
    fn the_cli_says_down_until_the_agents_next_probe() {
        let mut m = ProbeMark::default();
        let down = 12 * S;
        m.step(down, down);
        m.outcome(false, down);
        let k = HealthState::ProbeDue; // the kernel's own back-off is over
        assert_eq!(m.agent_view(k, down, down + S), HealthState::Down);
        assert_eq!(
            m.agent_view(k, down, down + m.backoff_ns),
            HealthState::ProbeDue
        );
        assert_eq!(m.agent_view(HealthState::Up, 0, 0), HealthState::Up);
        assert_eq!(
            m.agent_view(HealthState::Suspect, 0, 0),
            HealthState::Suspect
        );
    }
}
