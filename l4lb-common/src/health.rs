//! Per-node backend health and the power-of-two-choices cost: the map values
//! the `sock_ops` program and the connect hooks share, and the pure rules over
//! them. The kernel programs and the agent's CLI call the same functions, so
//! `l4lb-agent vips` says "down" exactly when connect() would skip a backend.
//!
//! Times are `bpf_ktime_get_ns` (CLOCK_MONOTONIC) nanoseconds; 0 means "never".

/// `--lb-policy p2c` (the default; also what an unwritten config reads as).
pub const LB_POLICY_P2C: u32 = 0;
/// `--lb-policy random`: a uniformly random Maglev slot, as before p2c existed.
pub const LB_POLICY_RANDOM: u32 = 1;

/// Value of `L4LB_LB_CONFIG[0]`, written by the agent before it attaches the hooks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbConfig {
    /// `LB_POLICY_*`.
    pub policy: u32,
    /// `LOCALITY_*` (`--locality`): the CLI shows it, and connect() reads
    /// `L4LB_LOCAL` only when it is not off.
    pub locality: u16,
    /// Who probes a down backend: `PROBES_AGENT` (0) or `PROBES_CONNECTION`
    /// (`crate::probe`). Two u16s share the former padding: the value keeps
    /// its size, and a pinned value of an older agent reads as off / agent.
    pub probes: u16,
}

/// Value of `L4LB_HEALTH[backend id]`: what this node saw of the backend's TCP
/// handshakes through a VIP. Updated with atomic operations by every CPU; the
/// agent zeroes an entry when it hands the id to a new backend. 128 bytes in
/// an mmap-able (page-aligned) array, so an entry is two whole cache lines,
/// and what connect() reads (`state`, the cost, a probe claim) is the first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// Handshakes sent (SYN out) and not yet established or closed.
    pub inflight: u64,
    /// Connections established through a VIP and not yet closed.
    pub live: u64,
    /// Since when handshakes have been in flight with none completing (reset
    /// when the first one starts and at every completion).
    pub stall_since_ns: u64,
    /// Moving average of the handshake time (SYN → established), ns.
    pub ewma_ns: u64,
    /// Down for this node until then (0 = not down); a probe may go after it.
    pub down_until_ns: u64,
    /// Last completed handshake.
    pub last_ok_ns: u64,
    /// Moving average of how long an established connection lived (ESTABLISHED
    /// → CLOSE), ns; fades with time since `last_ok_ns` ([`lifetime_now`]).
    pub lifetime_ewma_ns: u64,
    /// A half-open probe in flight since then (0 = none): one at a time.
    pub probe_since_ns: u64,
    // The second cache line: written by sock_ops, read by the agent and CLI.
    /// Handshakes completed.
    pub handshakes: u64,
    /// Handshakes failed: SYN retransmit timeout, RST, unreachable, abandoned.
    pub failures: u64,
    /// Failures since the last completion, within [`FAILURE_WINDOW_NS`].
    pub consecutive: u64,
    /// First failure of the current run of consecutive failures.
    pub window_start_ns: u64,
    /// Current back-off between probes (doubles with each failed probe).
    pub backoff_ns: u64,
    /// Probes sent while down.
    pub probes: u64,
    pub _pad: [u64; 2],
}

const _: () = assert!(core::mem::size_of::<BackendHealth>() == 128);

/// Value of `L4LB_SOCKS` (by socket cookie): set by connect4/6 on a TCP
/// socket it sent to a backend, read and updated by the `sock_ops` program,
/// freed by the `sock_release` one when the application closes the socket,
/// read by getpeername4/6 (the VIP to show: a TCP connect makes this one
/// entry, not a reverse-NAT entry as well).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockMark {
    pub backend_id: u32,
    /// `MARK_*` bits.
    pub flags: u32,
    /// When connect4/6 sent the socket to its backend, in the connect()
    /// call that sends the SYN (the handshake's start); once established,
    /// when it was established (the start of its lifetime).
    pub start_ns: u64,
    /// The backend the socket was sent to (`Addr6`, port in network byte
    /// order): getpeername shows the VIP only while the peer is this one.
    pub backend: [u32; 4],
    pub backend_port: u16,
    /// The VIP's port (network byte order).
    pub vip_port: u16,
    pub service_id: u32,
    /// The VIP the socket connected to (`Addr6`).
    pub vip: [u32; 4],
}

