//! `cargo xtask bench peers`: the socket path next to what users would pick
//! instead. One sandbox (private netns with only `lo`, child cgroup for
//! the agent) holding one backend (`l4lb-testsrv`, greeting + echo) and five
//! ways to reach it, all measured in the same probe run, interleaved
//! connection by connection (`l4lb-probe latency --to A --to B …`, target
//! a different cyclic order every round), so machine noise hits them alike:
//!
//! | target | mechanism |
//! |---|---|
//! | 127.0.0.2:7000 | direct (the physical limit) |
//! | 11.0.0.9:7000 | l4lb: the agent's connect4 hook rewrites the VIP at connect() |
//! | 11.0.1.1:7000 | iptables (legacy xtables) `-t nat -A OUTPUT … -j DNAT` (kube-proxy's iptables mode) |
//! | 11.0.1.2:7000 | nftables `type nat hook output` + `dnat to` (kube-proxy's nftables mode) |
//! | 127.0.0.3:7000 | HAProxy 2.6 `mode tcp` frontend → backend (marathon-lb's engine) |
//!
//! The netfilter VIPs are local addresses of the netns' `lo` (so without a
//! rule a connect is refused, never sent anywhere) and differ from the l4lb
//! VIP, which no rule matches: each target uses only its own mechanism; the
//! rule counters and the BPF counters are read back to prove it.
//!
//! The setup is `peer_setup.rs` (shared with `bench churn`). Every load is
//! bounded by count and by a kill timeout; HAProxy is a child of
//! the sandbox and ends with it; every rule lives in the sandbox's netns and
//! goes with it.
use std::{fmt::Write as _, time::Instant};

use anyhow::{Context, Result};
use l4lb_tests::Sandbox;

use super::{
    bpf_stats,
    common::{MAX_ITERATIONS, MAX_ROUNDS, PROBE_TIMEOUT, bpf_connects, in_one_sandbox},
    paired::{OverRounds, lead_points, median_diff_us},
    peer_setup::{self, BACKEND, IPT_ADDR, L4LB_VIP, NFT_ADDR, Target},
    peers_split,
    stats::{med_range, median, min_max},
};
use crate::{
    probe::{self, Lat},
    report,
};

const SECTION_PEERS: &str = "xtask bench peers";
const LATENCY_GOAL: f64 = 1.03;
/// How far ahead of iptables and nftables DNAT l4lb's p50 / direct must be,
/// in points of that ratio (issue 16: with conntrack on, as here).
const LEAD_GOAL_POINTS: f64 = 5.0;

#[derive(clap::Args, Clone, Debug)]
pub struct PeersArgs {
    /// Connections per target and round.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(100..=MAX_ITERATIONS as i64))]
    pub iterations: u32,
    /// Rounds (one probe run each, all targets interleaved; each a
    /// different cyclic order: 10 take 5 starts with stride 1, then 2).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS as i64))]
    pub rounds: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

// bench peers

/// Per-target results, one entry per round; `control` is each round's
/// second direct connection per cycle (an A/A check of position and noise).
struct PeerRuns {
    runs: Vec<(Target, Vec<Lat>)>,
    control: Vec<Lat>,
}

impl PeerRuns {
    fn of(&self, t: Target) -> &[Lat] {
        &self
            .runs
            .iter()
            .find(|(x, _)| *x == t)
            .expect("every target")
            .1
    }

    /// Per-round ratio target/direct of `f`.
    fn ratios(&self, t: Target, f: fn(&Lat) -> f64) -> Vec<f64> {
        self.of(t)
            .iter()
            .zip(self.of(Target::Direct))
            .map(|(a, d)| f(a) / f(d))
            .collect()
    }

    /// Per round, the median per-cycle difference of `f` (wall or CPU ns)
    /// between `a` and `b`, µs; over rounds.
    fn paired(a: &[Lat], b: &[Lat], f: fn(&Lat) -> &[u64]) -> OverRounds {
        let per_round: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(x, y)| median_diff_us(f(x), f(y)))
            .collect();
        OverRounds::of(&per_round)
    }

    /// The paired lead of l4lb over `peer` in points of the direct p50.
    fn lead(&self, peer: Target) -> OverRounds {
        let per_round: Vec<f64> = self
            .of(peer)
            .iter()
            .zip(self.of(Target::L4lb))
            .zip(self.of(Target::Direct))
            .map(|((p, l), d)| lead_points(&p.wall_ns, &l.wall_ns, d.p50_us))
            .collect();
        OverRounds::of(&per_round)
    }
}

