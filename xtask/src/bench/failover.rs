//! `cargo xtask bench failover`: how long clients on other nodes keep
//! sending new connections to a dead node's backend. A simulated cluster
//! (`l4lb_tests::cluster`: one netns, agent and child cgroup per node, a
//! bridge, one fake Marathon) serves one VIP with a backend on every node;
//! some nodes stream paced connects through it while the last node's link
//! goes down (or its SYNs are dropped: `--kill syns`), and Marathon marks its tasks unreachable `--event-after-ms`
//! later (what routes around a dead node today) or never (`--no-event`).
//! Each run's victim is revived before the next.
//!
//! Policies: each `--lb-policy P` (default: `random` and `p2c`) builds its
//! own cluster whose agents run with `--lb-policy P`, and the report puts the
//! policies side by side: time to route around, the bad share after the
//! first second and the whole curve (every run and client summed, per
//! bucket), then the slow-backend part (`failover_slow.rs`): p50/p99 request
//! latency and the slow backend's share under concurrent load. `--write`
//! puts it in BENCHMARKS.md.
//!
//! Safety: everything runs in the cluster's namespaces and child cgroups;
//! connects are bounded by count and timeout, every wait by a deadline.
use std::time::{Duration, Instant};

use anyhow::Result;
use l4lb_tests::{
    Cluster, ClusterSpec,
    cluster::{Conn, Curve, DeathRun, DeathSpec, Kill},
};

use super::{
    control,
    failover_slow::{self, SlowArgs, SlowRun},
    stats::{self, med_range_if_many, median},
};
use crate::{interrupt, report, util};

const SECTION: &str = "xtask bench failover";

const MAX_NODES: i64 = 64;
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Issue 15's goals: routed around within 1 s, and after that second at
/// most this share of new connections failed or stalled.
const GOAL_ROUTE_MS: f64 = 1000.0;
const GOAL_BAD_SHARE: f64 = 0.001;

#[derive(clap::Args, Clone, Debug)]
pub struct FailoverArgs {
    /// Nodes in the cluster (the last one dies).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=MAX_NODES))]
    pub nodes: u32,
    /// Nodes streaming connects (the first ones).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub clients: u32,
    /// Deaths per policy.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// A new connection on each client every this many ms.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub interval_ms: u64,
    /// A connection not greeted after this long failed.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=10_000))]
    pub timeout_ms: u64,
    /// Marathon marks the dead node's tasks unreachable this long after its link went down.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(0..=120_000))]
    pub event_after_ms: u64,
    /// How the node dies: `link` (its bridge port down) or `syns` (nft in
    /// its netns drops every SYN reaching it).
    #[arg(long, default_value = "link", value_parser = ["link", "syns"])]
    pub kill: String,
    /// Marathon never hears of the death: what the nodes do on their own.
    #[arg(long)]
    pub no_event: bool,
    /// Connects streamed after the event (or after the death, with --no-event).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1000..=120_000))]
    pub after_ms: u64,
    /// Agent `--lb-policy` to compare (repeat for several).
    #[arg(long = "lb-policy", value_name = "POLICY", default_values = ["random", "p2c"], value_parser = ["random", "p2c"])]
    pub policies: Vec<String>,
    /// Agent `--health-probes` (agent: the agent probes a down backend;
    /// connection: a client connect is the half-open probe).
    #[arg(long, default_value = "agent", value_parser = ["agent", "connection"])]
    pub health_probes: String,
    #[command(flatten)]
    pub slow: SlowArgs,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

/// One client's view of one death.
struct Sample {
    /// Start of the last failed or stalled connection, ms after the death;
    /// None: still failing at the end of the window (not routed around).
    route_ms: Option<f64>,
    /// From the event to this client's agent seen without the dead backend.
    event_to_applied_ms: Option<f64>,
    /// Connections started after the death: bad ones (failed + stalled), all.
    bad: u64,
    total: u64,
    /// The same, from one second after the death on.
    bad_late: u64,
    total_late: u64,
}

pub fn failover(a: FailoverArgs) -> Result<()> {
    control::prepare()?;
    let started = Instant::now();
    let deadline = started + TOTAL_TIMEOUT;
    let load_before = report::machine_line();
    let mut results = vec![];
    for policy in &a.policies {
        let (samples, curve) = measure(&a, policy, deadline)?;
        println!(
            "\n{policy}: every run and client, summed per bucket\n{}",
            curve.render()
        );
        let slow = if a.slow.slow_seconds > 0.0 {
            interrupt::check()?;
            Some(failover_slow::measure(&a.slow, policy)?)
        } else {
            None
        };
        results.push(PolicyResult {
            name: policy.clone(),
            samples,
            curve,
            slow,
        });
    }
    let md = summarize(&a, &results, &load_before);
    println!("\n{}", md.replace("{date}", &report::today()));
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(SECTION, &md, &report::utc_date()?)?;
    }
    Ok(())
}