/// This connection is the backend's half-open probe.
pub const MARK_PROBE: u32 = 1;
/// The handshake is counted in `inflight`.
pub const MARK_IN_FLIGHT: u32 = 2;
/// The connection is counted in `live`.
pub const MARK_ESTABLISHED: u32 = 4;
/// The handshake was already counted as failed (first SYN timeout).
pub const MARK_FAILED: u32 = 8;
/// The socket's end is being counted (its release, or a connect() again on
/// it): the `sock_ops` callbacks racing with it leave the mark alone, and
/// the slot is not stale until it is freed.
pub const MARK_ENDED: u32 = 16;

/// `ServiceStats::lb` of `L4LB_SVC_STATS[service id]`: how p2c decided, and
/// TCP connects (under either policy) whose socket mark found no slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbStats {
    /// Every candidate drawn was down or suspect: the control plane's choice
    /// (the first random slot) was used rather than refusing the connect.
    pub fallbacks: u64,
    /// The first random slot's backend was down or suspect and another was chosen.
    pub avoided: u64,
    /// Connections sent as the half-open probe of a down backend.
    pub probes: u64,
    /// TCP connects balanced but not marked: the socket's `SOCK_PROBE_SLOTS`
    /// slots of `L4LB_SOCKS` were all live. `sock_ops` does not follow such
    /// a connection (no health sample) and its getpeername shows the backend.
    pub unmarked: u64,
}

impl LbStats {
    pub fn add(&mut self, o: &LbStats) {
        self.fallbacks += o.fallbacks;
        self.avoided += o.avoided;
        self.probes += o.probes;
        self.unmarked += o.unmarked;
    }
}

// ---- the rules ----

/// A backend is suspect once its handshakes have been in flight this many
/// times its usual handshake time with none completing…
pub const SUSPECT_K: u64 = 8;
/// …but never sooner than this: below it, scheduling and queueing jitter on a
/// busy node would make healthy backends look stuck…
pub const SUSPECT_FLOOR_NS: u64 = 100_000_000;
/// …and never later than this, well before the kernel's first SYN
/// retransmission (1 s), so a dead node is routed around before any connect
/// could have reported a failure.
pub const SUSPECT_CEIL_NS: u64 = 500_000_000;
// Suspect must come before the kernel's first SYN retransmission (1 s).
const _: () = assert!(SUSPECT_CEIL_NS < 1_000_000_000);
/// Before any handshake completed there is no average: use the ceiling.
pub const SUSPECT_UNKNOWN_NS: u64 = SUSPECT_CEIL_NS;
/// Consecutive failed handshakes that make a backend down for this node (one
/// failure can be a single lost SYN; three in a row is a pattern).
pub const DOWN_AFTER_FAILURES: u64 = 3;
/// Failures further apart than this from the run's first are a new run.
pub const FAILURE_WINDOW_NS: u64 = 10_000_000_000;
/// First wait before a down backend is probed: longer than one SYN timeout,
/// so the handshakes already in flight have reported before the probe goes.
pub const BACKOFF_MIN_NS: u64 = 2_000_000_000;
/// Longest wait between probes (the back-off doubles per failed probe).
pub const BACKOFF_MAX_NS: u64 = 30_000_000_000;
/// A probe that reported nothing for this long (its connect never sent a SYN,
/// or the socket vanished unseen) no longer blocks the next one.
pub const PROBE_STALE_NS: u64 = 5_000_000_000;
/// The handshake average weighs each new sample 1/2^EWMA_SHIFT.
pub const EWMA_SHIFT: u32 = 3;
/// Handshake times below this cost the same, and the connection count
/// decides: a handshake's time is mostly the path's and the kernel's (the
/// backend's kernel answers the SYN, not its application), and below a
/// millisecond its differences are scheduling noise on a busy node (a
/// loopback handshake there takes 30 µs to a few ms), which at a 100 µs
/// floor priced one of two equal idle backends out of every draw for seconds.
pub const COST_EWMA_FLOOR_NS: u64 = 1_000_000;
/// Random slots p2c draws at most to find two distinct usable candidates
/// (a draw of the first candidate again is drawn anew).
pub const P2C_MAX_DRAWS: u32 = 8;
/// Neighbouring slots walked when every random draw (p2c's, or XDP's
/// repicks) found only down backends: with one of two backends down, all
/// 24 slots p2c looks at are down once in 1.7·10^7 connects instead of once
/// in 256; with two of three down, 16 more slots turn one fallback in 26
/// connects into one in 17,000. The verifier walks every slot of the loop
/// at load, so the walk is kept short.
pub const UP_SCAN_SLOTS: u32 = 16;
/// The first 5 ms of a connection's life cost nothing: below that, lifetimes
/// on a busy node are scheduling noise (thread wake-ups on a loaded 2-core VM
/// reach milliseconds), which would let one noisy sample starve a backend of
/// back-to-back short connections and break the weights; the connection
/// count decides there. Beyond it the application's own time shows.
pub const LIFETIME_FREE_NS: u64 = 5_000_000;
/// The lifetime average halves for every this long without a new connection
/// established to the backend: one that lost every draw because its
/// connections lived long is tried again once it looks no worse than the
/// others (21 ms against ~1 ms: after ~2 s), and its next close updates the average.
pub const LIFETIME_HALF_LIFE_NS: u64 = 1_000_000_000;
/// One lifetime sample counts for at most this many times the average.
pub const LIFETIME_SAMPLE_CAP_X: u64 = 4;
/// A longer lifetime sample moves the average up by 1/2^this of the gap.
pub const LIFETIME_RISE_SHIFT: u32 = 2;
/// One handshake sample counts for at most this many times the average…
pub const HANDSHAKE_SAMPLE_CAP_X: u64 = 4;
/// …and at least this much: one outlier from an average at the cost floor
/// moves it to 7/8 × 1 ms + 8 ms / 8 = 1.875 ms, under the 2× margin
/// over the floor, so a single slow handshake (a descheduled client on a
/// busy node) never decides p2c's draws; two in a row do.
pub const HANDSHAKE_SAMPLE_MIN_CAP_NS: u64 = 8 * COST_EWMA_FLOOR_NS;