pub fn peers(a: PeersArgs) -> Result<()> {
    in_one_sandbox(
        "peers",
        SECTION_PEERS,
        a.rounds,
        a.write,
        |sb, deadline| peers_in(sb, &a, deadline),
        |(runs, checks), load_before, machine| {
            peers_summary(runs, checks, &a, load_before, machine)
        },
    )
}

fn peers_in(sb: &mut Sandbox, a: &PeersArgs, deadline: Instant) -> Result<(PeerRuns, Vec<String>)> {
    let running = peer_setup::start(sb)?;
    // The kernel's run-time accounting of the l4lb programs, for this run only.
    let stats = bpf_stats::enable();
    let result = peers_rounds(sb, a, deadline);
    let costs = stats
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(|_| bpf_stats::pinned_program_costs(sb.pin_root()));
    let connects = bpf_connects(sb);
    let rules = peer_setup::netfilter_counts(sb);
    // After the counters above are read: these runs make connects of their own.
    let split = (result.is_ok() && stats.is_ok()).then(|| mix_split(sb, a, deadline));
    drop(stats);
    let stopped = running.stop(sb);
    let runs = result?;
    stopped?;
    let made = |t: Target| -> u64 {
        runs.of(t).iter().map(|l| l.ok + l.errors).sum::<u64>()
            + u64::from(a.rounds + 1) * u64::from(probe::WARMUP)
            + u64::from(a.iterations.min(1000))
    };
    let mut checks = Vec::new();
    if let Ok(c) = connects {
        checks.push(format!(
            "BPF connect4 counted {c} connects to the l4lb VIP (the probe made {} to it)",
            made(Target::L4lb)
        ));
    }
    checks.push(match costs {
        Ok(c) => program_cost_line(&c),
        Err(e) => format!("BPF run-time stats unavailable: {e:#}"),
    });
    match split {
        Some(Ok(line)) => checks.push(line),
        Some(Err(e)) => checks.push(format!(
            "the programs inside the mixed cycle: unmeasured ({e:#})"
        )),
        None => {}
    }
    match rules {
        Ok((ipt, nft)) => checks.push(format!(
            "the iptables rule matched {ipt} connections and the nft rule {nft} (the probe made {} to each VIP)",
            made(Target::Iptables)
        )),
        Err(e) => checks.push(format!("rule counters unreadable: {e:#}")),
    }
    Ok((runs, checks))
}

/// The programs' cost per VIP connect inside the cycle the rounds run
/// (`peers_split.rs`): the cycle with l4lb's target, and with a direct
/// connection in its place.
fn mix_split(sb: &Sandbox, a: &PeersArgs, deadline: Instant) -> Result<String> {
    let cycle = |second: Target| -> Vec<String> {
        let mut c: Vec<String> = [Target::Direct, second, Target::Iptables, Target::Nftables]
            .iter()
            .map(|t| t.addr())
            .collect();
        c.extend([
            BACKEND.to_string(),
            Target::Haproxy.addr(),
            BACKEND.to_string(),
        ]);
        c
    };
    let (with, without) = (cycle(Target::L4lb), cycle(Target::Direct));
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    peers_split::vip_in_the_mix(sb, &with, &without, 5, a.iterations.min(2000), deadline)
}

/// What the l4lb programs cost per call and per connect() in the cgroup
/// (every target's connects run connect4; sock_ops runs on each TCP socket's
/// callbacks), from the kernel's `run_time_ns` / `run_cnt`.
fn program_cost_line(costs: &[bpf_stats::ProgCost]) -> String {
    let connects = costs
        .iter()
        .find(|c| c.name == "l4lb_connect4")
        .map_or(0, |c| c.runs);
    format!(
        "BPF run time (BPF_ENABLE_STATS, this run, every target's connects): {} in the cgroup",
        bpf_stats::describe(costs, connects)
    )
}