struct PolicyResult {
    name: String,
    samples: Vec<Sample>,
    /// Every run's and client's connections, times from their death.
    curve: Curve,
    slow: Option<SlowRun>,
}

/// One cluster for `policy`, `runs` deaths of its last node; every
/// client's sample and the curve of all of them summed.
fn measure(a: &FailoverArgs, policy: &str, deadline: Instant) -> Result<(Vec<Sample>, Curve)> {
    let spec = ClusterSpec::new("bench-fo", a.nodes as usize).agent_args(&[
        "--lb-policy",
        policy,
        "--health-probes",
        &a.health_probes,
    ]);
    let c = Cluster::new(spec)?;
    let death = death_spec(a);
    let mut samples = vec![];
    let mut conns: Vec<Conn> = vec![];
    let (mut bucket, mut stall) = (250.0, 900.0);
    for _ in 0..a.runs {
        interrupt::check()?;
        util::time_left(deadline)?;
        let run = c.node_death(&death)?;
        samples.extend(samples_of(&run, a));
        for (_, curve) in &run.curves {
            (bucket, stall) = (curve.bucket_ms, curve.stall_ms);
            conns.extend(curve.conns().iter().map(|x| Conn {
                start_ms: x.start_ms - curve.origin_ms,
                ..x.clone()
            }));
        }
        // Back up, and chosen again by every node (its agent's probe).
        c.revive(death.victim, death.kill, Duration::from_secs(45))?;
    }
    Ok((samples, Curve::new(conns, 0.0, bucket, stall)))
}

fn death_spec(a: &FailoverArgs) -> DeathSpec {
    let victim = a.nodes as usize - 1;
    let clients: Vec<usize> = (0..(a.clients as usize).min(victim)).collect();
    let mut d = DeathSpec::new(victim, &clients);
    d.kill = if a.kill == "syns" {
        Kill::Syns
    } else {
        Kill::Link
    };
    d.event_after = (!a.no_event).then(|| Duration::from_millis(a.event_after_ms));
    d.after = Duration::from_millis(a.after_ms);
    d.interval_ms = a.interval_ms;
    d.timeout_ms = a.timeout_ms;
    d
}

fn samples_of(run: &DeathRun, a: &FailoverArgs) -> Vec<Sample> {
    let window_end = run.event_ms.unwrap_or(0.0) + a.after_ms as f64;
    run.curves
        .iter()
        .zip(&run.applied_ms)
        .map(|((_, curve), applied)| {
            let (ok, stalled, failed) = curve.tally(0.0, f64::MAX);
            let (ok_l, stalled_l, failed_l) = curve.tally(GOAL_ROUTE_MS, f64::MAX);
            // Routed around only if a full timeout of good connections
            // followed the last bad one (a later bad one would have shown).
            let route_ms = match curve.last_bad_ms() {
                None => Some(0.0),
                Some(t) if t + (a.timeout_ms as f64) < window_end => Some(t.max(0.0)),
                Some(_) => None,
            };
            Sample {
                route_ms,
                event_to_applied_ms: applied.zip(run.event_ms).map(|(a, e)| a - e),
                bad: stalled + failed,
                total: ok + stalled + failed,
                bad_late: stalled_l + failed_l,
                total_late: ok_l + stalled_l + failed_l,
            }
        })
        .collect()
}