/// What connect() makes of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// Takes new connections.
    Up,
    /// Handshakes stuck in flight well past its usual time: skipped for now.
    Suspect,
    /// Down for this node: skipped until the back-off ends.
    Down,
    /// Down, back-off over: the next connect that draws it may probe it.
    ProbeDue,
}

impl HealthState {
    pub const fn name(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Suspect => "suspect",
            HealthState::Down => "down",
            HealthState::ProbeDue => "probe-due",
        }
    }
}

/// How long handshakes may stay in flight, with none completing, before the
/// backend is suspect: `SUSPECT_K` × its average, within [floor, ceiling].
#[inline(always)]
pub const fn suspect_after_ns(ewma_ns: u64) -> u64 {
    if ewma_ns == 0 {
        return SUSPECT_UNKNOWN_NS;
    }
    let t = if ewma_ns > SUSPECT_CEIL_NS {
        SUSPECT_CEIL_NS
    } else {
        ewma_ns * SUSPECT_K
    };
    if t < SUSPECT_FLOOR_NS {
        SUSPECT_FLOOR_NS
    } else if t > SUSPECT_CEIL_NS {
        SUSPECT_CEIL_NS
    } else {
        t
    }
}

/// The backend's state at `now` from the fields the rules read.
#[inline(always)]
pub const fn state(
    down_until_ns: u64,
    inflight: u64,
    stall_since_ns: u64,
    ewma_ns: u64,
    now: u64,
) -> HealthState {
    if down_until_ns != 0 {
        return if now >= down_until_ns {
            HealthState::ProbeDue
        } else {
            HealthState::Down
        };
    }
    if inflight > 0 && now > stall_since_ns && now - stall_since_ns > suspect_after_ns(ewma_ns) {
        return HealthState::Suspect;
    }
    HealthState::Up
}

impl BackendHealth {
    /// [`cost`] of a copy of the entry at `now`.
    pub const fn cost(&self, now: u64) -> u64 {
        cost(
            self.live,
            self.inflight,
            handshake_now(self.ewma_ns, self.last_ok_ns, now),
            lifetime_now(self.lifetime_ewma_ns, self.last_ok_ns, now),
        )
    }

    /// [`state`] of a copy of the entry.
    pub const fn state(&self, now: u64) -> HealthState {
        state(
            self.down_until_ns,
            self.inflight,
            self.stall_since_ns,
            self.ewma_ns,
            now,
        )
    }
}