fn peers_rounds(sb: &Sandbox, a: &PeersArgs, deadline: Instant) -> Result<PeerRuns> {
    let addrs: Vec<String> = Target::ALL.iter().map(|t| t.addr()).collect();
    println!(
        "sandbox {}: backend {BACKEND}; targets {}",
        sb.netns(),
        addrs.join(", ")
    );
    // Warm-up (not counted): caches, CPU frequency, every path works.
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    probe::latency(sb, &all, a.iterations.min(1000), PROBE_TIMEOUT, deadline).context("warm-up")?;

    let mut runs = PeerRuns {
        runs: Target::ALL.iter().map(|t| (*t, Vec::new())).collect(),
        control: Vec::new(),
    };
    for r in 0..a.rounds as usize {
        // HAProxy's close of its backend side finishes after the client's
        // reply and lands on whichever connection comes next (BENCHMARKS.md,
        // "Measurements behind choices in the code"): every cycle ends with HAProxy and then one unreported
        // direct connection (`settle`) that absorbs it. The other four and a
        // second direct connection (`None`: the A/A control) rotate one place
        // every cycle (each takes every position within a round) and take a
        // different cyclic order every round (stride 1, 2 or 3), so none
        // always follows the same one.
        let five = [
            Some(Target::Direct),
            Some(Target::L4lb),
            Some(Target::Iptables),
            Some(Target::Nftables),
            None,
        ];
        let stride = 1 + (r / 5) % 3;
        let mut order: Vec<Option<Target>> = (0..5).map(|i| five[(r + i * stride) % 5]).collect();
        order.push(Some(Target::Haproxy));
        let mut to: Vec<String> = order
            .iter()
            .map(|t| t.map_or(BACKEND.to_string(), Target::addr))
            .collect();
        to.push(BACKEND.to_string());
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let mut lats = probe::latency_per_conn(sb, &to, a.iterations, 5, PROBE_TIMEOUT, deadline)
            .with_context(|| format!("round {}", r + 1))?;
        lats.pop(); // settle
        for (t, l) in order.iter().zip(lats) {
            let Some(t) = t else {
                runs.control.push(l);
                continue;
            };
            println!(
                "round {}/{} {:<9} p50 {:>7.1} us  p99 {:>8.1} us  {:>6.0} conn/s  errors {}",
                r + 1,
                a.rounds,
                format!("{t:?}"),
                l.p50_us,
                l.p99_us,
                l.conns_per_sec,
                l.errors
            );
            runs.runs
                .iter_mut()
                .find(|(x, _)| x == t)
                .expect("target")
                .1
                .push(l);
        }
    }
    Ok(runs)
}

fn peers_summary(
    runs: &PeerRuns,
    checks: &[String],
    a: &PeersArgs,
    load_before: &str,
    machine: &str,
) -> (String, String) {
    let (header, rows) = summary_rows(runs);
    let verdict = verdict(runs);
    let (paired_header, paired_rows) = paired_table(runs);
    let how = format!(
        "medians of {} rounds x {} connections per target (min-max over rounds in parentheses)",
        a.rounds, a.iterations
    );
    let errors_note = errors_note(runs);
    let text = format!(
        "connect + one request/response, {how}\n{}{PAIRED_HOW}\n{}{verdict}\n{}\n{errors_note}machine before: {load_before}\nmachine after:  {machine}\n",
        report::table(&header, &rows),
        report::table(&paired_header, &paired_rows),
        checks.join("\n"),
    );
    let md = format!(
        "## Socket path: l4lb next to iptables, nftables and HAProxy\n\n\
         `cargo xtask bench peers --iterations {it} --rounds {r}` on {{date}}, {how}. One sandbox (private netns \
         with only `lo`; the probe in the agent's child cgroup) holds one backend (`l4lb-testsrv` on {BACKEND}) \
         and five ways to it; each round is one `l4lb-probe latency --rst` run that interleaves all five \
         connection by connection (HAProxy last in each cycle, followed by one unreported direct connection that absorbs HAProxy's close of its backend side, which otherwise lands on the next target; the other four and a second direct connection, the A/A control, rotate one place every cycle, in a different cyclic order every round): connect(), send `ping\\n`, read the greeting and \
         the echo, close (RST). conn/s is one client's serial rate (connections over the time spent on them).\n\n\
         {}\n{PAIRED_HOW}\n\n{}\n{verdict}\n\n\
         Each target uses only its own mechanism: the netfilter VIPs ({IPT_ADDR}, {NFT_ADDR}) are addresses of the \
         netns' `lo` that refuse connections without their rule, and no rule matches the l4lb VIP \
         ({L4LB_VIP}). Checked after the run: {}.\n\n\
         Setup: {setup}. Since NAT tables exist in the \
         netns, conntrack tracks every connection there, direct and l4lb included (as on a node where \
         kube-proxy or Docker runs), and the probe's connect()s to every target pass the cgroup hook (a map \
         miss for all but the l4lb VIP): the ratios show what each mechanism adds on top. `cargo xtask bench \
         socket` measures l4lb against direct in a netns without netfilter. IPVS (dcos-net's engine) is not in \
         this kernel (no `ip_vs`, and modules cannot be loaded), so it is not measured.\n\
         {errors_note}\nMachine: {machine} (before the run: {load_before}).\n",
        report::md_table(&header, &rows),
        report::md_table(&paired_header, &paired_rows),
        checks.join("; "),
        setup = peer_setup::setup_text(),
        it = a.iterations,
        r = a.rounds,
    );
    (text, md)
}

