//! `cargo xtask bench failover`: how long clients on other nodes keep
//! sending new connections to a dead node's backend. A simulated cluster
//! (`l4lb_tests::cluster`: one netns, agent and child cgroup per node, a
//! bridge, one fake Marathon) serves one VIP with a backend on every node;
//! some nodes stream paced connects through it while the last node's link
//! goes down (or its SYNs are dropped: `--kill syns`), and Marathon marks its tasks unreachable `--event-after-ms`
//! later (what routes around a dead node today) or never (`--no-event`).
//! Each run's victim is revived before the next.
//!
//! Policies: each `--lb-policy P` builds its own cluster whose agents run
//! with `--lb-policy P`, and the report puts the policies side by side.
//! Without it the agent runs as it is (one uniformly random Maglev slot per
//! connect). The flag is issue 15's per-node choice (`random|p2c`); an agent
//! without it is refused up front, before any cluster is built.
//!
//! Safety: everything runs in the cluster's namespaces and child cgroups;
//! connects are bounded by count and timeout, every wait by a deadline.
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use l4lb_tests::{
    Cluster, ClusterSpec, agent_bin,
    cluster::{DeathRun, DeathSpec, Kill},
};

use super::{
    control,
    stats::{med_range_if_many, median},
};
use crate::{interrupt, report, util};

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
    /// Agent `--lb-policy` to compare (repeat for several); none: the agent's own choice, no flag.
    #[arg(long = "lb-policy", value_name = "POLICY")]
    pub policies: Vec<String>,
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
    let policies: Vec<Option<String>> = if a.policies.is_empty() {
        vec![None]
    } else {
        require_policy_flag()?;
        a.policies.iter().cloned().map(Some).collect()
    };
    let started = Instant::now();
    let deadline = started + TOTAL_TIMEOUT;
    let machine = report::machine_line();
    let mut rows = vec![];
    for policy in &policies {
        let (samples, curve) = measure(&a, policy.as_deref(), deadline)?;
        let name = policy.as_deref().unwrap_or("(agent default)");
        println!("\n{name}: the first run's curve on node 0\n{curve}");
        rows.push(row(name, &samples));
    }
    let header = [
        "policy",
        "routed around after, ms",
        "event -> applied, ms",
        "bad / client / run",
        "bad after 1 s",
        "goal",
    ];
    println!("\n{}", describe(&a));
    print!("{}", report::table(&header, &rows));
    println!("{machine}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The agent must know `--lb-policy` before a policy is asked of it.
fn require_policy_flag() -> Result<()> {
    let help = util::stdout(std::process::Command::new(agent_bin()).args(["run", "--help"]))?;
    if !help.contains("--lb-policy") {
        bail!(
            "{} has no `run --lb-policy` yet (issue 15); run without --lb-policy to measure the agent as it is",
            agent_bin().display()
        );
    }
    Ok(())
}

/// One cluster for `policy`, `runs` deaths of its last node; every
/// client's sample and the first run's rendered curve on node 0.
fn measure(
    a: &FailoverArgs,
    policy: Option<&str>,
    deadline: Instant,
) -> Result<(Vec<Sample>, String)> {
    let mut spec = ClusterSpec::new("bench-fo", a.nodes as usize);
    if let Some(p) = policy {
        spec = spec.agent_args(&["--lb-policy", p]);
    }
    let c = Cluster::new(spec)?;
    let death = death_spec(a);
    let mut samples = vec![];
    let mut first_curve = String::new();
    for r in 0..a.runs {
        interrupt::check()?;
        util::time_left(deadline)?;
        let run = c.node_death(&death)?;
        if r == 0 {
            first_curve = run.curves[0].1.render();
        }
        samples.extend(samples_of(&run, a));
        c.revive(death.victim, death.kill, Duration::from_secs(30))?;
    }
    Ok((samples, first_curve))
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

fn row(name: &str, s: &[Sample]) -> Vec<String> {
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
    vec![
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
        if met { "met".into() } else { "NOT met".into() },
    ]
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