/// The average after one more handshake of `sample_ns`.
#[inline(always)]
pub const fn ewma_next(ewma_ns: u64, sample_ns: u64) -> u64 {
    if ewma_ns == 0 {
        return if sample_ns == 0 { 1 } else { sample_ns };
    }
    let next = ewma_ns - (ewma_ns >> EWMA_SHIFT) + (sample_ns >> EWMA_SHIFT);
    if next == 0 { 1 } else { next }
}

/// The handshake average after one more handshake of `sample_ns`, the
/// sample capped at [`HANDSHAKE_SAMPLE_CAP_X`] × the average (at least
/// [`HANDSHAKE_SAMPLE_MIN_CAP_NS`]): a backend slow on every handshake
/// still shows within a few (the average grows 1.375× per handshake).
#[inline(always)]
pub const fn handshake_next(ewma_ns: u64, sample_ns: u64) -> u64 {
    let mut cap = ewma_ns.saturating_mul(HANDSHAKE_SAMPLE_CAP_X);
    if cap < HANDSHAKE_SAMPLE_MIN_CAP_NS {
        cap = HANDSHAKE_SAMPLE_MIN_CAP_NS;
    }
    ewma_next(ewma_ns, if sample_ns > cap { cap } else { sample_ns })
}

/// The lifetime average as p2c reads it at `now`: halved per
/// [`LIFETIME_HALF_LIFE_NS`] since the last connection was established
/// (`last_ok_ns`), so a backend starved by a bad average is retried now and then.
#[inline(always)]
pub const fn lifetime_now(lifetime_ewma_ns: u64, last_ok_ns: u64, now: u64) -> u64 {
    if last_ok_ns == 0 || now <= last_ok_ns {
        return lifetime_ewma_ns;
    }
    let halvings = (now - last_ok_ns) / LIFETIME_HALF_LIFE_NS;
    if halvings >= 64 {
        0
    } else {
        lifetime_ewma_ns >> halvings
    }
}

/// The handshake average as p2c's cost reads it at `now`: faded like the
/// lifetime ([`lifetime_now`]). Without it one slow handshake (a pause of the
/// backend, or of this node) would price a backend out of every draw under
/// light load for good: nothing else would ever move its average again.
#[inline(always)]
pub const fn handshake_now(ewma_ns: u64, last_ok_ns: u64, now: u64) -> u64 {
    lifetime_now(ewma_ns, last_ok_ns, now)
}

/// The lifetime average after one more connection lived `sample_ns`: up
/// by a quarter of the difference ([`LIFETIME_RISE_SHIFT`]), down by an
/// eighth. Rising faster than it falls ends a retry of a backend whose
/// average had faded within a few closes, before it collects many
/// connections it is slow with; falling slowly keeps one short connection
/// from making a slow backend look fast. A sample counts for at most
/// [`LIFETIME_SAMPLE_CAP_X`] × the average (and at least
/// [`LIFETIME_FREE_NS`]): one outlier — a client that held its connection
/// for a minute, a process descheduled on a busy node — moves the average at
/// most 1.75× and, from a short one, not past the free part; two in a row
/// (a loaded node: seen at loadavg 9-11) do not price an idle backend out
/// either, three do. A backend that is slow on every connection still
/// shows from its third close.
#[inline(always)]
pub const fn lifetime_next(ewma_ns: u64, sample_ns: u64) -> u64 {
    let mut cap = ewma_ns.saturating_mul(LIFETIME_SAMPLE_CAP_X);
    if cap < LIFETIME_FREE_NS {
        cap = LIFETIME_FREE_NS;
    }
    let sample = if sample_ns > cap { cap } else { sample_ns };
    if ewma_ns != 0 && sample > ewma_ns {
        ewma_ns + ((sample - ewma_ns) >> LIFETIME_RISE_SHIFT)
    } else {
        ewma_next(ewma_ns, sample)
    }
}

/// What one connection to the backend takes: its handshake average (at
/// least [`COST_EWMA_FLOOR_NS`]) plus its lifetime past [`LIFETIME_FREE_NS`]
/// (already faded by [`lifetime_now`]), clamped so products fit in 64 bits.
#[inline(always)]
pub const fn conn_time(ewma_ns: u64, lifetime_ns: u64) -> u64 {
    const MAX_TIME: u64 = 1 << 38;
    let mut e = ewma_ns;
    if e < COST_EWMA_FLOOR_NS {
        e = COST_EWMA_FLOOR_NS;
    }
    if e > MAX_TIME {
        e = MAX_TIME;
    }
    let mut life = lifetime_ns.saturating_sub(LIFETIME_FREE_NS);
    if life > MAX_TIME {
        life = MAX_TIME;
    }
    e + life
}