/// Route-around and bad-share columns of one policy, and whether both goals were met.
fn row(name: &str, s: &[Sample]) -> (Vec<String>, bool) {
    let routes: Vec<f64> = s.iter().map(|x| x.route_ms.unwrap_or(f64::NAN)).collect();
    let never = s.iter().filter(|x| x.route_ms.is_none()).count();
    let applied: Vec<f64> = s.iter().filter_map(|x| x.event_to_applied_ms).collect();
    let bad: Vec<f64> = s.iter().map(|x| x.bad as f64).collect();
    let (bad_late, total_late) = s
        .iter()
        .fold((0, 0), |(b, t), x| (b + x.bad_late, t + x.total_late));
    let share = bad_late as f64 / total_late.max(1) as f64;
    let route = if never > 0 {
        format!("not in {never}/{} windows", s.len())
    } else {
        med_range_if_many(&routes, 0)
    };
    let met = never == 0 && median(&routes) <= GOAL_ROUTE_MS && share <= GOAL_BAD_SHARE;
    let cells = vec![
        name.to_string(),
        route,
        if applied.is_empty() {
            "-".into()
        } else {
            med_range_if_many(&applied, 0)
        },
        format!(
            "{:.0} of {:.0}",
            median(&bad),
            median(&s.iter().map(|x| x.total as f64).collect::<Vec<_>>())
        ),
        format!("{:.2} % ({bad_late}/{total_late})", share * 100.0),
        stats::met(met).into(),
    ];
    (cells, met)
}

fn describe(a: &FailoverArgs) -> String {
    let event = if a.no_event {
        "no Marathon event".to_string()
    } else {
        format!(
            "Marathon marks its tasks unreachable {} ms later",
            a.event_after_ms
        )
    };
    format!(
        "Node death on {} nodes: the last node's {}, {event}; {} client node(s) \
         connect every {} ms (timeout {} ms), {} run(s) per policy. \"routed around after\": start of \
         the last failed or stalled (> 900 ms) connection, ms after the death, median (min-max) over \
         runs x clients. Goal (issue 15): <= {GOAL_ROUTE_MS:.0} ms, then <= {:.1} % bad.",
        a.nodes,
        if a.kill == "syns" {
            "incoming SYNs are dropped"
        } else {
            "link goes down"
        },
        a.clients.min(a.nodes - 1),
        a.interval_ms,
        a.timeout_ms,
        a.runs,
        GOAL_BAD_SHARE * 100.0
    )
}

/// The BENCHMARKS.md section (also printed): the command, the death table,
/// each policy's whole curve, the slow-backend table, verdicts, machine.
fn summarize(a: &FailoverArgs, results: &[PolicyResult], load_before: &str) -> String {
    let header = [
        "policy",
        "routed around after, ms",
        "event -> applied, ms",
        "bad / client / run",
        "bad after 1 s",
        "goal",
    ];
    let mut rows = vec![];
    let mut verdicts = vec![];
    for r in results {
        let (cells, met) = row(&r.name, &r.samples);
        verdicts.push(format!(
            "{}: routed around after {} ms, then {} bad (goal <= {GOAL_ROUTE_MS:.0} ms, then <= {:.1} %): {}",
            r.name,
            cells[1],
            cells[4],
            GOAL_BAD_SHARE * 100.0,
            stats::met(met)
        ));
        rows.push(cells);
    }
    let curves: String = results
        .iter()
        .map(|r| {
            format!(
                "`{}`:\n```\n{}```\n{}",
                r.name,
                r.curve.render(),
                late_bad(&r.curve)
            )
        })
        .collect();
    let mut md = format!(
        "## Failover: a node dies (`cargo xtask bench failover`)\n\n\
         `{}` on {{date}}. {}\n\n{}\n\
         The whole curve per policy, every run and client node summed, by when each connection started \
         (250 ms buckets from the death; stalled: greeted only after a retransmitted SYN):\n\n{curves}\n",
        command(a),
        describe(a),
        report::md_table(&header, &rows)
    );
    if let Some(slow) = slow_section(a, results) {
        md.push_str(&slow.0);
        verdicts.push(slow.1);
    }
    md.push_str(&format!(
        "Verdicts: {}.\n\nMachine: {} (before the run: {load_before}). This machine is shared with \
         builds and other benchmarks: a load average above 2 (its cores) means the timings are noisy.\n",
        verdicts.join("; "),
        report::machine_line()
    ));
    md
}