/// One row per target: latencies, their ratios to direct, errors.
fn summary_rows(runs: &PeerRuns) -> ([&'static str; 9], Vec<Vec<String>>) {
    let header = [
        "target",
        "address",
        "p50 us",
        "p99 us",
        "conn/s",
        "p50 / direct",
        "p99 / direct",
        "conn/s / direct",
        "errors",
    ];
    let mut rows = Vec::new();
    for t in Target::ALL {
        let l = runs.of(t);
        let col = |f: fn(&Lat) -> f64, p: usize| med_range(&l.iter().map(f).collect::<Vec<_>>(), p);
        let ratio = |f: fn(&Lat) -> f64| {
            if t == Target::Direct {
                "1".to_string()
            } else {
                let r = runs.ratios(t, f);
                let (lo, hi) = min_max(&r);
                format!("{:.3}x ({lo:.2}-{hi:.2})", median(&r))
            }
        };
        let (ok, err): (u64, u64) = l.iter().fold((0, 0), |(o, e), x| (o + x.ok, e + x.errors));
        rows.push(vec![
            t.label().to_string(),
            t.addr(),
            col(|x| x.p50_us, 1),
            col(|x| x.p99_us, 1),
            col(|x| x.conns_per_sec, 0),
            ratio(|x| x.p50_us),
            ratio(|x| x.p99_us),
            ratio(|x| x.conns_per_sec),
            format!("{err}/{}", ok + err),
        ]);
    }
    (header, rows)
}

/// The goals' verdicts: l4lb against direct, and ahead of each peer.
fn verdict(runs: &PeerRuns) -> String {
    let p50 = |t: Target| median(&runs.ratios(t, |x| x.p50_us));
    let l4 = p50(Target::L4lb);
    let peers = [Target::Iptables, Target::Nftables, Target::Haproxy];
    let ahead: Vec<String> = peers
        .iter()
        .map(|&t| {
            let r = p50(t);
            format!(
                "{} {:.3}x ({})",
                match t {
                    Target::Iptables => "iptables",
                    Target::Nftables => "nftables",
                    _ => "HAProxy",
                },
                r,
                if l4 < r {
                    "l4lb ahead"
                } else {
                    "l4lb NOT ahead"
                }
            )
        })
        .collect();
    let all_ahead = peers.iter().all(|&t| l4 < p50(t));
    let mut verdict = format!(
        "l4lb p50 / direct = {l4:.3}x (goal <= {LATENCY_GOAL:.2}x): {}; ahead of iptables, nftables and HAProxy: {} (their p50 / direct: {}).",
        if l4 <= LATENCY_GOAL { "met" } else { "NOT met" },
        if all_ahead { "met" } else { "NOT met" },
        ahead.join(", ")
    );
    verdict.push(' ');
    verdict.push_str(&lead_verdict(
        l4,
        p50(Target::Iptables),
        p50(Target::Nftables),
        runs.lead(Target::Iptables),
        runs.lead(Target::Nftables),
    ));
    if l4 > LATENCY_GOAL {
        let _ = write!(
            verdict,
            " Missed by {:.1} %: the connect4 hook adds a map lookup and a rewrite per connect(), \
             compare the per-round spread above (2 shared cores, loadavg below).",
            (l4 - LATENCY_GOAL) * 100.0
        );
    }
    verdict
}

/// The failed connections' kinds by target, if any failed.
fn errors_note(runs: &PeerRuns) -> String {
    let e: Vec<String> = Target::ALL
        .iter()
        .filter_map(|&t| {
            let kinds: Vec<&str> = runs
                .of(t)
                .iter()
                .filter(|l| l.errors > 0)
                .map(|l| l.error_kinds.as_str())
                .collect();
            (!kinds.is_empty()).then(|| format!("{t:?}: {}", kinds.join(" ")))
        })
        .collect();
    if e.is_empty() {
        String::new()
    } else {
        format!(
            "\nFailed connections (not in the latencies): {}.\n",
            e.join("; ")
        )
    }
}

const PAIRED_HOW: &str = "Paired per cycle (`l4lb-probe latency --per-conn`): in each cycle the targets ran back to back; \
     per round, the median over cycles of (target - direct in the same cycle), then the median (min to max) over rounds. \
     wall: the connection's elapsed time; CPU: the probe thread's CPU time for it (syscalls, the BPF hooks, \
     netfilter and the loopback softirqs that run in the sender's context); wall - CPU: time the probe waited \
     (the backend or HAProxy, wake-ups). `direct again` is a second direct connection per cycle (an A/A \
     control: what position and noise alone give).";

/// Per target: wall, CPU and waiting time over direct, paired per cycle.
fn paired_table(runs: &PeerRuns) -> ([&'static str; 4], Vec<Vec<String>>) {
    let header = [
        "target",
        "wall - direct us",
        "CPU - direct us",
        "wall - CPU over direct's us",
    ];
    let direct = runs.of(Target::Direct);
    let row = |label: &str, l: &[Lat]| {
        let waits: Vec<f64> = l
            .iter()
            .zip(direct)
            .map(|(x, d)| {
                median_diff_us(&x.wall_ns, &d.wall_ns) - median_diff_us(&x.cpu_ns, &d.cpu_ns)
            })
            .collect();
        vec![
            label.to_string(),
            PeerRuns::paired(l, direct, wall_ns).signed(1),
            PeerRuns::paired(l, direct, cpu_ns).signed(1),
            OverRounds::of(&waits).signed(1),
        ]
    };
    let mut rows: Vec<Vec<String>> = Target::ALL[1..]
        .iter()
        .map(|&t| row(t.short(), runs.of(t)))
        .collect();
    rows.push(row("direct again (A/A control)", &runs.control));
    (header, rows)
}

fn wall_ns(l: &Lat) -> &[u64] {
    &l.wall_ns
}

fn cpu_ns(l: &Lat) -> &[u64] {
    &l.cpu_ns
}

/// The lead over the netfilter DNAT paths, in points of p50 / direct: the
/// ratio of medians (as before) and the paired per-cycle lead over rounds
/// (`ipt`, `nft`). Met only when both say so and every round's paired lead
/// reaches the goal over each.
fn lead_verdict(l4: f64, iptables: f64, nftables: f64, ipt: OverRounds, nft: OverRounds) -> String {
    let (over_ipt, over_nft) = ((iptables - l4) * 100.0, (nftables - l4) * 100.0);
    let met = over_ipt >= LEAD_GOAL_POINTS
        && over_nft >= LEAD_GOAL_POINTS
        && ipt.all_at_least(LEAD_GOAL_POINTS)
        && nft.all_at_least(LEAD_GOAL_POINTS);
    format!(
        "Lead over netfilter DNAT (points of p50 / direct; goal >= {LEAD_GOAL_POINTS:.0} over each, in every round): \
         ratio of medians iptables {over_ipt:+.1}, nftables {over_nft:+.1}; paired per cycle, median (min to max over rounds) \
         iptables {}, nftables {}: {}.",
        ipt.signed(1),
        nft.signed(1),
        if met { "met" } else { "NOT met" }
    )
}

#[cfg(test)]
mod lead_tests {
    use super::{OverRounds, lead_verdict};

    #[test]
    fn the_lead_is_counted_in_points_against_each_netfilter_path() {
        let r = |v: &[f64]| OverRounds::of(v);
        assert_eq!(
            lead_verdict(1.070, 1.111, 1.079, r(&[4.0, 4.2]), r(&[0.5, 1.3])),
            "Lead over netfilter DNAT (points of p50 / direct; goal >= 5 over each, in every round): \
             ratio of medians iptables +4.1, nftables +0.9; paired per cycle, median (min to max over rounds) \
             iptables +4.1 (+4.0 to +4.2), nftables +0.9 (+0.5 to +1.3): NOT met."
        );
        let both = r(&[5.2, 6.0, 5.0]);
        assert!(lead_verdict(1.00, 1.06, 1.051, both, both).ends_with(": met."));
        // One round under the goal is enough to say NOT met.
        let one_low = r(&[6.0, 7.0, 4.9]);
        assert!(lead_verdict(1.00, 1.06, 1.06, both, one_low).ends_with("NOT met."));
        // The paired lead alone does not override the ratio of medians.
        assert!(lead_verdict(1.00, 1.04, 1.06, both, both).ends_with("NOT met."));
    }
}