/// The cost of sending one more connection: the connections it already has
/// (live and handshaking, plus this one) times [`conn_time`]. Lower wins.
#[inline(always)]
pub const fn cost(live: u64, inflight: u64, ewma_ns: u64, lifetime_ns: u64) -> u64 {
    load_cost(live.wrapping_add(inflight), conn_time(ewma_ns, lifetime_ns))
}

/// [`cost`] from the connections it has (`load`) and [`conn_time`].
#[inline(always)]
pub const fn load_cost(load: u64, t: u64) -> u64 {
    const MAX_LOAD: u64 = 1 << 24;
    let mut n = load.wrapping_add(1);
    if n > MAX_LOAD || n == 0 {
        n = MAX_LOAD;
    }
    n * t
}

/// What p2c compares: the connections a backend already has (live and
/// handshaking) per unit of weight, times what one takes, plus this one's own
/// time. Idle backends of any weight tie (the first draw, which the Maglev
/// table drew in proportion to the weights, keeps it), and loads that follow
/// the weights tie too: 3:1 weights stay 3:1. `t` = [`conn_time`].
#[inline(always)]
pub const fn p2c_cost(load: u64, t: u64, weight: u8) -> u64 {
    const MAX_LOAD: u64 = 1 << 24;
    let load = if load > MAX_LOAD { MAX_LOAD } else { load };
    let w = if weight == 0 { 1 } else { weight as u64 };
    load * t / w + t
}

/// Whether p2c's second candidate beats the first: a [`p2c_cost`] less than
/// the first's / [`P2C_MARGIN`]; anything closer is a tie, which keeps the
/// first draw. Without the margin, handshake and lifetime averages that
/// differ by noise (a loaded node's loopback handshake is 100-300 µs) decide
/// every draw between idle backends, and a backend that loses every draw
/// never updates its averages: the weights break (3:1 came out 97:3).
#[inline(always)]
pub const fn second_wins(first: u64, second: u64) -> bool {
    second.saturating_mul(P2C_MARGIN) < first
}

/// How many times cheaper p2c's second draw must be to win.
pub const P2C_MARGIN: u64 = 2;

/// The run of consecutive failures after one more at `now`: (count, start).
#[inline(always)]
pub const fn failure_run(consecutive: u64, window_start_ns: u64, now: u64) -> (u64, u64) {
    if consecutive == 0 || now.wrapping_sub(window_start_ns) > FAILURE_WINDOW_NS {
        (1, now)
    } else {
        (consecutive + 1, window_start_ns)
    }
}

/// The back-off after a failed probe (`prev` 0: the backend just went down).
#[inline(always)]
pub const fn next_backoff(prev_ns: u64) -> u64 {
    if prev_ns < BACKOFF_MIN_NS {
        BACKOFF_MIN_NS
    } else if prev_ns >= BACKOFF_MAX_NS / 2 {
        BACKOFF_MAX_NS
    } else {
        prev_ns * 2
    }
}

/// May a connect at `now` become the probe, given the probe mark it read?
#[inline(always)]
pub const fn probe_claimable(probe_since_ns: u64, now: u64) -> bool {
    probe_since_ns == 0 || now.wrapping_sub(probe_since_ns) > PROBE_STALE_NS
}