/// The slow-backend table and its verdict (None: that part was skipped).
fn slow_section(a: &FailoverArgs, results: &[PolicyResult]) -> Option<(String, String)> {
    let runs: Vec<(&str, &SlowRun)> = results
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.slow.as_ref()?)))
        .collect();
    if runs.is_empty() {
        return None;
    }
    let s = &a.slow;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(name, r)| {
            vec![
                name.to_string(),
                format!("{:.1} %", r.slow_share * 100.0),
                format!("{:.2}", r.p50_ms),
                format!("{:.2}", r.p99_ms),
                format!("{} ({} errors)", r.requests, r.errors),
            ]
        })
        .collect();
    let header = [
        "policy",
        "slow backend's share",
        "p50 ms",
        "p99 ms",
        "requests",
    ];
    let find = |n: &str| runs.iter().find(|(p, _)| *p == n).map(|(_, r)| *r);
    let verdict = match (find("random"), find("p2c")) {
        (Some(rnd), Some(p2c)) => {
            let met = p2c.slow_share <= rnd.slow_share / 2.0 && p2c.p99_ms < rnd.p99_ms;
            format!(
                "slow backend: p2c sends it {:.1} % vs random {:.1} %, p99 {:.2} vs {:.2} ms \
                 (goal: a small share under p2c, about a third under random, p99 lower accordingly): {}",
                p2c.slow_share * 100.0,
                rnd.slow_share * 100.0,
                p2c.p99_ms,
                rnd.p99_ms,
                stats::met(met)
            )
        }
        _ => "slow backend: random and p2c were not both measured".into(),
    };
    let text = format!(
        "**Slow backend.** One node's sandbox, three backends behind one VIP: two answer each request after \
         {} ms, one after {} ms ({}x slower); {} concurrent clients repeat connect, greeting, one request line, \
         its echo, close, for {} s through the VIP (latency: connect to echo).\n\n{}\n",
        s.slow_base_ms,
        s.slow_base_ms * s.slow_factor,
        s.slow_factor,
        s.slow_parallel,
        s.slow_seconds,
        report::md_table(&header, &rows)
    );
    Some((text, verdict))
}

/// The command line that reproduces this run.
fn command(a: &FailoverArgs) -> String {
    let mut c = format!(
        "cargo xtask bench failover --nodes {} --clients {} --runs {} --interval-ms {} --timeout-ms {} --kill {} --after-ms {}",
        a.nodes, a.clients, a.runs, a.interval_ms, a.timeout_ms, a.kill, a.after_ms
    );
    if a.no_event {
        c.push_str(" --no-event");
    } else {
        c.push_str(&format!(" --event-after-ms {}", a.event_after_ms));
    }
    for p in &a.policies {
        c.push_str(&format!(" --lb-policy {p}"));
    }
    if a.health_probes != "agent" {
        c.push_str(&format!(" --health-probes {}", a.health_probes));
    }
    c.push_str(&format!(
        " --slow-base-ms {} --slow-factor {} --slow-parallel {} --slow-seconds {}",
        a.slow.slow_base_ms, a.slow.slow_factor, a.slow.slow_parallel, a.slow.slow_seconds
    ));
    if a.write {
        c.push_str(" --write");
    }
    c
}

/// The bad connections started more than 1 s after the death, each with
/// its start and what happened ("" if none; the first 10 if many).
fn late_bad(curve: &Curve) -> String {
    let bad: Vec<String> = curve
        .between(GOAL_ROUTE_MS, f64::MAX)
        .filter(|c| c.outcome(curve.stall_ms) != l4lb_tests::cluster::Outcome::Ok)
        .map(|c| {
            let what = match (&c.error, &c.backend) {
                (Some(e), _) => e.clone(),
                (None, Some(b)) => format!("stalled, answered by {b}"),
                (None, None) => "?".into(),
            };
            format!("{:.0} ms: {what} after {:.0} ms", c.start_ms, c.dur_ms)
        })
        .collect();
    match bad.len() {
        0 => String::new(),
        n if n <= 10 => format!("Bad after 1 s: {}.\n", bad.join("; ")),
        n => format!(
            "Bad after 1 s ({n}), the first 10: {}.\n",
            bad[..10].join("; ")
        ),
    }
}