/// What a failed handshake does to the down state: (down_until, backoff),
/// given the state before it. A failed probe doubles the back-off; a run of
/// [`DOWN_AFTER_FAILURES`] takes an up backend down, and so does one failure
/// while the backend was suspect (`stalled`: handshakes stuck past the
/// threshold with none completing since — a lost SYN on a backend that
/// otherwise answers does not look like that, because the others complete);
/// failures of handshakes still in flight from before leave a down backend's
/// schedule alone.
#[inline(always)]
pub const fn after_failure(
    down_until_ns: u64,
    backoff_ns: u64,
    consecutive: u64,
    was_probe: bool,
    stalled: bool,
    now: u64,
) -> (u64, u64) {
    if was_probe {
        let b = next_backoff(backoff_ns);
        return (now + b, b);
    }
    if down_until_ns == 0 && (consecutive >= DOWN_AFTER_FAILURES || stalled) {
        return (now + BACKOFF_MIN_NS, BACKOFF_MIN_NS);
    }
    (down_until_ns, backoff_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn suspect_threshold_follows_the_average_within_floor_and_ceiling() {
        assert_eq!(suspect_after_ns(0), SUSPECT_UNKNOWN_NS);
        assert_eq!(suspect_after_ns(50_000), SUSPECT_FLOOR_NS); // 50 µs × 8 < 100 ms
        assert_eq!(suspect_after_ns(20 * MS), 160 * MS);
        assert_eq!(suspect_after_ns(200 * MS), SUSPECT_CEIL_NS);
        assert_eq!(suspect_after_ns(u64::MAX), SUSPECT_CEIL_NS);
    }

    #[test]
    fn stuck_handshakes_make_a_backend_suspect_until_one_completes() {
        let ewma = 50_000;
        let start = 1_000 * MS;
        assert_eq!(state(0, 3, start, ewma, start + 99 * MS), HealthState::Up);
        assert_eq!(
            state(0, 3, start, ewma, start + 101 * MS),
            HealthState::Suspect
        );
        // Nothing in flight: an old stall mark means nothing.
        assert_eq!(state(0, 0, start, ewma, start + 900 * MS), HealthState::Up);
        // A completion resets the mark (stall_since = now).
        let done = start + 150 * MS;
        assert_eq!(state(0, 3, done, ewma, done + 10 * MS), HealthState::Up);
    }

    #[test]
    fn down_until_the_back_off_ends_then_a_probe_is_due() {
        let until = 5_000 * MS;
        assert_eq!(state(until, 0, 0, 0, until - 1), HealthState::Down);
        assert_eq!(state(until, 0, 0, 0, until), HealthState::ProbeDue);
        // Down wins over suspect.
        assert_eq!(state(until, 9, 1, 1, until - 1), HealthState::Down);
    }

    #[test]
    fn three_failures_in_a_window_take_it_down_and_probes_back_off() {
        let t0 = 10_000 * MS;
        let (c, w) = failure_run(0, 0, t0);
        assert_eq!((c, w), (1, t0));
        let (c, w) = failure_run(c, w, t0 + 100 * MS);
        assert_eq!(
            after_failure(0, 0, c, false, false, t0),
            (0, 0),
            "2 failures: still up"
        );
        // One failure of a handshake stuck while none completed is enough.
        assert_eq!(
            after_failure(0, 0, 1, false, true, t0),
            (t0 + BACKOFF_MIN_NS, BACKOFF_MIN_NS)
        );
        let (c, w) = failure_run(c, w, t0 + 200 * MS);
        assert_eq!(c, 3);
        let now = t0 + 200 * MS;
        let (down, backoff) = after_failure(0, 0, c, false, false, now);
        assert_eq!((down, backoff), (now + BACKOFF_MIN_NS, BACKOFF_MIN_NS));
        // Stragglers failing later keep the schedule.
        assert_eq!(
            after_failure(down, backoff, 7, false, true, now + MS),
            (down, backoff)
        );
        // A failed probe doubles the back-off, up to the maximum.
        let (d2, b2) = after_failure(down, backoff, 8, true, false, down);
        assert_eq!((d2, b2), (down + 2 * BACKOFF_MIN_NS, 2 * BACKOFF_MIN_NS));
        let mut b = b2;
        for _ in 0..10 {
            b = next_backoff(b);
        }
        assert_eq!(b, BACKOFF_MAX_NS);
        // A failure long after the run's start begins a new run.
        assert_eq!(
            failure_run(2, w, w + FAILURE_WINDOW_NS + 1),
            (1, w + FAILURE_WINDOW_NS + 1)
        );
    }

    #[test]
    fn one_probe_at_a_time_unless_it_went_stale() {
        assert!(probe_claimable(0, 123));
        assert!(!probe_claimable(1_000 * MS, 1_000 * MS + PROBE_STALE_NS));
        assert!(probe_claimable(1_000 * MS, 1_001 * MS + PROBE_STALE_NS));
    }

    #[test]
    fn ewma_starts_at_the_first_sample_and_moves_an_eighth() {
        assert_eq!(ewma_next(0, 40_000), 40_000);
        assert_eq!(ewma_next(40_000, 120_000), 40_000 - 5_000 + 15_000);
        assert_eq!(
            ewma_next(0, 0),
            1,
            "0 stays 'no sample yet' only before the first"
        );
        let mut e = 0;
        for _ in 0..100 {
            e = ewma_next(e, 1_000_000);
        }
        assert!((999_000..=1_000_000).contains(&e), "{e}");
    }

    #[test]
    fn cost_prefers_fewer_connections_then_faster_handshakes() {
        // LAN noise below the floor does not decide.
        assert_eq!(cost(2, 0, 30_000, 0), cost(2, 0, 90_000, 0));
        assert!(cost(1, 0, 50_000, 0) < cost(3, 0, 50_000, 0));
        assert!(
            cost(0, 1, 50_000, 0) < cost(0, 2, 50_000, 0),
            "handshaking counts as load"
        );
        assert!(cost(2, 0, 200_000, 0) < cost(2, 0, 2_000_000, 0));
        // Handshakes 20× the floor outweigh a few connections.
        assert!(cost(3, 0, 100_000, 0) < cost(0, 0, 20_000_000, 0));
        // Clamped, no overflow.
        assert!(cost(u64::MAX, u64::MAX, u64::MAX, u64::MAX) > 0);
    }

    #[test]
    fn connections_that_live_20x_longer_cost_more_than_a_few_more_connections() {
        let hs = 50_000;
        // Same live count, same handshake: the app's slowness decides.
        assert!(cost(1, 0, hs, 1_200_000) < cost(1, 0, hs, 21_000 * 1_000));
        // Idle slow backend vs fast ones with several connections each.
        assert!(cost(7, 0, hs, 1_200_000) < cost(0, 0, hs, 21 * MS));
        // Lifetimes within the free first 5 ms are noise: a tie.
        assert_eq!(cost(0, 0, hs, 200_000), cost(0, 0, hs, 4_900_000));
    }

    #[test]
    fn one_slow_handshake_never_decides_a_draw_a_slow_backend_shows_in_two() {
        let fast = cost(0, 0, 100_000, 0);
        // At the floor; one handshake took 50 ms (a pause): still a tie.
        let once = handshake_next(COST_EWMA_FLOOR_NS, 50 * MS);
        assert_eq!(once, 1_875_000);
        assert!(!second_wins(cost(0, 0, once, 0), fast));
        // A second in a row: the other idle backend wins.
        let twice = handshake_next(once, 50 * MS);
        assert!(second_wins(cost(0, 0, twice, 0), fast));
        // Slow on every handshake, it is past 3 ms of its real 5 within 13.
        let mut e = 100_000;
        for _ in 0..13 {
            e = handshake_next(e, 5 * MS);
        }
        assert!((3 * MS..=5 * MS).contains(&e), "{e}");
        // A first sample counts up to the minimum cap.
        assert_eq!(handshake_next(0, 50 * MS), HANDSHAKE_SAMPLE_MIN_CAP_NS);
        assert_eq!(handshake_next(0, 40_000), 40_000);
    }

    #[test]
    fn a_slow_handshake_average_fades_in_seconds_not_for_good() {
        let t = 10 * LIFETIME_HALF_LIFE_NS;
        // Three 50 ms handshakes in a row.
        let mut e = 100_000;
        for _ in 0..3 {
            e = handshake_next(e, 50 * MS);
        }
        let fast = cost(0, 0, 100_000, 0);
        let slow_at = |s: u64| cost(0, 0, handshake_now(e, t, t + s * LIFETIME_HALF_LIFE_NS), 0);
        // Drawn first, it loses to any other idle backend for a while…
        assert!(second_wins(slow_at(0), fast));
        // …and keeps its draw from the second second, its next handshake
        // moving the average from there.
        assert!(!second_wins(slow_at(2), fast));
        assert_eq!(handshake_now(e, t, t + 2 * LIFETIME_HALF_LIFE_NS), e >> 2);
    }

    #[test]
    fn the_lifetime_average_fades_without_new_connections() {
        let t = 100_000 * MS;
        assert_eq!(lifetime_now(21 * MS, t, t + 999 * MS), 21 * MS);
        assert_eq!(lifetime_now(20 * MS, t, t + LIFETIME_HALF_LIFE_NS), 10 * MS);
        assert_eq!(
            lifetime_now(20 * MS, t, t + 2 * LIFETIME_HALF_LIFE_NS),
            5 * MS
        );
        assert_eq!(lifetime_now(20 * MS, t, t + 100 * LIFETIME_HALF_LIFE_NS), 0);
        // Never established, or a clock read before the mark: as stored.
        assert_eq!(lifetime_now(7, 0, t), 7);
        assert_eq!(lifetime_now(7, t, t - 1), 7);
        // A starved slow backend looks no worse than a fast one within ~3 s.
        let fast = cost(0, 0, 50_000, 1_300_000);
        let slow_at = |s: u64| cost(0, 0, 50_000, lifetime_now(21 * MS, t, t + s * 1_000 * MS));
        assert!(slow_at(1) > fast);
        assert!(slow_at(3) <= fast);
    }

    #[test]
    fn the_lifetime_average_rises_by_a_quarter_and_falls_by_an_eighth() {
        assert_eq!(lifetime_next(8 * MS, 12 * MS), 9 * MS);
        assert_eq!(lifetime_next(16 * MS, 8 * MS), 15 * MS);
        assert_eq!(lifetime_next(u64::MAX - 1, u64::MAX), u64::MAX - 1);
    }

    #[test]
    fn one_long_connection_cannot_starve_a_backend_but_a_slow_one_shows() {
        // A client held one connection a minute on a backend of 300 µs ones:
        // the average stays within the free part, the cost does not move.
        let held = lifetime_next(300_000, 60_000 * MS);
        assert_eq!(held, 1_475_000);
        assert_eq!(cost(0, 0, 50_000, held), cost(0, 0, 50_000, 300_000));
        // The first sample counts up to the free part only.
        assert_eq!(lifetime_next(0, 21 * MS), LIFETIME_FREE_NS);
        // A backend slow on every connection (21 ms), from a faded 1 ms:
        // past the free part at its third close, 12.6 ms by its fifth.
        let mut e = MS;
        let mut seen = Vec::new();
        for _ in 0..5 {
            e = lifetime_next(e, 21 * MS);
            seen.push(e / 100_000);
        }
        assert_eq!(seen, [20, 35, 61, 98, 126]);
        assert!(cost(0, 0, 50_000, 7_500_000) > 2 * cost(0, 0, 50_000, MS));
    }

    #[test]
    fn two_slow_closes_in_a_row_do_not_starve_an_idle_backend_three_do() {
        // Two idle backends of ~1 ms connections; a busy node stretches
        // one's closes to 30 ms (the client descheduled before it closed).
        let fast = cost(0, 0, 100_000, MS);
        let mut e = MS;
        for close in 1..=3 {
            e = lifetime_next(e, 30 * MS);
            let starved = second_wins(cost(0, 0, 100_000, e), fast);
            assert_eq!(starved, close == 3, "close {close}: {e}");
        }
    }

    #[test]
    fn the_second_draw_wins_only_on_a_lower_cost_per_weight() {
        let t = 100_000;
        // Idle: a tie whatever the weights; the first draw keeps it.
        assert!(!second_wins(p2c_cost(0, t, 3), p2c_cost(0, t, 1)));
        assert!(!second_wins(p2c_cost(0, t, 1), p2c_cost(0, t, 3)));
        // Loads that follow the weights tie too.
        assert_eq!(p2c_cost(3, t, 3), p2c_cost(1, t, 1));
        // Well past its share the heavier one loses; near it, a tie.
        assert!(second_wins(p2c_cost(10, t, 3), p2c_cost(1, t, 1)));
        assert!(!second_wins(p2c_cost(4, t, 3), p2c_cost(1, t, 1)));
        assert!(!second_wins(p2c_cost(2, t, 3), p2c_cost(1, t, 1)));
        // Noise in the averages of idle backends is a tie.
        assert!(!second_wins(p2c_cost(0, 180_000, 1), p2c_cost(0, t, 1)));
        // A backend whose connections live 20x longer loses even idle.
        let slow = conn_time(50_000, 21_000_000);
        assert!(second_wins(p2c_cost(0, slow, 1), p2c_cost(3, t, 1)));
        // Weight 0 (no slot, never drawn) reads as 1; no overflow.
        assert_eq!(p2c_cost(1, t, 0), 2 * t);
        assert!(p2c_cost(u64::MAX, conn_time(u64::MAX, u64::MAX), 1) > 0);
    }
}
